"""Scoring a decoder's generations on a task with the suite's `evaluate` metrics, with bootstrap intervals.

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
from pathlib import Path
from typing import Any

import numpy as np

from .tasks import QA_SUITES

__all__ = [
    "ICP_ABSTAIN_STOPS",
    "METRIC_DIR",
    "PLAIN_SIGNALS",
    "SIGNALS",
    "MetricBank",
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


def _score_text_quality(bank, task, rows, items, resamples, out, ci) -> None:
    texts = [r["text"] for r in rows]
    values = bank("repetition").compute(predictions=texts, per_example=True)
    for key in ("rep_2", "rep_3", "rep_4", "diversity", "distinct_2", "distinct_3"):
        out[key] = float(values[key])
    # rep-n is a corpus ratio: resample generations and recompute it from their n-gram counts.
    per = {key: np.asarray(v, dtype=float) for key, v in values["per_example"].items()}
    rep = {n: [] for n in (2, 3, 4)}
    for idx in resamples:
        for n in rep:
            total = per[f"total_{n}"][idx].sum()
            rep[n].append(100.0 * (1.0 - per[f"unique_{n}"][idx].sum() / total) if total else 0.0)
    if len(resamples):
        ci["rep_4"] = _interval(rep[4])
        ci["diversity"] = _interval(list(np.prod([1.0 - np.asarray(rep[n]) / 100.0 for n in rep], axis=0)))

    loops = bank("loop_rate").compute(
        predictions=[r["tokens"] for r in rows], reached_limit=[r["reached_limit"] for r in rows], per_example=True
    )
    out["loop_rate"] = float(loops["loop_rate"])
    out["loop_at_limit_rate"] = float(loops["loop_at_limit_rate"])
    ci["loop_rate"] = _bootstrap_mean([float(x) for x in loops["per_example"]["looped"]], resamples)

    coherence = bank("prompt_coherence").compute(
        predictions=texts, references=[item["prompt_text"] for item in items], per_example=True
    )
    out["coherence"] = float(coherence["coherence"])
    ci["coherence"] = _bootstrap_mean(coherence["per_example"]["coherence"], resamples)

    references = [item.get("reference", "") for item in items]
    if len(rows) >= 10 and all(references):
        out["mauve"] = float(bank("mauve").compute(predictions=texts, references=references)["mauve"])
    out["mean_tokens"] = float(np.mean([r["n_tokens"] for r in rows]))


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


def score_task(
    task: Any, rows: list[dict], items: list[dict], bank: MetricBank, n_bootstrap: int = 200, seed: int = 0
) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Scores one decoder's rows on one task.

    Args:
        task ([`Task`]): the task (its suite decides the metrics).
        rows (`list[dict]`): the generations, in the order of `items`.
        items (`list[dict]`): the task's examples.
        bank ([`MetricBank`]): the loaded metrics.
        n_bootstrap (`int`, *optional*, defaults to 200): bootstrap resamples for the intervals (0: none).
        seed (`int`, *optional*, defaults to 0): the bootstrap's seed.

    Returns:
        `(values, intervals)`: metric -> number (`best_plain` names a signal), and metric -> [low, high]
        (95 %). On the hallucination suites each row also gets `correct` (a bool: right and not an
        abstention, as `accuracy` counts it) and `answer_correct` (whether the answer as written is right,
        whatever the decoder's stop; the label of detection and selective prediction).
    """
    if len(rows) != len(items):
        raise ValueError(f"{len(rows)} generations for {len(items)} examples of task {task.name!r}.")
    resamples = _resamples(len(rows), n_bootstrap, seed)
    out: dict[str, Any] = {"n": float(len(rows))}
    ci: dict[str, list[float]] = {}
    if task.suite in ("loops", "instruct"):
        _score_text_quality(bank, task, rows, items, resamples, out, ci)
    elif task.suite in QA_SUITES:
        abstained = [r.get("stop_reason") == "divergence" for r in rows]
        values = bank("qa_accuracy").compute(
            predictions=[r["text"] for r in rows],
            references=[list(item["answers"]) for item in items],
            abstained=abstained,
            per_example=True,
        )
        for key in ("accuracy", "exact_match", "abstention_rate", "answered_accuracy"):
            out[key] = float(values[key])
        per = values["per_example"]
        as_written = bank("qa_accuracy").compute(
            predictions=[r["text"] for r in rows],
            references=[list(item["answers"]) for item in items],
            per_example=True,
        )["per_example"]["correct"]
        for row, correct, right in zip(rows, per["correct"], as_written):
            row["correct"] = bool(correct)
            row["answer_correct"] = bool(right)
        ci["accuracy"] = _bootstrap_mean([float(x) for x in per["correct"]], resamples)
        ci["abstention_rate"] = _bootstrap_mean([float(x) for x in per["abstained"]], resamples)
        _score_detection(bank, rows, as_written, resamples, out, ci)
        _score_selective(rows, as_written, resamples, out, ci)
    elif task.suite == "truthfulqa":
        values = bank("truthfulqa_similarity").compute(
            predictions=[r["text"] for r in rows],
            correct_answers=[list(item["correct_answers"]) for item in items],
            incorrect_answers=[list(item["incorrect_answers"]) for item in items],
            per_example=True,
        )
        out["truthful_rate"] = float(values["truthful_rate"])
        out["truthful_diff"] = float(values["truthful_diff"])
        diffs = values["per_example"]["diff"]
        for row, diff in zip(rows, diffs):
            row["correct"] = row["answer_correct"] = bool(diff > 0)
        ci["truthful_rate"] = _bootstrap_mean([float(d > 0) for d in diffs], resamples)
        ci["truthful_diff"] = _bootstrap_mean(diffs, resamples)
        _score_detection(bank, rows, [d > 0 for d in diffs], resamples, out, ci)
        _score_selective(rows, [d > 0 for d in diffs], resamples, out, ci)
    else:  # pragma: no cover - Task validates the suite
        raise ValueError(f"Unknown suite {task.suite!r}.")
    stops = [r.get("stop_reason", "eos") for r in rows]
    for reason in ("loop", "divergence"):
        out[f"stopped_{reason}"] = stops.count(reason) / len(stops) if stops else 0.0
    return out, ci


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
