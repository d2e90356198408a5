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


# -- exports and the file format ---------------------------------------------------------------------


def _assert_same_trace(a, b):
    assert set(a.arrays) == set(b.arrays)
    for name in a.arrays:
        assert b[name].dtype == a[name].dtype, name
        np.testing.assert_array_equal(b[name], a[name], err_msg=name)  # NaN equals NaN here
    assert b.stop_reasons == a.stop_reasons
    np.testing.assert_array_equal(b.stop_step, a.stop_step)


def test_to_json_round_trips_every_signal_stop_reason_and_metadata(looped_trace, tmp_path):
    import json

    from icp.trace import TRACE_FORMAT_VERSION, Trace

    text = looped_trace.to_json()

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    doc = json.loads(text, parse_constant=no_constants)  # strict JSON: no NaN/Infinity literals
    assert doc["format"] == "icp.trace" and doc["format_version"] == TRACE_FORMAT_VERSION
    assert (doc["batch_size"], doc["steps"]) == (3, looped_trace.steps)
    assert doc["stop_reason"] == looped_trace.stop_reasons and doc["stop_reason"][0] == "loop"
    assert doc["regimes"] == list(REGIMES)
    stop = int(looped_trace.stop_step[0])
    assert doc["signals"]["entropy"][0][stop + 1] is None  # NaN after the row stopped -> null
    assert doc["signals"]["regime"][0][stop + 1] == -1
    assert doc["metadata"]["config"]["target_entropy"] == looped_trace.metadata["config"]["target_entropy"]
    back = Trace.from_json(text)
    _assert_same_trace(looped_trace, back)
    assert back.metadata == json.loads(json.dumps(looped_trace.metadata, default=str))
    path = tmp_path / "t.json"
    assert looped_trace.to_json(path, indent=1) == str(path)
    _assert_same_trace(looped_trace, Trace.from_json(path.read_text()))


def test_to_json_writes_infinity_and_nan_explicitly():
    import json

    from icp.trace import Trace

    values = np.array([[np.inf, -np.inf, np.nan, 0.1]], dtype=np.float32)
    trace = Trace({"kl": values}, np.array([0]), np.array([-1]), {"bound": float("nan"), "big": float("inf")})
    doc = json.loads(trace.to_json())
    assert doc["signals"]["kl"] == [["Infinity", "-Infinity", None, 0.1]]  # shortest float32 decimal
    assert doc["metadata"] == {"bound": None, "big": "Infinity"}
    back = Trace.from_json(trace.to_json())
    np.testing.assert_array_equal(back["kl"], values)


def test_from_json_refuses_other_documents_and_newer_versions():
    import json

    from icp.trace import TRACE_FORMAT_VERSION, Trace

    with pytest.raises(ValueError, match="not an ICP trace document"):
        Trace.from_json('{"a": 1}')
    with pytest.raises(ValueError, match="not JSON"):
        Trace.from_json("nope")
    doc = json.loads(Trace({"kl": np.zeros((1, 2))}, np.array([0]), np.array([-1])).to_json())
    doc["format_version"] = TRACE_FORMAT_VERSION + 1
    with pytest.raises(ValueError, match=f"format version {TRACE_FORMAT_VERSION + 1}, written by a newer icp"):
        Trace.from_json(json.dumps(doc))


def test_to_csv_has_one_line_per_decoded_step_with_stop_reason_and_metadata_columns(looped_trace, tmp_path):
    import csv
    import io

    from icp.trace import FLOAT_SIGNALS

    text = looped_trace.to_csv()
    lines = list(csv.reader(io.StringIO(text)))
    header, body = lines[0], lines[1:]
    assert header[:6] == ["row", "step", "stop_reason", "stop_step", "token", "regime"]
    assert header[6 : 6 + len(FLOAT_SIGNALS)] == list(FLOAT_SIGNALS)
    assert "meta.config.target_entropy" in header and "meta.generation_context.function" in header
    assert len(body) == int((looped_trace["regime"] >= 0).sum())
    col = {name: i for i, name in enumerate(header)}
    row0 = [line for line in body if line[0] == "0"]
    assert len(row0) == looped_trace.stop_step[0] + 1
    assert {line[col["stop_reason"]] for line in row0} == {"loop"}
    assert {line[col["meta.config.target_entropy"]] for line in body} == {
        str(looped_trace.metadata["config"]["target_entropy"])
    }
    path = tmp_path / "t.csv"
    assert looped_trace.to_csv(path) == str(path) and path.read_text() == text

    pd = pytest.importorskip("pandas")
    df = pd.read_csv(path)
    rows, steps = df["row"].to_numpy(), df["step"].to_numpy()
    for name in FLOAT_SIGNALS:  # float32 values come back exactly, NaN (empty fields) as NaN
        np.testing.assert_array_equal(df[name].to_numpy(np.float32), looped_trace[name][rows, steps], err_msg=name)
    np.testing.assert_array_equal(df["token"], looped_trace["token"][rows, steps])
    assert df["regime"].tolist() == [REGIMES[c] for c in looped_trace["regime"][rows, steps]]


def test_to_parquet_reads_back_with_pandas(looped_trace, tmp_path):
    import json

    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    from icp.trace import FLOAT_SIGNALS, TRACE_FORMAT_VERSION

    path = tmp_path / "t.parquet"
    assert looped_trace.to_parquet(path) == str(path)
    df = pd.read_parquet(path)
    assert len(df) == int((looped_trace["regime"] >= 0).sum())
    rows, steps = df["row"].to_numpy(), df["step"].to_numpy()
    for name in (*FLOAT_SIGNALS, "token"):
        assert df[name].dtype == looped_trace[name].dtype, name
        np.testing.assert_array_equal(df[name].to_numpy(), looped_trace[name][rows, steps], err_msg=name)
    assert df["stop_reason"].tolist() == [looped_trace.stop_reasons[r] for r in rows]
    assert (df["meta.config.target_entropy"] == looped_trace.metadata["config"]["target_entropy"]).all()
    stored = json.loads(pq.read_schema(path).metadata[b"icp.trace"])
    assert stored["format_version"] == TRACE_FORMAT_VERSION
    assert stored["metadata"]["config"] == looped_trace.metadata["config"]


def test_to_parquet_without_pyarrow_says_what_to_install(looped_trace, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'icp\[pandas\]'"):
        looped_trace.to_parquet(tmp_path / "t.parquet")


def test_save_writes_the_format_version_and_load_round_trips(looped_trace, tmp_path):
    from icp.trace import TRACE_FORMAT_VERSION, Trace

    path = looped_trace.save(tmp_path / "t.npz")
    with np.load(path) as archive:
        assert int(archive["format_version"]) == TRACE_FORMAT_VERSION
    back = Trace.load(path)
    _assert_same_trace(looped_trace, back)
    assert back.metadata["config"] == looped_trace.metadata["config"]


def test_load_reads_a_trace_written_in_the_layout_before_format_versions(tmp_path):
    """Files written before `format_version` existed (icp 0.1.0's Trace.save) load as version 1."""
    import json

    from icp.trace import Trace

    entropy = np.array([[1.5, 2.0, np.nan], [0.5, 0.25, 0.75]], dtype=np.float32)
    regime = np.array([[1, 0, -1], [2, 2, 1]], dtype=np.int8)
    path = tmp_path / "old.npz"
    with open(path, "wb") as f:  # exactly the old Trace.save: no format_version entry
        np.savez_compressed(
            f,
            stop_reason=np.array([1, 0]),
            stop_step=np.array([1, -1]),
            metadata=np.array(json.dumps({"config": {"target_entropy": 1.5}})),
            signal__entropy=entropy,
            signal__regime=regime,
        )
    with np.load(path) as archive:
        assert "format_version" not in archive.files
    trace = Trace.load(path)
    np.testing.assert_array_equal(trace["entropy"], entropy)
    np.testing.assert_array_equal(trace["regime"], regime)
    assert trace.stop_reasons == ["eos", "length"] and trace.stop_step.tolist() == [1, -1]
    assert trace.metadata == {"config": {"target_entropy": 1.5}}
    assert (trace.batch_size, trace.steps) == (2, 3)


def test_load_refuses_a_newer_format_version_naming_both(tmp_path):
    import json

    from icp import __version__
    from icp.trace import TRACE_FORMAT_VERSION, Trace

    path = tmp_path / "future.npz"
    np.savez_compressed(
        path,
        format_version=np.array(TRACE_FORMAT_VERSION + 1),
        stop_reason=np.array([0]),
        stop_step=np.array([-1]),
        metadata=np.array(json.dumps({})),
        signal__entropy=np.zeros((1, 2), dtype=np.float32),
    )
    with pytest.raises(ValueError) as err:
        Trace.load(path)
    message = str(err.value)
    assert str(path) in message and f"format version {TRACE_FORMAT_VERSION + 1}" in message
    assert f"this icp ({__version__}) reads versions up to {TRACE_FORMAT_VERSION}" in message
    assert "Upgrade icp" in message
