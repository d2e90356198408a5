"""eval/card_results.py: a suite run's results become the card's `model-index` and its results table."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import card_results  # noqa: E402

from icp.card_reader import read_front_matter  # noqa: E402
from icp.card_results import results_section  # noqa: E402
from icp.cards import find_card, load_card  # noqa: E402

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def _run(
    task: str, suite: str, values: dict[str, dict[str, float]], model: str = MODEL, git: str = "abc1234def"
) -> dict:
    """A results dict in the task layout, as eval/run.py writes it."""
    return {
        "results": {task: values},
        "intervals": {task: {d: {m: [v - 0.05, v + 0.05] for m, v in ms.items()} for d, ms in values.items()}},
        "hyperparameters": {task: {d: ({"temperature": 0.9} if d == "temperature" else {}) for d in values}},
        "higher_is_better": {task: {"accuracy": True, "abstention_rate": False, "coherence": True, "auroc": True}},
        "n": {task: 8},
        "versions": {task: 1},
        "tasks": {task: {"suite": suite, "version": 1, "n": 8}},
        "group_subtasks": {suite: [task]},
        "config": {"model": model, "split": "test"},
        "git_hash": git,
        "date": "2026-12-04T00:00:00+00:00",
        "runtime_s": 12.0,
        "command": f"python eval/run.py --suite {suite}",
    }


@pytest.fixture
def files(tmp_path) -> tuple[Path, Path, Path]:
    card = tmp_path / "README.md"
    shutil.copy(find_card(MODEL, required=True).path, card)
    qa = tmp_path / "knowledge.json"
    qa.write_text(json.dumps(_run("knowledge_countries", "knowledge", {
        "greedy": {"accuracy": 0.5, "abstention_rate": 0.0, "auroc_icp_F": 0.8},
        "icp": {"accuracy": 0.45, "abstention_rate": 0.0, "auroc_icp_F": 0.82},
        "temperature": {"accuracy": 0.3, "abstention_rate": 0.0, "auroc_icp_F": 0.7},
    })))  # fmt: skip
    loops = tmp_path / "loops.json"
    loops.write_text(
        json.dumps(_run("loops_webtext", "loops", {"greedy": {"coherence": 0.4}, "icp": {"coherence": 0.45}}))
    )
    return card, qa, loops


def test_the_card_gets_every_decoder_metric_of_every_task_and_a_table(files):
    card, qa, loops = files
    card_results.main([str(qa), str(loops), "--card", str(card), "--decoders", "icp,temperature"])
    meta, body = read_front_matter(card)
    got = {
        (r["dataset"]["type"], m["type"], m["config"]): m["value"]
        for r in meta["model-index"][0]["results"]
        for m in r["metrics"]
    }
    assert got == {
        ("knowledge_countries", "accuracy", "icp"): 0.45,
        ("knowledge_countries", "abstention_rate", "icp"): 0.0,
        ("knowledge_countries", "auroc_icp_F", "icp"): 0.82,
        ("knowledge_countries", "accuracy", "temperature"): 0.3,
        ("knowledge_countries", "abstention_rate", "temperature"): 0.0,
        ("knowledge_countries", "auroc_icp_F", "temperature"): 0.7,
        ("loops_webtext", "coherence", "icp"): 0.45,
    }
    table = results_section(body)
    assert "| knowledge_countries | 8 | accuracy ↑ | 0.450 ± 0.050 | 0.300 ± 0.050 |" in table
    assert "| loops_webtext | 8 | coherence ↑ | 0.450 ± 0.050 | — |" in table
    assert "abstention_rate ↓" in table and "temperature (temperature=0.9)" in table and "git abc1234" in table
    assert load_card(card).target_entropy == pytest.approx(1.9424)


def test_a_second_write_replaces_the_first(files):
    card, qa, loops = files
    card_results.main([str(qa), "--card", str(card)])
    card_results.main([str(loops), "--card", str(card)])
    meta, body = read_front_matter(card)
    assert {r["dataset"]["type"] for r in meta["model-index"][0]["results"]} == {"loops_webtext"}
    assert "knowledge_countries" not in results_section(body)


def test_print_writes_nothing(files, capsys):
    card, qa, _ = files
    before = card.read_text()
    card_results.main([str(qa), "--card", str(card), "--print"])
    assert card.read_text() == before and "| knowledge_countries |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--decoders", "icp,mirostat"], r"--decoders: no task of the files has results for \['mirostat'\]"),
        (["--metrics", "accuracy,mauve"], r"--metrics: no task of the files has \['mauve'\]"),
        (["--decoders", ""], r"--decoders \(''\) and --metrics"),
    ],
)
def test_bad_arguments_name_the_argument_and_leave_the_card(files, extra, message):
    card, qa, _ = files
    before = card.read_text()
    with pytest.raises(SystemExit, match=message):
        card_results.main([str(qa), "--card", str(card), *extra])
    assert card.read_text() == before


def test_results_of_another_model_or_a_missing_file_are_refused(files, tmp_path):
    card, qa, _ = files
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps(_run("knowledge_countries", "knowledge", {"icp": {"accuracy": 0.4}}, model="org/other"))
    )
    with pytest.raises(
        SystemExit, match=r"ran on 'org/other'; the card .* is for 'HuggingFaceTB/SmolLM2-135M-Instruct'"
    ):
        card_results.main([str(other), "--card", str(card)])
    with pytest.raises(SystemExit, match="cannot be read"):
        card_results.main([str(tmp_path / "missing.json"), "--card", str(card)])
    with pytest.raises(SystemExit, match="is not a file"):
        card_results.main([str(qa), "--card", str(tmp_path / "nope.md")])
