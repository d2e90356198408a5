"""Writes benchmark-suite results into a model card: its `model-index` results and a table in its body.

Reads results JSONs of `eval/run.py` (one per suite, or one `--suite all` run) and writes, for the decoders
named, the headline metric of every task they hold into the card of the model they ran on. The card's
calibration is left as it is (`icp.card_results`), and `icp calibrate` keeps the results when it rewrites
the card. The table states each run's git commit and command, so the card says which code it describes.

Run:
    python eval/card_results.py eval/results/head/loops.json eval/results/head/knowledge.json \\
        --card model_cards/smollm2-135m-instruct/README.md --decoders icp,greedy

`--metrics` picks the metrics (default: those of `DEFAULT_METRICS` a task has); `--print` prints the
section instead of writing the card.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.report import format_settings, short_hash  # noqa: E402
from bench.results import direction, load  # noqa: E402
from huggingface_hub import EvalResult  # noqa: E402

from icp.card_reader import read_front_matter  # noqa: E402
from icp.card_results import RESULTS_END, RESULTS_START, write_card_results  # noqa: E402
from icp.card_validation import card_model_id  # noqa: E402

DEFAULT_METRICS = (
    "coherence",
    "rep_4",
    "loop_rate",
    "mauve",
    "accuracy",
    "abstention_rate",
    "answered_accuracy",
    "truthful_rate",
    "auroc_icp_F",
)
"""The headline metric of each kind of task, in table order (open-ended text, then QA, then detection)."""


def _setting(run: dict[str, Any], task: str, decoder: str) -> str:
    """`decoder (name=value, ...)` when the run gave the decoder settings, else the decoder's name."""
    params = run.get("hyperparameters", {}).get(task, {}).get(decoder) or {}
    return f"{decoder} ({format_settings(params)})" if params else decoder


def _direction(run: dict[str, Any], task: str, metric: str) -> str:
    """↑ / ↓ from the task's `higher_is_better` (`bench.results.direction`), or nothing."""
    better = direction(run, task, metric)
    return "" if better is None else (" ↑" if better else " ↓")


def _value(run: dict[str, Any], task: str, decoder: str, metric: str) -> tuple[float, float | None]:
    """A decoder's value of `metric` on `task` and the half-width of its interval (`None` without one)."""
    lo_hi = run.get("intervals", {}).get(task, {}).get(decoder, {}).get(metric)
    value = float(run["results"][task][decoder][metric])
    return value, None if lo_hi is None else (lo_hi[1] - lo_hi[0]) / 2


def collect(
    runs: list[tuple[str, dict[str, Any]]], decoders: list[str], metrics: list[str], *, strict: bool = True
) -> list[dict[str, Any]]:
    """One row per (task, metric) of the runs: the value and interval half-width of each decoder.

    Args:
        runs (`list[tuple[str, dict]]`): (file name, results dict in the task layout) per run.
        decoders (`list[str]`): the decoders to report (a task that lacks one gets `None` for it).
        metrics (`list[str]`): the metrics to report where a task has them (for every decoder).
        strict (`bool`, *optional*, defaults to `True`): raise when a metric is in no task.

    Returns:
        `list[dict]`: rows with `task`, `suite`, `n`, `metric`, `direction`, `values` (decoder -> (value, ±) or `None`),
        `labels` (decoder -> name with its setting), `run` (index into `runs`).

    Raises:
        ValueError: a decoder no task has, or (`strict`) a metric no task has.

    Example:
        >>> run = {"results": {"t": {"icp": {"n": 4, "accuracy": 0.5}}},
        ...        "intervals": {"t": {"icp": {"accuracy": [0.4, 0.6]}}}, "tasks": {"t": {"suite": "qa", "n": 4}},
        ...        "higher_is_better": {"t": {"accuracy": True}}}
        >>> row = collect([("r.json", run)], ["icp"], ["accuracy"])[0]
        >>> row["metric"], row["values"]["icp"][0], round(row["values"]["icp"][1], 3)
        ('accuracy', 0.5, 0.1)
    """
    rows, seen, held = [], set(), set()
    for index, (_, run) in enumerate(runs):
        for task, by_decoder in run["results"].items():
            present = [d for d in decoders if d in by_decoder]
            held.update(present)
            for metric in metrics:
                have = [d for d in present if isinstance(by_decoder[d].get(metric), (int, float))]
                if not have:
                    continue
                seen.add(metric)
                info = run.get("tasks", {}).get(task, {})
                rows.append(
                    {
                        "task": task,
                        "suite": info.get("suite", ""),
                        "n": info.get("n", by_decoder[have[0]].get("n")),
                        "metric": metric,
                        "direction": _direction(run, task, metric),
                        "values": {d: _value(run, task, d, metric) if d in have else None for d in decoders},
                        "labels": {d: _setting(run, task, d) for d in have},
                        "run": index,
                    }
                )
    absent = [d for d in decoders if d not in held]
    if absent:
        raise ValueError(f"--decoders: no task of the files has results for {absent}.")
    unused = [m for m in metrics if m not in seen]
    if unused and strict:
        raise ValueError(f"--metrics: no task of the files has {unused} for any of {decoders}.")
    return rows


def eval_results(rows: list[dict[str, Any]], split: str) -> list[EvalResult]:
    """The `model-index` entries: one per (task, decoder, metric), the decoder in `metric_name` and `metric_config`.
    They carry no `source` (the Hub wants a URL with it); the results section names the runs and their commits."""
    results = []
    for row in rows:
        for decoder, value_half in row["values"].items():
            if value_half is None:
                continue
            value = value_half[0]
            results.append(
                EvalResult(
                    task_type="text-generation",
                    task_name=row["suite"] or None,
                    dataset_type=row["task"],
                    dataset_name=row["task"],
                    dataset_split=split,
                    metric_type=row["metric"],
                    metric_value=round(value, 4),
                    metric_name=f"{row['metric']} ({row['labels'][decoder]})",
                    metric_config=decoder,
                )
            )
    return results


def _cell(value_half: tuple[float, float | None] | None) -> str:
    if value_half is None:
        return "—"
    value, half = value_half
    return f"{value:.3f}" if half is None else f"{value:.3f} ± {half:.3f}"


def section(rows: list[dict[str, Any]], runs: list[tuple[str, dict[str, Any]]], decoders: list[str], split: str) -> str:
    """The Markdown results section, markers included: one table, then the runs it comes from."""
    lines = [
        RESULTS_START,
        "## Benchmark results",
        "",
        f"The benchmark suite's {split} splits (`eval/`, docs/benchmark.md) with this model, one seed; ± = 95 % "
        "bootstrap half-width; rep_4 in percent; — where a run has no such decoder. `icp` is ICP's default law. "
        "Written by `eval/card_results.py` from the runs listed below the table.",
        "",
        "| task | n | metric | " + " | ".join(decoders) + " |",
        "|---|---|---|" + "---|" * len(decoders),
    ]
    for row in rows:
        cells = [_cell(row["values"][d]) for d in decoders]
        lines.append(f"| {row['task']} | {row['n']} | {row['metric']}{row['direction']} | " + " | ".join(cells) + " |")
    settings = sorted({f"{label}" for row in rows for label in row["labels"].values() if "(" in label})
    if settings:
        lines += ["", "Settings (the tuned ones won on the dev splits): " + "; ".join(settings) + "."]
    lines += ["", "Runs:", ""]
    for name, run in runs:
        lines.append(
            f"- `{name}`: git {short_hash(run.get('git_hash', 'unknown'), 7)}, {str(run.get('date', ''))[:10]}, "
            f"{run.get('runtime_s', 0):.0f} s: `{run.get('command', '')}`"
        )
    lines.append(RESULTS_END)
    return "\n".join(lines)


def _check_model(card: Path, runs: list[tuple[str, dict[str, Any]]]) -> str:
    """The split the runs share; raises when a run is of another model than the card or of another split."""
    meta, _ = read_front_matter(card)
    model_id = card_model_id(meta)
    splits = set()
    for name, run in runs:
        model = run.get("config", {}).get("model")
        if model != model_id:
            raise SystemExit(f"card_results.py: {name} ran on {model!r}; the card {card} is for {model_id!r}.")
        splits.add(run.get("config", {}).get("split", "test"))
    if len(splits) != 1:
        raise SystemExit(f"card_results.py: the files mix splits {sorted(splits)}; give runs of one split.")
    return splits.pop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results JSONs of eval/run.py")
    parser.add_argument("--card", required=True, type=Path, help="the model card's README.md to write")
    parser.add_argument("--decoders", default="icp,greedy", help="comma-separated decoders (default: icp,greedy)")
    parser.add_argument(
        "--metrics", default=None, help="comma-separated metrics (default: those of DEFAULT_METRICS the tasks have)"
    )
    parser.add_argument("--print", action="store_true", help="print the section; do not write the card")
    args = parser.parse_args(argv)
    decoders = [d for d in args.decoders.split(",") if d]
    metrics = list(DEFAULT_METRICS) if args.metrics is None else [m for m in args.metrics.split(",") if m]
    if not decoders or not metrics:
        raise SystemExit(
            f"card_results.py: --decoders ({args.decoders!r}) and --metrics ({args.metrics!r}) need a name each."
        )
    if not args.card.is_file():
        raise SystemExit(f"card_results.py: --card {args.card} is not a file.")
    runs = []
    for path in args.results:
        try:
            runs.append((path, load(path)))
        except (OSError, ValueError, json.JSONDecodeError) as error:
            raise SystemExit(f"card_results.py: results file {path} cannot be read: {error}") from None
    split = _check_model(args.card, runs)
    try:
        rows = collect(runs, decoders, metrics, strict=args.metrics is not None)
    except ValueError as error:
        raise SystemExit(f"card_results.py: {error}") from None
    text = section(rows, runs, decoders, split)
    if args.print:
        print(text)
        return
    write_card_results(args.card, eval_results(rows, split), text)
    print(f"{args.card}: {len(rows)} rows, {len(rows) * len(decoders)} model-index metrics")


if __name__ == "__main__":
    main()
