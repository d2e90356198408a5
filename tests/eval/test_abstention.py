"""eval/abstention.py: accuracy and answered accuracy of an abstaining decoder against a baseline, paired."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eval"))

from abstention import abstention_differences  # noqa: E402


def test_abstaining_on_wrong_answers_keeps_accuracy_and_raises_answered_accuracy():
    rng = np.random.default_rng(0)
    baseline = rng.random(400) < 0.5
    answered = baseline | (rng.random(400) < 0.8)  # abstains only on some of the questions it gets wrong
    out = abstention_differences(baseline & answered, answered, baseline, n_bootstrap=500)
    assert out["accuracy_diff"] == 0.0
    assert out["answered_diff"] == pytest.approx(baseline.mean() / answered.mean() - baseline.mean())
    assert 0 < out["answered_diff_low"] < out["answered_diff"] < out["answered_diff_high"]
    assert out["coverage_a"] == pytest.approx(answered.mean())


def test_abstaining_on_right_answers_costs_accuracy():
    right = np.ones(50, dtype=bool)
    answered = np.arange(50) >= 10
    out = abstention_differences(right & answered, answered, right, n_bootstrap=200)
    assert out["accuracy_diff"] == pytest.approx(-0.2)
    assert out["accuracy_diff_high"] < 0
    assert out["answered_diff"] == 0.0


@pytest.mark.parametrize(
    "args, message",
    [(([1, 0], [1, 1], [1]), "equal-length"), (([0, 0], [0, 0], [1, 0]), "abstained on every question")],
)
def test_bad_inputs_say_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        abstention_differences(*args, n_bootstrap=10)
