"""eval/best_of_n.py: majority vote (self-consistency) among the candidates, and the default tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))
sys.path.insert(0, str(ROOT / "tests"))

import best_of_n  # noqa: E402
from bench.tasks import load_tasks  # noqa: E402
from helpers import CHAT_TEMPLATE, save_tiny_model  # noqa: E402


def test_majority_vote_picks_the_mode_under_the_qa_metrics_normalisation():
    # "Paris", "paris." and "The Paris!" are one answer for the QA metric: three votes against Lyon's two,
    # although Lyon's candidates are the more likely ones.
    texts = ["Lyon", "Paris", "paris.", "Lyon", "The Paris!"]
    loglik = [-0.1, -2.0, -1.5, -0.2, -3.0]
    index, votes = best_of_n.majority_vote(texts, loglik)
    assert votes == 3 and index == 2  # the most likely of the three Paris candidates


def test_majority_vote_breaks_ties_by_likelihood():
    texts = ["Rome", "Milan", "rome", "Milan."]
    assert best_of_n.majority_vote(texts, [-1.0, -0.5, -0.9, -2.0]) == (1, 2)  # Milan's best -0.5 > Rome's -0.9
    assert best_of_n.majority_vote(texts, [-1.0, -0.5, -0.4, -2.0]) == (2, 2)  # now Rome's best is higher
    # every answer distinct: the vote is the likelihood reranker; a NaN likelihood counts as the lowest
    assert best_of_n.majority_vote(["a1", "b2", "c3"], [float("nan"), -3.0, -2.0]) == (2, 1)


def test_empty_answers_do_not_win_unless_all_are_empty():
    assert best_of_n.majority_vote(["", "  ", "Oslo"], [-0.1, -0.2, -5.0]) == (2, 1)
    assert best_of_n.majority_vote(["", "."], [-0.3, -0.1]) == (1, 2)


def test_majority_vote_refuses_misaligned_inputs():
    with pytest.raises(ValueError, match="aligned"):
        best_of_n.majority_vote(["a", "b"], [-1.0])
    with pytest.raises(ValueError, match="non-empty"):
        best_of_n.majority_vote([], [])


def test_default_tasks_exist_and_include_knowledge_and_reading():
    names = best_of_n.DEFAULT_TASKS.split(",")
    assert {"knowledge_countries", "reading_qed", "truthfulqa", "halueval_qa"} <= set(names)
    assert set(names) <= set(load_tasks())
    assert "majority" in best_of_n.SELECTIONS


@pytest.fixture(scope="module")
def tiny_chat_model_dir(tmp_path_factory):
    """A tiny random Llama (EOS 2) with a word-level tokenizer (EOS w2, pad w0) and a plain chat template,
    saved as a model folder."""
    folder = tmp_path_factory.mktemp("tiny-chat")
    return save_tiny_model(folder, eos_token_id=2, eos_token="w2", pad_token="w0", chat_template=CHAT_TEMPLATE)


def test_best_of_n_runs_every_selection_on_the_same_candidates(tiny_chat_model_dir, tmp_path):
    out = tmp_path / "b.json"
    code = best_of_n.main(
        ["--model", str(tiny_chat_model_dir), "--tasks", "knowledge_countries", "--n", "3", "--limit", "4",
         "--max-new-tokens", "4", "--bootstrap", "5", "--tuned", str(tmp_path / "none.json"), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    import json

    report = json.loads(out.read_text())
    selections = report["results"]["knowledge_countries"]
    assert set(selections) == {"first", "icp_F", "loglik", "majority", "oracle"}
    assert 1 / 3 <= selections["majority"]["vote_share"] <= 1.0
    # the oracle keeps a right candidate wherever there is one: no selection beats it
    assert all(selections["oracle"]["accuracy"] >= v["accuracy"] for v in selections.values())


def test_candidates_come_back_in_the_items_order_when_batched_by_length(tiny_chat_model_dir):
    """reading_qed is batched by prompt length; each item's candidates must still be that item's."""
    from icp import load_default_model

    model, tokenizer = load_default_model(str(tiny_chat_model_dir))
    task = load_tasks()["reading_qed"]
    assert task.group_by_length
    lengths = [9, 1, 5, 3]
    items = [{"id": f"q{k}", "prompt_text": " ".join(["w5"] * n)} for k, n in enumerate(lengths)]
    per_item, choice = best_of_n.candidates(model, tokenizer, task, items, None, 2, 0, 2, 3)
    assert [[row["id"] for row in rows] for rows in per_item] == [[item["id"]] * 2 for item in items]
    assert all(0 <= c < 2 for c in choice)


def test_decoder_must_be_an_icp(tmp_path):
    with pytest.raises(SystemExit):
        best_of_n.main(["--decoder", "greedy", "--out", str(tmp_path / "x.json")])
    with pytest.raises(SystemExit):
        best_of_n.main(["--decoder", "icp_nonexistent", "--out", str(tmp_path / "x.json")])
