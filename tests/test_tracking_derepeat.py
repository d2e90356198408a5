"""Online tracking of the critical region and ICP's de-repetition.

- The local slope identities of `icp.signals.criticality` against finite differences in log T.
- The tracker: bounded, moves flat rows hotter and steep rows cooler, leaves stopped rows alone.
- Repeat lengths: the incremental update equals a from-scratch computation and DRY's own scan.
- The processor: the trace records each row's target and sensitivity; targets move within their
  bound with embedding coherence and stay at H* without it; a token that would extend a repeat of
  the context loses probability.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import LlamaConfig, LlamaForCausalLM

from icp import SEEDS_LAW, ICP, ICPConfig, TrackingConfig
from icp.baselines import DRYLogitsProcessor
from icp.controller import CriticalRegionTracker
from icp.processors import ICPLogitsProcessor
from icp.signals import extend_repeat_lengths, repeat_lengths, repeat_penalty
from icp.signals.criticality import candidate_coherence, coherence_sensitivity_moments


def _expected_coherence_and_entropy(z: torch.Tensor, c: torch.Tensor, log_t: float) -> tuple[float, float]:
    q = torch.softmax(z.double() / math.exp(log_t), dim=-1)
    entropy = -(q * q.clamp_min(1e-300).log()).sum()
    return float((q * c.double()).sum()), float(entropy)


@given(seed=st.integers(0, 10_000), k=st.integers(2, 40), scale=st.floats(0.2, 6.0), t=st.floats(0.3, 2.5))
def test_moments_are_the_derivatives_in_log_temperature(seed, k, scale, t):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(k, generator=g, dtype=torch.float64) * scale
    c = torch.rand(k, generator=g, dtype=torch.float64)
    m = coherence_sensitivity_moments(z[None].float(), c[None].float(), torch.tensor([t]))
    h = 1e-4
    c_hi, h_hi = _expected_coherence_and_entropy(z, c, math.log(t) + h)
    c_lo, h_lo = _expected_coherence_and_entropy(z, c, math.log(t) - h)
    # dE[c]/dlog T = -Cov, dH/dlog T = Var.
    assert float(-m.covariance) == pytest.approx((c_hi - c_lo) / (2 * h), abs=2e-4, rel=2e-3)
    assert float(m.variance) == pytest.approx((h_hi - h_lo) / (2 * h), abs=2e-4, rel=2e-3)


def test_moments_ignore_missing_candidates():
    z = torch.tensor([[1.0, 0.0, float("-inf"), float("-inf")]])
    c = torch.tensor([[0.9, 0.4, 0.0, 123.0]])
    full = coherence_sensitivity_moments(z, c, torch.ones(1))
    kept = coherence_sensitivity_moments(z[:, :2], c[:, :2], torch.ones(1))
    torch.testing.assert_close(full.covariance, kept.covariance)
    torch.testing.assert_close(full.variance, kept.variance)
    assert torch.isfinite(full.covariance).all()


def test_candidate_coherence_matches_cosine_continuity():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(50, 8, generator=g)
    center = emb.mean(0)
    ids = torch.randint(0, 50, (3, 6), generator=g)
    ref = torch.randn(3, 8, generator=g)
    got = candidate_coherence(ids, emb, center, (emb - center).norm(dim=-1), ref)
    from icp.signals import cosine_continuity

    for row in range(3):
        for j in range(6):
            expected = cosine_continuity((emb[ids[row, j]] - center)[None], ref[row][None])
            assert float(got[row, j]) == pytest.approx(float(expected), abs=1e-5)


@given(
    cov=st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=40),
    var=st.floats(0.0, 5.0),
    rate=st.floats(0.0, 0.5),
    bound=st.floats(0.0, 2.0),
)
def test_tracker_target_stays_within_its_bound(cov, var, rate, bound):
    tracker = CriticalRegionTracker(2.0, rate, bound, 0.01, 0.9, 0.5)
    state = tracker.initial_state(1, torch.device("cpu"))
    for value in cov:
        state, target = tracker.update(state, torch.tensor([value]), torch.tensor([var]), torch.tensor([True]))
        assert 2.0 - bound - 1e-6 <= float(target) <= 2.0 + bound + 1e-6


def test_tracker_moves_flat_rows_hotter_steep_rows_cooler_and_freezes_stopped_rows():
    tracker = CriticalRegionTracker(2.0, 0.1, 1.0, 0.01, 0.8, 0.1)
    state = tracker.initial_state(3, torch.device("cpu"))
    variance = torch.full((3,), 2.0)
    covariance = torch.tensor([0.0, 0.2, 0.2])  # sensitivity 0 (flat), 0.1 and 0.1 (10x the reference)
    active = torch.tensor([True, True, False])
    for _ in range(30):
        state, target = tracker.update(state, covariance, variance, active)
    assert float(target[0]) == pytest.approx(3.0)  # hotter, up to the bound
    assert float(target[1]) == pytest.approx(1.0)  # cooler, down to the bound
    assert float(target[2]) == 2.0  # never active: untouched
    # No evidence (zero variance) leaves the sensitivity at the reference: the target does not drift.
    still = tracker.initial_state(1, torch.device("cpu"))
    for _ in range(30):
        still, target = tracker.update(still, torch.zeros(1), torch.zeros(1), torch.tensor([True]))
    assert float(target) == pytest.approx(2.0)


@settings(max_examples=60)
@given(seed=st.integers(0, 10_000), n=st.integers(2, 40), vocab=st.integers(1, 4), pad_share=st.floats(0.0, 0.3))
def test_repeat_lengths_incremental_equals_scratch_and_dry(seed, n, vocab, pad_share):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (3, n), generator=g)
    valid = torch.rand(3, n, generator=g) >= pad_share
    cap = 64
    grown = repeat_lengths(ids[:, :2], valid[:, :2], cap)
    for end in range(3, n + 1):
        grown = extend_repeat_lengths(grown, ids[:, :end], valid[:, :end], cap)
    torch.testing.assert_close(grown, repeat_lengths(ids, valid, cap))
    # Without padding, the lengths are DRY's match lengths (text-generation-webui's semantics).
    dry = DRYLogitsProcessor(allowed_length=1, max_match_length=64)
    torch.testing.assert_close(repeat_lengths(ids, None, cap), dry.match_lengths(ids).to(torch.int32))


def test_repeat_penalty_is_drys_rule_and_capped():
    lengths = torch.tensor([[0, 1, 2, 3, 4, 200]])
    got = repeat_penalty(lengths, 0.8, 1.75, 2)
    expected = [0.0, 0.0, 0.8, 0.8 * 1.75, 0.8 * 1.75**2]
    torch.testing.assert_close(got[0, :5], torch.tensor(expected))
    assert torch.isfinite(got).all() and float(got[0, 5]) >= 1e3


def _tiny_model(vocab: int = 64) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config).eval()


def test_trace_records_moving_bounded_targets_with_embedding_coherence():
    model = _tiny_model()
    icp = ICP(model, **SEEDS_LAW, target_entropy=2.0, tracking={"rate": 0.2, "bound": 0.5})
    torch.manual_seed(0)
    model.generate(torch.randint(0, 64, (4, 6)), max_new_tokens=24, **icp.generation_kwargs())
    d = icp.trace.to_dict()
    target, sensitivity = d["target"], d["coherence_sensitivity"]
    decoded = torch.isfinite(torch.as_tensor(d["entropy"]))
    assert torch.isfinite(torch.as_tensor(target))[decoded].all()
    assert torch.isfinite(torch.as_tensor(sensitivity))[decoded].all()
    finite = torch.as_tensor(target)[decoded]
    assert float(finite.min()) >= 1.5 - 1e-5 and float(finite.max()) <= 2.5 + 1e-5
    assert float(finite.max() - finite.min()) > 0.05  # it does move


def test_target_is_fixed_without_embedding_coherence_or_with_rate_zero():
    model = _tiny_model()
    for icp in (
        ICP(model, coherence="logits", target_entropy=2.0),
        ICP(model, **SEEDS_LAW, target_entropy=2.0, tracking={"rate": 0.0}),
    ):
        torch.manual_seed(0)
        model.generate(torch.randint(0, 64, (2, 5)), max_new_tokens=8, **icp.generation_kwargs())
        d = icp.trace.to_dict()
        decoded = torch.isfinite(torch.as_tensor(d["entropy"]))
        assert torch.all(torch.as_tensor(d["target"])[decoded] == 2.0)
        assert torch.isnan(torch.as_tensor(d["coherence_sensitivity"])).all()


def test_tracking_config_is_validated():
    with pytest.raises(ValueError, match="candidates"):
        TrackingConfig(candidates=1)
    with pytest.raises(ValueError, match="rate"):
        ICPConfig(tracking={"rate": -0.1})
    with pytest.raises(ValueError, match="Unknown TrackingConfig keys"):
        ICPConfig(tracking={"speed": 1.0})


def _step_through(processor: ICPLogitsProcessor, prompt: list[int], generated: list[int]) -> torch.Tensor:
    """Feeds the processor a prompt and then one generated token per call; returns the last log q."""
    ids = torch.tensor([prompt])
    out = processor(ids, torch.zeros(1, 20))
    for token in generated:
        ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
        processor.state.observe_token(ids)
        out = processor(ids, torch.zeros(1, 20))
    return out


def test_derepetition_penalises_repeats_of_the_generated_text_and_of_the_prompt_only_when_asked():
    config = {"min_p": 0.0, "derepeat_penalty": 1.0, "tracking": {"rate": 0.0}, "heat_rate": 0.0, "gain": 1e-9, "initial_temperature": 1.0}
    # Generated "a b c a b": c would extend the repeat "a b" (L = 2): 1 nat, tempered by T = 1.
    logq = _step_through(ICPLogitsProcessor(ICPConfig(**config)), [5], [10, 11, 12, 10, 11])
    assert float(logq[0, 12] - logq[0, 13]) == pytest.approx(-1.0, abs=1e-4)
    # The same tokens as the prompt: free by default (answers copy facts, documents name entities) ...
    logq = _step_through(ICPLogitsProcessor(ICPConfig(**config)), [10, 11, 12, 10, 11], [])
    assert float(logq[0, 12] - logq[0, 13]) == pytest.approx(0.0, abs=1e-6)
    # ... and penalised with derepeat_prompt=True (DRY's whole-context search).
    logq = _step_through(ICPLogitsProcessor(ICPConfig(**config, derepeat_prompt=True)), [10, 11, 12, 10, 11], [])
    assert float(logq[0, 12] - logq[0, 13]) == pytest.approx(-1.0, abs=1e-4)


def test_derepetition_lowers_the_token_that_would_extend_a_repeat():
    # Context "a b c a b": c would extend the repeat "a b" to "a b c" (L = 2 for candidate c).
    ids = torch.tensor([[10, 11, 12, 10, 11]])
    scores = torch.zeros(1, 20)
    at_one = {"min_p": 0.0, "tracking": {"rate": 0.0}, "initial_temperature": 1.0}
    on = ICPLogitsProcessor(ICPConfig(**at_one, derepeat_penalty=1.0, derepeat_prompt=True))
    off = ICPLogitsProcessor(ICPConfig(**at_one, derepeat_penalty=0.0))
    logq_on, logq_off = on(ids, scores.clone()), off(ids, scores.clone())
    # Both start at T = 1; the penalised token is exactly 1 nat below the others.
    assert float(logq_on[0, 12] - logq_on[0, 13]) == pytest.approx(-1.0, abs=1e-5)
    assert float(logq_off[0, 12] - logq_off[0, 13]) == pytest.approx(0.0, abs=1e-6)
    # KL(Q||P) accounts for the penalty: positive with it, zero without.
    assert on.state.trace().to_dict()["kl"][0, 0] > 0
    assert off.state.trace().to_dict()["kl"][0, 0] == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 40), window=st.integers(2, 12))
def test_a_sliding_window_keeps_the_last_columns_of_the_full_history(seed, n, window):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 3, (2, n), generator=g)
    full = repeat_lengths(ids[:, :2], None, 64)
    slid = repeat_lengths(ids[:, : min(2, window)], None, 64)
    for end in range(3, n + 1):
        full = extend_repeat_lengths(full, ids[:, :end], None, 64)
        slid = extend_repeat_lengths(slid, ids[:, max(0, end - window) : end], None, 64)
    torch.testing.assert_close(slid, full[:, -(min(n, window) - 1) :])


def test_derepetition_window_bounds_the_state_and_still_catches_recent_repeats():
    config = {"min_p": 0.0, "derepeat_penalty": 1.0, "tracking": {"rate": 0.0}, "heat_rate": 0.0, "gain": 1e-9, "initial_temperature": 1.0}
    processor = ICPLogitsProcessor(ICPConfig(**config, derepeat_window=6))
    logq = _step_through(processor, [5], [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 10, 11])
    assert processor.state.repeat_lengths.shape == (1, 5)  # window 6: five candidate positions
    assert float(logq[0, 12] - logq[0, 13]) == pytest.approx(-1.0, abs=1e-4)  # "10 11" -> 12 repeats
    with pytest.raises(ValueError, match="derepeat_window"):
        ICPConfig(derepeat_window=1)
