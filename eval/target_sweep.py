"""Does quality peak in the critical region? ICP steered toward a fixed target entropy, swept over a grid.

ICP runs with the seeds' entropy-feedback law (gain 0.3, T0 1, tracking off; `bench.ablations`'s
`icp_target`) toward each target entropy of `--targets` on the dev splits of `--tasks`, and each quality
measure is plotted against the target, with the model card's H* (the calibrated operating point) and
H_c (the entropy of steepest coherence loss) marked. If quality peaks near neither, the card's choice of
H* is not where quality is best.

Run:
    python eval/target_sweep.py --out outputs/target_sweep.json   # writes outputs/target_sweep.png too

Prints a table (measure against target, seed means) and writes the JSON and the PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ablation  # noqa: E402

DEFAULT_TARGETS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
DEFAULT_TASKS = ("loops_webtext", "instruct_wikitext", "knowledge_countries")
#: (task suite kind, measure, label, higher is better)
PANELS = {
    "text": [("coherence", "coherence with the prompt", True), ("rep_4", "rep-4 (%)", False)],
    "qa": [("correct", "accuracy", True)],
}


def card_entropies(model: str | None) -> dict[str, float]:
    """H* and H_c from the model card ICP loads for `model` (the default model's card by default).

    Example:
        >>> marks = card_entropies(None)
        >>> marks["H*"] < marks["H_c"]
        True
    """
    from icp.cards import find_card

    name = model or "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = find_card(name, required=True)
    return {"H*": float(card.target_entropy), "H_c": float(card.critical_entropy)}


def series(summary: dict, targets: list[float]) -> dict[str, dict[str, list[float]]]:
    """Per task and measure, the seed-mean value at each target (in `targets` order).

    Example:
        >>> s = {"t": {"icp_target@1.0": {"correct": {"mean": 0.4}}, "icp_target@2.0": {"correct": {"mean": 0.3}}}}
        >>> series(s, [1.0, 2.0])
        {'t': {'correct': [0.4, 0.3]}}
    """
    out: dict[str, dict[str, list[float]]] = {}
    for task, by_variant in summary.items():
        first = by_variant[f"icp_target@{targets[0]}"]
        for key in first:
            if key in ("coherence", "rep_4", "looped", "correct", "icp_T"):
                out.setdefault(task, {})[key] = [by_variant[f"icp_target@{t}"][key]["mean"] for t in targets]
    return out


def plot(curves: dict, targets: list[float], marks: dict[str, float], path: Path) -> Path:
    """One panel per (task, measure): the measure against the target, H* and H_c as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (task, key, label)
        for task, measures in curves.items()
        for key, label, _ in PANELS["qa" if "correct" in measures else "text"]
        if key in measures
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    for ax, (task, key, label) in zip(axes[0], panels):
        ax.plot(targets, curves[task][key], "o-", color="C0")
        for (name, value), color in zip(marks.items(), ("C2", "C3")):
            ax.axvline(value, color=color, linestyle="--", linewidth=1, label=f"{name} = {value:.2f}")
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("target entropy (nats)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval/target_sweep.py", description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default=",".join(str(t) for t in DEFAULT_TARGETS))
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--cache-dir", default="outputs/cache")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--out", default="outputs/target_sweep.json")
    args = parser.parse_args(argv)
    try:
        targets = [float(t) for t in args.targets.split(",") if t.strip()]
    except ValueError:
        parser.error(f"`--targets` (={args.targets!r}) has to be comma-separated numbers.")
    if not targets or min(targets) <= 0:
        parser.error(f"`--targets` (={args.targets!r}) has to name target entropies > 0.")
    start = time.time()
    variants = [f"icp_target@{t}" for t in targets]
    inner = ablation.build_parser().parse_args(
        ["--tasks", args.tasks, "--variants", ",".join(variants), "--reference", variants[0], "--split", "dev",
         "--seeds", args.seeds, "--cache-dir", args.cache_dir, "--bootstrap", "0"]
        + (["--limit", str(args.limit)] if args.limit else [])
        + (["--model", args.model] if args.model else [])
        + (["--max-new-tokens", str(args.max_new_tokens)] if args.max_new_tokens else [])
        + (["--no-cache"] if args.no_cache else [])
    )  # fmt: skip
    ablation.check_args(parser, inner)
    run = ablation.run_variants(inner)
    summary = ablation.summarise(run["measures"], variants[0], 0)
    curves = series(summary, targets)
    marks = card_entropies(args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = plot(curves, targets, marks, out.with_suffix(".png"))
    command = "python eval/target_sweep.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out.write_text(json.dumps({"command": command, "targets": targets, "marks": marks, "curves": curves}, indent=1))
    print(f"`{command}`; card: H* = {marks['H*']:.2f}, H_c = {marks['H_c']:.2f}\n")
    print("| task | measure | " + " | ".join(f"H={t:g}" for t in targets) + " |")
    print("|---|---|" + "---|" * len(targets))
    for task, measures in curves.items():
        for key, values in measures.items():
            print(f"| {task} | {key} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    print(f"\nwrote {out} and {png} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
