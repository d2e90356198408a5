"""Does ICP's abstention keep accuracy and raise accuracy when answered? Paired over questions.

The targets of ICP's abstention on a QA task: accuracy (an abstention counts as not correct) at least
the baseline's minus one point, and accuracy on the questions it answered above the baseline's accuracy.
Both decoders answered the same questions, so each difference is bootstrapped over questions resampled
once for both (the suite's 95 % percentile interval).

Run:
    python eval/run.py --suite knowledge --decoders greedy,icp,icp_abstain --out outputs/knowledge_test.json
    python eval/abstention.py outputs/knowledge_test.examples.jsonl --a icp_abstain --b greedy
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired import aligned_rows  # noqa: E402


def abstention_differences(
    correct_a, answered_a, correct_b, n_bootstrap: int = 10_000, seed: int = 0
) -> dict[str, float]:
    """A's accuracy and answered accuracy against B's accuracy, with paired 95 % bootstrap intervals.

    Args:
        correct_a (sequence of `bool`): per question, whether A was right and did not abstain.
        answered_a (sequence of `bool`): per question, whether A answered (did not abstain).
        correct_b (sequence of `bool`): per question, whether B was right.
        n_bootstrap (`int`, *optional*, defaults to 10000): resamples of the questions.
        seed (`int`, *optional*, defaults to 0): the resampler's seed.

    Returns:
        `dict`: `n`, `accuracy_a`, `answered_accuracy_a`, `accuracy_b`, `coverage_a`, and for
        `accuracy_diff` and `answered_diff` (A's minus B's accuracy) the value and `_low`/`_high`.

    Example:
        >>> out = abstention_differences([1, 0, 1, 0], [1, 0, 1, 1], [1, 0, 1, 0], n_bootstrap=200)
        >>> out["accuracy_diff"], round(out["answered_diff"], 3), out["coverage_a"]
        (0.0, 0.167, 0.75)
    """
    a, answered, b = (np.asarray(x, dtype=float) for x in (correct_a, answered_a, correct_b))
    if not a.shape == answered.shape == b.shape or a.size < 2:
        raise ValueError(f"three equal-length sequences of at least 2 questions are needed, got {a.size}, "
                         f"{answered.size}, {b.size}.")
    if answered.sum() == 0:
        raise ValueError("`answered_a` is all False: A abstained on every question, so it has no answered accuracy.")
    idx = np.random.default_rng(seed).integers(0, a.size, (n_bootstrap, a.size))
    kept = answered[idx].sum(1)
    answered_acc = np.where(kept > 0, (a[idx] * answered[idx]).sum(1) / np.maximum(kept, 1), np.nan)
    draws = {"accuracy_diff": (a[idx] - b[idx]).mean(1), "answered_diff": answered_acc - b[idx].mean(1)}
    out = {
        "n": int(a.size),
        "accuracy_a": float(a.mean()),
        "answered_accuracy_a": float(a[answered > 0].mean()),
        "accuracy_b": float(b.mean()),
        "coverage_a": float(answered.mean()),
        "accuracy_diff": float(a.mean() - b.mean()),
        "answered_diff": float(a[answered > 0].mean() - b.mean()),
    }
    for key, values in draws.items():
        out[f"{key}_low"], out[f"{key}_high"] = (float(v) for v in np.nanpercentile(values, [2.5, 97.5]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("examples", help="an examples.jsonl written by eval/run.py (QA rows carry `correct`)")
    parser.add_argument("--a", default="icp_abstain", help="the decoder that abstains")
    parser.add_argument("--b", default="greedy", help="the baseline")
    parser.add_argument("--task", default="knowledge_countries")
    parser.add_argument("--bootstrap", type=int, default=10_000)
    args = parser.parse_args()
    rows = [json.loads(line) for line in Path(args.examples).read_text().splitlines() if line.strip()]
    rows_a, rows_b = aligned_rows(rows, args.task, args.a, args.b)
    if not rows_a:
        sys.exit(f"no questions of task {args.task!r} answered by both {args.a!r} and {args.b!r} in {args.examples}")
    out = abstention_differences(
        [r["correct"] for r in rows_a],
        [r.get("stop_reason") != "divergence" for r in rows_a],
        [r["correct"] for r in rows_b],
        n_bootstrap=args.bootstrap,
    )
    print(f"{args.examples}, task {args.task}, n = {out['n']}: {args.a} against {args.b}, paired over questions")
    print(f"coverage of {args.a}: {out['coverage_a']:.3f}")
    for label, key, value in (
        ("accuracy", "accuracy_diff", out["accuracy_a"]),
        ("answered accuracy", "answered_diff", out["answered_accuracy_a"]),
    ):
        print(
            f"{args.a} {label} {value:.3f} - {args.b} accuracy {out['accuracy_b']:.3f} = {out[key]:+.3f} "
            f"[{out[key + '_low']:+.3f}, {out[key + '_high']:+.3f}]"
        )


if __name__ == "__main__":
    main()
