"""Which part of ICP earns what: ICP with one part removed or pinned, paired with full ICP over prompts.

Runs full ICP, its ablation variants (`bench.ablations`) and reference decoders on the same examples of
each task, with several seeds, and compares each with full ICP (or `--reference`) prompt by prompt: a
per-prompt value is the mean over seeds of the prompt's measure, and the interval is the suite's
percentile bootstrap (`bench.scoring._resamples`) of the mean per-prompt difference. A difference whose
interval holds 0 is not a difference.

Measures per prompt: open-ended tasks, coherence with the prompt (MiniLM cosine), rep-4 of the
continuation (%) and whether it looped; QA tasks, whether the answer is right and whether ICP abstained
(its divergence stop). Answered accuracy is a ratio over the answered prompts, so it is reported with a
plain bootstrap, unpaired. The law's behaviour (mean T, lag-1 autocorrelation of T, share of steps at
T_min and T_max, mean |ΔT| per step) is averaged over rows.

`icp_frozen@mean` pins T at full ICP's own mean T on that task (measured in the same run, seed 0);
`icp_frozen@card` at the card's T at H*.

Run (dev splits, three seeds; generations are cached, so a rerun only scores):
    python eval/ablation.py --split dev --seeds 0,1,2 --out outputs/ablation_dev.json

Writes `--out` (JSON: per task, variant and measure the seed means, the paired difference and its interval)
and prints a Markdown table (also written next to `--out` as `.md`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.ablations import AT_PARAMETER, CARD_TEMPERATURE  # noqa: E402
from bench.scoring import MetricBank, _interval, _resamples, score_task  # noqa: E402
from bench.tasks import QA_SUITES, default_data_dir, load_tasks  # noqa: E402

DEFAULT_TASKS = ("loops_webtext", "knowledge_countries", "reading_qed")
DEFAULT_VARIANTS = (
    "icp",
    "icp_frozen@mean",
    "icp_frozen@card",
    "icp_no_derepeat",
    "icp_no_min_p",
    "icp_no_stops",
    "icp_tracking",
    "icp_no_dissipation",
    "icp_cold@0.3",
    "icp_cold@0.5",
    "greedy",
    "temperature",
)
TEXT_MEASURES = ("coherence", "rep_4", "looped")
QA_MEASURES = ("correct", "abstained")
LAW_MEASURES = ("icp_T", "icp_T_lag1_autocorr", "icp_T_at_min", "icp_T_at_max", "icp_T_mean_abs_step")


def per_prompt(task: Any, rows: list[dict], items: list[dict], bank: Any, controlled: bool) -> dict[str, list[float]]:
    """Each prompt's measures for one decoder and seed (`rows` scored by `score_task` first for QA).

    Args:
        task ([`Task`]): the task (its suite picks the measures).
        rows (`list[dict]`): the generations, aligned with `items`.
        items (`list[dict]`): the examples.
        bank ([`MetricBank`]): the suite's metrics.
        controlled (`bool`): the decoder is ICP steering (its law's measures are kept; an observer's are not).

    Returns:
        `dict`: measure -> one float per prompt (law measures only for ICP rows).
    """
    out: dict[str, list[float]] = {}
    if task.suite in QA_SUITES:
        out["correct"] = [float(r["correct"]) for r in rows]
        out["abstained"] = [float(r.get("stop_reason") == "divergence") for r in rows]
    else:
        texts = [r["text"] for r in rows]
        coherence = bank("prompt_coherence").compute(
            predictions=texts, references=[i["prompt_text"] for i in items], per_example=True
        )
        out["coherence"] = [float(x) for x in coherence["per_example"]["coherence"]]
        rep = bank("repetition").compute(predictions=texts, per_example=True)["per_example"]
        out["rep_4"] = [
            100.0 * (1.0 - u / t) if t else 0.0 for u, t in zip(rep["unique_4"], rep["total_4"])
        ]
        loops = bank("loop_rate").compute(
            predictions=[r["tokens"] for r in rows], reached_limit=[r["reached_limit"] for r in rows], per_example=True
        )
        out["looped"] = [float(x) for x in loops["per_example"]["looped"]]
    for key in LAW_MEASURES if controlled else ():
        if all(key in r for r in rows):
            out[key] = [float(r[key]) for r in rows]
    return out


def paired_difference(a: list[float], b: list[float], n_bootstrap: int, seed: int) -> dict[str, float]:
    """Mean of a - b over prompts with the suite's 95 % bootstrap interval (prompts with a NaN are dropped).

    Example:
        >>> out = paired_difference([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], 200, 0)
        >>> out["difference"], out["n"], out["low"] >= 0.0
        (0.5, 4, True)
    """
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = np.isfinite(a_arr) & np.isfinite(b_arr)
    diff = a_arr[keep] - b_arr[keep]
    if diff.size < 2:
        return {"difference": math.nan, "low": math.nan, "high": math.nan, "n": int(diff.size)}
    means = diff[_resamples(diff.size, n_bootstrap, seed)].mean(axis=1)
    low, high = _interval(list(means))
    return {"difference": float(diff.mean()), "low": low, "high": high, "n": int(diff.size)}


def answered_accuracy(correct: list[float], abstained: list[float]) -> float:
    """Accuracy over the prompts not abstained on (NaN when all were).

    Example:
        >>> answered_accuracy([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])
        0.5
    """
    answered = [c for c, a in zip(correct, abstained) if a < 0.5]
    return float(np.mean(answered)) if answered else math.nan


def _decoder_and_params(variant: str, own_mean_t: float | None) -> tuple[str, dict | None]:
    if variant == "icp_frozen@mean":
        if own_mean_t is None:
            raise ValueError("`icp_frozen@mean` needs full ICP (`icp`) earlier in `--variants`.")
        return "icp_frozen", {"initial_temperature": round(own_mean_t, 4)}
    if variant == "icp_frozen@card":
        return "icp_frozen", {"initial_temperature": CARD_TEMPERATURE}
    if "@" in variant:  # e.g. icp_cold@0.5, icp_target@3.0: the variant with that value (bench.ablations.AT_PARAMETER)
        name, value = variant.split("@", 1)
        return name, {AT_PARAMETER[name]: float(value)}
    return variant, None


def run_variants(args: argparse.Namespace) -> dict:
    """Generates and scores every variant on every task and seed; returns per-prompt measures and params."""
    import torch
    from accelerate import PartialState
    from icp import load_default_model
    from run import Runner

    state = PartialState(cpu=not torch.cuda.is_available())
    model, tokenizer = load_default_model(args.model, device=state.device)
    model.eval()
    runner = Runner(args, state, model, tokenizer)
    bank = MetricBank()
    tasks = load_tasks()
    measures: dict = {}
    params_used: dict = {}
    for name in args.task_names:
        task = tasks[name].for_tokenizer(tokenizer)  # a base model runs a chat task's base form
        items = task.items(args.split, args.data_dir, args.limit)
        own_mean_t = None
        for variant in args.variant_names:
            decoder, params = _decoder_and_params(variant, own_mean_t)
            params_used.setdefault(name, {})[variant] = params
            # greedy is deterministic: one seed stands for all
            for seed in args.seed_list[:1] if decoder == "greedy" else args.seed_list:
                runner.args.seed = seed
                rows = runner.generate(task, items, decoder, params, f"{name}/{variant}/seed {seed}")
                score_task(task, rows, items, bank, n_bootstrap=0)
                measures.setdefault(name, {}).setdefault(variant, []).append(
                    per_prompt(task, rows, items, bank, controlled=decoder.startswith("icp"))
                )
            if variant == "icp":
                own_mean_t = float(np.nanmean(measures[name]["icp"][0]["icp_T"]))
            print(f"{name}/{variant}: done", flush=True)
    return {"measures": measures, "params": params_used}


def summarise(measures: dict, reference: str, n_bootstrap: int) -> dict:
    """Seed means and paired differences against `reference` for every task, variant and measure."""
    summary: dict = {}
    for task, by_variant in measures.items():
        ref = by_variant.get(reference)
        for variant, seeds in by_variant.items():
            entry: dict[str, Any] = {}
            for key in seeds[0]:
                per_seed = np.asarray([s[key] for s in seeds], dtype=float)
                with np.errstate(all="ignore"):
                    prompt_means = np.nanmean(per_seed, axis=0) if per_seed.size else per_seed
                seed_means = [float(np.nanmean(row)) for row in per_seed]
                cell = {"mean": float(np.nanmean(prompt_means)), "seed_means": seed_means}
                if ref is not None and variant != reference and key in ref[0]:
                    ref_means = np.nanmean(np.asarray([s[key] for s in ref], dtype=float), axis=0)
                    cell["vs_reference"] = paired_difference(list(prompt_means), list(ref_means), n_bootstrap, 0)
                entry[key] = cell
            if "correct" in seeds[0]:
                values = [answered_accuracy(s["correct"], s["abstained"]) for s in seeds]
                entry["answered_accuracy"] = {"mean": float(np.nanmean(values)), "seed_means": values}
            summary.setdefault(task, {})[variant] = entry
    return summary


def _fmt(cell: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    if cell is None:
        return "–"
    text = f"{cell['mean'] * scale:.{digits}f}"
    vs = cell.get("vs_reference")
    if vs and math.isfinite(vs["difference"]):
        mark = "" if vs["low"] <= 0.0 <= vs["high"] else " *"
        text += (
            f" ({vs['difference'] * scale:+.{digits}f} [{vs['low'] * scale:+.{digits}f}, "
            f"{vs['high'] * scale:+.{digits}f}]{mark})"
        )
    return text


def markdown(summary: dict, reference: str) -> str:
    """One table per task: each variant's seed-mean measures, and its paired difference from `reference`.

    Example:
        >>> cell = {"mean": 0.5, "seed_means": [0.5], "vs_reference": {"difference": 0.1, "low": 0.05, "high": 0.15}}
        >>> "0.500 (+0.100 [+0.050, +0.150] *)" in markdown({"t": {"v": {"correct": cell}}}, "icp")
        True
    """
    lines = []
    for task, by_variant in summary.items():
        first = next(iter(by_variant.values()))
        qa = "correct" in first
        columns = (
            [("accuracy", "correct", 1.0), ("abstained", "abstained", 1.0), ("answered acc.", "answered_accuracy", 1.0)]
            if qa
            else [("coherence", "coherence", 1.0), ("rep-4 %", "rep_4", 1.0), ("loop rate", "looped", 1.0)]
        )
        columns += [("mean T", "icp_T", 1.0), ("T lag-1 ac", "icp_T_lag1_autocorr", 1.0)]
        lines += [
            f"### {task} (paired over prompts against `{reference}`; * = interval excludes 0)",
            "",
            "| variant | " + " | ".join(c[0] for c in columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for variant, entry in by_variant.items():
            lines.append(f"| {variant} | " + " | ".join(_fmt(entry.get(key), scale) for _, key, scale in columns) + " |")
        lines.append("")
        law = {v: e for v, e in by_variant.items() if "icp_T" in e}
        if law:
            lines += [
                f"How the law moved T on {task} (per row, then averaged over rows and seeds):",
                "",
                "| variant | mean T | lag-1 autocorrelation of T | share at T_min | share at T_max | mean abs(ΔT) per step |",
                "|---|---|---|---|---|---|",
            ]
            for variant, entry in law.items():
                lines.append(
                    f"| {variant} | "
                    + " | ".join(f"{entry[k]['mean']:.3f}" if k in entry else "–" for k in LAW_MEASURES)
                    + " |"
                )
            lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval/ablation.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated task names")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated variants/decoders")
    parser.add_argument("--reference", default="icp", help="the variant every other is paired with (default: icp)")
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: 0,1,2)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--model", default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--bootstrap", type=int, default=2000)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", default="outputs/cache")
    parser.add_argument("--no-cache", action="store_true")
    parser.add_argument("--out", default="outputs/ablation.json")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validates the arguments in place (task, variant and seed lists), reporting the bad option."""
    from bench.ablations import ABLATIONS
    from bench.decoders import DECODERS

    tasks = load_tasks()
    args.task_names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for name in args.task_names:
        if name not in tasks:
            parser.error(f"`--tasks` names {name!r}; known tasks: {', '.join(sorted(tasks))}.")
    known = {*DECODERS, *ABLATIONS, "icp_frozen@mean", "icp_frozen@card"}
    args.variant_names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for name in args.variant_names:
        base, _, value = name.partition("@")
        if value and name not in known and base in AT_PARAMETER:
            try:
                if float(value) > 0:
                    continue
            except ValueError:
                pass
            parser.error(f"`--variants` names {name!r}: the value after '@' (its {AT_PARAMETER[base]}) has to be > 0.")
        if name not in known:
            parser.error(f"`--variants` names {name!r}; known: {', '.join(sorted(known))}.")
    if args.reference not in args.variant_names:
        parser.error(f"`--reference` (={args.reference!r}) is not among `--variants`.")
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"`--seeds` (={args.seeds!r}) has to be comma-separated integers.")
    if not args.seed_list:
        parser.error("`--seeds` names no seed.")
    args.data_dir = str(args.data_dir or default_data_dir())
    args.no_progress = True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    start = time.time()
    run = run_variants(args)
    summary = summarise(run["measures"], args.reference, args.bootstrap)
    table = markdown(summary, args.reference)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python eval/ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out.write_text(
        json.dumps(
            {"command": command, "split": args.split, "seeds": args.seed_list, "params": run["params"],
             "summary": summary, "measures": run["measures"], "runtime_s": round(time.time() - start, 1)},
            indent=1,
        )
    )  # fmt: skip
    out.with_suffix(".md").write_text(f"`{command}`\n\n{table}\n")
    print(table)
    print(f"wrote {out} ({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
