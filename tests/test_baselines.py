"""Baseline decoders: contract, behaviour against their papers' formulas, no host sync."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import VOCAB, prompt, tiny_llama
from test_no_host_sync import forbid_host_reads
from transformers import LogitsProcessorList

from icp.baselines import EDTLogitsProcessor, EntropixLogitsProcessor, MirostatV2LogitsProcessor
from icp.signals import distribution_signals

FACTORIES = [MirostatV2LogitsProcessor, EDTLogitsProcessor, EntropixLogitsProcessor]


def generate_without_host_reads(proc, model, max_new_tokens: int = 10):
    """Runs `proc` inside generate() with every host read made to raise after its first (setup) call.

    Returns the generated ids and the number of calls. Shared by the baseline test modules.
    """
    calls = []
    original = type(proc).__call__

    def guarded(self, input_ids, scores):
        calls.append(1)
        if len(calls) == 1:
            return original(self, input_ids, scores)  # the first call sets up (once per generation)
        with forbid_host_reads():
            return original(self, input_ids, scores)

    type(proc).__call__ = guarded
    try:
        out = model.generate(
            **prompt(), max_new_tokens=max_new_tokens, do_sample=True, top_k=0,
            logits_processor=LogitsProcessorList([proc]),
        )  # fmt: skip
    finally:
        type(proc).__call__ = original
    return out, len(calls)


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
    out = proc(torch.ones(3, 4, dtype=torch.long), scores)
    assert torch.equal(scores, before), "processor should not change logits in-place"
    assert out.dtype == torch.float32 and not torch.isnan(out).any()
    assert torch.isinf(out[0, :5]).all() and (out[0, :5] < 0).all()
    torch.testing.assert_close(torch.logsumexp(out, -1), torch.zeros(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("factory", FACTORIES)
def test_rows_are_independent(factory):
    scores = torch.randn(3, VOCAB) * 2
    other = scores.clone()
    other[0] = torch.randn(VOCAB) * 5
    a = factory()(torch.ones(3, 4, dtype=torch.long), scores)
    b = factory()(torch.ones(3, 4, dtype=torch.long), other)
    torch.testing.assert_close(a[1:], b[1:])


def test_mirostat_mu_moves_against_the_surprise_and_tracks_tau():
    proc = MirostatV2LogitsProcessor(tau=3.0, eta=0.1)
    logp = torch.log_softmax(torch.randn(2, VOCAB) * 2, -1)
    proc(torch.ones(2, 3, dtype=torch.long), logp)
    mu0 = proc.mu.clone()
    last = proc._last_logq
    rare = last.masked_fill(torch.isinf(last), 1.0).argmin(-1)  # least probable kept token
    common = last.argmax(-1)
    ids = torch.cat([torch.ones(2, 3, dtype=torch.long), torch.stack([rare[0], common[1]]).unsqueeze(1)], 1)
    proc(ids, logp)
    s_rare = -last[0, rare[0]] / math.log(2)
    s_common = -last[1, common[1]] / math.log(2)
    torch.testing.assert_close(proc.mu[0], mu0[0] - 0.1 * (s_rare - 3.0))
    torch.testing.assert_close(proc.mu[1], mu0[1] - 0.1 * (s_common - 3.0))


def test_mirostat_observed_surprisal_approaches_tau_in_a_decode_loop():
    torch.manual_seed(0)
    tau = 4.0
    proc = MirostatV2LogitsProcessor(tau=tau, eta=0.2)
    base = torch.randn(4, 2000) * 2.5
    ids = torch.ones(4, 1, dtype=torch.long)
    observed = []
    for _ in range(600):
        logq = proc(ids, base + 0.1 * torch.randn_like(base))
        token = torch.multinomial(logq.exp(), 1)
        observed.append(-logq.gather(1, token).squeeze(1) / math.log(2))
        ids = torch.cat([ids, token], 1)
    late = torch.stack(observed[-300:]).mean(0)
    assert ((late - tau).abs() < 0.5).all(), late


def test_mirostat_restarts_on_a_new_generation():
    proc = MirostatV2LogitsProcessor(tau=2.0)
    proc(torch.ones(2, 3, dtype=torch.long), torch.randn(2, VOCAB))
    proc(torch.ones(2, 4, dtype=torch.long), torch.randn(2, VOCAB))
    assert not torch.allclose(proc.mu, torch.full((2,), 4.0))
    proc(torch.ones(3, 3, dtype=torch.long), torch.randn(3, VOCAB))
    torch.testing.assert_close(proc.mu, torch.full((3,), 4.0))


def test_edt_follows_its_closed_form():
    z = torch.randn(4, VOCAB) * torch.tensor([[0.1], [1.0], [3.0], [8.0]])
    proc = EDTLogitsProcessor(t0=0.9, theta=1.5, n=0.7)
    h = distribution_signals(z).entropy
    expected_t = (0.9 * 0.7 ** (1.5 / h)).clamp_min(1e-3)
    torch.testing.assert_close(proc.temperatures(z), expected_t, atol=1e-5, rtol=1e-4)
    out = proc(torch.ones(4, 2, dtype=torch.long), z)
    torch.testing.assert_close(out, torch.log_softmax(z / expected_t[:, None], -1), atol=1e-4, rtol=1e-4)
    assert expected_t[3] < expected_t[0], "sharper rows are cooled harder"


@pytest.mark.parametrize(
    ("factory", "kwargs", "name"),
    [
        (MirostatV2LogitsProcessor, {"tau": -1.0}, "tau"),
        (MirostatV2LogitsProcessor, {"eta": float("nan")}, "eta"),
        (EDTLogitsProcessor, {"t0": 0.0}, "t0"),
        (EDTLogitsProcessor, {"n": 1.5}, "n"),
        (EDTLogitsProcessor, {"theta": float("inf")}, "theta"),
        (EntropixLogitsProcessor, {"top_k": 0}, "top_k"),
        (EntropixLogitsProcessor, {"min_p": 1.0}, "min_p"),
    ],
)
def test_bad_arguments_are_named(factory, kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        factory(**kwargs)


def test_entropix_quadrants_per_row():
    proc = EntropixLogitsProcessor()
    h = torch.tensor([0.05, 4.0, 2.0, 6.0, 1.0])
    v = torch.tensor([0.05, 0.05, 6.0, 6.0, 1.0])
    temperature, greedy = proc.quadrants(h, v)
    assert greedy.tolist() == [True, False, False, False, False]
    torch.testing.assert_close(temperature[1:4], torch.tensor([1.3, 1.2, 2.0]))
    torch.testing.assert_close(temperature[4], torch.tensor(0.666 * (1 + 0.3 * 2.0)))


def test_entropix_is_greedy_for_a_confident_row_and_keeps_more_for_an_uncertain_one():
    z = torch.zeros(2, VOCAB)
    z[0, 3] = 30.0  # confident: H, V ~ 0
    z[1] = torch.randn(VOCAB) * 0.3  # flat: high entropy
    out = EntropixLogitsProcessor()(torch.ones(2, 2, dtype=torch.long), z)
    assert torch.isfinite(out[0]).sum() == 1 and out[0].argmax() == 3
    assert torch.isfinite(out[1]).sum() == 27, "top-k 27 bounds the support of a flat row"
