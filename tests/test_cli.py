"""The `icp` command line: generate and trace, JSON output, exit codes, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from helpers import tiny_llama
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers import models as tok_models
from transformers import PreTrainedTokenizerFast

from icp.cli import EXIT_DATA, EXIT_MODEL, EXIT_USAGE, main
from icp.trace import Trace


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    tiny_llama().save_pretrained(folder)
    vocab = {f"w{i}": i for i in range(64)}
    backend = Tokenizer(tok_models.WordLevel(vocab, unk_token="w1"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend)
    tokenizer.eos_token = "w2"
    tokenizer.save_pretrained(folder)
    return folder


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
