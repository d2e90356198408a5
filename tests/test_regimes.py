"""Tests of the regime classifier (icp/regimes.py's classify_regime): one case per regime, precedence,
the documented boundaries, the thresholds taken from the config, a property test against the rules
row by row, and dtype/device."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icp.config import RegimeThresholds
from icp.regimes import EXPLORATORY, REASONING, REGIMES, RIGID, UNSTABLE, classify_regime

# Explicit boundaries, so that these tests do not move when the calibrated defaults do.
FIXED_THRESHOLDS = RegimeThresholds(
    rigid_entropy=0.5,
    rigid_repetition=0.5,
    exploratory_entropy=2.0,
    unstable_entropy=4.0,
    unstable_meta_uncertainty=2.0,
    coherent=0.75,
)


def classify(h, c, u, r, thresholds=None):
    n = len(h)
    return classify_regime(
        torch.tensor(h, dtype=torch.float32),
        torch.tensor(c, dtype=torch.float32),
        torch.tensor(u if u is not None else [0.0] * n, dtype=torch.float32),
        torch.tensor(r if r is not None else [0.0] * n, dtype=torch.float32),
        thresholds or FIXED_THRESHOLDS,
    ).tolist()


def ref_regime(h: float, c: float, u: float, r: float, t: RegimeThresholds) -> int:
    """The rules of RegimeThresholds' docstring, in its order of precedence."""
    if (h >= t.unstable_entropy or u >= t.unstable_meta_uncertainty) and c < t.coherent:
        return UNSTABLE
    if h < t.rigid_entropy and r >= t.rigid_repetition:
        return RIGID
    if h >= t.exploratory_entropy and c >= t.coherent:
        return EXPLORATORY
    return REASONING


def test_one_case_per_regime():
    codes = classify(
        h=[0.1, 1.0, 3.0, 5.0, 1.0],
        c=[0.9, 0.9, 0.9, 0.3, 0.3],
        u=[0.0, 0.0, 0.0, 0.0, 3.0],
        r=[0.9, 0.0, 0.0, 0.0, 0.0],
    )
    assert [REGIMES[i] for i in codes] == ["rigid", "reasoning", "exploratory", "unstable", "unstable"]
    assert (RIGID, REASONING, EXPLORATORY, UNSTABLE) == (0, 1, 2, 3)


def test_regime_precedence_and_near_misses():
    codes = classify(
        # rigid+unstable, high-H coherent, low-C calm, low-H no repetition, rigid & low C,
        # exploratory entropy but incoherent (and below the unstable bounds)
        h=[0.1, 5.0, 1.0, 0.1, 0.1, 3.0],
        c=[0.3, 0.9, 0.1, 0.9, 0.1, 0.3],
        u=[3.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        r=[0.9, 0.0, 0.0, 0.1, 1.0, 0.0],
    )
    assert codes == [UNSTABLE, EXPLORATORY, REASONING, REASONING, RIGID, REASONING]


def test_boundaries_follow_documented_inequalities():
    t = FIXED_THRESHOLDS
    codes = classify(
        h=[t.exploratory_entropy, t.rigid_entropy, t.unstable_entropy, 0.0, 1.0],
        c=[t.coherent, 0.9, t.coherent - 1e-3, 0.9, t.coherent - 1e-3],
        u=[0.0, 0.0, 0.0, 0.0, t.unstable_meta_uncertainty],
        r=[0.0, 1.0, 0.0, t.rigid_repetition, 0.0],
    )
    assert codes == [EXPLORATORY, REASONING, UNSTABLE, RIGID, UNSTABLE]


def test_thresholds_from_config_are_used():
    h, c, u, r = [1.0], [0.9], [0.0], [0.0]
    assert classify(h, c, u, r) == [REASONING]
    assert classify(h, c, u, r, RegimeThresholds(exploratory_entropy=0.8)) == [EXPLORATORY]
    strict = RegimeThresholds(coherent=0.95, unstable_entropy=0.9, exploratory_entropy=0.9)
    assert classify(h, c, u, r, strict) == [UNSTABLE]
    assert classify([0.3], [0.9], [0.0], [0.4]) == [REASONING]
    assert classify([0.3], [0.9], [0.0], [0.4], RegimeThresholds(rigid_repetition=0.3)) == [RIGID]
    lower = RegimeThresholds(rigid_repetition=0.3, rigid_entropy=0.2)
    assert classify([0.3], [0.9], [0.0], [0.4], lower) == [REASONING]
    assert classify([1.0], [0.3], [1.0], [0.0]) == [REASONING]
    assert classify([1.0], [0.3], [1.0], [0.0], RegimeThresholds(unstable_meta_uncertainty=0.5)) == [UNSTABLE]


@given(
    st.lists(st.tuples(st.floats(0, 5), st.floats(0, 1), st.floats(0, 4), st.floats(0, 2)), min_size=1, max_size=20),
    st.tuples(st.floats(0, 4), st.floats(0, 4), st.floats(0, 4)).map(sorted),
    st.floats(0.05, 2.0),
    st.floats(0.05, 3.0),
    st.floats(0.0, 1.0),
)
def test_classify_matches_rules_row_by_row(rows, entropies, rep, mu, coherent):
    t = RegimeThresholds(
        rigid_entropy=entropies[0],
        exploratory_entropy=entropies[1],
        unstable_entropy=entropies[2],
        rigid_repetition=rep,
        unstable_meta_uncertainty=mu,
        coherent=coherent,
    )
    h, c, u, r = (list(col) for col in zip(*rows))
    # compare in float32, as the classifier sees them
    f32 = [torch.tensor(col, dtype=torch.float32).tolist() for col in (h, c, u, r)]
    thr = RegimeThresholds(**{k: torch.tensor(v, dtype=torch.float32).item() for k, v in t.to_dict().items()})
    expect = [ref_regime(*vals, thr) for vals in zip(*f32)]
    assert classify(*f32, thr) == expect


def test_output_dtype_and_device():
    h = torch.tensor([0.1, 1.0, 3.0, 5.0], dtype=torch.float64)
    c = torch.tensor([0.9, 0.9, 0.9, 0.3], dtype=torch.float16)
    codes = classify_regime(h, c, torch.zeros(4), torch.tensor([0.9, 0.0, 0.0, 0.0]), FIXED_THRESHOLDS)
    assert codes.dtype == torch.long and codes.shape == (4,)
    assert codes.tolist() == [RIGID, REASONING, EXPLORATORY, UNSTABLE]
    meta = classify_regime(*(torch.zeros(3, device="meta") for _ in range(4)), RegimeThresholds())
    assert meta.device.type == "meta" and meta.dtype == torch.long


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_output_stays_on_cuda():
    dev = torch.device("cuda")
    codes = classify_regime(
        torch.tensor([0.1, 5.0], device=dev),
        torch.tensor([0.9, 0.3], device=dev),
        torch.zeros(2, device=dev),
        torch.tensor([0.9, 0.0], device=dev),
        RegimeThresholds(),
    )
    assert codes.device.type == "cuda" and codes.dtype == torch.long
    assert codes.cpu().tolist() == [RIGID, UNSTABLE]
