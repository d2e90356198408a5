"""Selective prediction: how well an uncertainty score ranks wrong answers (AUROC, PRR, AURC; an `evaluate` metric)."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{malinin2021uncertainty,
  title     = {Uncertainty Estimation in Autoregressive Structured Prediction},
  author    = {Malinin, Andrey and Gales, Mark},
  booktitle = {International Conference on Learning Representations},
  year      = {2021}
}
@inproceedings{geifman2019biasreduced,
  title     = {Bias-Reduced Uncertainty Estimation for Deep Neural Classifiers},
  author    = {Geifman, Yonatan and Uziel, Guy and El-Yaniv, Ran},
  booktitle = {International Conference on Learning Representations},
  year      = {2019}
}
@inproceedings{kuhn2023semantic,
  title     = {Semantic Uncertainty: Linguistic Invariances for Uncertainty Estimation in Natural Language Generation},
  author    = {Kuhn, Lorenz and Gal, Yarin and Farquhar, Sebastian},
  booktitle = {International Conference on Learning Representations},
  year      = {2023}
}
"""

_DESCRIPTION = """\
Selective prediction with an uncertainty score (higher = less confident) against per-answer correctness.
AUROC: area under the ROC curve of the uncertainty as a detector of wrong answers (Mann-Whitney statistic
from average ranks, so ties count one half). Risk-coverage curve: answers are kept from the most to the least
confident; at coverage k/n the risk is the error rate among the k kept answers (answers with tied uncertainty
are kept in random order, and the curve is its expectation). AURC: the mean risk over k = 1..n. PRR
(prediction-rejection ratio): (AURC_random - AURC) / (AURC_random - AURC_oracle), where the random ordering
has constant risk equal to the overall error rate and the oracle keeps every correct answer first: 1 for a
perfect ordering, 0 for an uninformative one, negative when worse than random.
"""

_KWARGS_DESCRIPTION = """
Args:
    uncertainty (`list` of `float`): per answer, a finite uncertainty score; higher means less confident.
    correct (`list` of `int`): per answer, 1 when correct and 0 when wrong.
    return_curve (`bool`, *optional*, defaults to `False`): also return the risk-coverage curve as
        `{"risk_coverage": {"coverage": [...], "risk": [...]}}`.
    per_example (`bool`, *optional*, defaults to `False`): these are set-level scores; `"per_example"` is then
        an empty dict (the inputs are already per example: bootstrap by resampling them).

Returns:
    auroc (`float`): in [0, 1]; NaN when all answers are correct or all are wrong.
    prr (`float`): at most 1; NaN when all answers are correct or all are wrong.
    aurc (`float`): in [0, 1], lower is better.

Examples:

    >>> import evaluate
    >>> metric = evaluate.load("eval/metrics/selective_prediction")
    >>> out = metric.compute(uncertainty=[0.1, 0.2, 0.8, 0.9], correct=[1, 1, 0, 0])
    >>> out["auroc"], out["prr"], round(out["aurc"], 4)
    (1.0, 1.0, 0.2083)
    >>> out = metric.compute(uncertainty=[0.5, 0.5, 0.5, 0.5], correct=[1, 0, 1, 0], return_curve=True)
    >>> out["auroc"], out["prr"], out["risk_coverage"]["risk"]
    (0.5, 0.0, [0.5, 0.5, 0.5, 0.5])
"""


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks of `values`, ties getting the average of the ranks they span.

    >>> average_ranks([3.0, 1.0, 3.0, 2.0]).tolist()
    [3.5, 1.0, 3.5, 2.0]
    """
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    starts, sizes = _tie_groups(x[order])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(starts + (sizes + 1) / 2, sizes)
    return ranks


def _tie_groups(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start index, size) of each run of equal values in a sorted array."""
    starts = np.r_[0, np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1]
    sizes = np.diff(np.r_[starts, len(sorted_values)])
    return starts, sizes


def auroc(uncertainty: Sequence[float], correct: Sequence[int]) -> float:
    """AUROC of `uncertainty` as a detector of wrong answers (ties count 1/2); NaN with a single class.

    >>> auroc([0.9, 0.1, 0.5], [0, 1, 1])
    1.0
    """
    u, c = _check_inputs(uncertainty, correct)
    wrong = c == 0
    n_pos, n_neg = int(wrong.sum()), int((~wrong).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(u)
    return float((ranks[wrong].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def risk_coverage(uncertainty: Sequence[float], correct: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, risk) at k = 1..n answers kept, most confident first; ties kept in expected random order.

    >>> cov, risk = risk_coverage([0.1, 0.9], [1, 0])
    >>> cov.tolist(), risk.tolist()
    ([0.5, 1.0], [0.0, 0.5])
    """
    u, c = _check_inputs(uncertainty, correct)
    n = len(u)
    order = np.argsort(u, kind="mergesort")
    errors = 1.0 - c[order]
    starts, sizes = _tie_groups(u[order])
    group_errors = np.add.reduceat(errors, starts)
    before = np.r_[0.0, np.cumsum(group_errors)[:-1]]
    group = np.repeat(np.arange(len(starts)), sizes)
    within = np.arange(n) - starts[group] + 1
    cum_errors = before[group] + within * group_errors[group] / sizes[group]
    kept = np.arange(1, n + 1)
    return kept / n, cum_errors / kept


def aurc(uncertainty: Sequence[float], correct: Sequence[int]) -> float:
    """Area under the risk-coverage curve: the mean risk over k = 1..n kept answers.

    >>> aurc([0.1, 0.9], [1, 0])
    0.25
    """
    return float(risk_coverage(uncertainty, correct)[1].mean())


def oracle_aurc(correct: Sequence[int]) -> float:
    """AURC of the ordering that keeps every correct answer first.

    >>> oracle_aurc([0, 1])
    0.25
    """
    c = np.asarray(correct, dtype=np.float64)
    kept = np.arange(1, len(c) + 1)
    return float((np.maximum(kept - c.sum(), 0.0) / kept).mean())


def prr(uncertainty: Sequence[float], correct: Sequence[int]) -> float:
    """Prediction-rejection ratio (AURC_random - AURC) / (AURC_random - AURC_oracle); NaN when undefined.

    >>> prr([0.1, 0.2, 0.9], [1, 1, 0]), prr([0.9, 0.2, 0.1], [1, 1, 0]) < 0
    (1.0, True)
    """
    u, c = _check_inputs(uncertainty, correct)
    random = 1.0 - c.mean()
    oracle = oracle_aurc(c)
    if random - oracle <= 0:
        return float("nan")
    return float((random - aurc(u, c)) / (random - oracle))


def _check_inputs(uncertainty: Sequence[float], correct: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    if len(uncertainty) == 0:
        raise ValueError("`uncertainty` is empty: selective prediction needs at least one answer")
    if len(correct) != len(uncertainty):
        raise ValueError(f"`correct` must have one entry per uncertainty ({len(uncertainty)}), got {len(correct)}")
    try:
        u = np.asarray(uncertainty, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"`uncertainty` must hold finite numbers, got {list(uncertainty)[:10]!r}") from None
    if u.ndim != 1 or not np.all(np.isfinite(u)):
        bad = next((v for v in np.ravel(u) if not np.isfinite(v)), uncertainty)
        raise ValueError(f"`uncertainty` must be a flat list of finite numbers, got {bad!r}")
    c = np.asarray(correct)
    if c.ndim != 1 or not np.all((c == 0) | (c == 1)):
        bad = next((v for v in np.ravel(c) if v not in (0, 1)), correct)
        raise ValueError(f"`correct` must hold 0 (wrong) or 1 (correct), got {bad!r}")
    return u, c.astype(np.float64)


def selective_scores(
    uncertainty: Sequence[float],
    correct: Sequence[int],
    return_curve: bool = False,
    per_example: bool = False,
) -> dict:
    """The metric without `evaluate`: see the module's `_KWARGS_DESCRIPTION` for arguments and keys."""
    u, c = _check_inputs(uncertainty, correct)
    coverage, risk = risk_coverage(u, c)
    out: dict = {"auroc": auroc(u, c), "prr": prr(u, c), "aurc": float(risk.mean())}
    if return_curve:
        out["risk_coverage"] = {"coverage": coverage.tolist(), "risk": risk.tolist()}
    if per_example:
        out["per_example"] = {}
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SelectivePrediction(evaluate.Metric):
    """AUROC, PRR and AURC of an uncertainty score against correctness."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"uncertainty": datasets.Value("float64"), "correct": datasets.Value("int32")}),
            reference_urls=["https://arxiv.org/abs/2002.07650", "https://arxiv.org/abs/1805.08206"],
        )

    def _compute(self, uncertainty, correct, return_curve=False, per_example=False):
        return selective_scores(uncertainty, correct, return_curve, per_example)
