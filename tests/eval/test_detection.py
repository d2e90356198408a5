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
