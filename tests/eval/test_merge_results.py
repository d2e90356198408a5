"""eval/merge_results.py: a later run's rows join a full run's tables without hiding the old rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import merge_results  # noqa: E402


def _run(decoders: dict[str, float], n: int = 4, git: str = "aaa") -> dict:
    return {
        "results": {"loops": {d: {"coherence": c} for d, c in decoders.items()}},
        "intervals": {"loops": {d: {"coherence": [c - 0.1, c + 0.1]} for d, c in decoders.items()}},
        "hyperparameters": {"loops": {d: {} for d in decoders}},
        "n": {"loops": n},
        "command": f"run {git}",
        "git_hash": git,
    }


def test_merge_keeps_the_old_rows_renamed_and_adds_the_new_ones():
    full, later = _run({"dry": 0.43, "icp": 0.40}), _run({"icp": 0.46}, git="bbb")
    merged = merge_results.merge(full, later, {"icp": "icp@aaa"})
    assert merged["results"]["loops"] == {
        "dry": {"coherence": 0.43},
        "icp@aaa": {"coherence": 0.40},
        "icp": {"coherence": 0.46},
    }
    assert merged["intervals"]["loops"]["icp"]["coherence"] == pytest.approx([0.36, 0.56])
    assert merged["intervals"]["loops"]["icp@aaa"]["coherence"] == pytest.approx([0.30, 0.50])
    assert [m["git_hash"] for m in merged["merged_from"]] == ["aaa", "bbb"]
    assert full["results"]["loops"]["icp"] == {"coherence": 0.40}  # the input is not modified


def test_merge_refuses_clashing_names_and_different_examples():
    with pytest.raises(ValueError, match="in both runs"):
        merge_results.merge(_run({"icp": 0.4}), _run({"icp": 0.46}), {})
    with pytest.raises(ValueError, match="n = 5"):
        merge_results.merge(_run({"dry": 0.4}), _run({"icp": 0.46}, n=5), {})


def test_cli_writes_json_and_tables(tmp_path):
    (tmp_path / "full.json").write_text(json.dumps(_run({"dry": 0.43, "icp": 0.40})))
    (tmp_path / "later.json").write_text(json.dumps(_run({"icp": 0.46}, git="bbb")))
    out = tmp_path / "merged"
    code = merge_results.main(
        [
            str(tmp_path / "full.json"),
            str(tmp_path / "later.json"),
            "--rename",
            "icp=icp@aaa",
            "--out",
            str(out),
            "--no-plots",
        ]
    )
    assert code == 0
    table = out.with_suffix(".md").read_text()
    assert "| icp@aaa |" in table and "| icp |" in table and "aaa+bbb" in table
