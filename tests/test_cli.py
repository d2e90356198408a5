"""The `icp` command line: generate and trace, JSON output, exit codes, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import save_tiny_model, tiny_llama

from icp.cli import EXIT_DATA, EXIT_MODEL, EXIT_USAGE, main
from icp.trace import Trace


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    # EOS w2 and no pad token (test_calibrate's folder has pad w0 and no EOS)
    return save_tiny_model(tmp_path_factory.mktemp("tiny"), eos_token="w2")


def test_generate_prints_json_and_saves_a_trace_that_trace_reads(tiny_model_dir, tmp_path, capsys):
    trace_path = tmp_path / "t.npz"
    code = main(
        [
            "generate",
            "--model",
            str(tiny_model_dir),
            "--prompt",
            "w5 w6",
            "--prompt",
            "w7 w8 w9",
            "--max-new-tokens",
            "6",
            "--json",
            "--quiet",
            "--no-chat",
            "--trace-out",
            str(trace_path),
            "--set",
            "target_entropy=2.0",
            "--set",
            "divergence.patience=3",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert [g["prompt"] for g in payload["generations"]] == ["w5 w6", "w7 w8 w9"]
    assert payload["config"]["target_entropy"] == 2.0 and payload["config"]["divergence"]["patience"] == 3
    assert all(g["tokens"] >= 1 and "free_energy" in g for g in payload["generations"])
    trace = Trace.load(str(trace_path))
    assert trace.batch_size == 2 and trace.steps == 6
    png = tmp_path / "t.png"
    assert main(["trace", str(trace_path), "--json", "--plot", str(png)]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and png.stat().st_size > 20_000
    np.testing.assert_allclose([r["free_energy"] for r in rows], trace.trajectory_free_energy())


def test_bad_setting_exits_2_naming_it(tiny_model_dir, capsys):
    code = main(["generate", "--model", str(tiny_model_dir), "--quiet", "--set", "gain=-1"])
    assert code == EXIT_USAGE
    assert "`gain` (=-1)" in capsys.readouterr().err
    assert main(["generate", "--model", str(tiny_model_dir), "--set", "gain"]) == EXIT_USAGE


def test_missing_model_exits_3(tmp_path, capsys):
    assert main(["generate", "--model", str(tmp_path / "nope"), "--quiet"]) == EXIT_MODEL
    assert "cannot load the model" in capsys.readouterr().err


def test_unreadable_inputs_exit_4(tmp_path, capsys):
    assert main(["trace", str(tmp_path / "missing.npz")]) == EXIT_DATA
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(2))
    assert main(["trace", str(bad)]) == EXIT_DATA
    assert "not an ICP trace" in capsys.readouterr().err
    assert main(["generate", "--prompts-file", str(tmp_path / "none.txt")]) == EXIT_DATA


def test_help_and_usage_errors_from_the_installed_command():
    done = subprocess.run([sys.executable, "-m", "icp.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "generate" in done.stdout and "Exit codes" in done.stdout
    done = subprocess.run(
        [sys.executable, "-m", "icp.cli", "generate", "--max-new-tokens", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--max-new-tokens" in done.stderr


# -- icp eval: the benchmark suite of the checkout ---------------------------------------------------


def test_eval_forwards_to_the_suite(capsys):
    assert main(["eval", "--list-decoders"]) == 0
    out = capsys.readouterr().out
    for name in ("greedy", "min_p", "mirostat", "icp"):
        assert name in out


def test_eval_without_the_suite_says_where_it_looked(tmp_path, capsys):
    assert main(["eval", "--suite-dir", str(tmp_path), "--list-decoders"]) == EXIT_DATA
    assert str(tmp_path) in capsys.readouterr().err


def test_eval_bad_suite_arguments_exit_2(capsys):
    assert main(["eval", "--decoders", "greedy,nope"]) == EXIT_USAGE
    assert "Unknown decoder 'nope'" in capsys.readouterr().err


def test_other_commands_still_refuse_unknown_options(capsys):
    with pytest.raises(SystemExit) as done:
        main(["trace", "x.npz", "--bogus"])
    assert done.value.code == EXIT_USAGE


def test_eval_runs_the_loops_suite_on_a_tiny_model(tiny_model_dir, tmp_path):
    # no --data-dir: the suite reads the data shipped in eval/data
    out = tmp_path / "r.json"
    code = main(
        ["eval", "--model", str(tiny_model_dir), "--suite", "loops", "--decoders", "greedy,icp", "--limit", "2",
         "--max-new-tokens", "4", "--no-cache", "--no-plots", "--no-progress", "--bootstrap", "0",
         "--tuned", str(tmp_path / "none.json"), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report["results"]["loops_webtext"]) == {"greedy", "icp"}  # results are keyed by task
    assert report["config"]["model"] == str(tiny_model_dir)


# -- icp trace --format: the exports ------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_trace(tmp_path_factory):
    from helpers import prompt

    from icp import ICP

    model = tiny_llama()
    icp = ICP(model)
    model.generate(**prompt(batch=2), max_new_tokens=5, **icp.generation_kwargs())
    return icp.trace.save(tmp_path_factory.mktemp("trace") / "t.npz")


def test_trace_format_table_is_the_summary(saved_trace, capsys):
    assert main(["trace", saved_trace]) == 0
    table = capsys.readouterr().out
    assert table == f"{Trace.load(saved_trace).summary()}\n"
    assert main(["trace", saved_trace, "--format", "table"]) == 0
    assert capsys.readouterr().out == table


def test_trace_format_json_prints_the_whole_trace(saved_trace, tmp_path, capsys):
    assert main(["trace", saved_trace, "--format", "json"]) == 0
    text = capsys.readouterr().out
    back, original = Trace.from_json(text), Trace.load(saved_trace)
    for name in original.arrays:
        np.testing.assert_array_equal(back[name], original[name], err_msg=name)
    assert back.stop_reasons == original.stop_reasons and back.metadata["config"] == original.metadata["config"]
    out = tmp_path / "t.json"
    assert main(["trace", saved_trace, "--format", "json", "--out", str(out)]) == 0
    assert capsys.readouterr().out == "" and out.read_text() == text


def test_trace_format_csv_to_stdout_and_to_a_file(saved_trace, tmp_path, capsys):
    assert main(["trace", saved_trace, "--format", "csv"]) == 0
    text = capsys.readouterr().out
    header = text.splitlines()[0].split(",")
    assert header[:6] == ["row", "step", "stop_reason", "stop_step", "token", "regime"]
    assert "meta.config.target_entropy" in header
    decoded = int((Trace.load(saved_trace)["regime"] >= 0).sum())
    assert len(text.splitlines()) == 1 + decoded
    out = tmp_path / "t.csv"
    assert main(["trace", saved_trace, "--format", "csv", "--out", str(out)]) == 0
    assert capsys.readouterr().out == "" and out.read_text() == text


def test_trace_format_parquet_needs_out_and_reads_back(saved_trace, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    with pytest.raises(SystemExit) as done:
        main(["trace", saved_trace, "--format", "parquet"])
    assert done.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "usage: icp trace" in err and "icp trace: error: `--format parquet`" in err and "--out" in err
    out = tmp_path / "t.parquet"
    assert main(["trace", saved_trace, "--format", "parquet", "--out", str(out)]) == 0
    df = pd.read_parquet(out)
    trace = Trace.load(saved_trace)
    assert len(df) == int((trace["regime"] >= 0).sum())
    np.testing.assert_array_equal(df["entropy"].to_numpy(), trace["entropy"][df["row"], df["step"]])


def test_trace_format_parquet_without_pyarrow_names_the_extra(saved_trace, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert main(["trace", saved_trace, "--format", "parquet", "--out", str(tmp_path / "t.parquet")]) == EXIT_USAGE
    assert "pip install 'icp[pandas]'" in capsys.readouterr().err


def test_trace_json_flag_and_format_exclude_each_other(saved_trace, capsys):
    with pytest.raises(SystemExit) as done:
        main(["trace", saved_trace, "--json", "--format", "csv"])
    assert done.value.code == EXIT_USAGE
    assert "icp trace: error: argument --format: not allowed with argument --json" in capsys.readouterr().err


def test_trace_of_a_newer_format_version_exits_4_saying_to_upgrade(tmp_path, capsys):
    from icp.trace import TRACE_FORMAT_VERSION

    path = tmp_path / "future.npz"
    np.savez(
        path,
        format_version=np.array(TRACE_FORMAT_VERSION + 1),
        stop_reason=np.array([0]),
        stop_step=np.array([-1]),
        metadata=np.array("{}"),
        signal__entropy=np.zeros((1, 1), dtype=np.float32),
    )
    assert main(["trace", str(path)]) == EXIT_DATA
    err = capsys.readouterr().err
    assert f"format version {TRACE_FORMAT_VERSION + 1}" in err and "Upgrade icp" in err


# -- conventions: --version, --device/--dtype, subcommand errors -------------------------------------


def test_version_prints_the_package_version(capsys):
    from icp import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"icp {__version__}\n"
    done = subprocess.run([sys.executable, "-m", "icp.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == f"icp {__version__}"


def test_device_and_dtype_reach_the_model_load(tiny_model_dir, monkeypatch, capsys):
    import torch

    import icp.models

    calls = []
    real = icp.models.load_default_model

    def spy(name_or_path=None, **kwargs):
        calls.append((name_or_path, kwargs))
        return real(name_or_path, **kwargs)

    monkeypatch.setattr(icp.models, "load_default_model", spy)
    args = ["--model", str(tiny_model_dir), "--max-new-tokens", "2", "--prompt", "w5 w6", "--quiet", "--no-chat"]
    assert main(["generate", *args, "--device", "cpu", "--dtype", "bfloat16", "--json"]) == 0
    assert calls[-1] == (str(tiny_model_dir), {"torch_dtype": torch.bfloat16, "device": "cpu"})
    assert json.loads(capsys.readouterr().out)["generations"][0]["tokens"] >= 1
    assert main(["generate", *args]) == 0  # the defaults: float32, where the model loads (cpu)
    assert calls[-1][1] == {"torch_dtype": torch.float32, "device": None}

    def refuse(name_or_path=None, **kwargs):
        calls.append((name_or_path, kwargs))
        raise ValueError("not loading in this test")

    monkeypatch.setattr(icp.models, "load_default_model", refuse)
    assert main(["calibrate", "--model", "x", "--device", "cpu", "--dtype", "float16", "--quiet"]) == EXIT_MODEL
    assert calls[-1] == ("x", {"torch_dtype": torch.float16, "device": "cpu"})
    assert "not loading in this test" in capsys.readouterr().err


def test_dtype_auto_is_the_checkpoints_own(tiny_model_dir, tmp_path):
    import torch

    from icp.cli import _resolve_dtype

    assert _resolve_dtype("auto", str(tiny_model_dir)) == torch.float32
    half = tmp_path / "half"
    tiny_llama().to(torch.bfloat16).save_pretrained(half)
    assert _resolve_dtype("auto", str(half)) == torch.bfloat16
    assert _resolve_dtype("auto", None) == torch.float32  # the embedded default model is cached in float32
    assert _resolve_dtype("float16", str(half)) == torch.float16


@pytest.mark.parametrize("command", ["generate", "calibrate"])
def test_bad_dtype_and_device_are_the_subcommands_usage_errors(command, capsys):
    import torch

    with pytest.raises(SystemExit) as done:
        main([command, "--dtype", "float64"])
    assert done.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"usage: icp {command}" in err
    assert f"icp {command}: error: argument --dtype: invalid choice: 'float64'" in err
    assert all(name in err for name in ("auto", "float32", "float16", "bfloat16"))
    with pytest.raises(SystemExit) as done:
        main([command, "--device", "gpu"])
    assert done.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"icp {command}: error: argument --device: invalid value 'gpu': not a torch device" in err
    assert "cpu, cuda" in err
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as done:
            main([command, "--device", "cuda:0"])
        assert done.value.code == EXIT_USAGE
        assert "this machine has no cuda device" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["generate", "trace x.npz", "calibrate"])
def test_unknown_options_are_reported_by_the_subcommand(command, capsys):
    name = command.split()[0]
    with pytest.raises(SystemExit) as done:
        main([*command.split(), "--bogus"])
    assert done.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"usage: icp {name}" in err and f"icp {name}: error: unrecognized arguments: --bogus" in err


def test_subcommand_errors_from_the_installed_command():
    done = subprocess.run([sys.executable, "-m", "icp.cli", "generate", "--bogus"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("usage: icp generate")
    assert done.stderr.rstrip().endswith("icp generate: error: unrecognized arguments: --bogus")
    done = subprocess.run(
        [sys.executable, "-m", "icp.cli", "generate", "--max-new-tokens", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "icp generate: error: `--max-new-tokens` (=0)" in done.stderr
