"""Paired comparison of two decoders on the same prompts: is one's coherence with the prompt really higher?

The suite's tables give each decoder a bootstrap interval of its own mean over prompts. Two decoders of
one run answered the *same* prompts, so the question "is A more coherent than B" is answered better by
resampling prompts once for both and bootstrapping the mean of the per-prompt differences, which
removes the prompts' own spread. This script reads a run's `examples.jsonl` (written beside its results
JSON by `eval/run.py`), recomputes each answer's coherence with the prompt (the suite's MiniLM metric),
and prints, per pair, the mean difference, its 95 % paired-bootstrap interval and the share of
resamples in which A was not ahead.

Run:
    python eval/run.py --suite loops --batch-size 64 --out outputs/loops.json   # writes outputs/loops.examples.jsonl
    python eval/paired.py outputs/loops.examples.jsonl --a icp --b min_p,dry,entropix
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.scoring import MetricBank, _interval, _resamples  # noqa: E402  (the suite's own bootstrap)


def paired_bootstrap(a, b, n_bootstrap: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Mean of the per-item differences a - b, with a 95 % percentile interval from resampling items.

    Args:
        a, b (sequences of `float`, same length): one score per item for each decoder, items aligned.
        n_bootstrap (`int`, *optional*, defaults to 10000): resamples.
        seed (`int`, *optional*, defaults to 0): seed of the resampling.

    Returns:
        `dict` with `n`, `mean_a`, `mean_b`, `difference`, `low`, `high` (the interval) and
        `share_not_ahead` (fraction of resamples whose mean difference is <= 0).

    Example:
        >>> out = paired_bootstrap([0.5, 0.6, 0.7, 0.8], [0.4, 0.5, 0.6, 0.7], n_bootstrap=200)
        >>> round(out["difference"], 6), round(out["low"], 6), out["share_not_ahead"]
        (0.1, 0.1, 0.0)
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"`a` and `b` must be 1-D and aligned, got shapes {a.shape} and {b.shape}")
    if len(a) < 2:
        raise ValueError(f"a paired bootstrap needs at least 2 items, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("`a` and `b` must be finite scores")
    if n_bootstrap < 1:
        raise ValueError(f"`n_bootstrap` must be >= 1, got {n_bootstrap}")
    diff = a - b
    means = diff[_resamples(len(diff), n_bootstrap, seed)].mean(axis=1)
    low, high = _interval(list(means))
    return {
        "n": int(len(diff)),
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "difference": float(diff.mean()),
        "low": float(low),
        "high": float(high),
        "share_not_ahead": float((means <= 0).mean()),
    }


def aligned_rows(rows: list[dict], task: str, a: str, b: str) -> tuple[list[dict], list[dict]]:
    """The rows of decoders `a` and `b` on `task`, paired by example id (ids both have), in id order.

    Rows are those of a run's `examples.jsonl`, each naming its `task` (and `suite`), so two tasks of one
    suite never mix.

    Example:
        >>> rows = [{"task": "t", "decoder": d, "id": i} for d in ("icp", "dry") for i in (1, 2)]
        >>> [len(side) for side in aligned_rows(rows, "t", "icp", "dry")]
        [2, 2]
    """
    if not any(r["task"] == task for r in rows):
        raise ValueError(f"`--task` (={task!r}) has no rows; tasks there: {sorted({r['task'] for r in rows})}")
    by = {name: {r["id"]: r for r in rows if r["task"] == task and r["decoder"] == name} for name in (a, b)}
    for name in (a, b):
        if not by[name]:
            known = sorted({r["decoder"] for r in rows if r["task"] == task})
            raise ValueError(f"decoder {name!r} has no rows on task {task!r}; decoders there: {known}")
    shared = sorted(set(by[a]) & set(by[b]))
    return [by[a][i] for i in shared], [by[b][i] for i in shared]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("examples", help="an examples.jsonl written by eval/run.py")
    parser.add_argument("--a", default="icp", help="the decoder that is claimed ahead")
    parser.add_argument("--b", default="min_p,dry", help="comma-separated decoders to compare it with")
    parser.add_argument("--task", default="loops_webtext")
    parser.add_argument("--bootstrap", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rows = [json.loads(line) for line in Path(args.examples).read_text().splitlines() if line.strip()]
    metric = MetricBank()("prompt_coherence")
    print(f"{args.examples}, task {args.task}: coherence with the prompt, paired over prompts")
    print(f"{'A':<10} {'B':<12} {'n':>4} {'A':>7} {'B':>7} {'A - B':>8}  {'95 % paired interval':<22} share A <= B")
    for b in args.b.split(","):
        rows_a, rows_b = aligned_rows(rows, args.task, args.a, b)
        scores = []
        for side in (rows_a, rows_b):
            out = metric.compute(
                predictions=[r["text"] for r in side], references=[r["prompt"] for r in side], per_example=True
            )
            scores.append(out["per_example"]["coherence"])
        result = paired_bootstrap(*scores, n_bootstrap=args.bootstrap, seed=args.seed)
        print(
            f"{args.a:<10} {b:<12} {result['n']:>4} {result['mean_a']:7.3f} {result['mean_b']:7.3f} "
            f"{result['difference']:+8.3f}  [{result['low']:+.3f}, {result['high']:+.3f}]{'':<6} "
            f"{result['share_not_ahead']:.4f}"
        )


if __name__ == "__main__":
    main()
