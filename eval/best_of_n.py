"""Best-of-n by trajectory free energy, against best-of-n by likelihood, majority vote and a plain sample.

For every prompt ICP samples `n` candidates (`num_return_sequences=n`, ICP's tuned settings). These ways
of keeping one are scored with the suite's metrics on the same candidates (same n, same samples):

- `first`: the first candidate, i.e. plain sampling with ICP (no selection);
- `icp_F`: [`Trace.best_of`]: the lowest trajectory F among candidates that neither looped nor diverged;
- `loglik`: the highest mean token log-likelihood under the raw model (the usual reranker);
- `majority`: self-consistency ([`majority_vote`]): the most frequent answer among the n, the answers
  normalised as the QA accuracy metric normalises them (SQuAD: case, punctuation, articles, spaces),
  ties between equally frequent answers broken by likelihood; on the QA and TruthfulQA tasks (short
  answers), not on open-ended text, where no two continuations agree;
- `oracle`: the best candidate by the task's own score (an upper bound, not a method).

    python eval/best_of_n.py --n 4 --out outputs/best_of_n.json
    python eval/best_of_n.py --tasks knowledge_countries,reading_qed --n 8 --limit 8

The default tasks are truthfulqa, halueval_qa, knowledge_countries, reading_qed and loops_webtext.
Output: a table (task × selection × metric, with 95 % bootstrap intervals) and the JSON, keyed by task as
`eval/run.py`'s results are (`bench/results.py`), with the selections in place of decoders: `results` and
`intervals` task -> selection -> metric, `higher_is_better`, `n`, `versions`, `tasks` (suite, version, n)
and `group_subtasks` (suite -> tasks). The `majority` rows also carry `vote_share`: the mean share of
the n candidates that gave the chosen answer (1/n: every candidate said something else).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench.decoders import get_decoder  # noqa: E402
from bench.generation import (  # noqa: E402
    answer_lengths,
    batch_order,
    cut_at_stop,
    encode,
    plain_signals,
    stop_kwargs,
    stop_token_ids,
    trim_trace,
)
from bench.scoring import MetricBank, score_task  # noqa: E402
from bench.tasks import HALLUCINATION_SUITES, default_data_dir, load_tasks  # noqa: E402
from transformers import LogitsProcessorList, StoppingCriteriaList  # noqa: E402

SELECTIONS = ("first", "icp_F", "loglik", "majority", "oracle")
DEFAULT_TASKS = "truthfulqa,halueval_qa,knowledge_countries,reading_qed,loops_webtext"
_ORACLE_KEY = dict.fromkeys(HALLUCINATION_SUITES, "correct")


def majority_vote(
    texts: Sequence[str], loglik: Sequence[float], normalize: Callable[[str], str] | None = None
) -> tuple[int, int]:
    """Self-consistency: the candidate giving the most frequent normalised answer.

    Candidates whose normalised answers are equal vote together. Among equally frequent answers the one
    whose most likely candidate has the higher likelihood wins, and of the winning answer's candidates the
    most likely is returned. An empty answer (nothing left after normalising) gets no vote unless every
    candidate is empty. A NaN likelihood counts as the lowest.

    Args:
        texts (sequence of `str`): the n candidates' answers.
        loglik (sequence of `float`): each candidate's likelihood (the suite uses the mean token log-likelihood).
        normalize (`Callable[[str], str]`, *optional*): the normalisation; defaults to the QA accuracy
            metric's `normalize_answer` (lowercase, no punctuation, no articles, spaces collapsed).

    Returns:
        `(index, votes)`: the chosen candidate and how many candidates gave its answer.

    Example:
        >>> majority_vote(["Paris.", "Lyon", "the paris", "Lyon"], [-1.0, -0.2, -0.9, -0.5])  # a tie: 2 and 2
        (1, 2)
        >>> majority_vote(["Paris.", "Lyon", "the paris", "Nice"], [-1.0, -0.2, -0.9, -0.1])  # Paris 2, Lyon 1
        (2, 2)
    """
    if len(texts) != len(loglik) or not texts:
        raise ValueError(f"`texts` and `loglik` must be aligned and non-empty, got {len(texts)} and {len(loglik)}.")
    if normalize is None:
        normalize = MetricBank().module("qa_accuracy").normalize_answer
    score = [x if isinstance(x, (int, float)) and math.isfinite(x) else -math.inf for x in loglik]
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        groups.setdefault(normalize(text), []).append(i)
    voting = {answer: members for answer, members in groups.items() if answer} or groups
    winner = max(voting.values(), key=lambda members: (len(members), max(score[j] for j in members)))
    return max(winner, key=lambda j: score[j]), len(winner)


def candidates(model, tokenizer, task, items, params, n, seed, batch_size, max_new_tokens, decoder="icp"):
    """Per item (in the items' order), `n` candidate rows (text, tokens, signals) and ICP's choice among them."""
    from icp import ICPCompositionWarning

    plan = get_decoder(decoder).plan(params, model)
    icp = plan.icp
    per_item: list[list[dict]] = [[] for _ in items]
    icp_choice: list[int] = [0] * len(items)
    stop_ids = stop_token_ids(model, tokenizer)
    order = batch_order(items, task.group_by_length)
    for start in range(0, len(items), batch_size):
        chunk = [items[i] for i in order[start : start + batch_size]]
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
                **stop_kwargs(tokenizer, task.stop),
                **plan.kwargs,
            )
        generated = out.sequences[:, inputs["input_ids"].shape[1] :]
        lengths, ends, texts = cut_at_stop(tokenizer, generated, answer_lengths(generated, stop_ids), task.stop)
        signals = plain_signals(out.logits, generated, lengths)
        trace = trim_trace(icp.trace, ends)  # a row the stop string ended stopped there, on "eos"
        free_energy = trace.trajectory_free_energy()
        best = trace.best_of(n)
        for i in range(len(chunk)):
            rows = []
            for j in range(n):
                k = i * n + j
                tokens = generated[k, : int(lengths[k])].tolist()
                rows.append({
                    "id": chunk[i]["id"], "tokens": tokens, "text": texts[k], "n_tokens": len(tokens),
                    "reached_limit": len(tokens) == generated.shape[1] and ends[k] is None,
                    "stop_reason": trace.stop_reasons[k], "icp_F": float(free_energy[k]),
                    "mean_loglik": signals["mean_loglik"][k], "seq_loglik": signals["seq_loglik"][k],
                })  # fmt: skip
            position = order[start + i]
            per_item[position] = rows
            icp_choice[position] = int(best[i]) - i * n
    icp.remove_hooks()
    return per_item, icp_choice


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=DEFAULT_TASKS, help=f"comma-separated tasks (default {DEFAULT_TASKS})")
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
    parser.add_argument(
        "--model",
        default=None,
        help="model id or folder, or an embedded model: smollm2-135m-instruct (the default) or gemma-3-270m",
    )
    parser.add_argument(
        "--decoder",
        default="icp",
        help="the ICP that samples the candidates: icp (its tuned settings) or an ICP ablation variant such as "
        "icp_seeds_law (`python eval/run.py --list-decoders`)",
    )
    parser.add_argument("--out", default="outputs/best_of_n.json")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error(f"`--n` (={args.n}) must be at least 2: selection needs candidates.")
    if not args.decoder.startswith("icp"):
        parser.error(f"`--decoder` (={args.decoder!r}) must be icp or an ICP variant: F selection needs ICP's trace.")
    try:
        get_decoder(args.decoder)
    except (KeyError, ValueError) as error:
        parser.error(f"`--decoder`: {error}")
    tasks = load_tasks()
    names = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in names if t not in tasks]
    if unknown:
        parser.error(f"`--tasks`: unknown {unknown}; known: {sorted(tasks)}.")
    data_dir = args.data_dir or default_data_dir()
    settings = json.loads(Path(args.tuned).read_text())["settings"] if Path(args.tuned).is_file() else {}

    from icp import load_default_model

    started = time.time()
    model, tokenizer = load_default_model(args.model)
    bank = MetricBank()
    normalize = bank.module("qa_accuracy").normalize_answer
    results: dict = {}
    intervals: dict = {}
    counts: dict[str, int] = {}
    for name in names:
        task = tasks[name].for_tokenizer(tokenizer)  # a base model runs a chat task's base form
        items = task.items(args.split, data_dir, args.limit)
        counts[name] = len(items)
        params = settings.get(task.tuned_on, {}).get("icp") if args.decoder == "icp" else None
        max_new = args.max_new_tokens or task.max_new_tokens
        per_item, icp_choice = candidates(
            model, tokenizer, task, items, params, args.n, args.seed, args.batch_size, max_new, args.decoder
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
        votes = None
        if task.suite in HALLUCINATION_SUITES:  # short answers: candidates can agree
            voted = [majority_vote([c["text"] for c in cands], [c["mean_loglik"] for c in cands], normalize)
                     for cands in per_item]  # fmt: skip
            picks["majority"] = [index for index, _ in voted]
            votes = [count / args.n for _, count in voted]
        if task.suite in _ORACLE_KEY:
            picks["oracle"] = [int(np.argmax([scored[j][i].get("correct", False) for j in range(args.n)]))
                               for i in range(len(items))]  # fmt: skip
        for selection, chosen in picks.items():
            rows = [dict(per_item[i][j]) for i, j in enumerate(chosen)]
            values, ci = score_task(task, rows, items, bank, n_bootstrap=args.bootstrap, seed=args.seed)
            if selection == "majority":
                values["vote_share"] = float(np.mean(votes))
            results.setdefault(name, {})[selection] = values
            intervals.setdefault(name, {})[selection] = ci
        print(f"{name}: " + "; ".join(
            f"{s}: " + ", ".join(f"{k}={v:.3f}" for k, v in results[name][s].items()
                                 if k in ("accuracy", "truthful_rate", "coherence", "loop_rate", "rep_4", "vote_share"))
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
