"""eval/merge_results.py: a later run's rows join a full run's tables without hiding the old rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import merge_results  # noqa: E402


def _run(decoders: dict[str, float], n: int = 4, git: str = "aaa", version: int = 1) -> dict:
    """A results dict keyed by task: loops_webtext of suite loops."""
    return {
        "results": {"loops_webtext": {d: {"coherence": c} for d, c in decoders.items()}},
        "intervals": {"loops_webtext": {d: {"coherence": [c - 0.1, c + 0.1]} for d, c in decoders.items()}},
        "hyperparameters": {"loops_webtext": {d: {} for d in decoders}},
        "higher_is_better": {"loops_webtext": {"coherence": True}},
        "n": {"loops_webtext": n},
        "versions": {"loops_webtext": version},
        "tasks": {"loops_webtext": {"suite": "loops", "version": version, "n": n}},
        "group_subtasks": {"loops": ["loops_webtext"]},
        "command": f"run {git}",
        "git_hash": git,
    }


def _old(run: dict) -> dict:
    """`run` in the suite-keyed layout of the files written before results were keyed by task."""
    old = {key: {"loops": value["loops_webtext"]} for key, value in run.items() if key in merge_results.PER_DECODER}
    old["n"] = {"loops": run["n"]["loops_webtext"]}
    old["versions"] = {"torch": "2.5"}
    old["config"] = {"tasks": {"loops_webtext": {"suite": "loops", "version": run["versions"]["loops_webtext"]}}}
    return {**old, "command": run["command"], "git_hash": run["git_hash"]}


def test_merge_keeps_the_old_rows_renamed_and_adds_the_new_ones():
    full, later = _run({"dry": 0.43, "icp": 0.40}), _run({"icp": 0.46}, git="bbb")
    merged = merge_results.merge(full, later, {"icp": "icp@aaa"})
    assert merged["results"]["loops_webtext"] == {
        "dry": {"coherence": 0.43},
        "icp@aaa": {"coherence": 0.40},
        "icp": {"coherence": 0.46},
    }
    assert merged["intervals"]["loops_webtext"]["icp"]["coherence"] == pytest.approx([0.36, 0.56])
    assert merged["intervals"]["loops_webtext"]["icp@aaa"]["coherence"] == pytest.approx([0.30, 0.50])
    assert [m["git_hash"] for m in merged["merged_from"]] == ["aaa", "bbb"]
    assert full["results"]["loops_webtext"]["icp"] == {"coherence": 0.40}  # the input is not modified
    assert merged["tasks"] == full["tasks"] and merged["higher_is_better"] == full["higher_is_better"]


def test_merge_reads_the_old_suite_layout_and_writes_the_task_layout():
    full, later = _run({"dry": 0.43, "icp": 0.40}), _run({"icp": 0.46}, git="bbb")
    merged = merge_results.merge(_old(full), _old(later), {"icp": "icp@aaa"})
    assert list(merged["results"]) == ["loops_webtext"]
    assert (
        merged["results"]["loops_webtext"]
        == merge_results.merge(full, later, {"icp": "icp@aaa"})["results"]["loops_webtext"]
    )
    assert merged["tasks"]["loops_webtext"]["suite"] == "loops" and merged["n"] == {"loops_webtext": 4}
    assert merged["higher_is_better"]["loops_webtext"]["rep_4"] is False  # from the task YAML
    assert merged["packages"] == {"torch": "2.5"}
    # an old full run and a new later run merge too
    assert "icp" in merge_results.merge(_old(full), later, {"icp": "icp@aaa"})["results"]["loops_webtext"]


def test_merge_refuses_clashing_names_and_different_examples():
    with pytest.raises(ValueError, match="in both runs"):
        merge_results.merge(_run({"icp": 0.4}), _run({"icp": 0.46}), {})
    with pytest.raises(ValueError, match="n = 5"):
        merge_results.merge(_run({"dry": 0.4}), _run({"icp": 0.46}, n=5), {})
    with pytest.raises(ValueError, match="version 2 in the later run, 1 in the full run"):
        merge_results.merge(_run({"dry": 0.4}), _run({"icp": 0.46}, version=2), {})
    other = _run({"icp": 0.46})
    other["results"] = {"other_task": other["results"]["loops_webtext"]}
    other["tasks"] = {"other_task": {"suite": "loops"}}
    with pytest.raises(ValueError, match="task 'other_task' of the later run is not in the full run"):
        merge_results.merge(_run({"dry": 0.4}), other, {})


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
