"""DRY and adaptive-p baselines: their reference formulas by hand, batching, contract, no host sync."""

from __future__ import annotations

import pytest
import torch
from helpers import VOCAB, prompt, tiny_llama
from hypothesis import given
from hypothesis import strategies as st
from test_baselines import generate_without_host_reads
from transformers import LogitsProcessorList

from icp.baselines import AdaptivePLogitsProcessor, DRYLogitsProcessor

FACTORIES = [DRYLogitsProcessor, AdaptivePLogitsProcessor]


def reference_dry(row, vocab, multiplier=0.8, base=1.75, allowed=2, breakers=(), last_n=0, max_len=50):
    """text-generation-webui's DRY for one row, token by token (the semantics the processor follows)."""
    seq = list(row[-last_n:]) if last_n else list(row)
    penalty = [0.0] * vocab
    n = len(seq)
    if n < 2 or seq[-1] in breakers:
        return penalty
    for i in range(n - 1):
        if seq[i] != seq[-1] or seq[i + 1] in breakers:
            continue
        length = 1
        while length < max_len and i - length >= 0:
            tail = seq[n - 1 - length]
            if seq[i - length] != tail or tail in breakers:
                break
            length += 1
        if length >= allowed:
            penalty[seq[i + 1]] = max(penalty[seq[i + 1]], multiplier * base ** (length - allowed))
    return penalty


def ids(*rows):
    return torch.tensor(rows, dtype=torch.long)


# ----------------------------------------------------------------------------------------------- DRY


def test_dry_abcxab_penalises_c_by_the_multiplier():
    a, b, c, x = 0, 1, 2, 3
    out = DRYLogitsProcessor()(ids([a, b, c, x, a, b]), torch.zeros(1, 6))
    # L = 2 (the run "a b" ends at position 1 and at the end): 0.8 · 1.75^0 on c, nothing else.
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, -0.8, 0.0, 0.0, 0.0]]))


def test_dry_longer_match_grows_by_base_and_the_max_over_positions_is_taken():
    proc = DRYLogitsProcessor(multiplier=0.8, base=1.75, allowed_length=2)
    # "1 2 3" repeats: L = 3 for the candidate 4, penalty 0.8 · 1.75.
    torch.testing.assert_close(proc.penalties(ids([1, 2, 3, 4, 1, 2, 3]), 6)[0, 4], torch.tensor(1.4))
    # Candidate 9 follows "1 2" (L = 2) and "0 1 2" (L = 3): the larger penalty, not the sum.
    pen = proc.penalties(ids([1, 2, 9, 0, 1, 2, 9, 5, 0, 1, 2]), 10)
    torch.testing.assert_close(pen[0, 9], torch.tensor(1.4))
    assert pen.count_nonzero() == 1


@pytest.mark.parametrize(
    ("probs", "context", "expected", "multiplier", "base", "allowed", "last_n", "breakers"),
    [  # llama.cpp tests/test-sampling.cpp, test_dry(...): the same numbers
        ([0.25] * 4, [0, 1], [0.25] * 4, 1.0, 1.1, 2, 4, []),
        ([0.25] * 4, [0, 1, 2, 0, 1], [0.296923, 0.296923, 0.109232, 0.296923], 1.0, 1.1, 2, 5, []),
        ([0.2] * 5, [0, 1, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 2, 6, [3]),
        ([0.2] * 5, [0, 1, 2, 0, 1], [0.241818, 0.241818, 0.032727, 0.241818, 0.241818], 2.0, 1.1, 2, 5, []),
        ([0.2] * 5, [0, 1, 2, 3, 4, 0, 1], [0.2] * 5, 1.0, 1.1, 4, 7, []),
    ],
)
def test_dry_matches_llama_cpp_test_cases(probs, context, expected, multiplier, base, allowed, last_n, breakers):
    proc = DRYLogitsProcessor(multiplier, base, allowed, sequence_breakers=breakers, penalty_last_n=last_n)
    out = proc(ids(context), torch.tensor([probs]).log())
    torch.testing.assert_close(out.softmax(-1), torch.tensor([expected]), atol=1e-6, rtol=0)


def test_dry_breakers_stop_matches():
    seq = ids([1, 2, 3, 4, 1, 2, 3])  # unbroken: L = 3 for the candidate 4
    # A breaker inside the trailing run stops the match before it: "2 3" only, L = 2.
    torch.testing.assert_close(DRYLogitsProcessor(sequence_breakers=[1]).penalties(seq, 6)[0, 4], torch.tensor(0.8))
    # A last token that is a breaker: no penalty at all.
    assert DRYLogitsProcessor(sequence_breakers=[3]).penalties(seq, 6).count_nonzero() == 0
    # A breaker is never penalised as the candidate.
    assert DRYLogitsProcessor(sequence_breakers=[4]).penalties(seq, 6).count_nonzero() == 0


def test_dry_window_limits_the_search():
    seq = ids([1, 2, 3, 4, 1, 2, 3])
    assert DRYLogitsProcessor(penalty_last_n=4).penalties(seq, 6).count_nonzero() == 0  # 4 1 2 3: no earlier 3
    # 2 3 4 1 2 3: the run "2 3" repeats (L = 2); the 1 before it is outside the window.
    torch.testing.assert_close(DRYLogitsProcessor(penalty_last_n=6).penalties(seq, 6)[0, 4], torch.tensor(0.8))
    torch.testing.assert_close(DRYLogitsProcessor(penalty_last_n=0).penalties(seq, 6)[0, 4], torch.tensor(1.4))


def test_dry_match_length_is_capped():
    seq = ids(list(range(30)) * 2 + [0])  # the whole 30-token cycle repeats, L would be 31
    proc = DRYLogitsProcessor(multiplier=1.0, base=1.1, allowed_length=2, max_match_length=10)
    assert proc.match_lengths(seq).max() == 10
    torch.testing.assert_close(proc.penalties(seq, 30)[0, 1], torch.tensor(1.1**8))
    long = DRYLogitsProcessor(multiplier=1.0, base=1.1, allowed_length=2)
    torch.testing.assert_close(long.penalties(seq, 30)[0, 1], torch.tensor(1.1**29))  # 31 tokens: under 50


@given(
    data=st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=24), min_size=1, max_size=4),
    breakers=st.sets(st.integers(0, 3), max_size=2),
    last_n=st.integers(0, 24),
    allowed=st.integers(1, 3),
    extra=st.integers(0, 5),
)
def test_dry_matches_the_reference_and_rows_are_independent(data, breakers, last_n, allowed, extra):
    length = min(len(row) for row in data)
    rows = [row[:length] for row in data]
    proc = DRYLogitsProcessor(
        multiplier=0.7,
        base=1.3,
        allowed_length=allowed,
        sequence_breakers=breakers,
        penalty_last_n=last_n,
        max_match_length=allowed + extra,
    )
    batch = proc.penalties(torch.tensor(rows), 5)
    for r, row in enumerate(rows):
        expected = reference_dry(row, 5, 0.7, 1.3, allowed, breakers, last_n, allowed + extra)
        torch.testing.assert_close(batch[r], torch.tensor(expected), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(batch[r : r + 1], proc.penalties(torch.tensor([row]), 5))


def test_dry_without_a_repeat_returns_the_scores_in_float32():
    scores = torch.randn(2, VOCAB)
    out = DRYLogitsProcessor()(torch.arange(10).repeat(2, 1), scores)
    assert out.dtype == torch.float32 and torch.equal(out, scores)
    assert torch.equal(DRYLogitsProcessor(multiplier=0.0)(ids([1, 2, 1, 2]), scores[:1]), scores[:1])


def test_dry_is_stateless_across_generations():
    proc = DRYLogitsProcessor(sequence_breakers=[5])
    seq, scores = ids([1, 2, 3, 1, 2], [5, 5, 5, 5, 5]), torch.randn(2, 8)
    first = proc(seq, scores)
    proc(ids([4, 4, 4]), torch.randn(1, 8))  # another generation, another batch size
    proc.reset()
    torch.testing.assert_close(proc(seq, scores), first)
    torch.testing.assert_close(DRYLogitsProcessor(sequence_breakers=[5])(seq, scores), first)


def _repeated_trigrams(sequences, prompt_length):
    """Generated tokens that complete a trigram already present earlier in the same row."""
    count = 0
    for row in sequences.tolist():
        seen = {tuple(row[j - 2 : j + 1]) for j in range(2, prompt_length)}
        for t in range(prompt_length, len(row)):
            count += tuple(row[t - 2 : t + 1]) in seen
            seen.add(tuple(row[t - 2 : t + 1]))
    return count


def test_strong_dry_in_generate_never_repeats_a_trigram():
    model = tiny_llama()
    plain = model.generate(**prompt(), max_new_tokens=24, do_sample=False)
    assert _repeated_trigrams(plain, 5) > 0, "greedy decoding of the tiny model loops without DRY"
    # Any token completing a seen trigram extends a repeat of length >= 2: penalty 1e4.
    dry = LogitsProcessorList([DRYLogitsProcessor(multiplier=1e4, allowed_length=2)])
    out = model.generate(**prompt(), max_new_tokens=24, do_sample=False, logits_processor=dry)
    assert _repeated_trigrams(out, 5) == 0


# ----------------------------------------------------------------------------------------- adaptive-p


def _transform(p, adapted):
    d = (p - adapted).abs() / 0.3
    return torch.log_softmax(5.0 - 10.0 * d * d / (1.0 + d), -1)


def test_adaptive_p_first_step_follows_the_llama_cpp_transform():
    z = torch.randn(3, VOCAB) * 2
    out = AdaptivePLogitsProcessor(target=0.4, decay=0.9)(torch.ones(3, 2, dtype=torch.long), z)
    torch.testing.assert_close(out, _transform(torch.softmax(z, -1), 0.4), atol=1e-5, rtol=1e-5)


def test_adaptive_p_ema_update_and_adapted_target_follow_the_original_probability():
    proc = AdaptivePLogitsProcessor(target=0.5, decay=0.8)
    z = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]]))
    proc(torch.zeros(2, 4, dtype=torch.long), z)
    torch.testing.assert_close(proc.ema, torch.tensor([0.5, 0.5]))
    chosen = torch.tensor([[0], [2]])  # row 0 took the 0.7 token, row 1 the 0.1 token
    out = proc(torch.cat([torch.zeros(2, 4, dtype=torch.long), chosen], 1), z)
    ema = 0.8 * 0.5 + 0.2 * torch.tensor([0.7, 0.1])
    torch.testing.assert_close(proc.ema, ema)
    adapted = (2 * 0.5 - ema).clamp(0, 1)  # 0.46 after a confident pick, 0.58 after a surprising one
    torch.testing.assert_close(proc.adapted_targets(), adapted)
    torch.testing.assert_close(out, _transform(torch.softmax(z, -1), adapted[:, None]), atol=1e-5, rtol=1e-5)
    # llama.cpp's two accumulators give the same adapted target.
    weighted, total = 0.5 / 0.2, 1 / 0.2
    weighted, total = 0.7 + 0.8 * weighted, 1 + 0.8 * total
    torch.testing.assert_close(adapted[0], torch.tensor(2 * 0.5 - weighted / total))


@pytest.mark.parametrize("target", [0.35, 0.5])
def test_adaptive_p_tracks_its_target_in_a_decode_loop(target):
    torch.manual_seed(0)
    proc = AdaptivePLogitsProcessor(target=target, decay=0.9)
    tokens = torch.ones(16, 1, dtype=torch.long)
    observed = []
    for _ in range(300):
        z = -torch.arange(12.0).expand(16, 12) + 0.5 * torch.randn(16, 12)
        z = z[:, torch.randperm(12)]
        token = torch.multinomial(proc(tokens, z).exp(), 1)
        observed.append(torch.softmax(z, -1).gather(1, token).squeeze(1))
        tokens = torch.cat([tokens, token], 1)
    late = torch.stack(observed[-200:]).mean()
    assert abs(late - target) < 0.06, late


def test_adaptive_p_restarts_on_a_new_generation_and_on_reset():
    proc = AdaptivePLogitsProcessor(target=0.3)
    z = torch.randn(2, VOCAB) * 3
    proc(torch.ones(2, 3, dtype=torch.long), z)
    proc(torch.cat([torch.ones(2, 3, dtype=torch.long), z.argmax(-1, keepdim=True)], 1), z)
    assert not torch.allclose(proc.ema, torch.full((2,), 0.3))
    proc(torch.ones(3, 3, dtype=torch.long), torch.randn(3, VOCAB))  # another batch: restart
    torch.testing.assert_close(proc.ema, torch.full((3,), 0.3))
    proc.reset()
    assert proc.ema is None and proc.adapted_targets() is None


def test_adaptive_p_restarts_between_generate_calls():
    model = tiny_llama()
    proc = AdaptivePLogitsProcessor(target=0.2)
    processors = LogitsProcessorList([proc])
    model.generate(**prompt(), max_new_tokens=8, do_sample=True, top_k=0, logits_processor=processors)
    assert not torch.allclose(proc.ema, torch.full((4,), 0.2))
    model.generate(**prompt(), max_new_tokens=1, do_sample=True, top_k=0, logits_processor=processors)
    torch.testing.assert_close(proc.ema, torch.full((4,), 0.2))


def test_adaptive_p_negative_target_disables_it():
    scores = torch.randn(2, VOCAB)
    proc = AdaptivePLogitsProcessor(target=-1.0)
    assert not proc.enabled and proc(torch.ones(2, 3, dtype=torch.long), scores) is scores


@given(seed=st.integers(0, 2**16), batch=st.integers(1, 4), target=st.floats(0.0, 1.0), steps=st.integers(1, 3))
def test_adaptive_p_rows_are_independent(seed, batch, target, steps):
    g = torch.Generator().manual_seed(seed)
    scores = [torch.randn(batch, 16, generator=g) * 3 for _ in range(steps)]
    tokens = torch.randint(0, 16, (batch, 2 + steps), generator=g)
    together = AdaptivePLogitsProcessor(target=target)
    outs = [together(tokens[:, : 2 + s], scores[s]) for s in range(steps)]
    for r in range(batch):
        alone = AdaptivePLogitsProcessor(target=target)
        for s in range(steps):
            torch.testing.assert_close(alone(tokens[r : r + 1, : 2 + s], scores[s][r : r + 1]), outs[s][r : r + 1])


# ------------------------------------------------------------------------------------------- shared


@pytest.mark.parametrize("factory", FACTORIES)
def test_contract_in_generate_without_host_reads(factory):
    out, calls = generate_without_host_reads(factory(), tiny_llama())
    assert out.shape == (4, 15) and calls == 10


@pytest.mark.parametrize("factory", FACTORIES)
def test_no_in_place_change_and_masks_survive(factory):
    proc = factory()
    scores = torch.randn(3, VOCAB) * 3
    scores[0, :5] = float("-inf")
    before = scores.clone()
    context = torch.tensor([[7, 8, 9, 7, 8]] * 3)  # DRY penalises 9
    out = proc(context, scores)
    assert torch.equal(scores, before), "processor should not change logits in-place"
    assert out.dtype == torch.float32 and not torch.isnan(out).any()
    assert torch.isinf(out[0, :5]).all() and (out[0, :5] < 0).all()
    assert torch.isfinite(out[:, 5:]).all()
    if factory is DRYLogitsProcessor:
        assert (out[:, 9] < scores[:, 9]).all()
    else:
        torch.testing.assert_close(torch.logsumexp(out, -1), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_read_in_float32(factory, dtype):
    scores = (torch.randn(2, VOCAB) * 3).to(dtype)
    scores[1, 3] = float("-inf")
    context = torch.tensor([[7, 8, 9, 7, 8]] * 2)
    out = factory()(context, scores)
    assert out.dtype == torch.float32 and torch.isneginf(out[1, 3])
    torch.testing.assert_close(out, factory()(context, scores.float()))


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (DRYLogitsProcessor, {"multiplier": -0.1}, "multiplier"),
        (DRYLogitsProcessor, {"multiplier": float("nan")}, "multiplier"),
        (DRYLogitsProcessor, {"base": 0.5}, "base"),
        (DRYLogitsProcessor, {"allowed_length": 0}, "allowed_length"),
        (DRYLogitsProcessor, {"allowed_length": 2.0}, "allowed_length"),
        (DRYLogitsProcessor, {"penalty_last_n": -1}, "penalty_last_n"),
        (DRYLogitsProcessor, {"max_match_length": 1}, "max_match_length"),
        (DRYLogitsProcessor, {"sequence_breakers": "\n:"}, "sequence_breakers"),
        (DRYLogitsProcessor, {"sequence_breakers": [1, -2]}, "sequence_breakers"),
        (AdaptivePLogitsProcessor, {"target": 1.5}, "target"),
        (AdaptivePLogitsProcessor, {"target": float("nan")}, "target"),
        (AdaptivePLogitsProcessor, {"decay": 1.0}, "decay"),
        (AdaptivePLogitsProcessor, {"decay": -0.1}, "decay"),
    ],
)
def test_bad_arguments_are_named(factory, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        factory(**kwargs)
