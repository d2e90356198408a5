"""The benchmark suite: ICP against the decoders people use, side by side, same prompts, same seeds.

Runs with plain `python` or data-parallel with `accelerate launch` (batches are split between
processes and gathered on the main process, which scores and writes; results are identical for any
number of processes with the same seeds).

    python eval/run.py --suite all --out outputs/results.json                 # test split, tuned settings
    python eval/run.py --suite all --tune --out outputs/results.json          # tune on dev first, then test
    accelerate launch --multi_gpu --num_processes 2 eval/run.py --suite loops --limit 8
    python eval/run.py --list-decoders

On a CPU-only machine, `accelerate launch --multi_gpu --num_processes N` starts N processes (torchrun)
and the script joins them over gloo; `accelerate launch --cpu --num_processes N` starts only one
unless MPI is set up (`--mpirun_hostfile`), which is accelerate's behaviour, not this script's.

Suites: `loops` (open-ended WebText continuations), `instruct` (chat continuations of encyclopedia
paragraphs), `qa` (closed-book NQ-open), `grounded_qa` (HaluEval QA, the facts in the prompt),
`truthfulqa` (TruthfulQA generation), `all`.

Hyperparameters: every decoder gets the same budget, at most 3 settings, tried on the dev split with
the task's objective (`--tune`); the winners are written to `--tuned` and used on the test split.
Without `--tune`, settings come from the `--tuned` file when it exists, else each decoder's default.

Output: `--out` (JSON: `results` suite -> decoder -> metric -> number, `intervals` (95 % bootstrap),
`hyperparameters`, `config`, `n`, `seeds`, `versions`, `git_hash`, `date`, `runtime_s`), beside it
`<out>.md` (the tables), `<out>.examples.jsonl` (every generation with its signals) and plots
(`<out>.loops.png`: loop rate against coherence per decoder; `<out>.risk.png`: risk–coverage).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.decoders import DECODERS, TUNING_BUDGET, get_decoder, parse_decoders  # noqa: E402
from bench.tasks import default_data_dir, load_tasks, tasks_for_suite  # noqa: E402

DEFAULT_TUNED = Path(__file__).resolve().parent / "tuned" / "smollm2-135m-instruct.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--suite", default="all", help="loops, instruct, qa, grounded_qa, truthfulqa or all (default: all)"
    )
    parser.add_argument("--decoders", default="all", help="comma-separated decoder names, or all (default)")
    parser.add_argument("--list-decoders", action="store_true", help="list the decoders and their grids, then exit")
    parser.add_argument("--model", default=None, help="model id or folder (default: the embedded SmolLM2-135M)")
    parser.add_argument("--limit", type=int, default=None, help="at most N examples per task and split")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="override every task's generation length")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per generate() call (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of every batch (default: 0)")
    parser.add_argument(
        "--data-dir", default=None, help="folder with the data files (default: $ICP_DATA_DIR or shared/data)"
    )
    parser.add_argument("--split", default="test", choices=["test", "dev"], help="split to report on (default: test)")
    parser.add_argument("--tune", action="store_true", help="tune every decoder on the dev split first")
    parser.add_argument("--tune-only", action="store_true", help="with --tune: stop after writing the tuned settings")
    parser.add_argument("--tuned", default=str(DEFAULT_TUNED), help="tuned settings file (read, or written by --tune)")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for intervals (default: 200)")
    parser.add_argument("--out", default="outputs/results.json", help="results JSON (default: outputs/results.json)")
    parser.add_argument(
        "--cache-dir",
        default="outputs/cache",
        help="generations are cached here, keyed by task, examples, decoder setting, seed and the code's hash, so "
        "an interrupted run resumes (default: outputs/cache)",
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the generation cache")
    parser.add_argument("--no-plots", action="store_true", help="skip the plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("limit", "max_new_tokens", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"`--{name.replace('_', '-')}` (={value}) must be a positive integer.")
    if args.tune_only and not args.tune:
        parser.error("`--tune-only` needs `--tune`.")
    if args.bootstrap < 0:
        parser.error(f"`--bootstrap` (={args.bootstrap}) must be >= 0.")
    try:
        args.decoder_names = parse_decoders(args.decoders)
        args.tasks = tasks_for_suite(args.suite)
    except (KeyError, ValueError) as error:
        parser.error(str(error.args[0]))
    data_dir = args.data_dir or default_data_dir()
    if data_dir is not None and not Path(data_dir).is_dir():
        parser.error(f"`--data-dir` (={data_dir}) is not a folder.")
    args.data_dir = str(data_dir) if data_dir is not None else None


def _git_hash() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("icp", "torch", "transformers", "accelerate", "evaluate", "datasets", "sentence-transformers"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def _code_fingerprint() -> str:
    """Hash of the code that decides a generation (icp and the suite's generation path)."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    # The command line and calibration do not decide a generation; the card ICP loads does.
    files = [p for p in sorted((root / "icp").rglob("*.py")) if p.name not in ("cli.py", "calibrate.py")]
    files += [root / "eval" / "bench" / n for n in ("generation.py", "decoders.py")]
    files += sorted((root / "model_cards").rglob("README.md"))
    for path in files:
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _batch_seed(seed: int, task_name: str, batch_index: int) -> int:
    """The same for every decoder and every number of processes: (seed, task, batch) only."""
    return (seed * 1_000_003 + zlib.crc32(task_name.encode()) + 7919 * batch_index) % (2**31 - 1)


class Runner:
    """Generates with each decoder on each task's examples, split between processes."""

    def __init__(self, args: argparse.Namespace, state, model, tokenizer) -> None:
        self.args, self.state, self.model, self.tokenizer = args, state, model, tokenizer
        from icp import ICP

        self.observer = ICP(model, control=False)
        self.fingerprint = _code_fingerprint()
        self.cache = None if args.no_cache else Path(args.cache_dir)

    def _cache_path(self, task, items, decoder: str, params: dict | None, max_new: int) -> Path | None:
        if self.cache is None:
            return None
        key = json.dumps(
            [
                task.name,
                task.version,
                [item["id"] for item in items],
                decoder,
                params,
                max_new,
                self.args.batch_size,
                self.args.seed,
                self.args.model,
                self.fingerprint,
                _versions()["torch"],
                _versions()["transformers"],
            ],
            sort_keys=True,
            default=str,
        )
        return self.cache / f"{task.name}-{decoder}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.jsonl"

    def generate(self, task, items: list[dict], decoder: str, params: dict | None, label: str) -> list[dict]:
        from accelerate.utils import gather_object
        from bench.generation import batches, generate_batch
        from tqdm.auto import tqdm

        spec = get_decoder(decoder)
        max_new = self.args.max_new_tokens or task.max_new_tokens
        cached = self._cache_path(task, items, decoder, params, max_new)
        if cached is not None and cached.is_file():
            return [json.loads(line) for line in cached.read_text().splitlines()]
        plan = spec.plan(params, self.model)
        chunks = batches(items, self.args.batch_size)
        done = []
        want_logits = task.suite in ("qa", "grounded_qa", "truthfulqa")
        with self.state.split_between_processes(list(range(len(chunks))), apply_padding=True) as mine:
            bar = tqdm(
                mine, desc=label, leave=False, disable=self.args.no_progress or not self.state.is_local_main_process
            )
            for index in bar:
                rows = generate_batch(
                    self.model,
                    self.tokenizer,
                    chunks[index],
                    chat=task.chat,
                    plan=plan,
                    observer=None if plan.icp is not None else self.observer,
                    max_new_tokens=max_new,
                    seed=_batch_seed(self.args.seed, task.name, index),
                    want_logit_signals=want_logits,
                )
                done.append((index, rows))
        if plan.icp is not None:
            plan.icp.remove_hooks()
        gathered = gather_object(done)
        by_index = dict(gathered)  # padding duplicates the last batch: keep one copy
        rows = [row for index in range(len(chunks)) for row in by_index[index]]
        if cached is not None and self.state.is_main_process:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_suffix(".partial")
            partial.write_text("".join(json.dumps(row) + "\n" for row in rows))
            partial.replace(cached)
        self.state.wait_for_everyone()
        return rows


def _human_diversity(bank, items: list[dict]) -> dict[str, float]:
    references = [item.get("reference", "") for item in items]
    return {"diversity": float(bank("repetition").compute(predictions=references)["diversity"])}


def tune(runner: Runner, bank, tasks, decoders: list[str], previous: dict) -> dict:
    """Tries every setting of every decoder's grid on the dev split of each tuning task (the tasks the
    chosen ones are tuned on); keeps the best by that task's objective."""
    from bench.scoring import score_task, tuning_score

    args, state = runner.args, runner.state
    every = load_tasks()
    sources = [every[name] for name in dict.fromkeys(task.tuned_on for task in tasks)]
    chosen = {name: dict(values) for name, values in previous.items()}
    log = {}
    for task in sources:
        items = task.items("dev", args.data_dir, args.limit)
        human = _human_diversity(bank, items) if state.is_main_process and task.tuning.get("constraint") else None
        for decoder in decoders:
            spec = get_decoder(decoder)
            scored = []
            for k, params in enumerate(spec.grid):
                rows = runner.generate(
                    task, items, decoder, params, f"tune {task.name}/{decoder} {k + 1}/{len(spec.grid)}"
                )
                if state.is_main_process:
                    values, _ = score_task(task, rows, items, bank, n_bootstrap=0)
                    scored.append((tuning_score(task, values, human), k, params, values))
            if state.is_main_process:
                best = max(scored, key=lambda s: (s[0], -s[1]))
                chosen.setdefault(task.name, {})[decoder] = best[2]
                log.setdefault(task.name, {"human": human, "n": len(items)})[decoder] = [
                    {"params": p, "objective": list(s), "values": {k: v for k, v in vals.items() if k != "n"}}
                    for s, _, p, vals in scored
                ]
                state.print(f"tuned {task.name}/{decoder}: {best[2]} (objective {best[0]})")
    return {"settings": chosen, "log": log}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_decoders:
        print(f"{'decoder':<20}{'source':<15}{'settings (first = default; tuning budget ' + str(TUNING_BUDGET) + ')'}")
        for name, spec in DECODERS.items():
            print(f"{name:<20}{spec.source:<15}{'; '.join(json.dumps(g) for g in spec.grid)}")
            print(f"{'':<20}{spec.description}")
        return 0
    _check_args(parser, args)

    import torch
    from accelerate import PartialState
    from bench.report import write_report
    from bench.scoring import MetricBank, score_task

    from icp import load_default_model

    # On a machine without CUDA, processes started by torchrun (accelerate launch --multi_gpu) talk over gloo.
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes > 1 and state.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // state.num_processes))
    started = time.time()
    model, tokenizer = load_default_model(args.model, device=state.device)
    model.eval()
    runner = Runner(args, state, model, tokenizer)
    bank = MetricBank() if state.is_main_process else None

    tuned_path = Path(args.tuned)
    settings: dict = {}
    previous = json.loads(tuned_path.read_text()) if tuned_path.is_file() else {}
    settings = previous.get("settings", {})
    if args.tune:
        tuning = tune(runner, bank, args.tasks, args.decoder_names, settings)
        if state.is_main_process:
            settings = tuning["settings"]
            log = previous.get("log", {})  # decoders tuned in an earlier run keep their entries
            for task_name, entries in tuning["log"].items():
                log.setdefault(task_name, {}).update(entries)
            runs = previous.get("runs", [])
            runs.append(
                {
                    "decoders": args.decoder_names,
                    "limit": args.limit,
                    "seed": args.seed,
                    "max_new_tokens": args.max_new_tokens,
                    "model": args.model or "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "git_hash": _git_hash(),
                    "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "versions": _versions(),
                }
            )
            tuned_path.parent.mkdir(parents=True, exist_ok=True)
            tuned_path.write_text(json.dumps({"settings": settings, "log": log, "runs": runs}, indent=1))
        state.wait_for_everyone()
        settings = json.loads(tuned_path.read_text())["settings"]
        if args.tune_only:
            runner.observer.remove_hooks()
            state.print(f"wrote {tuned_path}")
            return 0

    results, intervals, hyper, counts, examples = {}, {}, {}, {}, []
    for task in args.tasks:
        items = task.items(args.split, args.data_dir, args.limit)
        counts[task.suite] = len(items)
        for decoder in args.decoder_names:
            params = settings.get(task.tuned_on, {}).get(decoder)
            rows = runner.generate(task, items, decoder, params, f"{task.name}/{decoder}")
            if not state.is_main_process:
                continue
            values, ci = score_task(task, rows, items, bank, n_bootstrap=args.bootstrap, seed=args.seed)
            results.setdefault(task.suite, {})[decoder] = values
            intervals.setdefault(task.suite, {})[decoder] = ci
            hyper.setdefault(task.suite, {})[decoder] = params if params is not None else get_decoder(decoder).grid[0]
            for item, row in zip(items, rows):
                examples.append(
                    {"suite": task.suite, "task": task.name, "decoder": decoder, **row, "prompt": item["prompt_text"]}
                )
            state.print(
                f"{task.name}/{decoder}: "
                + ", ".join(
                    f"{k}={v:.3f}"
                    for k, v in values.items()
                    if k in ("coherence", "rep_4", "loop_rate", "accuracy", "truthful_rate", "auroc_icp_F")
                )
            )
    runner.observer.remove_hooks()
    if not state.is_main_process:
        return 0

    report = {
        "results": results,
        "intervals": intervals,
        "hyperparameters": hyper,
        "n": counts,
        "seeds": [args.seed],
        "config": {
            "suite": args.suite,
            "decoders": args.decoder_names,
            "split": args.split,
            "limit": args.limit,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": args.batch_size,
            "bootstrap": args.bootstrap,
            "data_dir": args.data_dir,
            "model": args.model or "HuggingFaceTB/SmolLM2-135M-Instruct",
            "tuned": str(tuned_path) if settings else None,
            "processes": state.num_processes,
            "tasks": {
                t.name: {
                    "suite": t.suite,
                    "version": t.version,
                    "max_new_tokens": t.max_new_tokens,
                    "tuned_on": t.tuned_on,
                }
                for t in args.tasks
            },
        },
        "versions": _versions(),
        "git_hash": _git_hash(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "runtime_s": round(time.time() - started, 1),
        "command": " ".join(["python eval/run.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    with open(out.with_suffix(".examples.jsonl"), "w") as handle:
        for row in examples:
            handle.write(json.dumps(row) + "\n")
    markdown = write_report(report, out, plots=not args.no_plots, examples=examples)
    print(markdown)
    state.print(f"wrote {out} ({report['runtime_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
