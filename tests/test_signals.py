"""Unit and property tests of `icp.signals`, against closed forms and float64 brute force.

Every reference value here is computed independently, with numpy in float64 or plain Python loops;
nothing calls the function under test to build its own expected value.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from icp.signals import (
    context_recall,
    cosine_continuity,
    distribution_signals,
    ema_update,
    entropy,
    entropy_volatility,
    free_energy,
    kl_divergence,
    loop_progress,
    sanitize_logits,
    temper_and_truncate,
    token_surprisal,
    trailing_cycle,
    varentropy,
)

INF = float("inf")
NAN = float("nan")
LOG_TINY_F32 = math.log(torch.finfo(torch.float32).tiny)  # about -87.34


# ----------------------------------------------------------------------------------------------
# float64 references
# ----------------------------------------------------------------------------------------------


def ref_probs(row) -> np.ndarray:
    """softmax of one row in float64 with the documented conventions: NaN is masked, +inf entries
    share all the mass, a fully masked row has no distribution (all zeros)."""
    z = np.asarray(row, dtype=np.float64).copy()
    z[np.isnan(z)] = -np.inf
    p = np.zeros_like(z)
    pos = np.isposinf(z)
    if pos.any():
        p[pos] = 1.0 / pos.sum()
        return p
    live = np.isfinite(z)
    if not live.any():
        return p
    e = np.exp(z[live] - z[live].max())
    p[live] = e / e.sum()
    return p


def ref_entropy_varentropy(row) -> tuple[float, float]:
    p = ref_probs(row)
    nz = p > 0
    surprisal = -np.log(p[nz])
    h = float((p[nz] * surprisal).sum())
    v = float((p[nz] * (surprisal - h) ** 2).sum())
    return h, v


def ref_kl(q: np.ndarray, p: np.ndarray) -> float:
    """KL(Q || P) = sum over supp(Q) of q (log q - log p), as an explicit loop."""
    total = 0.0
    for qi, pi in zip(q.tolist(), p.tolist()):
        if qi > 0:
            total += qi * (math.log(qi) - math.log(pi))
    return total


def ref_runs(seq: list[int], max_period: int) -> list[int]:
    """Trailing run r_p for p = 1..max_period, by walking back from the last token."""
    runs = []
    for p in range(1, max_period + 1):
        r, i = 0, len(seq) - 1
        while i - p >= 0 and seq[i] >= 0 and seq[i] == seq[i - p]:
            r += 1
            i -= 1
        runs.append(r)
    return runs


def ref_cycle(seq: list[int], max_period: int, min_repeats: int, min_loop_tokens: int):
    """(run, period, progress) of the first period with the highest r_p / max((n-1)p, min_loop_tokens)."""
    runs = ref_runs(seq, max_period)
    periods = range(1, max_period + 1)
    progress = [r / max((min_repeats - 1) * p, min_loop_tokens) for p, r in zip(periods, runs)]
    best = max(range(max_period), key=lambda k: (progress[k], -k))
    return runs[best], best + 1, progress[best]


def is_loop_bruteforce(seq: list[int], max_period: int, min_repeats: int, min_loop_tokens: int) -> bool:
    """The docstring's definition: some p <= max_period whose last `min_repeats` blocks of length p
    are all equal (no negative ids), with at least `min_loop_tokens` repeated tokens matching."""
    n = len(seq)
    for p in range(1, max_period + 1):
        need = max((min_repeats - 1) * p, min_loop_tokens)
        # the last `need` positions must each equal the token p before them
        if need + p > n:
            continue
        tail = range(n - need, n)
        if all(seq[i] >= 0 and seq[i] == seq[i - p] for i in tail):
            return True
    return False


def bits(t: torch.Tensor) -> torch.Tensor:
    """Bit pattern of a float tensor, so that NaN == NaN in exact comparisons."""
    int_type = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}[t.dtype]
    return t.clone().view(int_type)


# ----------------------------------------------------------------------------------------------
# entropy / varentropy: closed forms and brute force
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab", [1, 2, 7, 50, 1000])
def test_entropy_of_uniform_is_log_vocab_and_varentropy_zero(vocab):
    z = torch.full((3, vocab), 1.7)
    s = distribution_signals(z)
    torch.testing.assert_close(s.entropy, torch.full((3,), math.log(vocab)), atol=1e-5, rtol=1e-6)
    # V is computed in one pass as E[s^2] - H^2 in float32: allow cancellation error ~ eps * H^2
    assert (s.varentropy.abs() <= 2e-6 * (1 + math.log(vocab) ** 2)).all()
    torch.testing.assert_close(s.logp.exp().sum(-1), torch.ones(3))


def test_uniform_over_unmasked_subset():
    z = torch.tensor([[0.0, -INF, 0.0, -INF, 0.0, NAN, 0.0]])
    s = distribution_signals(z)
    assert s.entropy.item() == pytest.approx(math.log(4), abs=1e-6)
    assert abs(s.varentropy.item()) < 1e-6


def test_one_hot_entropy_is_zero():
    masked = torch.tensor([[-INF, -INF, 3.0, -INF, -INF]])
    gap = torch.tensor([[0.0, 0.0, 1e4, 0.0, 0.0]])
    for z in (masked, gap):
        s = distribution_signals(z)
        assert s.entropy.item() == 0.0
        assert s.varentropy.item() == 0.0
        assert s.logp[0, 2].item() == 0.0
        # +0.0, not -0.0
        assert math.copysign(1.0, s.entropy.item()) == 1.0


def test_entropy_and_varentropy_match_float64_bruteforce(rng):
    z = rng.normal(size=(8, 300)) * rng.uniform(0.1, 6.0, size=(8, 1))
    z[:, :40][rng.random((8, 40)) < 0.5] = -np.inf
    s = distribution_signals(torch.tensor(z, dtype=torch.float32))
    for b in range(z.shape[0]):
        h, v = ref_entropy_varentropy(z[b].astype(np.float32))
        assert s.entropy[b].item() == pytest.approx(h, abs=2e-5, rel=2e-5)
        assert s.varentropy[b].item() == pytest.approx(v, abs=1e-4, rel=1e-4)
        np.testing.assert_allclose(s.logp[b].exp().numpy(), ref_probs(z[b].astype(np.float32)), atol=1e-6, rtol=1e-5)


def test_entropy_and_varentropy_wrappers_agree_with_fused_pass(rng):
    z = torch.tensor(rng.normal(size=(4, 17)) * 2, dtype=torch.float32)
    for b in range(4):
        h, v = ref_entropy_varentropy(z[b].numpy())
        assert entropy(z)[b].item() == pytest.approx(h, abs=1e-5)
        assert varentropy(z)[b].item() == pytest.approx(v, abs=1e-4)


def test_two_point_distribution_closed_form():
    # p = (a, 1 - a): H = -a log a - (1-a) log(1-a), V = a(1-a) (log(a/(1-a)))^2
    a = 0.2
    z = torch.tensor([[math.log(a), math.log(1 - a)]])
    s = distribution_signals(z)
    assert s.entropy.item() == pytest.approx(-a * math.log(a) - (1 - a) * math.log(1 - a), abs=1e-6)
    assert s.varentropy.item() == pytest.approx(a * (1 - a) * math.log(a / (1 - a)) ** 2, abs=1e-5)


# ----------------------------------------------------------------------------------------------
# masks, NaN, +inf, dtypes
# ----------------------------------------------------------------------------------------------


def test_neg_inf_masks_contribute_zero_never_nan(rng):
    base = rng.normal(size=(1, 12)).astype(np.float32)
    masked = np.concatenate([base, np.full((1, 30), -np.inf, dtype=np.float32)], axis=1)
    a = distribution_signals(torch.tensor(base))
    b = distribution_signals(torch.tensor(masked))
    assert torch.isfinite(b.entropy).all() and torch.isfinite(b.varentropy).all()
    torch.testing.assert_close(a.entropy, b.entropy)
    torch.testing.assert_close(a.varentropy, b.varentropy)
    assert (b.logp[0, 12:] == -INF).all()


def test_nan_logits_are_treated_as_masked(rng):
    z = rng.normal(size=(2, 10)).astype(np.float32)
    with_nan = z.copy()
    with_ninf = z.copy()
    with_nan[:, [1, 4, 7]] = np.nan
    with_ninf[:, [1, 4, 7]] = -np.inf
    a = distribution_signals(torch.tensor(with_nan))
    b = distribution_signals(torch.tensor(with_ninf))
    assert torch.equal(a.entropy, b.entropy)
    assert torch.equal(a.varentropy, b.varentropy)
    assert torch.equal(a.logp, b.logp)
    assert (a.logp[:, [1, 4, 7]] == -INF).all()
    assert torch.equal(sanitize_logits(torch.tensor(with_nan)), torch.tensor(with_ninf))


def test_pos_inf_logits_share_the_mass():
    z = torch.tensor([[INF, 3.0, INF, -1.0, 50.0], [1.0, INF, 2.0, 0.0, -INF], [INF, INF, INF, NAN, 0.0]])
    s = distribution_signals(z)
    torch.testing.assert_close(s.entropy, torch.tensor([math.log(2), 0.0, math.log(3)]))
    assert (s.varentropy.abs() < 1e-6).all()
    p = s.logp.exp()
    torch.testing.assert_close(p[0], torch.tensor([0.5, 0.0, 0.5, 0.0, 0.0]))
    torch.testing.assert_close(p[1], torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0]))
    assert torch.isfinite(s.logp[0, [0, 2]]).all()


def test_fully_masked_row_has_zero_entropy_and_varentropy():
    z = torch.tensor([[-INF] * 6, [NAN] * 6, [NAN, -INF, NAN, -INF, NAN, -INF], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    s = distribution_signals(z)
    assert s.entropy[:3].tolist() == [0.0, 0.0, 0.0]
    assert s.varentropy[:3].tolist() == [0.0, 0.0, 0.0]
    # the neighbouring row is unaffected
    h, v = ref_entropy_varentropy(z[3].numpy())
    assert s.entropy[3].item() == pytest.approx(h, abs=1e-6)
    assert s.varentropy[3].item() == pytest.approx(v, abs=1e-5)


@pytest.mark.parametrize("dtype, atol", [(torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_half_precision_inputs_close_to_fp32_and_return_fp32(rng, dtype, atol):
    z = torch.tensor(rng.normal(size=(6, 500)) * rng.uniform(0.5, 4.0, size=(6, 1)), dtype=torch.float32)
    z[:, :50] = -INF
    z[0, 60] = INF
    z[1, 61] = NAN
    ref = distribution_signals(z)
    low = distribution_signals(z.to(dtype))
    for t in low:
        assert t.dtype == torch.float32
    torch.testing.assert_close(low.entropy, ref.entropy, atol=atol, rtol=0)
    torch.testing.assert_close(low.varentropy, ref.varentropy, atol=4 * atol, rtol=0.02)
    # computed in float32 from the rounded values: identical to upcasting first
    up = distribution_signals(z.to(dtype).float())
    assert torch.equal(low.entropy, up.entropy) and torch.equal(low.varentropy, up.varentropy)


def test_sanitize_never_modifies_input_and_returns_fp32():
    z = torch.tensor([[NAN, INF, -INF, 2.0]], dtype=torch.bfloat16)
    before = bits(z)
    out = sanitize_logits(z)
    assert torch.equal(bits(z), before)
    assert out.dtype == torch.float32
    assert out[0, 0] == -INF and out[0, 2] == -INF and torch.isfinite(out[0, 1]) and out[0, 1] > 1e20
    assert out[0, 3] == 2.0


# ----------------------------------------------------------------------------------------------
# KL divergence
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.25, 0.7, 1.0, 1.6, 3.0])
def test_kl_of_tempered_distribution_matches_bruteforce(rng, temperature):
    z = rng.normal(size=(5, 64)) * rng.uniform(0.5, 3.0, size=(5, 1))
    z = z.astype(np.float32)
    zt = torch.tensor(z)
    logp = torch.log_softmax(zt, -1)
    logq = torch.log_softmax(zt / temperature, -1)
    kl = kl_divergence(logq, logp)
    assert kl.shape == (5,) and kl.dtype == torch.float32
    for b in range(5):
        z64 = z[b].astype(np.float64)
        p = np.exp(z64 - z64.max())
        p /= p.sum()
        q = np.exp(z64 / temperature - (z64 / temperature).max())
        q /= q.sum()
        assert kl[b].item() == pytest.approx(ref_kl(q, p), abs=2e-5, rel=1e-4)
    if temperature != 1.0:
        assert (kl > 0).all()


def test_kl_of_distribution_with_itself_is_zero(rng):
    z = torch.tensor(rng.normal(size=(4, 100)) * 3, dtype=torch.float32)
    z[:, :10] = -INF
    logp = distribution_signals(z).logp
    kl = kl_divergence(logp, logp)
    assert (kl.abs() < 1e-6).all()


def test_kl_is_non_negative_on_random_pairs(rng):
    for _ in range(20):
        a = torch.tensor(rng.normal(size=(3, 30)) * rng.uniform(0.1, 5), dtype=torch.float32)
        b = torch.tensor(rng.normal(size=(3, 30)) * rng.uniform(0.1, 5), dtype=torch.float32)
        kl = kl_divergence(torch.log_softmax(a, -1), torch.log_softmax(b, -1))
        assert (kl >= 0).all() and torch.isfinite(kl).all()
        for r in range(3):
            ref = ref_kl(ref_probs(a[r].numpy()), ref_probs(b[r].numpy()))
            assert kl[r].item() == pytest.approx(ref, abs=1e-4, rel=1e-4)


def test_kl_is_never_negative_from_rounding(rng):
    # Q and P equal up to float32 rounding: the raw sum is +-1e-7; the result must still be >= 0
    z = torch.tensor(rng.normal(size=(2000, 50)) * 3, dtype=torch.float32)
    logp = torch.log_softmax(z, -1)
    logq = torch.log_softmax(z.double(), -1).float()
    kl = kl_divergence(logq, logp)
    assert (kl >= 0).all() and (kl < 1e-6).all()


def test_kl_docstring_closed_form_and_cap():
    # KL(delta_0 || uniform over 2) = log 2
    logp = torch.log(torch.tensor([[0.5, 0.5]]))
    logq = torch.log(torch.tensor([[1.0, 0.0]]))
    assert kl_divergence(logq, logp).item() == pytest.approx(math.log(2), abs=1e-6)
    # q > 0 where p = 0: capped at -log(tiny) instead of inf
    capped = kl_divergence(torch.log(torch.tensor([[0.0, 1.0]])), torch.log(torch.tensor([[1.0, 0.0]])))
    assert capped.item() == pytest.approx(-LOG_TINY_F32, rel=1e-6)


@pytest.mark.parametrize("min_p", [0.02, 0.1, 0.3])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.5])
def test_kl_with_min_p_truncated_q_matches_bruteforce_over_support(rng, min_p, temperature):
    z = (rng.normal(size=(6, 80)) * rng.uniform(0.5, 3.0, size=(6, 1))).astype(np.float32)
    zt = torch.tensor(z)
    logp = distribution_signals(zt).logp
    logq = temper_and_truncate(zt, torch.full((6,), temperature), min_p)
    kl = kl_divergence(logq, logp)
    for b in range(6):
        z64 = z[b].astype(np.float64)
        p = np.exp(z64 - z64.max())
        p /= p.sum()
        q = np.exp(z64 / temperature - (z64 / temperature).max())
        q /= q.sum()
        keep = q >= min_p * q.max()
        qt = np.where(keep, q, 0.0)
        qt /= qt.sum()
        assert kl[b].item() == pytest.approx(ref_kl(qt, p), abs=2e-5, rel=1e-4)


# ----------------------------------------------------------------------------------------------
# temper_and_truncate
# ----------------------------------------------------------------------------------------------


def test_temper_identity_equals_log_softmax(rng):
    z = torch.tensor(rng.normal(size=(4, 33)) * 2, dtype=torch.float32)
    z[0, 3] = -INF
    out = temper_and_truncate(z, torch.ones(4), 0.0)
    assert torch.equal(out, torch.log_softmax(z, -1))


def test_temperature_scales_logits(rng):
    z = torch.tensor(rng.normal(size=(3, 20)), dtype=torch.float32)
    t = torch.tensor([0.5, 1.0, 2.0])
    out = temper_and_truncate(z, t, 0.0)
    for b in range(3):
        z64 = z[b].double().numpy() / t[b].item()
        ref = z64 - z64.max() - np.log(np.exp(z64 - z64.max()).sum())
        np.testing.assert_allclose(out[b].numpy(), ref, atol=1e-5)


@pytest.mark.parametrize("min_p", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_min_p_keeps_exactly_tokens_above_threshold(rng, min_p):
    z = (rng.normal(size=(16, 120)) * rng.uniform(0.3, 4.0, size=(16, 1))).astype(np.float32)
    t = rng.uniform(0.3, 2.0, size=16).astype(np.float32)
    out = temper_and_truncate(torch.tensor(z), torch.tensor(t), min_p)
    kept = torch.isfinite(out).numpy()
    checked = 0
    for b in range(16):
        s = z[b].astype(np.float64) / float(t[b])
        log_ratio = s - s.max()  # log(q_i / q_max)
        expect = log_ratio >= math.log(min_p)
        clear = np.abs(log_ratio - math.log(min_p)) > 1e-4  # skip float32/float64 boundary ties
        assert (kept[b][clear] == expect[clear]).all(), b
        assert kept[b][int(np.argmax(z[b]))]
        checked += clear.sum()
        # survivors are renormalised
        assert out[b].exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    assert checked > 16 * 100


def test_min_p_always_keeps_argmax_even_when_close_to_one():
    z = torch.tensor([[0.0, 5.0, 4.999, -3.0], [1.0, 1.0, 1.0, 1.0]])
    out = temper_and_truncate(z, torch.tensor([0.3, 1.0]), 0.999)
    assert torch.isfinite(out[0, 1]) and out[0, 1].item() == pytest.approx(0.0, abs=1e-6)
    assert not torch.isfinite(out[0, [0, 3]]).any()
    # ties at the top all survive
    assert torch.isfinite(out[1]).all()
    torch.testing.assert_close(out[1].exp(), torch.full((4,), 0.25))


def test_temperature_to_zero_approaches_one_hot(rng):
    z = torch.tensor(rng.normal(size=(5, 50)) * 2, dtype=torch.float32)
    arg = z.argmax(-1)
    hs = []
    for temp in (2.0, 1.0, 0.3, 0.1, 0.01, 1e-3):
        logq = temper_and_truncate(z, torch.full((5,), temp), 0.0)
        hs.append(distribution_signals(logq).entropy)
        assert torch.equal(logq.argmax(-1), arg)
    # dH/dT = Var/T^3 >= 0: entropy strictly decreases as T falls, toward 0
    for hi, lo in zip(hs, hs[1:]):
        assert (lo <= hi + 1e-6).all()
    assert (hs[0] > 1.0).all()
    assert (hs[-1] < 1e-3).all()
    q = temper_and_truncate(z, torch.full((5,), 1e-3), 0.0).exp()
    assert (q.gather(1, arg[:, None]) > 0.999).all()


def test_temper_and_truncate_never_modifies_input(rng):
    z = torch.tensor(rng.normal(size=(3, 40)), dtype=torch.float32)
    z[0, :5] = -INF
    t = torch.tensor([0.5, 1.0, 1.7])
    z0, t0 = z.clone(), t.clone()
    temper_and_truncate(z, t, 0.2)
    temper_and_truncate(z, t, 0.0)
    assert torch.equal(z, z0) and torch.equal(t, t0)


# ----------------------------------------------------------------------------------------------
# surprisal, coherence, volatility, free energy
# ----------------------------------------------------------------------------------------------


def test_token_surprisal_is_minus_log_p(rng):
    z = (rng.normal(size=(6, 25)) * 2).astype(np.float32)
    logp = torch.log_softmax(torch.tensor(z), -1)
    tokens = torch.tensor(rng.integers(0, 25, size=6))
    out = token_surprisal(logp, tokens)
    for b in range(6):
        p = ref_probs(z[b])
        assert out[b].item() == pytest.approx(-math.log(p[tokens[b]]), abs=1e-5, rel=1e-5)
    assert (out >= 0).all()


def test_token_surprisal_of_masked_token_is_finite_cap():
    logp = torch.log_softmax(torch.tensor([[0.0, -INF, 1.0], [0.0, 0.0, 0.0]]), -1)
    out = token_surprisal(logp, torch.tensor([1, 2]))
    assert torch.isfinite(out).all()
    assert out[0].item() == pytest.approx(-LOG_TINY_F32, rel=1e-6)
    assert out[1].item() == pytest.approx(math.log(3), abs=1e-6)
    # int32 token ids work too
    assert torch.equal(token_surprisal(logp, torch.tensor([1, 2], dtype=torch.int32)), out)


def test_cosine_continuity_closed_forms():
    # parallel, orthogonal, opposite, zero reference, zero state
    state = torch.tensor([[1.0, 2.0, 0], [1.0, 0, 0], [3.0, -1.0, 2.0], [1.0, 1.0, 1.0], [0, 0, 0]])
    ref = torch.tensor([[5.0, 10.0, 0], [0, 7.0, 0], [-6.0, 2.0, -4.0], [0, 0, 0], [1.0, 2.0, 3.0]])
    c = cosine_continuity(state, ref)
    torch.testing.assert_close(c, torch.tensor([1.0, 0.5, 0.0, 1.0, 1.0]), atol=1e-6, rtol=0)


def test_cosine_continuity_matches_numpy_and_stays_in_unit_interval(rng):
    s = rng.normal(size=(64, 9)) * rng.uniform(1e-3, 1e3, size=(64, 1))
    r = rng.normal(size=(64, 9))
    c = cosine_continuity(torch.tensor(s, dtype=torch.float32), torch.tensor(r, dtype=torch.float32))
    cos = (s * r).sum(1) / (np.linalg.norm(s, axis=1) * np.linalg.norm(r, axis=1))
    np.testing.assert_allclose(c.numpy(), 0.5 * (1 + cos), atol=1e-5)
    assert ((c >= 0) & (c <= 1)).all()
    assert c.dtype == torch.float32


def test_cosine_continuity_half_precision_state():
    c = cosine_continuity(torch.tensor([[1.0, 1.0]], dtype=torch.bfloat16), torch.tensor([[-1.0, -1.0]]))
    assert c.dtype == torch.float32 and c.item() == pytest.approx(0.0, abs=1e-6)


def test_ema_update_formula_and_mask(rng):
    ref = torch.tensor(rng.normal(size=(4, 5)), dtype=torch.float32)
    state = torch.tensor(rng.normal(size=(4, 5)), dtype=torch.float32)
    mask = torch.tensor([True, False, True, False])
    ref0 = ref.clone()
    out = ema_update(ref, state, 0.8, mask)
    expect = 0.8 * ref.double().numpy() + 0.2 * state.double().numpy()
    np.testing.assert_allclose(out[mask].numpy(), expect[mask.numpy()], atol=1e-6)
    assert torch.equal(out[~mask], ref0[~mask])
    assert torch.equal(ref, ref0)
    # decay 0 replaces the reference on active rows
    assert torch.equal(ema_update(ref, state, 0.0, mask)[mask], state[mask])


def test_context_recall_matches_a_float64_reference(rng):
    z = rng.normal(size=(3, 30)) * 3
    z[0, :5] = -np.inf
    logp = torch.log_softmax(torch.tensor(z, dtype=torch.float32), -1)
    context = torch.tensor(rng.integers(0, 30, size=(3, 6)))
    valid = torch.tensor(rng.random((3, 6)) < 0.7)
    valid[1] = False  # no context at all -> 1
    out = context_recall(logp, context, valid, floor=-20.0)
    for b in range(3):
        x = np.maximum(logp[b].double().numpy(), -20.0)
        scores = (x - x.mean()) / x.std(ddof=1)
        chosen = [scores[c] for c, v in zip(context[b].tolist(), valid[b].tolist()) if v]
        expected = 1.0 / (1.0 + math.exp(-np.mean(chosen))) if chosen else 1.0
        assert out[b].item() == pytest.approx(expected, abs=1e-4)
    assert torch.isfinite(out).all() and ((out > 0) & (out <= 1)).all()


def test_context_recall_is_high_for_supported_context_and_low_for_ignored_context():
    logp = torch.log_softmax(torch.tensor([[5.0, 4.0] + [0.0] * 20]), -1)
    supported = context_recall(logp, torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.bool))
    ignored = context_recall(logp, torch.tensor([[5, 9]]), torch.ones(1, 2, dtype=torch.bool))
    assert supported.item() > 0.9 and ignored.item() < 0.5


def test_entropy_volatility_matches_numpy_nanstd(rng):
    w = rng.uniform(0, 5, size=(6, 12))
    w[rng.random((6, 12)) < 0.3] = np.nan
    w[4] = np.nan
    w[4, 3] = 1.5  # a single finite entry
    w[5] = np.nan  # nothing at all
    out = entropy_volatility(torch.tensor(w, dtype=torch.float32))
    for b in range(4):
        assert out[b].item() == pytest.approx(float(np.nanstd(w[b].astype(np.float32))), abs=1e-5)
    assert out[4].item() == 0.0 and out[5].item() == 0.0
    assert torch.isfinite(out).all()


def test_entropy_volatility_two_points():
    out = entropy_volatility(torch.tensor([[1.0, NAN, 3.0, NAN], [2.0, 2.0, 2.0, 2.0], [0.0, 4.0, 0.0, 4.0]]))
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0, 2.0]))


def test_free_energy_formula(rng):
    h, kl, c, u = (torch.tensor(rng.uniform(0, 3, size=7), dtype=torch.float32) for _ in range(4))
    for gamma, lam in [(1.0, 1.0), (0.0, 0.0), (2.5, 0.3)]:
        f = free_energy(h, kl, c, u, gamma=gamma, lam=lam)
        expect = h.double() + kl.double() - gamma * c.double() + lam * u.double()
        np.testing.assert_allclose(f.numpy(), expect.numpy(), atol=1e-5)
    # each weight acts on its own term
    base = free_energy(h, kl, c, u, 1.0, 1.0)
    torch.testing.assert_close(free_energy(h, kl, c, u, 2.0, 1.0), base - c)
    torch.testing.assert_close(free_energy(h, kl, c, u, 1.0, 3.0), base + 2 * u)


# ----------------------------------------------------------------------------------------------
# trailing_cycle
# ----------------------------------------------------------------------------------------------


def _cycle(rows, max_period, min_repeats, min_loop_tokens):
    return trailing_cycle(torch.tensor(rows), max_period, min_repeats, min_loop_tokens)


def test_period_three_loop_seen_three_times_is_detected():
    c = _cycle([[5, 1, 2, 3, 1, 2, 3, 1, 2, 3]], 4, 3, 4)
    assert c.period.tolist() == [3] and c.run.tolist() == [6]
    assert c.progress.item() == pytest.approx(1.0)
    # seen only twice: not a loop yet
    c2 = _cycle([[9, 9, 9, 5, 1, 2, 3, 1, 2, 3]], 4, 3, 4)
    assert c2.period.tolist() == [3] and c2.run.tolist() == [3]
    assert c2.progress.item() == pytest.approx(0.5)


def test_non_repeating_sequence_has_no_cycle():
    c = _cycle([list(range(1, 21))], 8, 2, 2)
    assert c.run.tolist() == [0] and c.period.tolist() == [1] and c.progress.tolist() == [0.0]


def test_loop_not_at_the_end_does_not_count():
    c = _cycle([[1, 2, 3, 1, 2, 3, 1, 2, 3, 9]], 4, 3, 4)
    assert c.progress.item() == 0.0 and c.run.item() == 0
    partial = _cycle([[9, 1, 2, 3, 1, 2, 3, 1, 2]], 4, 3, 4)
    assert partial.period.item() == 3 and partial.run.item() == 5
    assert partial.progress.item() == pytest.approx(5 / 6)


def test_negative_ids_never_match():
    c = _cycle([[-1] * 6, [-1, -1, -1, 4, 4, 4], [7, -1, 7, -1, 7, -1]], 3, 2, 1)
    assert c.run.tolist() == [0, 2, 0]
    assert c.progress.tolist()[0] == 0.0 and c.progress.tolist()[2] == 0.0


def test_min_loop_tokens_gates_short_refrains():
    # "the the": period 1, run 1; needs 4 repeated tokens (-1 pads the shorter row)
    c = _cycle([[-1, -1, 3, 8, 8], [8, 8, 8, 8, 8]], 2, 2, 4)
    assert c.progress.tolist() == pytest.approx([0.25, 1.0])
    assert loop_progress(torch.tensor([[7, 7, 7, 7]]), 2, 2, 4).item() == pytest.approx(0.75)


def test_window_shorter_than_max_period():
    c = _cycle([[4, 4, 4]], 10, 2, 2)
    assert c.run.item() == 2 and c.period.item() == 1 and c.progress.item() == pytest.approx(1.0)


@st.composite
def token_windows(draw):
    batch = draw(st.integers(1, 4))
    width = draw(st.integers(1, 30))
    alphabet = draw(st.integers(1, 4))
    rows = draw(
        st.lists(
            st.lists(st.integers(-1, alphabet - 1), min_size=width, max_size=width),
            min_size=batch,
            max_size=batch,
        )
    )
    max_period = draw(st.integers(1, 8))
    min_repeats = draw(st.integers(2, 4))
    min_loop_tokens = draw(st.integers(1, 10))
    return rows, max_period, min_repeats, min_loop_tokens


@given(token_windows())
def test_trailing_cycle_matches_bruteforce(case):
    rows, max_period, min_repeats, min_loop_tokens = case
    window = torch.tensor(rows, dtype=torch.long)
    before = window.clone()
    c = trailing_cycle(window, max_period, min_repeats, min_loop_tokens)
    assert torch.equal(window, before)
    assert c.run.dtype == torch.long and c.period.dtype == torch.long and c.progress.dtype == torch.float32
    for b, seq in enumerate(rows):
        run, period, progress = ref_cycle(seq, max_period, min_repeats, min_loop_tokens)
        assert c.progress[b].item() == pytest.approx(progress, rel=1e-6)
        assert c.period[b].item() == period
        assert c.run[b].item() == run
        is_loop = is_loop_bruteforce(seq, max_period, min_repeats, min_loop_tokens)
        assert (c.progress[b].item() >= 1.0) == is_loop


@given(
    st.lists(st.integers(0, 2), min_size=1, max_size=6),
    st.integers(2, 5),
    st.integers(0, 6),
)
def test_repeated_block_becomes_a_loop_exactly_at_enough_sightings(block, repeats, prefix_len):
    # a prefix of fresh ids, then `block` repeated: a loop once `repeats` >= min_repeats
    seq = list(range(100, 100 + prefix_len)) + block * repeats
    p = len(block)
    got = loop_progress(torch.tensor([seq]), max_period=p, min_repeats=3, min_loop_tokens=1).item()
    assert (got >= 1.0) == is_loop_bruteforce(seq, p, 3, 1)
    if repeats >= 3:
        assert got >= 1.0


# ----------------------------------------------------------------------------------------------
# property tests on arbitrary logits (±inf, NaN, all-masked rows)
# ----------------------------------------------------------------------------------------------

_SPECIAL = st.sampled_from([INF, -INF, NAN])


@st.composite
def logit_batches(draw, max_abs: float | None = None):
    batch = draw(st.integers(1, 4))
    vocab = draw(st.integers(1, 40))
    if max_abs is None:
        finite = st.floats(allow_nan=False, allow_infinity=False, width=32)
    else:
        finite = st.floats(-max_abs, max_abs, width=32)
    arr = draw(arrays(np.float32, (batch, vocab), elements=st.one_of(finite, _SPECIAL)))
    for r in range(batch):
        if draw(st.integers(0, 4)) == 0:  # some rows fully masked by -inf / NaN
            arr[r] = draw(arrays(np.float32, (vocab,), elements=st.sampled_from([-INF, NAN])))
    return torch.from_numpy(arr)


def _fully_masked(z: torch.Tensor) -> torch.Tensor:
    return ~(torch.isfinite(z) | (z == INF)).any(-1)


@given(logit_batches())
def test_distribution_signals_never_nan_and_bounded(z):
    before = bits(z)
    s = distribution_signals(z)
    assert torch.equal(bits(z), before)
    assert s.entropy.shape == s.varentropy.shape == (z.shape[0],)
    assert s.entropy.dtype == s.varentropy.dtype == s.logp.dtype == torch.float32
    assert torch.isfinite(s.entropy).all() and torch.isfinite(s.varentropy).all()
    assert (s.entropy >= 0).all()
    assert (s.entropy <= math.log(z.shape[1]) + 1e-4).all()
    assert (s.varentropy >= 0).all()
    dead = _fully_masked(z)
    assert (s.entropy[dead] == 0).all() and (s.varentropy[dead] == 0).all()


@given(logit_batches(), st.floats(0.2, 2.0), st.floats(0.0, 0.5))
def test_kl_of_tempered_truncated_is_finite_and_non_negative(z, temperature, min_p):
    before = bits(z)
    logp = distribution_signals(z).logp
    zs = sanitize_logits(z)
    zs_before = bits(zs)
    t = torch.full((z.shape[0],), temperature, dtype=torch.float32)
    logq = temper_and_truncate(zs, t, min_p)
    kl = kl_divergence(logq, logp)
    assert torch.equal(bits(z), before) and torch.equal(bits(zs), zs_before)
    assert kl.shape == (z.shape[0],)
    assert torch.isfinite(kl).all()
    assert (kl >= 0).all()
    assert (kl <= -LOG_TINY_F32 + 1e-3).all()


@given(logit_batches(max_abs=1e4), st.floats(0.2, 2.0), st.floats(0.0, 0.5))
def test_realistic_logits_match_reference_and_q_is_a_distribution(z, temperature, min_p):
    s = distribution_signals(z)
    dead = _fully_masked(z)
    for b in range(z.shape[0]):
        h, v = ref_entropy_varentropy(z[b].numpy())
        assert s.entropy[b].item() == pytest.approx(h, abs=1e-4)
        assert s.varentropy[b].item() == pytest.approx(v, abs=2e-3, rel=1e-3)
        if not dead[b]:
            np.testing.assert_allclose(s.logp[b].exp().numpy(), ref_probs(z[b].numpy()), atol=1e-5)
    zs = sanitize_logits(z)
    logq = temper_and_truncate(zs, torch.full((z.shape[0],), temperature), min_p)
    live = ~dead
    assert not torch.isnan(logq[live]).any()
    torch.testing.assert_close(logq[live].exp().sum(-1), torch.ones(int(live.sum())), atol=1e-5, rtol=0)
    # the most probable token survives truncation
    assert torch.isfinite(logq[live].gather(1, zs[live].argmax(-1, keepdim=True))).all()
    # +inf logits keep all the mass of P, shared equally
    for b in range(z.shape[0]):
        pos = z[b] == INF
        if pos.any():
            n_pos = int(pos.sum())
            torch.testing.assert_close(s.logp[b][pos].exp(), torch.full((n_pos,), 1 / n_pos))


@st.composite
def vector_pairs(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 12)))
    elements = st.floats(-1e3, 1e3, width=32)
    a = draw(arrays(np.float32, shape, elements=elements))
    return a, draw(arrays(np.float32, shape, elements=elements))


@given(vector_pairs())
def test_cosine_continuity_always_in_unit_interval(pair):
    a, b = pair
    c = cosine_continuity(torch.from_numpy(a), torch.from_numpy(b))
    assert torch.isfinite(c).all() and ((c >= 0) & (c <= 1)).all()
