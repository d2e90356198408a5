"""Checks the "make control win" targets (the three below) on suite results: met or not, with the numbers.

Reads one results JSON of `eval/run.py` per seed (the first is the full run; later ones may hold only
some decoders) and prints, per target and per task of the suites it names, the numbers it rests on and
MET / NOT MET. Results are keyed by task (files in the earlier suite layout are upgraded on reading):

1. Open-ended text (the tasks of `loops`, and of `instruct` for reference): ICP's coherence with the prompt is at
   least the best baseline's minus 0.01, and ICP's rep-4 and loop rate are at most half of those of
   every baseline whose coherence is at least that threshold (best - 0.01). With several seeds the
   check runs on each decoder's mean over the seeds it has, and the spread over seeds is printed.
2. QA (the tasks of `qa`, `knowledge`, `reading`, `grounded_qa`): ICP's accuracy is at least greedy's minus 1
   point, and with ICP's divergence stop as abstention, its accuracy on answered questions is above greedy's.
3. Detection (the tasks of those suites and `truthfulqa`): on ICP's own answers, the AUROC of trajectory F (or
   U) for wrong answers is at least 0.03 above the best plain signal (mean entropy, max-prob, sequence,
   mean and minimum token log-likelihood, answer length), with the paired interval of the difference;
   ICP's own abstention is printed against that signal at the same coverage.

Run:
    python eval/targets.py outputs/results.json
    python eval/targets.py outputs/results.json outputs/results_seed1.json outputs/results_seed2.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.results import load, tasks_of_suite, upgrade  # noqa: E402
from bench.scoring import PLAIN_SIGNALS as PLAIN  # noqa: E402
from bench.tasks import HALLUCINATION_SUITES, QA_SUITES  # noqa: E402

OPEN_ENDED = ("loops", "instruct")
DETECTION = HALLUCINATION_SUITES
MARGIN, AUROC_GAIN, QA_SLACK = 0.01, 0.03, 0.01


def _load(paths: list[str]) -> list[dict]:
    runs = []
    for path in paths:
        try:
            runs.append(load(path))
        except FileNotFoundError:
            raise SystemExit(f"targets.py: results file {path} does not exist.") from None
        except (ValueError, json.JSONDecodeError) as error:
            raise SystemExit(f"targets.py: results file {path} cannot be read: {error}") from None
    return runs


def seed_means(runs: list[dict], task: str, metric: str) -> dict[str, tuple[float, float, int]]:
    """Per decoder: mean of `metric` on `task` over the runs that have it, half the min-max spread, and the
    number of seeds.

    Args:
        runs (`list[dict]`): results dicts (either layout), one per seed.
        task (`str`): the task, e.g. `"loops_webtext"`.
        metric (`str`): the metric, e.g. `"coherence"`.

    Example:
        >>> tasks = {"t": {"suite": "loops"}}
        >>> runs = [{"results": {"t": {"icp": {"coherence": c}}}, "tasks": tasks} for c in (0.4, 0.5)]
        >>> seed_means(runs, "t", "coherence")["icp"]
        (0.45, 0.04999999999999999, 2)
    """
    values: dict[str, list[float]] = {}
    for run in map(upgrade, runs):
        for decoder, metrics in run.get("results", {}).get(task, {}).items():
            value = metrics.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                values.setdefault(decoder, []).append(float(value))
    return {d: (statistics.fmean(v), (max(v) - min(v)) / 2, len(v)) for d, v in values.items()}


def check_open_ended(runs: list[dict], task: str) -> bool | None:
    """Target 1 on `task` (an open-ended task, e.g. `"loops_webtext"`), over the seeds of `runs`; `None` when
    no run has ICP on it."""
    coherence = seed_means(runs, task, "coherence")
    if "icp" not in coherence:
        print(f"[{task}] no ICP results")
        return None
    rep4, loops = seed_means(runs, task, "rep_4"), seed_means(runs, task, "loop_rate")
    # Other ICP rows (e.g. `icp@5e4efc5` from eval/merge_results.py) are earlier ICPs, not baselines.
    baselines = {d: v for d, v in coherence.items() if not d.startswith("icp")}
    best_name = max(baselines, key=lambda d: baselines[d][0])
    best = baselines[best_name][0]
    threshold = best - MARGIN
    icp_c = coherence["icp"][0]
    peers = sorted((d for d, v in baselines.items() if v[0] >= threshold), key=lambda d: -baselines[d][0])
    print(f"[{task}] decoder: coherence (± half the seed range, seeds) | rep-4 % | loop rate")
    for d in ["icp", *peers]:
        c, spread, n = coherence[d]
        print(f"  {d:<20} {c:.3f} (± {spread:.3f}, {n}) | {rep4[d][0]:.3f} | {loops[d][0]:.3f}")
    coherent = icp_c >= threshold
    rep_ok = all(rep4["icp"][0] <= 0.5 * rep4[d][0] for d in peers)
    loop_ok = all(loops["icp"][0] <= 0.5 * loops[d][0] for d in peers)
    print(
        f"  coherence {icp_c:.3f} >= best baseline ({best_name}, {best:.3f}) - {MARGIN}: {_verdict(coherent)}; "
        f"rep-4 <= half of every baseline with coherence >= {threshold:.3f}: {_verdict(rep_ok)}; "
        f"loop rate likewise: {_verdict(loop_ok)}"
    )
    return coherent and rep_ok and loop_ok


def check_qa(run: dict, task: str) -> bool | None:
    """Target 2 on `task` (a task of a QA suite, e.g. `"knowledge_countries"`); `None` without ICP and greedy."""
    qa = upgrade(run).get("results", {}).get(task, {})
    if "icp" not in qa or "greedy" not in qa:
        print(f"[{task}] needs ICP and greedy results")
        return None
    icp, greedy = qa["icp"], qa["greedy"]
    accurate = icp["accuracy"] >= greedy["accuracy"] - QA_SLACK
    answered = icp.get("answered_accuracy", math.nan)
    greedy_answered = greedy.get("answered_accuracy", greedy["accuracy"])
    better = answered > greedy_answered
    n = icp.get("n", "?")
    print(
        f"[{task}] n = {n}: ICP accuracy {icp['accuracy']:.3f} vs greedy {greedy['accuracy']:.3f} (- {QA_SLACK}): "
        f"{_verdict(accurate)}; ICP answered accuracy {answered:.3f} (abstained {icp.get('abstention_rate', 0):.3f}) "
        f"vs greedy's {greedy_answered:.3f}: {_verdict(better)}"
    )
    return accurate and better


def _best_plain(values: dict) -> str | None:
    """The plain signal with the highest AUROC in `values` (one decoder's results on one task): the one the
    results name (`best_plain`), else the best of those it has (older files); None when it has none.

    Example:
        >>> _best_plain({"auroc_mean_entropy": 0.6, "auroc_answer_length": 0.7})
        'answer_length'
        >>> _best_plain({"best_plain": "max_prob"})
        'max_prob'
    """
    if isinstance(values.get("best_plain"), str):
        return values["best_plain"]
    plain = {s: values.get(f"auroc_{s}", math.nan) for s in PLAIN}
    finite = [s for s in PLAIN if isinstance(plain[s], (int, float)) and math.isfinite(plain[s])]
    return max(finite, key=plain.get) if finite else None


def _paired(values: dict, intervals: dict, key: str) -> str:
    """`+0.012 (paired 95 % [-0.030, +0.051])` for `key`, `n/a` when the results lack it."""
    if key not in values:
        return "n/a"
    lo, hi = intervals.get(key, [math.nan, math.nan])
    return f"{values[key]:+.3f} (paired 95 % [{lo:+.3f}, {hi:+.3f}])"


def check_detection(run: dict) -> bool | None:
    """Target 3 on every task of the `DETECTION` suites that has ICP results; `None` when none has.

    The bar is the best plain signal on ICP's answers, the new ones (least likely token, answer length)
    included; beside the verdict (on the point estimates) it prints each of F's and U's paired difference
    from that signal, and ICP's own abstention against the signal at the same coverage.
    """
    run = upgrade(run)
    verdicts = []
    for task in [t for suite in DETECTION for t in tasks_of_suite(run, suite)]:
        icp = run["results"][task].get("icp")
        if icp is None:
            continue
        intervals = run.get("intervals", {}).get(task, {}).get("icp", {}) or {}
        ours = max(icp.get("auroc_icp_F", math.nan), icp.get("auroc_icp_U", math.nan))
        best = _best_plain(icp)
        bar = icp.get(f"auroc_{best}", math.nan) if best else math.nan
        ok = ours >= bar + AUROC_GAIN
        verdicts.append(ok)
        print(
            f"[{task}] on ICP's answers: AUROC F {icp.get('auroc_icp_F', math.nan):.3f}, U "
            f"{icp.get('auroc_icp_U', math.nan):.3f}; best plain {best} {bar:.3f} (+{AUROC_GAIN}): {_verdict(ok)}; "
            f"F - {best} {_paired(icp, intervals, 'auroc_diff_icp_F')}; "
            f"U - {best} {_paired(icp, intervals, 'auroc_diff_icp_U')}"
        )
        if "selective_diff" in icp:
            print(
                f"  ICP's own abstention answers {icp.get('selective_coverage', math.nan):.3f} of the questions: "
                f"answered accuracy {icp.get('selective_icp_accuracy', math.nan):.3f} vs "
                f"{icp.get('selective_threshold_accuracy', math.nan):.3f} for as many by {best}; "
                f"difference {_paired(icp, intervals, 'selective_diff')}"
            )
    return all(verdicts) if verdicts else None


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("MET" if ok else "NOT MET")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval/targets.py", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results JSONs of eval/run.py, one per seed (full run first)")
    args = parser.parse_args(argv)
    runs = _load(args.results)
    seeds = [run.get("seeds") for run in runs]
    print(f"{len(runs)} run(s), seeds {seeds}, git {[run.get('git_hash', '?')[:10] for run in runs]}")
    open_ended = [t for suite in OPEN_ENDED for run in runs for t in tasks_of_suite(run, suite)]
    summary = {task: check_open_ended(runs, task) for task in dict.fromkeys(open_ended)}
    for task in [t for suite in QA_SUITES for t in tasks_of_suite(runs[0], suite)]:
        summary[task] = check_qa(runs[0], task)
    summary["detection"] = check_detection(runs[0])
    print("summary: " + ", ".join(f"{k} {_verdict(v)}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
