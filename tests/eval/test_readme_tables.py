"""eval/readme_tables.py: the README's results tables are the results at HEAD, verbatim."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import readme_tables  # noqa: E402


def test_the_readme_holds_every_table_rendered_from_the_results_at_head(capsys):
    assert readme_tables.main(["--check", str(ROOT / "README.md")]) == 0, capsys.readouterr().out


def _write_results(folder: Path, coherence: dict[str, float]) -> None:
    """Minimal results files for every table: open-ended tasks with `coherence`, QA tasks with four decoders."""
    qa = {d: {"accuracy": 0.5, "abstention_rate": 0.0, "answered_accuracy": 0.5, "auroc_icp_F": 0.8}
          for d in ("greedy", "temperature", "icp", "icp_abstain")}  # fmt: skip
    for stem, task, columns, _ in readme_tables.TABLES:
        if columns is readme_tables.TEXT_COLUMNS:
            values = {d: {m: c for m, _ in columns} for d, c in coherence.items()}
        else:
            values = qa
        run = {"results": {task: values}, "intervals": {task: {}}, "hyperparameters": {task: {}},
               "tasks": {task: {"suite": stem}}, "git_hash": "0123456789", "runtime_s": 5.0}  # fmt: skip
        (folder / f"{stem}.json").write_text(json.dumps(run))


def test_open_ended_tables_show_greedy_the_two_most_coherent_baselines_then_icp(tmp_path, capsys):
    _write_results(
        tmp_path, {"greedy": 0.4, "eta": 0.3, "dry": 0.43, "min_p": 0.44, "icp_seeds_law": 0.46, "icp": 0.45}
    )
    assert readme_tables.main(["--results-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert [row.split(" | ")[0] for row in first[2:]] == [
        "| greedy",
        "| min_p",
        "| dry",
        "| icp_seeds_law (the seeds' law)",
        "| icp (cold law)",
    ]


def test_a_readme_without_a_table_fails_the_check_and_names_its_file(tmp_path, capsys):
    _write_results(tmp_path, {"greedy": 0.4, "dry": 0.43, "min_p": 0.44, "icp": 0.45})
    assert readme_tables.main(["--results-dir", str(tmp_path)]) == 0
    tables = capsys.readouterr().out.split("\n\n*")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n" + "\n\n*".join(tables[1:]))  # the loops table is missing
    assert readme_tables.main(["--results-dir", str(tmp_path), "--check", str(readme)]) == 1
    assert "loops.json" in capsys.readouterr().out


def test_results_without_a_decoder_the_readme_shows_are_an_error(tmp_path):
    _write_results(tmp_path, {"greedy": 0.4, "dry": 0.43, "min_p": 0.44, "icp": 0.45})
    run = json.loads((tmp_path / "knowledge.json").read_text())
    del run["results"]["knowledge_countries"]["icp_abstain"]
    (tmp_path / "knowledge.json").write_text(json.dumps(run))
    with pytest.raises(
        KeyError, match=r"knowledge.json: task 'knowledge_countries' has no results for \['icp_abstain'\]"
    ):
        readme_tables.main(["--results-dir", str(tmp_path)])
