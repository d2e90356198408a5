"""Scoring a decoder's generations on a task with the suite's `evaluate` metrics, with bootstrap intervals.

What a task is scored on is its YAML's `metric_list`: each entry names a metric of the registry
[`METRICS`] (metric name -> the function that scores it, the result keys it writes and whether higher is
better for each), and [`score_task`] runs the metrics the list names, in its order, and no other. Every
task also gets `n` and its stop rates (`stopped_loop`, `stopped_divergence`).

Metrics are `evaluate` modules loaded by path from `eval/metrics/<slug>` (offline). Intervals are
95 % percentile bootstrap intervals over examples (`n_bootstrap` resamples, fixed seed); MAUVE, which
clusters the whole sample, gets none.

The hallucination suites also score how well each per-answer signal detects wrong answers (AUROC and
prediction-rejection ratio, via the `selective_prediction` metric), for ICP's trajectory F and U and
for the plain signals: mean token entropy, mean top probability, sequence log-likelihood (sum, per
token, and the least likely token's) and answer length. Every signal is turned into an uncertainty
(higher = less confident) first. Each signal's AUROC is compared with the best plain signal's by a
*paired* bootstrap (`auroc_diff_<signal>`: the same resampled answers for both), and ICP's own
abstention (its loop and divergence stops) is compared with answering as many questions by the best
plain signal (`selective_*`, [`same_coverage_comparison`]).

The labels for detection and selective prediction are whether the answer *as written* is right
(`answer_correct`): on the QA suites a row ICP stopped counts as an abstention, never correct, in
`accuracy` and `answered_accuracy`, but scoring its stop as a wrong answer would credit F and U for
detecting the rows they stopped themselves.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ICP_ABSTAIN_STOPS",
    "METRICS",
    "METRIC_DIR",
    "PLAIN_SIGNALS",
    "SIGNALS",
    "Metric",
    "MetricBank",
    "check_metric_list",
    "get_metric",
    "higher_is_better",
    "most_confident",
    "same_coverage_comparison",
    "score_task",
    "tuning_score",
    "uncertainties",
]

METRIC_DIR = Path(__file__).resolve().parent.parent / "metrics"

#: Per-answer uncertainty signals: name -> (row key, sign). uncertainty = sign * row[key].
SIGNALS: dict[str, tuple[str, float]] = {
    "icp_F": ("icp_F", 1.0),
    "icp_U": ("icp_U", 1.0),
    "mean_entropy": ("mean_entropy", 1.0),
    "max_prob": ("mean_max_prob", -1.0),
    "seq_loglik": ("seq_loglik", -1.0),
    "mean_loglik": ("mean_loglik", -1.0),
    "min_loglik": ("min_loglik", -1.0),
    # Answer length in tokens, longer = less certain (sign +1). The tasks ask for "a few words" or "one
    # short sentence": a model that knows the answer names it and stops, while one that does not hedges,
    # explains, lists candidates or runs on to the length limit. An empty answer (EOS first) is no answer:
    # it counts as the most uncertain, like a row whose signals are NaN.
    "answer_length": ("n_tokens", 1.0),
}

#: The plain signals (not ICP's), among which the best (by AUROC) is the bar for F and U.
PLAIN_SIGNALS = ("mean_entropy", "max_prob", "seq_loglik", "mean_loglik", "min_loglik", "answer_length")

#: ICP's stop reasons that are abstentions: it stopped the row rather than return a looping or diverging
#: answer (the others are "eos" and "length"). The selective-prediction comparison answers every other row.
ICP_ABSTAIN_STOPS = ("divergence", "loop")


class MetricBank:
    """Loads each metric module once, by path.

    Example:
        >>> bank = MetricBank()
        >>> bank("repetition").compute(predictions=["a b c a b c"])["rep_2"]
        40.0
    """

    def __init__(self, metric_dir: str | Path = METRIC_DIR) -> None:
        self.metric_dir = Path(metric_dir)
        self._loaded: dict[str, Any] = {}

    def __call__(self, slug: str):
        if slug not in self._loaded:
            import evaluate

            path = self.metric_dir / slug
            if not path.is_dir():
                known = sorted(p.name for p in self.metric_dir.iterdir() if p.is_dir() and not p.name.startswith("_"))
                raise KeyError(f"No metric {slug!r} under {self.metric_dir}; known: {known}.")
            self._loaded[slug] = evaluate.load(str(path))
        return self._loaded[slug]

    def module(self, slug: str):
        """The Python module metric `slug` runs from, for its plain functions (e.g. `auroc`, `normalize_answer`).

        Example:
            >>> MetricBank().module("qa_accuracy").normalize_answer("The  Paris!")
            'paris'
        """
        import sys

        return sys.modules[type(self(slug)).__module__]


def _interval(samples: list[float]) -> list[float]:
    finite = [s for s in samples if isinstance(s, (int, float)) and math.isfinite(s)]
    if len(finite) < 2:
        return [float("nan"), float("nan")]
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return [float(lo), float(hi)]


def _bootstrap_mean(values: list[float], resamples: np.ndarray) -> list[float]:
    array = np.asarray(values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return _interval([float(np.nanmean(array[idx])) for idx in resamples])


def _resamples(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_bootstrap, n)) if n > 0 and n_bootstrap > 0 else np.zeros((0, n), dtype=int)


class _Scoring:
    """One decoder's scoring on one task: the inputs every metric reads and the values and intervals they write.

    Args:
        task ([`Task`]): the task.
        rows (`list[dict]`): the generations, in the order of `items`.
        items (`list[dict]`): the task's examples.
        bank ([`MetricBank`]): the loaded metrics.
        resamples (`np.ndarray` of shape `(n_bootstrap, len(rows))`): row indices of each bootstrap resample.
    """

    def __init__(self, task: Any, rows: list[dict], items: list[dict], bank: MetricBank, resamples: np.ndarray):
        self.task, self.rows, self.items, self.bank, self.resamples = task, rows, items, bank, resamples
        self.out: dict[str, Any] = {"n": float(len(rows))}
        self.ci: dict[str, list[float]] = {}
        #: Whether each answer, as written, is right: set by a correctness metric, read by `selective_prediction`.
        self.labels: list[bool] | None = None

    @property
    def texts(self) -> list[str]:
        return [r["text"] for r in self.rows]


def _score_repetition(s: _Scoring) -> None:
    values = s.bank("repetition").compute(predictions=s.texts, per_example=True)
    for key in ("rep_2", "rep_3", "rep_4", "diversity", "distinct_2", "distinct_3"):
        s.out[key] = float(values[key])
    # rep-n is a corpus ratio: resample generations and recompute it from their n-gram counts.
    per = {key: np.asarray(v, dtype=float) for key, v in values["per_example"].items()}
    rep = {n: [] for n in (2, 3, 4)}
    for idx in s.resamples:
        for n in rep:
            total = per[f"total_{n}"][idx].sum()
            rep[n].append(100.0 * (1.0 - per[f"unique_{n}"][idx].sum() / total) if total else 0.0)
    if len(s.resamples):
        s.ci["rep_4"] = _interval(rep[4])
        s.ci["diversity"] = _interval(list(np.prod([1.0 - np.asarray(rep[n]) / 100.0 for n in rep], axis=0)))


def _score_loop_rate(s: _Scoring) -> None:
    loops = s.bank("loop_rate").compute(
        predictions=[r["tokens"] for r in s.rows], reached_limit=[r["reached_limit"] for r in s.rows], per_example=True
    )
    s.out["loop_rate"] = float(loops["loop_rate"])
    s.out["loop_at_limit_rate"] = float(loops["loop_at_limit_rate"])
    s.ci["loop_rate"] = _bootstrap_mean([float(x) for x in loops["per_example"]["looped"]], s.resamples)


def _score_prompt_coherence(s: _Scoring) -> None:
    coherence = s.bank("prompt_coherence").compute(
        predictions=s.texts, references=[item["prompt_text"] for item in s.items], per_example=True
    )
    s.out["coherence"] = float(coherence["coherence"])
    s.ci["coherence"] = _bootstrap_mean(coherence["per_example"]["coherence"], s.resamples)


def _score_mauve(s: _Scoring) -> None:
    """MAUVE against the items' `reference` texts; none with fewer than 10 rows or a missing reference."""
    references = [item.get("reference", "") for item in s.items]
    if len(s.rows) >= 10 and all(references):
        s.out["mauve"] = float(s.bank("mauve").compute(predictions=s.texts, references=references)["mauve"])


def _score_generation_length(s: _Scoring) -> None:
    s.out["mean_tokens"] = float(np.mean([r["n_tokens"] for r in s.rows]))


def _score_qa_accuracy(s: _Scoring) -> None:
    """Accuracy against the gold aliases, a divergence stop counting as an abstention; each row gets `correct`
    (right and not an abstention) and `answer_correct` (right as written, the label of detection)."""
    abstained = [r.get("stop_reason") == "divergence" for r in s.rows]
    references = [list(item["answers"]) for item in s.items]
    qa = s.bank("qa_accuracy")
    values = qa.compute(predictions=s.texts, references=references, abstained=abstained, per_example=True)
    for key in ("accuracy", "exact_match", "abstention_rate", "answered_accuracy"):
        s.out[key] = float(values[key])
    per = values["per_example"]
    as_written = qa.compute(predictions=s.texts, references=references, per_example=True)["per_example"]["correct"]
    for row, correct, right in zip(s.rows, per["correct"], as_written):
        row["correct"] = bool(correct)
        row["answer_correct"] = bool(right)
    s.ci["accuracy"] = _bootstrap_mean([float(x) for x in per["correct"]], s.resamples)
    s.ci["abstention_rate"] = _bootstrap_mean([float(x) for x in per["abstained"]], s.resamples)
    s.labels = as_written


def _score_truthfulqa_similarity(s: _Scoring) -> None:
    """TruthfulQA's truthful rate and margin; a row is right (`correct`, `answer_correct`) when its margin is > 0."""
    values = s.bank("truthfulqa_similarity").compute(
        predictions=s.texts,
        correct_answers=[list(item["correct_answers"]) for item in s.items],
        incorrect_answers=[list(item["incorrect_answers"]) for item in s.items],
        per_example=True,
    )
    s.out["truthful_rate"] = float(values["truthful_rate"])
    s.out["truthful_diff"] = float(values["truthful_diff"])
    diffs = values["per_example"]["diff"]
    for row, diff in zip(s.rows, diffs):
        row["correct"] = row["answer_correct"] = bool(diff > 0)
    s.ci["truthful_rate"] = _bootstrap_mean([float(d > 0) for d in diffs], s.resamples)
    s.ci["truthful_diff"] = _bootstrap_mean(diffs, s.resamples)
    s.labels = [d > 0 for d in diffs]


def _score_selective_prediction(s: _Scoring) -> None:
    """Detection of wrong answers by every signal ([`_score_detection`]) and ICP's own abstention against the
    best plain signal at the same coverage ([`_score_selective`]), on the labels a correctness metric set."""
    if s.labels is None:  # pragma: no cover - check_metric_list refuses such a list
        raise ValueError(f"Task {s.task.name!r}: `selective_prediction` needs a correctness metric before it.")
    _score_detection(s.bank, s.rows, s.labels, s.resamples, s.out, s.ci)
    _score_selective(s.rows, s.labels, s.resamples, s.out, s.ci)


def uncertainties(rows: list[dict], name: str) -> list[float] | None:
    """Signal `name` of every row as an uncertainty (higher = less confident), or None when a row lacks it.
    A row that produced nothing has NaN signals: it counts as the most uncertain (so does an empty answer
    for `answer_length`).

    Example:
        >>> uncertainties([{"mean_max_prob": 0.9}, {"mean_max_prob": float("nan")}], "max_prob")
        [-0.9, 0.09999999999999998]
        >>> uncertainties([{"n_tokens": 3}, {"n_tokens": 7}, {"n_tokens": 0}], "answer_length")
        [3.0, 7.0, 8.0]
    """
    key, sign = SIGNALS[name]
    if not all(key in r for r in rows):
        return None
    values = [sign * r[key] if not (name == "answer_length" and r[key] == 0) else math.nan for r in rows]
    worst = max((u for u in values if math.isfinite(u)), default=0.0) + 1.0
    return [u if math.isfinite(u) else worst for u in values]


def _score_detection(bank, rows, correct, resamples, out, ci) -> None:
    """`auroc_<signal>` and `prr_<signal>` of every signal the rows carry, a bootstrap interval of each AUROC,
    and each AUROC's paired difference from the best plain signal's ([`_paired_against_best_plain`]).
    The intervals use the first half of `resamples` (the same resamples for every signal)."""
    detector = bank("selective_prediction")
    auroc = bank.module("selective_prediction").auroc
    labels = np.asarray([int(c) for c in correct])
    used = resamples[: max(1, len(resamples) // 2)]
    per_resample: dict[str, list[float]] = {}
    for name in SIGNALS:
        uncertainty = uncertainties(rows, name)
        if uncertainty is None:
            continue
        values = detector.compute(uncertainty=uncertainty, correct=labels.tolist())
        out[f"auroc_{name}"] = float(values["auroc"])
        out[f"prr_{name}"] = float(values["prr"])
        u = np.asarray(uncertainty, dtype=float)
        samples = []
        for idx in used:
            sample = labels[idx]
            samples.append(float(auroc(u[idx], sample)) if 0 < sample.sum() < len(sample) else math.nan)
        per_resample[name] = samples
        ci[f"auroc_{name}"] = _interval(samples)
    _paired_against_best_plain(out, ci, per_resample)


def _paired_against_best_plain(out: dict, ci: dict, per_resample: dict[str, list[float]]) -> None:
    """`auroc_diff_<signal>` = AUROC(signal) - AUROC(best plain signal) for every signal with an AUROC, with a
    paired 95 % interval (the differences on the same resampled answers, resamples where either AUROC is
    undefined left out); `best_plain` (its name) and `best_plain_auroc`. The best plain signal is the plain
    signal with the highest AUROC on all the answers; its own difference is 0 with interval [0, 0].

    Args:
        out (`dict`): the task's values, with `auroc_<signal>`; gets the new keys.
        ci (`dict`): the task's intervals; gets `auroc_diff_<signal>`.
        per_resample (`dict[str, list[float]]`): each signal's AUROC on each resample (NaN where undefined),
            the resamples in the same order for every signal.

    Example:
        >>> out = {"auroc_icp_F": 0.8, "auroc_mean_entropy": 0.7, "auroc_max_prob": 0.6}
        >>> ci = {}
        >>> samples = {"icp_F": [0.8, 0.9], "mean_entropy": [0.7, 0.7], "max_prob": [0.5, 0.6]}
        >>> _paired_against_best_plain(out, ci, samples)
        >>> out["best_plain"], out["best_plain_auroc"], round(out["auroc_diff_icp_F"], 3)
        ('mean_entropy', 0.7, 0.1)
        >>> [round(x, 3) for x in ci["auroc_diff_icp_F"]], ci["auroc_diff_mean_entropy"]
        ([0.103, 0.198], [0.0, 0.0])
        >>> round(out["auroc_diff_max_prob"], 3)
        -0.1
    """
    plain = [s for s in PLAIN_SIGNALS if f"auroc_{s}" in out and math.isfinite(out[f"auroc_{s}"])]
    if not plain:
        return
    best = max(plain, key=lambda s: out[f"auroc_{s}"])
    out["best_plain"] = best
    out["best_plain_auroc"] = out[f"auroc_{best}"]
    if f"auroc_{best}" in ci:
        ci["best_plain_auroc"] = ci[f"auroc_{best}"]
    for name in SIGNALS:
        if f"auroc_{name}" not in out:
            continue
        out[f"auroc_diff_{name}"] = out[f"auroc_{name}"] - out[f"auroc_{best}"]
        pairs = [a - b for a, b in zip(per_resample.get(name, []), per_resample.get(best, []))]
        ci[f"auroc_diff_{name}"] = _interval([d for d in pairs if math.isfinite(d)])


def most_confident(uncertainty, k: int) -> np.ndarray:
    """Weights that answer the `k` most confident rows (lowest uncertainty): 1 for a row answered, 0 for one
    not. Rows tied at the cut share what is left equally (the expectation over random tie-breaking, as the
    `selective_prediction` metric's risk–coverage curve keeps ties), so the weights always sum to `k`.

    Args:
        uncertainty (sequence of `float`): per row, higher = less confident (finite).
        k (`int`): how many rows to answer, 0 to `len(uncertainty)`.

    Returns:
        `np.ndarray` of shape `(len(uncertainty),)`: the weights, each in [0, 1], summing to `k`.

    Example:
        >>> most_confident([0.3, 0.1, 0.9, 0.2], 2).tolist()
        [0.0, 1.0, 0.0, 1.0]
        >>> most_confident([1, 2, 2, 2], 2).tolist()  # one of the three tied rows: a third each
        [1.0, 0.3333333333333333, 0.3333333333333333, 0.3333333333333333]
    """
    u = np.asarray(uncertainty, dtype=float)
    if not 0 <= k <= len(u):
        raise ValueError(f"`k` (={k!r}) must be between 0 and the number of rows ({len(u)}).")
    weights = np.zeros(len(u))
    if k == 0:
        return weights
    cut = np.sort(u, kind="mergesort")[k - 1]
    weights[u < cut] = 1.0
    tied = u == cut
    weights[tied] = (k - (u < cut).sum()) / tied.sum()
    return weights


def same_coverage_comparison(answered, uncertainty, correct, resamples) -> tuple[dict, dict]:
    """ICP's own abstention against thresholding a signal at the same coverage, paired over resampled rows.

    ICP answers the rows in `answered` (it did not stop them on a loop or divergence); the threshold answers
    as many rows, the most confident by `uncertainty` ([`most_confident`]). Both are scored on the same
    labels (whether each answer, as written, is right). In every resample of rows, k is the number ICP
    answered *in that resample* and the threshold answers that many of the resampled rows, so the
    difference's interval is paired.

    Args:
        answered (sequence of `bool`): per row, whether ICP answered (did not abstain).
        uncertainty (sequence of `float`): per row, the signal as an uncertainty (higher = less confident).
        correct (sequence of `bool`): per row, whether the answer is right.
        resamples (`np.ndarray` of shape `(n_bootstrap, n)`): row indices of each bootstrap resample.

    Returns:
        `(values, intervals)`: `selective_coverage` (share ICP answered), `selective_icp_accuracy` (accuracy on
        the rows ICP answered), `selective_threshold_accuracy` (accuracy on the as many most confident rows)
        and `selective_diff` (ICP minus threshold), NaN when ICP answered nothing; each with a 95 %
        bootstrap interval.

    Example:
        >>> import numpy as np
        >>> answered = [True, True, False, True]            # ICP abstained on row 2 ...
        >>> uncertainty = [0.1, 0.9, 0.2, 0.3]              # ... the signal would drop row 1 instead
        >>> correct = [True, False, True, True]
        >>> values, ci = same_coverage_comparison(answered, uncertainty, correct, np.zeros((0, 4), dtype=int))
        >>> [round(values[f"selective_{key}"], 3) for key in ("coverage", "icp_accuracy", "threshold_accuracy")]
        [0.75, 0.667, 1.0]
        >>> round(values["selective_diff"], 3)
        -0.333
    """
    a = np.asarray(answered, dtype=bool)
    u = np.asarray(uncertainty, dtype=float)
    c = np.asarray(correct, dtype=float)
    if not len(a) == len(u) == len(c):
        raise ValueError(f"`answered`, `uncertainty` and `correct` must be aligned, got {len(a)}, {len(u)}, {len(c)}.")

    def one(idx) -> tuple[float, float, float, float]:
        ai, ui, ci_ = a[idx], u[idx], c[idx]
        k = int(ai.sum())
        if k == 0:
            return 0.0, math.nan, math.nan, math.nan
        icp = float(ci_[ai].mean())
        threshold = float((most_confident(ui, k) * ci_).sum() / k)
        return k / len(idx), icp, threshold, icp - threshold

    keys = ("selective_coverage", "selective_icp_accuracy", "selective_threshold_accuracy", "selective_diff")
    values = dict(zip(keys, one(np.arange(len(a))))) if len(a) else dict.fromkeys(keys, math.nan)
    samples = [one(idx) for idx in resamples]
    intervals = {key: _interval([s[i] for s in samples]) for i, key in enumerate(keys)}
    return values, intervals


def _score_selective(rows, correct, resamples, out, ci) -> None:
    """ICP's abstention (its loop and divergence stops) against the best plain signal at the same coverage."""
    best = out.get("best_plain")
    uncertainty = uncertainties(rows, best) if best else None
    if uncertainty is None:
        return
    answered = [r.get("stop_reason") not in ICP_ABSTAIN_STOPS for r in rows]
    values, intervals = same_coverage_comparison(answered, uncertainty, correct, resamples)
    out.update(values)
    ci.update(intervals)


@dataclass(frozen=True)
class Metric:
    """A metric a task's `metric_list` may name: how it is scored and what it writes.

    Args:
        score (`Callable`): writes the metric's values (and intervals) for one decoder on one task.
        higher_is_better (`dict[str, bool | None]`): every result key it writes, each with whether higher is
            better (`None`: neither, a description such as `mean_tokens`). A key `k` also stands for the keys
            `k_<signal>` (`auroc` for `auroc_icp_F`), as [`bench.results.direction`] reads them.
        labels (`str`, *optional*): `"gives"` when it sets whether each answer is right, `"needs"` when it
            reads that (so a metric that gives the labels must come before it in the list).
        module (`str`, *optional*): the `eval/metrics/<slug>` it computes with, if any.
    """

    score: Callable[[_Scoring], None]
    higher_is_better: dict[str, bool | None]
    labels: str | None = None
    module: str | None = None


#: The metrics a task may list, by the name its `metric_list` uses.
METRICS: dict[str, Metric] = {
    "repetition": Metric(
        _score_repetition,
        {"rep_2": False, "rep_3": False, "rep_4": False, "diversity": True, "distinct_2": True, "distinct_3": True},
        module="repetition",
    ),
    "loop_rate": Metric(_score_loop_rate, {"loop_rate": False, "loop_at_limit_rate": False}, module="loop_rate"),
    "prompt_coherence": Metric(_score_prompt_coherence, {"coherence": True}, module="prompt_coherence"),
    "mauve": Metric(_score_mauve, {"mauve": True}, module="mauve"),
    "generation_length": Metric(_score_generation_length, {"mean_tokens": None}),
    "qa_accuracy": Metric(
        _score_qa_accuracy,
        {"accuracy": True, "exact_match": True, "abstention_rate": False, "answered_accuracy": True},
        labels="gives",
        module="qa_accuracy",
    ),
    "truthfulqa_similarity": Metric(
        _score_truthfulqa_similarity,
        {"truthful_rate": True, "truthful_diff": True},
        labels="gives",
        module="truthfulqa_similarity",
    ),
    "selective_prediction": Metric(
        _score_selective_prediction,
        {
            "auroc": True,  # auroc_<signal> and auroc_diff_<signal>
            "prr": True,
            "best_plain": None,
            "best_plain_auroc": True,
            "selective_coverage": None,
            "selective_icp_accuracy": True,
            "selective_threshold_accuracy": True,
            "selective_diff": True,
        },
        labels="needs",
        module="selective_prediction",
    ),
}


def get_metric(name: Any, task: str) -> Metric:
    """The registry's metric `name`, for task `task`'s metric list.

    Raises:
        `ValueError`: naming the task, the unknown metric and the registered ones.

    Example:
        >>> get_metric("loop_rate", "loops_webtext").higher_is_better["loop_rate"]
        False
        >>> get_metric("bleu", "nq_open")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Task 'nq_open': `metric_list` names metric 'bleu', which is not registered; allowed: ...
    """
    if not isinstance(name, str) or name not in METRICS:
        raise ValueError(
            f"Task {task!r}: `metric_list` names metric {name!r}, which is not registered; "
            f"allowed: {', '.join(sorted(METRICS))}."
        )
    return METRICS[name]


def check_metric_list(task: str, metric_list: Any) -> None:
    """Checks a task's `metric_list` against the registry: every entry a dict naming a registered `metric`, its
    `keys` a non-empty list of that metric's keys, its optional `higher_is_better` a bool, and a metric that
    needs the answers' labels after one that gives them.

    Args:
        task (`str`): the task's name (for the errors).
        metric_list (`list[dict]`): the YAML's `metric_list`.

    Raises:
        `ValueError`: naming the task, the entry and what is allowed.

    Example:
        >>> check_metric_list("t", [{"metric": "qa_accuracy", "keys": ["accuracy"]}])
        >>> check_metric_list("t", [{"metric": "qa_accuracy", "keys": ["bleu"]}])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Task 't': metric 'qa_accuracy' has no key(s) ['bleu']; its keys: ['accuracy', 'exact_match', ...].
    """
    if not isinstance(metric_list, list) or not metric_list:
        raise ValueError(f"Task {task!r}: `metric_list` (={metric_list!r}) must be a non-empty list of metrics.")
    labelled = False
    for entry in metric_list:
        if not isinstance(entry, dict):
            raise ValueError(f"Task {task!r}: a `metric_list` entry (={entry!r}) must be a dict with `metric`, `keys`.")
        name = entry.get("metric")
        metric = get_metric(name, task)
        _check_entry_keys(task, name, metric, entry)
        if metric.labels == "needs" and not labelled:
            givers = sorted(n for n, m in METRICS.items() if m.labels == "gives")
            raise ValueError(
                f"Task {task!r}: metric {name!r} scores against whether each answer is right, which a metric listed "
                f"before it decides; list one of {givers} first."
            )
        labelled = labelled or metric.labels == "gives"


def _check_entry_keys(task: str, name: str, metric: Metric, entry: dict) -> None:
    keys = entry.get("keys")
    if not isinstance(keys, list) or not keys:
        raise ValueError(f"Task {task!r}: metric {name!r} needs `keys`, a non-empty list; got {keys!r}.")
    unknown = [k for k in keys if k not in metric.higher_is_better]
    if unknown:
        raise ValueError(
            f"Task {task!r}: metric {name!r} has no key(s) {unknown}; its keys: {list(metric.higher_is_better)}."
        )
    said = entry.get("higher_is_better")
    if said is not None and not isinstance(said, bool):
        raise ValueError(f"Task {task!r}: metric {name!r}'s `higher_is_better` (={said!r}) must be true or false.")


def higher_is_better(task: str, metric_list: list[dict]) -> dict[str, bool]:
    """Key -> whether higher is better, for every key of a task's `metric_list`: the entry's own
    `higher_is_better` where it states one, else the registry's direction for the key. Keys with neither (a
    description, such as `mean_tokens`) are left out.

    Example:
        >>> higher_is_better("t", [{"metric": "qa_accuracy", "keys": ["accuracy", "abstention_rate"]},
        ...                        {"metric": "generation_length", "keys": ["mean_tokens"]}])
        {'accuracy': True, 'abstention_rate': False}
    """
    out: dict[str, bool] = {}
    for entry in metric_list:
        registered = get_metric(entry["metric"], task).higher_is_better
        for key in entry["keys"]:
            said = entry.get("higher_is_better", registered.get(key))
            if said is not None:
                out[key] = bool(said)
    return out


def score_task(
    task: Any, rows: list[dict], items: list[dict], bank: MetricBank, n_bootstrap: int = 200, seed: int = 0
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Scores one decoder's rows on one task, on the metrics its `metric_list` names ([`METRICS`]), in that order.

    Args:
        task ([`Task`]): the task (its `metric_list` decides the metrics).
        rows (`list[dict]`): the generations, in the order of `items`.
        items (`list[dict]`): the task's examples.
        bank ([`MetricBank`]): the loaded metrics.
        n_bootstrap (`int`, *optional*, defaults to 200): bootstrap resamples for the intervals (0: none).
        seed (`int`, *optional*, defaults to 0): the bootstrap's seed.

    Returns:
        `(values, intervals)`: metric -> number (`best_plain` names a signal), and metric -> [low, high]
        (95 %), with `n`, `stopped_loop` and `stopped_divergence` whatever the list. A correctness metric
        (`qa_accuracy`, `truthfulqa_similarity`) also gives each row `correct` (a bool: right and not an
        abstention, as `accuracy` counts it) and `answer_correct` (whether the answer as written is right,
        whatever the decoder's stop; the label of detection and selective prediction).

    Raises:
        `ValueError`: when `rows` and `items` differ in length, or the list names a metric the registry lacks.

    Example:
        >>> from types import SimpleNamespace
        >>> task = SimpleNamespace(name="toy", metric_list=[{"metric": "generation_length", "keys": ["mean_tokens"]}])
        >>> rows = [{"text": "a b", "n_tokens": 2, "stop_reason": "eos"},
        ...         {"text": "c", "n_tokens": 1, "stop_reason": "loop"}]
        >>> score_task(task, rows, [{}, {}], MetricBank(), n_bootstrap=0)
        ({'n': 2.0, 'mean_tokens': 1.5, 'stopped_loop': 0.5, 'stopped_divergence': 0.0}, {})
    """
    if len(rows) != len(items):
        raise ValueError(f"{len(rows)} generations for {len(items)} examples of task {task.name!r}.")
    check_metric_list(task.name, task.metric_list)
    metrics = [METRICS[name] for name in dict.fromkeys(entry["metric"] for entry in task.metric_list)]
    scoring = _Scoring(task, rows, items, bank, _resamples(len(rows), n_bootstrap, seed))
    for metric in metrics:
        metric.score(scoring)
    stops = [r.get("stop_reason", "eos") for r in rows]
    for reason in ("loop", "divergence"):
        scoring.out[f"stopped_{reason}"] = stops.count(reason) / len(stops) if stops else 0.0
    return scoring.out, scoring.ci


def tuning_score(task: Any, values: dict[str, float], human: dict[str, float] | None = None) -> tuple:
    """The dev-split objective of `task`, as a sortable tuple (higher is better).

    - `objective: coherence, constraint: diversity_vs_human, ratio: r`: the most coherent setting whose
      diversity is at least r × the human references' diversity; when none qualifies, the most diverse.
    - otherwise: the named metric (`accuracy`, `truthful_rate`), higher is better.

    Example:
        >>> from types import SimpleNamespace
        >>> t = SimpleNamespace(tuning={"objective": "coherence", "constraint": "diversity_vs_human", "ratio": 0.9})
        >>> tuning_score(t, {"coherence": 0.6, "diversity": 0.5}, {"diversity": 0.9})
        (0, 0.5)
        >>> tuning_score(t, {"coherence": 0.5, "diversity": 0.85}, {"diversity": 0.9})
        (1, 0.5)
    """
    objective = task.tuning.get("objective")
    if objective is None:
        raise ValueError(f"Task {getattr(task, 'name', '?')!r} has no `tuning.objective`.")
    if task.tuning.get("constraint") == "diversity_vs_human":
        if human is None:
            raise ValueError("The diversity constraint needs the human references' diversity (`human`).")
        floor = float(task.tuning.get("ratio", 0.9)) * human["diversity"]
        if values["diversity"] >= floor:
            return (1, values[objective])
        return (0, values["diversity"])
    value = values[objective]
    return (1, value if math.isfinite(value) else -math.inf)
