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
paragraphs), `qa` (closed-book NQ-open), `knowledge` (closed-book questions about countries, answered about half the
time), `reading` (extractive answers from a given passage), `grounded_qa` (HaluEval QA, the facts in the
prompt), `truthfulqa` (TruthfulQA generation), `all`.

Hyperparameters: every decoder gets the same budget, at most 3 settings, tried on the dev split with
the task's objective (`--tune`); the winners are written to `--tuned` and used on the test split.
Without `--tune`, settings come from the `--tuned` file when it exists, else each decoder's default.

Output: `--out`, a JSON keyed by task as lm-evaluation-harness keys its results (see `bench/results.py`):
`results` task -> decoder -> metric -> number, `intervals` (95 % bootstrap, same keys), `hyperparameters`
task -> decoder -> settings, `higher_is_better` task -> metric -> bool (the task YAML's metric_list),
`n` and `versions` (the YAML's metadata.version) per task, `tasks` task -> {suite, version, n,
max_new_tokens, tuned_on}, `group_subtasks` suite -> tasks, and `seeds`, `config`, `packages`, `git_hash`,
`date`, `runtime_s`, `command`. Beside it `<out>.md` (one table per task, under its suite; on the QA and
TruthfulQA tasks also ICP's detection and selective-prediction tables), `<out>.examples.jsonl` (every
generation with its signals) and plots (`<out>.loops.png`: loop rate against coherence per decoder;
`<out>.risk.<task>.png`: risk–coverage of each signal on ICP's answers, with ICP's own abstention).
Files in the earlier suite-keyed layout
are read by the readers through `bench.results.upgrade`.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.decoders import DECODERS, TUNING_BUDGET, get_decoder, parse_decoders  # noqa: E402
from bench.tasks import HALLUCINATION_SUITES, SUITES, default_data_dir, load_tasks, tasks_for_suite  # noqa: E402

DEFAULT_TUNED = Path(__file__).resolve().parent / "tuned" / "smollm2-135m-instruct.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval/run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--suite", default="all", help=f"{', '.join(SUITES)} or all (default: all)"
    )
    parser.add_argument("--decoders", default="all", help="comma-separated decoder names, or all (default)")
    parser.add_argument("--list-decoders", action="store_true", help="list the decoders and their grids, then exit")
    parser.add_argument(
        "--model",
        default=None,
        help="model id or folder, or an embedded model: smollm2-135m-instruct (the default) or gemma-3-270m",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="torch device of the model, e.g. cpu or cuda:0 (default: accelerate's device for this process)",
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "float16", "bfloat16"],
        help="dtype of the model's weights (default: float32)",
    )
    parser.add_argument("--limit", type=int, default=None, help="at most N examples per task and split")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="override every task's generation length")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per generate() call (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of every batch (default: 0)")
    parser.add_argument(
        "--data-dir", default=None, help="folder with the data files (default: $ICP_DATA_DIR or eval/data)"
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
    if args.device is not None:
        import torch

        try:
            torch.device(args.device)
        except RuntimeError:
            parser.error(f"`--device` (={args.device!r}) is not a torch device; allowed: cpu, cuda, cuda:0, mps, ...")
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
    files = [
        p
        for p in sorted((root / "icp").rglob("*.py"))
        if p.name not in ("cli.py", "calibrate.py") and p.parent.name != "calibration"
    ]
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
                task.template,  # the prompt's form: chat, or the base form with its stop string
                task.chat,
                task.stop,
                [item["id"] for item in items],
                decoder,
                params,
                max_new,
                self.args.batch_size,
                task.group_by_length,
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
        from bench.generation import batch_order, batches, generate_batch
        from tqdm.auto import tqdm

        spec = get_decoder(decoder)
        max_new = self.args.max_new_tokens or task.max_new_tokens
        cached = self._cache_path(task, items, decoder, params, max_new)
        if cached is not None and cached.is_file():
            return [json.loads(line) for line in cached.read_text().splitlines()]
        plan = spec.plan(params, self.model)
        order = batch_order(items, task.group_by_length)
        chunks = batches([items[i] for i in order], self.args.batch_size)
        done = []
        want_logits = task.suite in HALLUCINATION_SUITES
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
                    stop=task.stop,
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
        in_batch_order = [row for index in range(len(chunks)) for row in by_index[index]]
        rows = [None] * len(items)
        for position, row in zip(order, in_batch_order, strict=True):
            rows[position] = row
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
    sources = [every[name].for_tokenizer(runner.tokenizer) for name in dict.fromkeys(task.tuned_on for task in tasks)]
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


def list_decoders() -> str:
    """The decoders, their sources and tuning grids, as `--list-decoders` prints them.

    Example:
        >>> list_decoders().splitlines()[0].split()[:2]
        ['decoder', 'source']
    """
    lines = [f"{'decoder':<20}{'source':<15}{'settings (first = default; tuning budget ' + str(TUNING_BUDGET) + ')'}"]
    for name, spec in DECODERS.items():
        lines.append(f"{name:<20}{spec.source:<15}{'; '.join(json.dumps(g) for g in spec.grid)}")
        lines.append(f"{'':<20}{spec.description}")
    return "\n".join(lines)


def tune_and_write(args: argparse.Namespace, runner: Runner, bank, tuned_path: Path) -> dict:
    """With `--tune`, tunes every chosen decoder on the dev split and writes the winners (with the dev scores
    and this run's provenance) to `tuned_path`, keeping what an earlier run tuned; returns the settings to
    run with (task tuned on -> decoder -> settings), read from `tuned_path` when it exists, else `{}`.

    Args:
        args (`argparse.Namespace`): the checked arguments (`tune`, `tasks`, `decoder_names`, ...).
        runner ([`Runner`]): generates on every process.
        bank ([`MetricBank`] or `None`): the metrics (main process only).
        tuned_path (`Path`): the tuned settings file, read and (with `--tune`) written.
    """
    state = runner.state
    previous = json.loads(tuned_path.read_text()) if tuned_path.is_file() else {}
    settings = previous.get("settings", {})
    if not args.tune:
        return settings
    tuning = tune(runner, bank, args.tasks, args.decoder_names, settings)
    if state.is_main_process:
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
        tuned_path.write_text(json.dumps({"settings": tuning["settings"], "log": log, "runs": runs}, indent=1))
    state.wait_for_everyone()
    return json.loads(tuned_path.read_text())["settings"]


class Evaluation:
    """What the test-split run produced, keyed by task (then decoder), as the results JSON keys it.

    (A plain class, not a dataclass: `icp eval` loads this file with `importlib` without registering it in
    `sys.modules`, where `dataclasses` would look its annotations up.)

    Example:
        >>> from bench.tasks import load_tasks
        >>> ev = Evaluation()
        >>> task = load_tasks()["nq_open"]
        >>> ev.add(task, "greedy", [{"prompt_text": "Q?"}], [{"id": 0, "text": "A"}], {"accuracy": 1.0}, {}, {})
        >>> ev.results, ev.n, ev.examples[0]["task"], ev.examples[0]["suite"]
        ({'nq_open': {'greedy': {'accuracy': 1.0}}}, {'nq_open': 1}, 'nq_open', 'qa')
    """

    def __init__(self) -> None:
        self.results: dict[str, dict[str, dict]] = {}
        self.intervals: dict[str, dict[str, dict]] = {}
        self.hyperparameters: dict[str, dict[str, dict]] = {}
        self.n: dict[str, int] = {}
        self.examples: list[dict] = []

    def add(self, task, decoder: str, items: list[dict], rows: list[dict], values: dict, ci: dict, params) -> None:
        """Records `decoder`'s scores on `task` (`values`, intervals `ci`, the settings `params`) and its rows.

        Args:
            task ([`Task`]): the task.
            decoder (`str`): the decoder's name.
            items (`list[dict]`): the task's examples, each with `prompt_text`.
            rows (`list[dict]`): the generations, in the order of `items`.
            values (`dict`): metric -> number.
            ci (`dict`): metric -> [low, high].
            params (`dict`): the settings the decoder ran with.
        """
        if len(rows) != len(items):
            raise ValueError(
                f"`rows` has {len(rows)} generations for {len(items)} `items` of task {task.name!r}: one per item."
            )
        self.n[task.name] = len(items)
        self.results.setdefault(task.name, {})[decoder] = values
        self.intervals.setdefault(task.name, {})[decoder] = ci
        self.hyperparameters.setdefault(task.name, {})[decoder] = params
        for item, row in zip(items, rows):
            self.examples.append(
                {"suite": task.suite, "task": task.name, "decoder": decoder, **row, "prompt": item["prompt_text"]}
            )


def evaluate(args: argparse.Namespace, runner: Runner, bank, settings: dict) -> Evaluation:
    """Every chosen decoder on `args.split` of every task, scored (on the main process; the others return an
    empty [`Evaluation`]).

    Args:
        args (`argparse.Namespace`): the checked arguments (`tasks`, `decoder_names`, `split`, ...).
        runner ([`Runner`]): generates on every process.
        bank ([`MetricBank`] or `None`): the metrics (main process only).
        settings (`dict`): task tuned on -> decoder -> settings (a decoder without any runs its defaults).
    """
    from bench.scoring import score_task

    state = runner.state
    evaluation = Evaluation()
    for task in args.tasks:
        items = task.items(args.split, args.data_dir, args.limit)
        for decoder in args.decoder_names:
            params = settings.get(task.tuned_on, {}).get(decoder)
            rows = runner.generate(task, items, decoder, params, f"{task.name}/{decoder}")
            if not state.is_main_process:
                continue
            values, ci = score_task(task, rows, items, bank, n_bootstrap=args.bootstrap, seed=args.seed)
            used = params if params is not None else get_decoder(decoder).grid[0]
            evaluation.add(task, decoder, items, rows, values, ci, used)
            state.print(
                f"{task.name}/{decoder}: "
                + ", ".join(
                    f"{k}={v:.3f}"
                    for k, v in values.items()
                    if k in ("coherence", "rep_4", "loop_rate", "accuracy", "truthful_rate", "auroc_icp_F")
                )
            )
    return evaluation


def build_report(
    args: argparse.Namespace,
    evaluation: Evaluation,
    *,
    tuned: str | None = None,
    processes: int = 1,
    runtime_s: float | None = None,
    argv: list[str] | None = None,
) -> dict[str, Any]:
    """The results JSON, keyed by task (the layout is described in `bench.results`).

    Args:
        args (`argparse.Namespace`): the checked arguments; `args.tasks` lists the [`Task`]s run.
        evaluation ([`Evaluation`]): the scores.
        tuned (`str`, *optional*): the tuned settings file the run used, if any.
        processes (`int`, *optional*, defaults to 1): the number of processes.
        runtime_s (`float`, *optional*): the run's wall time.
        argv (`list[str]`, *optional*): the command's arguments (default: `sys.argv[1:]`).

    Example:
        >>> from bench.tasks import load_tasks
        >>> task = load_tasks()["nq_open"]
        >>> args = build_parser().parse_args(["--suite", "qa", "--decoders", "greedy"])
        >>> args.tasks, args.decoder_names = [task], ["greedy"]
        >>> ev = Evaluation()
        >>> ev.add(task, "greedy", [{"prompt_text": "Q?"}], [{"id": 0, "text": "A"}], {"accuracy": 1.0}, {}, {})
        >>> report = build_report(args, ev, argv=[])
        >>> report["results"]["nq_open"]["greedy"], report["versions"], report["group_subtasks"]
        ({'accuracy': 1.0}, {'nq_open': 1}, {'qa': ['nq_open']})
        >>> report["higher_is_better"]["nq_open"]["abstention_rate"], report["tasks"]["nq_open"]["n"]
        (False, 1)
    """
    ran = [t for t in args.tasks if t.name in evaluation.results]
    groups: dict[str, list[str]] = {}
    for task in ran:
        groups.setdefault(task.suite, []).append(task.name)
    return {
        "results": evaluation.results,
        "intervals": evaluation.intervals,
        "hyperparameters": evaluation.hyperparameters,
        "higher_is_better": {t.name: t.higher_is_better() for t in ran},
        "n": dict(evaluation.n),
        "versions": {t.name: t.version for t in ran},
        "tasks": {
            t.name: {
                "suite": t.suite,
                "version": t.version,
                "n": evaluation.n.get(t.name),
                "max_new_tokens": t.max_new_tokens,
                "tuned_on": t.tuned_on,
            }
            for t in ran
        },
        "group_subtasks": groups,
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
            "tuned": tuned,
            "processes": processes,
        },
        "packages": _versions(),
        "git_hash": _git_hash(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "runtime_s": None if runtime_s is None else round(runtime_s, 1),
        "command": " ".join(["python eval/run.py", *(argv if argv is not None else sys.argv[1:])]),
    }


def write_outputs(report: dict[str, Any], examples: list[dict], out: str | os.PathLike, plots: bool = True) -> str:
    """Writes `out` (the results JSON), `<out>.examples.jsonl`, `<out>.md` and (unless `plots=False`) the
    plots; returns the markdown.

    Args:
        report (`dict`): the results JSON ([`build_report`]).
        examples (`list[dict]`): every generation, with `suite`, `task` and `decoder`.
        out (`str` or `os.PathLike`): the results JSON's path; its folder is created.
        plots (`bool`, *optional*, defaults to `True`): write the plots.
    """
    from bench.report import write_report

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    with open(out.with_suffix(".examples.jsonl"), "w") as handle:
        for row in examples:
            handle.write(json.dumps(row) + "\n")
    return write_report(report, out, plots=plots, examples=examples)


def _process_state():
    """accelerate's `PartialState` of this process; on a machine without CUDA, processes started by torchrun
    (`accelerate launch --multi_gpu`) talk over gloo and share the CPU's threads."""
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes > 1 and state.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // state.num_processes))
    return state


def _load(args: argparse.Namespace, state) -> tuple[Runner, Any]:
    """The model on `--device` (else this process's device) in a [`Runner`], and the metrics (main process only)."""
    import torch
    from bench.scoring import MetricBank

    from icp import load_default_model

    device = args.device if args.device is not None else state.device
    model, tokenizer = load_default_model(args.model, device=device, torch_dtype=getattr(torch, args.dtype))
    model.eval()
    return Runner(args, state, model, tokenizer), MetricBank() if state.is_main_process else None


def _tune(args: argparse.Namespace, runner: Runner, bank) -> dict | None:
    """The settings to evaluate with ([`tune_and_write`]); `None` with `--tune-only`, once they are written."""
    settings = tune_and_write(args, runner, bank, Path(args.tuned))
    if not args.tune_only:
        return settings
    runner.observer.remove_hooks()
    runner.state.print(f"wrote {Path(args.tuned)}")
    return None


def _write(
    args: argparse.Namespace, evaluation: Evaluation, settings: dict, state, started: float, argv: list[str] | None
) -> None:
    """Writes the results JSON, the examples, the tables and the plots; prints the tables."""
    report = build_report(
        args,
        evaluation,
        tuned=str(Path(args.tuned)) if settings else None,
        processes=state.num_processes,
        runtime_s=time.time() - started,
        argv=argv,
    )
    print(write_outputs(report, evaluation.examples, args.out, plots=not args.no_plots))
    state.print(f"wrote {args.out} ({report['runtime_s']} s)")


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring): list the decoders, or tune, evaluate and write.

    Args:
        argv (`list[str]`, *optional*): the arguments (default: `sys.argv[1:]`).

    Returns:
        `int`: 0; a bad argument exits with 2 (argparse).

    Example:
        >>> main(["--list-decoders"])  # doctest: +ELLIPSIS
        decoder             source ...
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_decoders:
        print(list_decoders())
        return 0
    _check_args(parser, args)
    state = _process_state()
    started = time.time()
    runner, bank = _load(args, state)
    try:  # a base model (no chat template) runs the chat tasks in their base form, or says why it cannot
        args.tasks = [task.for_tokenizer(runner.tokenizer) for task in args.tasks]
    except ValueError as error:
        runner.observer.remove_hooks()
        parser.error(str(error))
    settings = _tune(args, runner, bank)
    if settings is None:
        return 0
    evaluation = evaluate(args, runner, bank, settings)
    runner.observer.remove_hooks()
    if state.is_main_process:
        _write(args, evaluation, settings, state, started, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
