"""Scoring a decoder's generations on a task with the suite's `evaluate` metrics, with bootstrap intervals.

Metrics are `evaluate` modules loaded by path from `eval/metrics/<slug>` (offline). Intervals are
95 % percentile bootstrap intervals over examples (`n_bootstrap` resamples, fixed seed); MAUVE, which
clusters the whole sample, gets none.

The hallucination suites also score how well each per-answer signal detects wrong answers (AUROC and
prediction-rejection ratio, via the `selective_prediction` metric), for ICP's trajectory F and U and
for the plain signals: mean token entropy, mean top probability, sequence log-likelihood (sum and per
token). Every signal is turned into an uncertainty (higher = less confident) first.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .tasks import QA_SUITES

__all__ = ["METRIC_DIR", "PLAIN_SIGNALS", "SIGNALS", "MetricBank", "score_task", "tuning_score", "uncertainties"]

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
    # Longer answers are less certain: for short answers the literature finds length a strong baseline.
    "answer_length": ("n_tokens", 1.0),
}

#: The plain signals (not ICP's), among which the best is the bar for F and U.
PLAIN_SIGNALS = ("mean_entropy", "max_prob", "seq_loglik", "mean_loglik", "min_loglik", "answer_length")


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
    A row that produced nothing has NaN signals: it counts as the most uncertain.

    Example:
        >>> uncertainties([{"mean_max_prob": 0.9}, {"mean_max_prob": float("nan")}], "max_prob")
        [-0.9, 0.09999999999999998]
    """
    key, sign = SIGNALS[name]
    if not all(key in r for r in rows):
        return None
    values = [sign * r[key] for r in rows]
    worst = max((u for u in values if math.isfinite(u)), default=0.0) + 1.0
    return [u if math.isfinite(u) else worst for u in values]


def _score_detection(bank, rows, correct, resamples, out, ci) -> None:
    detector = bank("selective_prediction")
    used = resamples[: max(1, len(resamples) // 2)]
    per_resample: dict[str, list[float]] = {}
    for name in SIGNALS:
        uncertainty = uncertainties(rows, name)
        if uncertainty is None:
            continue
        values = detector.compute(uncertainty=uncertainty, correct=[int(c) for c in correct])
        out[f"auroc_{name}"] = float(values["auroc"])
        out[f"prr_{name}"] = float(values["prr"])
        samples = []
        for idx in used:
            labels = [int(correct[i]) for i in idx]
            auroc = math.nan
            if 0 < sum(labels) < len(labels):
                auroc = float(detector.compute(uncertainty=[uncertainty[i] for i in idx], correct=labels)["auroc"])
            samples.append(auroc)
        per_resample[name] = samples
        ci[f"auroc_{name}"] = _interval(samples)
    _paired_against_best_plain(out, ci, per_resample)


def _paired_against_best_plain(out: dict, ci: dict, per_resample: dict[str, list[float]]) -> None:
    """`auroc_diff_<signal>`: each of ICP's signals' AUROC minus the best plain signal's, with a paired interval
    (the same resampled answers for both), and `best_plain_auroc`.

    Example:
        >>> out = {"auroc_icp_F": 0.8, "auroc_mean_entropy": 0.7, "auroc_max_prob": 0.6}
        >>> ci = {}
        >>> _paired_against_best_plain(out, ci, {"icp_F": [0.8, 0.9], "mean_entropy": [0.7, 0.7], "max_prob": [0.5, 0.6]})
        >>> round(out["auroc_diff_icp_F"], 3), out["best_plain_auroc"], [round(x, 3) for x in ci["auroc_diff_icp_F"]]
        (0.1, 0.7, [0.103, 0.198])
    """
    plain = [s for s in PLAIN_SIGNALS if f"auroc_{s}" in out and math.isfinite(out[f"auroc_{s}"])]
    if not plain:
        return
    best = max(plain, key=lambda s: out[f"auroc_{s}"])
    out["best_plain_auroc"] = out[f"auroc_{best}"]
    for name in ("icp_F", "icp_U"):
        if f"auroc_{name}" not in out:
            continue
        out[f"auroc_diff_{name}"] = out[f"auroc_{name}"] - out[f"auroc_{best}"]
        pairs = [a - b for a, b in zip(per_resample.get(name, []), per_resample.get(best, []))]
        ci[f"auroc_diff_{name}"] = _interval([d for d in pairs if math.isfinite(d)])


def score_task(
    task: Any, rows: list[dict], items: list[dict], bank: MetricBank, n_bootstrap: int = 200, seed: int = 0
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Scores one decoder's rows on one task.

    Args:
        task ([`Task`]): the task (its suite decides the metrics).
        rows (`list[dict]`): the generations, in the order of `items`.
        items (`list[dict]`): the task's examples.
        bank ([`MetricBank`]): the loaded metrics.
        n_bootstrap (`int`, *optional*, defaults to 200): bootstrap resamples for the intervals (0: none).
        seed (`int`, *optional*, defaults to 0): the bootstrap's seed.

    Returns:
        `(values, intervals)`: metric -> number, and metric -> [low, high] (95 %). On the hallucination
        suites each row also gets `correct` (a bool), for risk–coverage curves and later analysis.
    """
    if len(rows) != len(items):
        raise ValueError(f"{len(rows)} generations for {len(items)} examples of task {task.name!r}.")
    resamples = _resamples(len(rows), n_bootstrap, seed)
    out: dict[str, float] = {"n": float(len(rows))}
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
        for row, correct in zip(rows, per["correct"]):
            row["correct"] = bool(correct)
        ci["accuracy"] = _bootstrap_mean([float(x) for x in per["correct"]], resamples)
        ci["abstention_rate"] = _bootstrap_mean([float(x) for x in per["abstained"]], resamples)
        _score_detection(bank, rows, per["correct"], resamples, out, ci)
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
            row["correct"] = bool(diff > 0)
        ci["truthful_rate"] = _bootstrap_mean([float(d > 0) for d in diffs], resamples)
        ci["truthful_diff"] = _bootstrap_mean(diffs, resamples)
        _score_detection(bank, rows, [d > 0 for d in diffs], resamples, out, ci)
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
