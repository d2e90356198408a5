"""eval/paired.py: the paired bootstrap over prompts, and pairing two decoders' rows by example id."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import paired  # noqa: E402

scores = st.lists(st.floats(-1.0, 1.0), min_size=2, max_size=40)


@given(a=scores, shift=st.floats(-0.5, 0.5), seed=st.integers(0, 100))
def test_the_interval_brackets_the_mean_difference_and_follows_a_shift(a, shift, seed):
    b = [x - shift for x in a]  # A ahead of B by exactly `shift` on every item
    out = paired.paired_bootstrap(a, b, n_bootstrap=200, seed=seed)
    assert out["difference"] == pytest.approx(shift, abs=1e-9)
    # Every per-item difference is `shift`, so every resample's mean is too: the interval collapses.
    assert out["low"] == pytest.approx(shift, abs=1e-9) and out["high"] == pytest.approx(shift, abs=1e-9)
    if shift > 1e-9:
        assert out["share_not_ahead"] == 0.0
    elif shift < -1e-9:
        assert out["share_not_ahead"] == 1.0


def test_pairing_removes_the_prompts_spread():
    rng = np.random.default_rng(0)
    prompt_effect = rng.normal(0.0, 0.3, size=64)  # prompts differ a lot
    a = prompt_effect + 0.03 + rng.normal(0.0, 0.01, size=64)
    b = prompt_effect + rng.normal(0.0, 0.01, size=64)
    out = paired.paired_bootstrap(a, b, n_bootstrap=2000)
    assert out["low"] > 0.0 and out["share_not_ahead"] == 0.0  # paired: clearly ahead
    unpaired_half_width = 1.96 * np.std(a) / np.sqrt(len(a))
    assert unpaired_half_width > 0.03  # each mean's own interval would not tell them apart


def test_bad_inputs_are_refused_with_the_argument_named():
    with pytest.raises(ValueError, match="aligned"):
        paired.paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least 2"):
        paired.paired_bootstrap([0.1], [0.2])
    with pytest.raises(ValueError, match="finite"):
        paired.paired_bootstrap([0.1, float("nan")], [0.2, 0.3])
    with pytest.raises(ValueError, match="n_bootstrap"):
        paired.paired_bootstrap([0.1, 0.2], [0.2, 0.3], n_bootstrap=0)


def test_rows_are_paired_by_id_on_the_task_only():
    rows = [
        {"task": "t", "decoder": "icp", "id": 2, "text": "a2"},
        {"task": "t", "decoder": "icp", "id": 1, "text": "a1"},
        {"task": "t", "decoder": "min_p", "id": 1, "text": "b1"},
        {"task": "t", "decoder": "min_p", "id": 3, "text": "b3"},
        {"task": "other", "decoder": "min_p", "id": 2, "text": "x"},
    ]
    a, b = paired.aligned_rows(rows, "t", "icp", "min_p")
    assert [r["text"] for r in a] == ["a1"] and [r["text"] for r in b] == ["b1"]
    with pytest.raises(ValueError, match="'dry' has no rows on task 't'.*icp"):
        paired.aligned_rows(rows, "t", "icp", "dry")
    with pytest.raises(ValueError, match=r"`--task` \(='loops_webtext'\) has no rows; tasks there: \['other', 't'\]"):
        paired.aligned_rows(rows, "loops_webtext", "icp", "min_p")
