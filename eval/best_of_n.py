"""Best-of-n by trajectory free energy, against best-of-n by likelihood and a plain sample.

For every prompt ICP samples `n` candidates (`num_return_sequences=n`, ICP's tuned settings). Four
ways of keeping one are scored with the suite's metrics on the same candidates:

- `first`: the first candidate, i.e. plain sampling with ICP (no selection);
- `icp_F`: [`Trace.best_of`]: the lowest trajectory F among candidates that neither looped nor diverged;
- `loglik`: the highest mean token log-likelihood under the raw model (the usual reranker);
- `oracle`: the best candidate by the task's own score (an upper bound, not a method).

    python eval/best_of_n.py --tasks truthfulqa,halueval_qa,loops_webtext --n 4 --out outputs/best_of_n.json

Output: a table (task × selection × metric, with 95 % bootstrap intervals) and the JSON, keyed by task as
`eval/run.py`'s results are (`bench/results.py`), with the selections in place of decoders: `results` and
`intervals` task -> selection -> metric, `higher_is_better`, `n`, `versions`, `tasks` (suite, version, n)
and `group_subtasks` (suite -> tasks).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench.decoders import get_decoder  # noqa: E402
from bench.generation import answer_lengths, encode, plain_signals, stop_token_ids  # noqa: E402
from bench.scoring import MetricBank, score_task  # noqa: E402
from bench.tasks import HALLUCINATION_SUITES, default_data_dir, load_tasks  # noqa: E402
from transformers import LogitsProcessorList, StoppingCriteriaList  # noqa: E402

SELECTIONS = ("first", "icp_F", "loglik", "oracle")
_ORACLE_KEY = dict.fromkeys(HALLUCINATION_SUITES, "correct")


def candidates(model, tokenizer, task, items, params, n, seed, batch_size, max_new_tokens):
    """Per item, `n` candidate rows (text, tokens, signals) and ICP's choice among them."""
    from icp import ICPCompositionWarning

    plan = get_decoder("icp").plan(params, model)
    icp = plan.icp
    per_item: list[list[dict]] = []
    icp_choice: list[int] = []
    stop_ids = stop_token_ids(model, tokenizer)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        inputs = encode(tokenizer, chunk, task.chat, model.device)
        torch.manual_seed(seed + start)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ICPCompositionWarning)
            out = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                logits_processor=LogitsProcessorList(plan.processors),
                stopping_criteria=StoppingCriteriaList(plan.stopping_criteria),
                return_dict_in_generate=True,
                output_logits=True,
                pad_token_id=tokenizer.pad_token_id,
                **plan.kwargs,
            )
        generated = out.sequences[:, inputs["input_ids"].shape[1] :]
        lengths = answer_lengths(generated, stop_ids)
        signals = plain_signals(out.logits, generated, lengths)
        trace = icp.trace
        free_energy = trace.trajectory_free_energy()
        best = trace.best_of(n)
        for i in range(len(chunk)):
            rows = []
            for j in range(n):
                k = i * n + j
                tokens = generated[k, : int(lengths[k])].tolist()
                rows.append({
                    "tokens": tokens, "text": tokenizer.decode(tokens, skip_special_tokens=True),
                    "n_tokens": len(tokens), "reached_limit": len(tokens) == generated.shape[1],
                    "stop_reason": trace.stop_reasons[k], "icp_F": float(free_energy[k]),
                    "mean_loglik": signals["mean_loglik"][k], "seq_loglik": signals["seq_loglik"][k],
                })  # fmt: skip
            per_item.append(rows)
            icp_choice.append(int(best[i]) - i * n)
    icp.remove_hooks()
    return per_item, icp_choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="truthfulqa,halueval_qa,loops_webtext")
    parser.add_argument("--n", type=int, default=4, help="candidates per prompt (default 4)")
    parser.add_argument("--split", default="test", choices=["dev", "test"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16, help="prompts per generate() call (x n rows)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--tuned", default=str(Path(__file__).resolve().parent / "tuned" / "smollm2-135m-instruct.json")
    )
    parser.add_argument("--out", default="outputs/best_of_n.json")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error(f"`--n` (={args.n}) must be at least 2: selection needs candidates.")
    tasks = load_tasks()
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in names if t not in tasks]
    if unknown:
        parser.error(f"`--tasks`: unknown {unknown}; known: {sorted(tasks)}.")
    data_dir = args.data_dir or default_data_dir()
    settings = json.loads(Path(args.tuned).read_text())["settings"] if Path(args.tuned).is_file() else {}

    from icp import load_default_model

    started = time.time()
    model, tokenizer = load_default_model()
    bank = MetricBank()
    results: dict = {}
    intervals: dict = {}
    counts: dict[str, int] = {}
    for name in names:
        task = tasks[name]
        items = task.items(args.split, data_dir, args.limit)
        counts[name] = len(items)
        params = settings.get(task.tuned_on, {}).get("icp")
        max_new = args.max_new_tokens or task.max_new_tokens
        per_item, icp_choice = candidates(
            model, tokenizer, task, items, params, args.n, args.seed, args.batch_size, max_new
        )
        # Score every candidate once (as n parallel "decoders"), then pick per selection rule.
        scored = []
        for j in range(args.n):
            rows = [dict(c[j]) for c in per_item]
            score_task(task, rows, items, bank, n_bootstrap=0)
            scored.append(rows)
        picks = {
            "first": [0] * len(items),
            "icp_F": icp_choice,
            "loglik": [int(np.nanargmax([c["mean_loglik"] for c in cands])) for cands in per_item],
        }
        if task.suite in _ORACLE_KEY:
            picks["oracle"] = [int(np.argmax([scored[j][i].get("correct", False) for j in range(args.n)]))
                               for i in range(len(items))]  # fmt: skip
        for selection, chosen in picks.items():
            rows = [dict(per_item[i][j]) for i, j in enumerate(chosen)]
            values, ci = score_task(task, rows, items, bank, n_bootstrap=args.bootstrap, seed=args.seed)
            results.setdefault(name, {})[selection] = values
            intervals.setdefault(name, {})[selection] = ci
        print(f"{name}: " + "; ".join(
            f"{s}: " + ", ".join(f"{k}={v:.3f}" for k, v in results[name][s].items()
                                 if k in ("accuracy", "truthful_rate", "coherence", "loop_rate", "rep_4"))
            for s in results[name]
        ))  # fmt: skip
    ran = [tasks[name] for name in results]
    groups: dict[str, list[str]] = {}
    for task in ran:
        groups.setdefault(task.suite, []).append(task.name)
    report = {
        "results": results, "intervals": intervals,
        "higher_is_better": {t.name: t.higher_is_better() for t in ran}, "n": counts,
        "versions": {t.name: t.version for t in ran},
        "tasks": {t.name: {"suite": t.suite, "version": t.version, "n": counts[t.name]} for t in ran},
        "group_subtasks": groups, "n_candidates": args.n, "split": args.split,
        "config": vars(args), "runtime_s": round(time.time() - started, 1),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str))
    keys = ("accuracy", "truthful_rate", "coherence", "rep_4", "loop_rate")
    print("| task | selection | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for name, by_selection in results.items():
        for selection, values in by_selection.items():
            cells = []
            for key in keys:
                if key not in values:
                    cells.append("–")
                    continue
                lo, hi = intervals[name][selection].get(key, [float("nan")] * 2)
                half = (hi - lo) / 2 if np.isfinite(lo) and np.isfinite(hi) else float("nan")
                cells.append(f"{values[key]:.3f} ± {half:.3f}" if np.isfinite(half) else f"{values[key]:.3f}")
            print(f"| {name} | {selection} | " + " | ".join(cells) + " |")
    print(f"wrote {out} ({report['runtime_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
