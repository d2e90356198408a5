"""Benchmark results in a card (`icp.card_results`): written beside the calibration, kept by `icp calibrate`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from huggingface_hub import EvalResult
from huggingface_hub import ModelCard as HubModelCard
from test_cards import MODEL_ID, synthetic_result

from icp.card_reader import read_front_matter
from icp.card_results import RESULTS_END, RESULTS_START, results_section, with_results_section, write_card_results
from icp.cards import find_card, load_card, write_card


def _result(metric: str = "accuracy", value: float = 0.48, decoder: str = "icp") -> EvalResult:
    return EvalResult(
        task_type="text-generation",
        dataset_type="knowledge_countries",
        dataset_name="knowledge_countries",
        dataset_split="test",
        metric_type=metric,
        metric_value=value,
        metric_name=f"{metric} ({decoder})",
        metric_config=decoder,
    )


def _section(text: str) -> str:
    return f"{RESULTS_START}\n## Benchmark results\n\n{text}\n{RESULTS_END}"


@pytest.fixture
def shipped_card(tmp_path) -> Path:
    """A copy of the embedded model's card."""
    path = tmp_path / "README.md"
    shutil.copy(find_card("HuggingFaceTB/SmolLM2-135M-Instruct", required=True).path, path)
    return path


def test_writing_results_leaves_the_calibration_as_it_was(shipped_card):
    before = load_card(shipped_card)
    _, body_before = read_front_matter(shipped_card)
    write_card_results(shipped_card, [_result(), _result("accuracy", 0.49, "greedy")], _section("| a | b |"))
    after = load_card(shipped_card)
    meta, body = read_front_matter(shipped_card)
    assert meta["icp"] == before.metadata["icp"] and after.target_entropy == before.target_entropy
    metrics = meta["model-index"][0]["results"][0]["metrics"]
    assert [(m["config"], m["value"]) for m in metrics] == [("icp", 0.48), ("greedy", 0.49)]
    calibration_body = with_results_section(body_before, None).rstrip("\n")  # the shipped card may hold results
    assert body.startswith(calibration_body) and results_section(body) == _section("| a | b |")


def test_writing_results_again_replaces_them_and_the_file_survives_a_hub_round_trip(shipped_card):
    write_card_results(shipped_card, [_result(value=0.1)], _section("old"))
    write_card_results(shipped_card, [_result(value=0.2)], _section("new"))
    meta, body = read_front_matter(shipped_card)
    assert body.count(RESULTS_START) == 1 and "old" not in results_section(body)
    assert [m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]] == [0.2]
    text = shipped_card.read_text()
    HubModelCard.load(shipped_card).save(shipped_card)
    assert shipped_card.read_text() == text


def test_an_empty_result_list_clears_the_model_index(shipped_card):
    write_card_results(shipped_card, [_result()], _section("x"))
    write_card_results(shipped_card, [], _section("none"))
    assert load_card(shipped_card).metadata["model-index"] == [
        {"name": "HuggingFaceTB/SmolLM2-135M-Instruct", "results": []}
    ]


def test_recalibrating_keeps_the_results_section_and_the_model_index(tmp_path):
    path = write_card(synthetic_result(), folder=tmp_path)
    write_card_results(path, [_result()], _section("| kept |"))
    write_card(synthetic_result(target=1.1), folder=tmp_path)
    meta, body = read_front_matter(path)
    assert load_card(path).target_entropy == 1.1 and meta["model-index"][0]["name"] == MODEL_ID
    assert results_section(body) == _section("| kept |") and body.lstrip().startswith("# ICP calibration")


@pytest.mark.parametrize(
    "body",
    [
        f"{RESULTS_START}\nno end\n",
        f"{RESULTS_END}\n{RESULTS_START}\n",
        f"{RESULTS_START}\n{RESULTS_START}\n{RESULTS_END}",
    ],
)
def test_broken_markers_raise_and_recalibrating_leaves_the_card_alone(tmp_path, body):
    with pytest.raises(ValueError, match="results section needs one"):
        results_section(body)
    path = write_card(synthetic_result(), folder=tmp_path)
    path.write_text(path.read_text() + body)
    before = path.read_text()
    with pytest.raises(ValueError, match="not rewritten"):
        write_card(synthetic_result(target=1.1), folder=tmp_path)
    assert path.read_text() == before


def test_a_section_without_its_markers_is_refused():
    with pytest.raises(ValueError, match="has to start with"):
        with_results_section("# Card\n", "## Benchmark results\n")


def test_a_body_without_a_section_is_returned_unchanged_when_there_is_none_to_add():
    assert with_results_section("# Card\n\ntext", None) == "# Card\n\ntext"
    assert with_results_section(f"# Card\n\n{_section('x')}\n", None) == "# Card\n"
