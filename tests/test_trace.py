"""The trace: preallocated device buffers, finalised once; summary, to_dict, to_pandas, plot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ForceTokens, prompt, tiny_llama
from transformers import LogitsProcessorList

from icp import ICP, REGIMES
from icp.trace import TraceBuffers

KEYS = ("entropy", "varentropy", "coherence", "meta_uncertainty", "kl", "free_energy", "temperature", "regime", "token")


@pytest.fixture(scope="module")
def looped_trace():
    model = tiny_llama()
    icp = ICP(model)
    inputs = prompt(batch=3)
    processors = LogitsProcessorList([ForceTokens({0: [4, 5]}, 5), *icp])
    options = icp.generation_kwargs()
    options.update(logits_processor=processors, max_new_tokens=30)
    model.generate(**inputs, **options)
    return icp.trace


def test_to_dict_has_every_signal_shaped_batch_by_steps(looped_trace):
    d = looped_trace.to_dict()
    for key in KEYS:
        assert d[key].shape == (3, looped_trace.steps), key
    assert d["regime"].dtype == np.int8 and d["token"].dtype == np.int64


def test_summary_per_row(looped_trace):
    summary = looped_trace.summary()
    assert len(summary) == 3
    row = summary[0]
    assert row.stop_reason == "loop" and row.tokens == row.stop_step + 1
    assert set(row.regime_shares) == set(REGIMES)
    assert sum(row.regime_shares.values()) == pytest.approx(1.0)
    expected_f = np.nanmean(looped_trace["free_energy"][0])
    assert row.free_energy == pytest.approx(expected_f)
    assert summary[1].tokens == looped_trace.steps
    text = str(summary)
    assert "loop@" in text and "length" in text and text.count("\n") == 3


def test_to_pandas_has_one_line_per_decoded_token(looped_trace):
    pytest.importorskip("pandas")
    df = looped_trace.to_pandas()
    decoded = int((looped_trace["regime"] >= 0).sum())
    assert len(df) == decoded
    assert set(df["regime"].cat.categories) == set(REGIMES)
    assert df[df.row == 0].step.max() == looped_trace.stop_step[0]
    assert looped_trace.summary().to_pandas().shape[0] == 3


def test_plot_writes_a_png(looped_trace, tmp_path):
    pytest.importorskip("matplotlib")
    path = looped_trace.plot(str(tmp_path / "trace.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_buffers_are_preallocated_to_max_new_tokens_and_grow_when_unknown():
    model = tiny_llama()
    icp = ICP(model)
    model.generate(**prompt(batch=2), max_new_tokens=7, **icp.generation_kwargs())
    assert icp.processor.state.buffers.capacity == 7
    buffers = TraceBuffers(2, 4, torch.device("cpu"))
    for step in range(9):
        buffers.write(step, {"entropy": torch.full((2,), float(step))}, torch.ones(2, dtype=torch.bool))
    assert buffers.capacity == 16
    assert buffers.data["entropy"][0, :9].tolist() == list(range(9))
    assert torch.isnan(buffers.data["entropy"][:, 9:]).all()


def test_trace_is_finalised_once_and_cached(looped_trace):
    model = tiny_llama()
    icp = ICP(model)
    model.generate(**prompt(batch=2), max_new_tokens=4, **icp.generation_kwargs())
    assert icp.trace is icp.trace
    assert icp.trace.metadata["config"]["target_entropy"] == icp.config.target_entropy
    assert icp.trace.metadata["coherence_source"] == "embedding"


def test_best_of_picks_the_lowest_free_energy_among_clean_candidates():
    from icp.trace import Trace

    f = np.array([[3.0], [1.0], [2.0], [0.5], [0.1], [0.2]])
    reasons = np.array([0, 1, 0, 2, 3, 2])  # length, eos, length, loop, divergence, loop
    trace = Trace({"free_energy": f}, reasons, np.full(6, -1))
    assert trace.best_of(3).tolist() == [1, 3 + 1]  # group 2: all excluded -> lowest F among them (row 4)
    assert trace.best_of(1).tolist() == list(range(6))
    assert trace.best_of(3, exclude=()).tolist() == [1, 4]
    with pytest.raises(ValueError, match="does not divide"):
        trace.best_of(4)
    with pytest.raises(ValueError, match="unknown stop reasons"):
        trace.best_of(3, exclude=("oops",))


def test_icp_select_returns_one_sequence_per_prompt():
    model = tiny_llama()
    icp = ICP(model)
    out = model.generate(**prompt(batch=2), max_new_tokens=6, num_return_sequences=3, **icp.generation_kwargs())
    chosen = icp.select(out, 3)
    best = icp.trace.best_of(3)
    assert chosen.shape == (2, out.shape[1])
    torch.testing.assert_close(chosen, out[torch.as_tensor(best)])
    f = icp.trace.trajectory_free_energy()
    assert f[best[0]] == f[:3].min() and f[best[1]] == f[3:].min()
    with pytest.raises(ValueError, match="latest generation"):
        icp.select(out[:4], 2)
