"""The fused hot path equals the separate reference signal functions, including -inf/NaN/+inf rows."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from icp.signals import (
    distribution_signals,
    kl_divergence,
    log_prob_moments,
    sanitize_logits,
    temper_and_truncate,
    tempered_signals,
    token_surprisal,
)
from icp.signals.fused import FusedWorkspace, chosen_surprisal, controlled_step, observed_step


@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 4),
    vocab=st.integers(2, 60),
    scale=st.floats(0.0, 8.0),
    min_p=st.sampled_from([0.0, 0.02, 0.1, 0.5]),
    hostile=st.booleans(),
)
def test_controlled_step_matches_the_reference_functions(seed, batch, vocab, scale, min_p, hostile):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, vocab, generator=g) * scale
    if hostile:
        z[0, : vocab // 2] = float("-inf")
        z[-1, 0] = float("nan")
        if batch > 2:
            z[1] = float("-inf")
        if batch > 3:
            z[2, 1] = float("inf")
    temperature = torch.rand(batch, generator=g) * 1.8 + 0.2
    token = torch.randint(0, vocab, (batch,), generator=g)
    # A few penalised tokens per row, some listed twice with different penalties (the largest wins).
    listed = torch.randint(0, vocab, (batch, 5), generator=g)
    penalty = torch.rand(batch, 5, generator=g) * 4 * (torch.rand(batch, 5, generator=g) > 0.4)
    fused = controlled_step(z, temperature, min_p, listed, penalty)

    dense = torch.zeros(batch, vocab).scatter_reduce(1, listed, penalty, reduce="amax", include_self=True)
    penalised = sanitize_logits(z) - dense
    reference_q = temper_and_truncate(penalised, temperature, min_p)
    p = distribution_signals(z)
    tempered = tempered_signals(penalised, temperature)
    torch.testing.assert_close(fused.logq.exp(), reference_q.exp(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(fused.entropy, p.entropy, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(fused.varentropy, p.varentropy, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(fused.tempered_entropy, tempered.entropy, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(fused.tempered_varentropy, tempered.varentropy, atol=2e-3, rtol=1e-3)
    torch.testing.assert_close(fused.sampled_entropy, log_prob_moments(reference_q)[0], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(fused.kl, kl_divergence(reference_q, p.logp), atol=2e-3, rtol=1e-3)
    for value in fused[:6]:
        assert torch.isfinite(value).all()
    assert not torch.isnan(fused.logq).any()
    surprisal = chosen_surprisal(fused.shifted_logits, fused.log_normalizer, token)
    expected = token_surprisal(p.logp.nan_to_num(nan=float("-inf"), neginf=float("-inf")), token)
    np.testing.assert_allclose(surprisal.numpy(), expected.numpy(), atol=1e-4)


def test_observed_step_has_zero_kl_and_equal_sides():
    z = torch.randn(3, 20)
    s = observed_step(z)
    assert s.logq is None and (s.kl == 0).all()
    torch.testing.assert_close(s.entropy, s.tempered_entropy)
    torch.testing.assert_close(s.entropy, distribution_signals(z).entropy)


def test_fused_step_does_not_modify_its_input():
    z = torch.randn(2, 30)
    before = z.clone()
    controlled_step(z, torch.ones(2), 0.1, torch.tensor([[0], [1]]), torch.tensor([[1.0], [2.0]]))
    assert torch.equal(z, before)


@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 4),
    vocab=st.integers(2, 60),
    min_p=st.sampled_from([0.0, 0.1]),
    penalise=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.bfloat16]),
)
def test_a_workspace_changes_no_result_and_is_reused_across_steps(seed, batch, vocab, min_p, penalise, dtype):
    g = torch.Generator().manual_seed(seed)
    workspace = FusedWorkspace()
    steps = []
    for _ in range(3):  # the same buffers serve every step
        z = (torch.randn(batch, vocab, generator=g) * 4).to(dtype)
        z[0, 0] = float("-inf")
        z[-1, -1] = float("nan")
        temperature = torch.rand(batch, generator=g) * 1.8 + 0.2
        listed = torch.randint(0, vocab, (batch, 3), generator=g) if penalise else None
        penalty = torch.rand(batch, 3, generator=g) * 3 if penalise else None
        z_before = z.clone()
        fresh = controlled_step(z, temperature, min_p, listed, penalty)
        reused = controlled_step(z, temperature, min_p, listed, penalty, workspace=workspace)
        assert torch.equal(z.nan_to_num(), z_before.nan_to_num())  # the input is never written
        for name, a, b in zip(fresh._fields, fresh, reused):
            torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5, msg=name)
        steps.append(reused)
    # shifted_logits is the workspace's (overwritten by the next step); logq is always fresh.
    assert steps[0].shifted_logits.data_ptr() == steps[2].shifted_logits.data_ptr()
    assert len({s.logq.data_ptr() for s in steps}) == 3
    assert workspace.nbytes() == 4 * batch * vocab * 4  # shifted, tempered, weights, product


def test_a_workspace_follows_the_shape_it_is_asked_for():
    workspace = FusedWorkspace()
    observed_step(torch.randn(2, 10), workspace=workspace)
    assert workspace.nbytes() == 3 * 2 * 10 * 4  # the observed side needs no tempered buffer
    s = observed_step(torch.randn(3, 7), workspace=workspace)
    assert s.shifted_logits.shape == (3, 7) and workspace.nbytes() == 3 * 3 * 7 * 4
