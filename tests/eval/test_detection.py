"""Detection signals: the least likely token's log-probability, answer length, and ICP's paired margin."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eval"))

from bench.generation import plain_signals  # noqa: E402
from bench.scoring import (  # noqa: E402
    PLAIN_SIGNALS,
    MetricBank,
    _paired_against_best_plain,
    _score_detection,
    uncertainties,
)

#: What a QA task is scored on (nq_open's metric list): accuracy, then detection and selective prediction.
QA_METRICS = [
    {"metric": "qa_accuracy", "keys": ["accuracy", "exact_match", "answered_accuracy"], "higher_is_better": True},
    {"metric": "qa_accuracy", "keys": ["abstention_rate"], "higher_is_better": False},
    {"metric": "selective_prediction", "keys": ["auroc", "prr"], "higher_is_better": True},
]


def test_min_loglik_is_the_least_likely_answer_token_and_ignores_padding():
    logits = tuple(torch.log(torch.tensor([[p, 1 - p]])) for p in (0.9, 0.2, 0.5))
    generated = torch.tensor([[0, 0, 0]])
    out = plain_signals(logits, generated, lengths=torch.tensor([2]))  # the third step is after EOS
    assert out["min_loglik"][0] == pytest.approx(math.log(0.2), rel=1e-5)
    assert out["seq_loglik"][0] == pytest.approx(math.log(0.9) + math.log(0.2), rel=1e-5)


def test_answer_length_is_an_uncertainty_that_grows_with_length():
    rows = [{"n_tokens": 2}, {"n_tokens": 9}]
    assert uncertainties(rows, "answer_length") == [2.0, 9.0]
    assert "answer_length" in PLAIN_SIGNALS and "min_loglik" in PLAIN_SIGNALS


def test_a_signal_that_separates_perfectly_gets_auroc_one_and_icp_is_paired_against_the_best_plain():
    correct = [True, True, True, False, False, False] * 3
    rows = [
        {"n_tokens": 3 if c else 12, "mean_entropy": 1.0, "icp_F": 0.5 if c else 0.4, "icp_U": 1.0} for c in correct
    ]
    import numpy as np

    resamples = np.random.default_rng(0).integers(0, len(rows), size=(40, len(rows)))
    out, ci = {}, {}
    _score_detection(MetricBank(), rows, correct, resamples, out, ci)
    assert out["auroc_answer_length"] == pytest.approx(1.0)
    assert out["best_plain_auroc"] == pytest.approx(1.0)
    # F ranks the wrong answers as *more* certain: AUROC 0, a whole point below length, in every resample
    assert out["auroc_diff_icp_F"] == pytest.approx(-1.0)
    assert ci["auroc_diff_icp_F"] == [pytest.approx(-1.0), pytest.approx(-1.0)]


def test_the_paired_margin_of_a_signal_against_itself_is_zero():
    out = {"auroc_icp_F": 0.7, "auroc_mean_entropy": 0.7}
    ci = {}
    _paired_against_best_plain(out, ci, {"icp_F": [0.6, 0.7, 0.8], "mean_entropy": [0.6, 0.7, 0.8]})
    assert out["auroc_diff_icp_F"] == 0.0 and ci["auroc_diff_icp_F"] == [0.0, 0.0]


def test_the_best_plain_signal_is_named_and_its_own_paired_difference_is_zero():
    correct = [True, False] * 6
    rows = [
        {"n_tokens": 2 if c else 9, "mean_entropy": float(i % 3), "icp_F": float(i), "icp_U": 1.0}
        for i, c in enumerate(correct)
    ]
    import numpy as np

    resamples = np.random.default_rng(1).integers(0, len(rows), size=(30, len(rows)))
    out, ci = {}, {}
    _score_detection(MetricBank(), rows, correct, resamples, out, ci)
    assert out["best_plain"] == "answer_length"
    assert out["auroc_diff_answer_length"] == 0.0 and ci["auroc_diff_answer_length"] == [0.0, 0.0]
    # every signal is paired against it, plain ones too
    assert out["auroc_diff_mean_entropy"] == pytest.approx(out["auroc_mean_entropy"] - 1.0)
    assert ci["auroc_diff_mean_entropy"][1] <= 0.0


def test_same_coverage_thresholding_answers_exactly_k_rows():
    import numpy as np

    from bench.scoring import most_confident

    rng = np.random.default_rng(0)
    for n in (1, 5, 17):
        u = rng.normal(size=n)
        for k in range(n + 1):
            w = most_confident(u, k)
            assert sorted(w.tolist()) == [0.0] * (n - k) + [1.0] * k  # no ties: k rows, whole
            assert set(np.flatnonzero(w)) == set(np.argsort(u)[:k])  # the k least uncertain
    ties = most_confident([5, 1, 3, 3, 3, 9], 3)  # row 1, then two of the three rows tied at 3
    assert ties.sum() == pytest.approx(3.0)
    assert ties.tolist() == pytest.approx([0, 1, 2 / 3, 2 / 3, 2 / 3, 0])
    with pytest.raises(ValueError, match="`k`"):
        most_confident([1, 2], 3)


def test_same_coverage_comparison_by_hand_and_paired():
    import numpy as np

    from bench.scoring import same_coverage_comparison

    # ICP abstains on rows 4 and 5; the signal's most confident 4 rows are 0, 1, 2, 3: rows 4 and 5 as well.
    answered = [True, True, True, True, False, False]
    uncertainty = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    correct = [True, False, True, True, False, True]
    resamples = np.random.default_rng(0).integers(0, 6, size=(50, 6))
    values, ci = same_coverage_comparison(answered, uncertainty, correct, resamples)
    assert values["selective_coverage"] == pytest.approx(4 / 6)
    assert values["selective_icp_accuracy"] == pytest.approx(3 / 4)
    assert values["selective_threshold_accuracy"] == pytest.approx(3 / 4)
    # the same rows answered in every resample too: the paired difference is exactly 0
    assert values["selective_diff"] == 0.0 and ci["selective_diff"] == [0.0, 0.0]
    assert ci["selective_coverage"][0] < 4 / 6 < ci["selective_coverage"][1]

    # Now ICP abstains on the one wrong answer, which the signal ranks most confident.
    answered = [True, False, True, True, True, True]
    uncertainty = [0.2, 0.1, 0.3, 0.4, 0.5, 0.6]
    correct = [True, False, True, True, True, True]
    values, ci = same_coverage_comparison(answered, uncertainty, correct, resamples)
    assert values["selective_icp_accuracy"] == 1.0 and values["selective_threshold_accuracy"] == pytest.approx(4 / 5)
    assert values["selective_diff"] == pytest.approx(0.2)
    assert ci["selective_diff"][0] >= 0.0  # never worse in any resample: it drops the one wrong row


def test_score_task_labels_detection_by_the_answer_as_written_and_compares_icp_abstention():
    from types import SimpleNamespace

    from bench.scoring import score_task

    task = SimpleNamespace(name="t", suite="qa", metric_list=QA_METRICS)
    items = [{"answers": [a]} for a in ("Paris", "Rome", "Oslo", "Bern", "Lima", "Kyiv")]
    texts = ["Paris", "Madrid", "Oslo", "Vienna, or maybe Graz or Linz", "Lima", "Kyiv"]
    stops = ["eos", "eos", "divergence", "eos", "eos", "loop"]
    rows = [
        {"text": t, "tokens": [1] * len(t.split()), "n_tokens": len(t.split()), "stop_reason": s, "icp_F": 0.0}
        for t, s in zip(texts, stops)
    ]
    values, ci = score_task(task, rows, items, MetricBank(), n_bootstrap=20)
    # row 2 is right as written but ICP stopped it: an abstention for accuracy, right for detection
    assert [r["correct"] for r in rows] == [True, False, False, False, True, True]
    assert [r["answer_correct"] for r in rows] == [True, False, True, False, True, True]
    assert values["abstention_rate"] == pytest.approx(1 / 6)  # the divergence stop only
    # answer length is the only plain signal here; the long wrong answer is the least confident
    assert values["best_plain"] == "answer_length"
    assert values["selective_coverage"] == pytest.approx(4 / 6)  # loop and divergence stops abstain
    assert values["selective_icp_accuracy"] == pytest.approx(2 / 4)  # Paris, Madrid, Vienna.., Lima
    # the threshold answers 4 of the 6: the five one-word answers tie, the long wrong one is left out
    assert values["selective_threshold_accuracy"] == pytest.approx(4 / 5)
    assert values["selective_diff"] == pytest.approx(0.5 - 0.8)
    assert set(ci) >= {"selective_diff", "auroc_diff_icp_F", "auroc_answer_length"}


def _scored_rows(task_name, decoder, seed, n=40):
    """Rows of one decoder on a toy QA task, scored as the suite scores them."""
    import numpy as np
    from types import SimpleNamespace

    from bench.scoring import score_task

    rng = np.random.default_rng(seed)
    right = rng.random(n) < 0.5
    items = [{"answers": [f"city{i}"]} for i in range(n)]
    rows = []
    for i in range(n):
        words = int(rng.integers(1, 4)) + (0 if right[i] else int(rng.integers(0, 3)))
        text = " ".join([f"city{i}" if right[i] else f"town{i}"] + ["so"] * (words - 1))
        stop = str(rng.choice(["eos", "eos", "eos", "divergence", "loop"])) if decoder == "icp" else "eos"
        rows.append(
            {
                "text": text, "tokens": [1] * words, "n_tokens": words, "stop_reason": stop,
                "icp_F": float(rng.normal() + (0 if right[i] else 0.5)), "icp_U": float(rng.normal()),
                "mean_entropy": float(rng.normal()), "mean_max_prob": float(rng.random()),
                "seq_loglik": float(-rng.random() * words), "mean_loglik": float(-rng.random()),
                "min_loglik": float(-2 * rng.random()),
            }
        )  # fmt: skip
    task = SimpleNamespace(name=task_name, suite="qa", metric_list=QA_METRICS)
    values, ci = score_task(task, rows, items, MetricBank(), n_bootstrap=40)
    for row in rows:
        row.update({"suite": "qa", "task": task_name, "decoder": decoder})
    return rows, values, ci


def test_report_has_a_detection_and_a_selective_table_per_icp_decoder_and_a_risk_plot_per_task(tmp_path):
    from bench.report import markdown_tables, risk_curves, write_report

    report = {"results": {}, "intervals": {}, "tasks": {}, "n": {}}
    examples = []
    for t, task in enumerate(("qa_one", "qa_two")):
        for d, decoder in enumerate(("greedy", "icp")):
            rows, values, ci = _scored_rows(task, decoder, seed=10 * t + d)
            report["results"].setdefault(task, {})[decoder] = values
            report["intervals"].setdefault(task, {})[decoder] = ci
            examples += rows
            if decoder == "icp":
                # the plot's abstention point and its threshold point are the scored comparison's numbers
                point = risk_curves(rows)["abstention"]
                assert point["coverage"] == pytest.approx(values["selective_coverage"])
                assert point["risk"] == pytest.approx(1 - values["selective_icp_accuracy"])
                assert point["threshold_risk"] == pytest.approx(1 - values["selective_threshold_accuracy"])
        report["tasks"][task] = {"suite": "qa"}
        report["n"][task] = 40
    tables = markdown_tables(report)
    assert tables.count("Detecting wrong answers among icp's answers") == 2
    assert "among greedy's answers" not in tables
    assert tables.count("| as many, the most confident by `") == 2
    assert "| `answer_length`: answer length in tokens (longer = less sure)" in tables
    # the main tables stay narrow: ICP's signals and the bar, every signal in the detection table
    header = next(line for line in tables.splitlines() if line.startswith("| decoder |"))
    assert "auroc_icp_F ↑" in header and "best_plain_auroc ↑" in header and "auroc_min_loglik" not in header
    write_report(report, tmp_path / "r.json", examples=examples)
    for task in ("qa_one", "qa_two"):
        assert (tmp_path / f"r.risk.{task}.png").stat().st_size > 10_000
        assert f"(r.risk.{task}.png)" in (tmp_path / "r.md").read_text()


def test_a_task_where_every_answer_is_wrong_gets_one_line_not_a_table_of_dashes():
    from bench.report import detection_tables

    values = {f"auroc_{s}": math.nan for s in ("icp_F", "answer_length")}
    lines = detection_tables({"results": {"t": {"icp": values}}}, "t")
    assert lines == ["No detection on t for icp: every answer is right, or every answer wrong.", ""]
