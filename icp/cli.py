"""The `icp` command line: `icp generate` (generate with ICP, print or save the trace), `icp trace`
(summarise, plot or export a saved trace) and `icp calibrate` (measure a model's C(H) curve and write
its model card). `icp --version` prints the version.

Conventions: every subcommand that loads a model takes `--model`, `--device` (a torch device string)
and `--dtype` (auto, float32, float16 or bfloat16); a subcommand's bad or unknown option is reported by
that subcommand (`icp generate: error: ...`, with its usage line) and exits 2.

Exit codes: 0 success; 2 bad usage or a bad configuration value; 3 the model cannot be loaded (missing
package, unknown id or folder); 4 an input file cannot be read (or an output file written).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_DATA = 0, 2, 3, 4

__all__ = ["main", "build_parser"]


class _CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; dotted keys reach nested configs (`--set divergence.patience=4`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise _CliError(EXIT_USAGE, f"`--set` (={pair!r}) has to look like key=value, e.g. target_entropy=1.8.")
        key, value = pair.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = _parse_value(value.strip())
    return out


def _read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = list(args.prompt or [])
    if args.prompts_file:
        try:
            text = Path(args.prompts_file).read_text(encoding="utf-8")
        except OSError as err:
            raise _CliError(EXIT_DATA, f"`--prompts-file` (={args.prompts_file!r}) cannot be read: {err}") from err
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        from .prompts import DEMO_PROMPTS

        prompts = list(DEMO_PROMPTS)
    return prompts


#: `--dtype` values: `auto` is the checkpoint's own dtype (float32 for the embedded default model).
DTYPES: tuple[str, ...] = ("auto", "float32", "float16", "bfloat16")


def _device(text: str) -> str:
    """argparse type of `--device`: a device string torch accepts, whose device this machine has."""
    import torch

    examples = "cpu, cuda, cuda:0, mps (any device string torch.device accepts)"
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: not a torch device; allowed: {examples}") from err
    backend = getattr(torch, device.type, None) if device.type not in ("cpu", "meta") else None
    if device.type == "meta":
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: a meta device holds no weights; allowed: {examples}")
    if backend is not None and hasattr(backend, "is_available"):
        if not backend.is_available():
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: this machine has no {device.type} device (torch.{device.type}.is_available() "
                f"is False); allowed here: cpu"
            )
        count = backend.device_count() if hasattr(backend, "device_count") else None
        if device.index is not None and count is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"invalid value {text!r}: this machine has {count} {device.type} device(s), "
                f"{device.type}:0 to {device.type}:{count - 1}"
            )
    return text


def _resolve_dtype(text: str, name: str | None):
    """The `torch.dtype` for `--dtype`; `auto` reads the checkpoint's config (float32 when it says none)."""
    import torch

    if text != "auto":
        return getattr(torch, text)
    if name is None:
        return torch.float32  # the embedded default model is a dequantised GGUF, cached in float32
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        return torch.float32  # the load that follows reports the unloadable model
    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _load_model(name: str | None, device: str | None = None, dtype: str = "float32"):
    """Loads `--model` with `--device` and `--dtype` (see [`icp.load_default_model`])."""
    from . import models

    shown = "default" if name is None else repr(name)
    try:
        return models.load_default_model(name, torch_dtype=_resolve_dtype(dtype, name), device=device)
    except (ImportError, ValueError, OSError) as err:
        raise _CliError(EXIT_MODEL, f"cannot load the model ({shown}): {err}") from err
    except RuntimeError as err:  # e.g. out of memory on --device
        raise _CliError(EXIT_MODEL, f"cannot load the model ({shown}) on `--device` (={device!r}): {err}") from err


def _generate(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm
    from transformers import LogitsProcessorList

    from . import ICP
    from .progress import StepProgress

    overrides = _overrides(args.set or [])
    prompts = _read_prompts(args)
    model, tokenizer = _load_model(args.model, args.device, args.dtype)
    try:
        icp = ICP(model, **overrides)
    except (TypeError, ValueError) as err:
        raise _CliError(EXIT_USAGE, f"bad ICP setting: {err}") from err
    if args.chat and getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    else:
        texts = prompts
    inputs = tokenizer(texts, return_tensors="pt", padding=True).to(model.device)
    bar = tqdm(total=args.max_new_tokens, desc="generating", unit="tok", disable=args.quiet, file=sys.stderr)
    progress = StepProgress(bar)
    kwargs = icp.generation_kwargs()
    kwargs["logits_processor"] = LogitsProcessorList([*icp, progress])
    torch.manual_seed(args.seed)
    out = model.generate(**inputs, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs)
    progress.bar.close()
    generated = out[:, inputs["input_ids"].shape[1] :]
    trace = icp.trace
    outputs = [tokenizer.decode(row, skip_special_tokens=True).strip() for row in generated]
    if args.trace_out:
        trace.save(args.trace_out)
    if args.plot:
        trace.plot(args.plot)
    summary = trace.summary()
    if args.json:
        rows = [{"prompt": p, "text": t, **r.to_dict()} for p, t, r in zip(prompts, outputs, summary.rows)]
        json.dump({"generations": rows, "config": icp.config.to_dict()}, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        for i, (p, t) in enumerate(zip(prompts, outputs)):
            print(f"[{i}] {p}\n -> {t}\n")
        print(summary)
        if args.trace_out:
            print(f"trace: {args.trace_out}")
        if args.plot:
            print(f"plot: {args.plot}")
    return EXIT_OK


#: `icp trace --format` values.
TRACE_FORMATS: tuple[str, ...] = ("table", "json", "csv", "parquet")


def _trace(args: argparse.Namespace) -> int:
    from .trace import Trace

    try:
        trace = Trace.load(args.path)
    except (OSError, ValueError, KeyError) as err:
        raise _CliError(EXIT_DATA, f"`path` (={args.path!r}) is not a readable ICP trace: {err}") from err
    if args.plot:
        trace.plot(args.plot)
    if args.json:  # the per-row summary (the table's content) as JSON
        json.dump([r.to_dict() for r in trace.summary().rows], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return EXIT_OK
    try:
        if args.format == "parquet":
            trace.to_parquet(args.out)
        elif args.format == "json":
            text = trace.to_json(args.out)
        elif args.format == "csv":
            text = trace.to_csv(args.out)
        elif args.out:
            Path(args.out).write_text(f"{trace.summary()}\n", encoding="utf-8")
        else:
            text = f"{trace.summary()}\n" + (f"plot: {args.plot}\n" if args.plot else "")
    except ImportError as err:  # --format parquet without pandas/pyarrow: the message says what to install
        raise _CliError(EXIT_USAGE, f"`--format` (={args.format!r}) cannot be written here: {err}") from err
    except OSError as err:
        raise _CliError(EXIT_DATA, f"`--out` (={args.out!r}) cannot be written: {err}") from err
    if not args.out:
        sys.stdout.write(text)
    return EXIT_OK


def _temperatures(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(t) for t in text.replace(",", " ").split()]
    except ValueError as err:
        raise _CliError(
            EXIT_USAGE, f"`--temperatures` (={text!r}) has to be numbers separated by commas, e.g. 0.5,1.0,1.5."
        ) from err
    return values


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import DEFAULT_TEMPERATURES, calibrate
    from .cards import PLOT_FILE, write_card
    from .prompts import CALIBRATION_PROMPTS

    temperatures = _temperatures(args.temperatures) or list(DEFAULT_TEMPERATURES)
    if args.bootstrap < 0:
        raise _CliError(EXIT_USAGE, f"`--bootstrap` (={args.bootstrap}) has to be >= 0.")
    prompt_set = None
    if args.prompts_file:
        try:
            text = Path(args.prompts_file).read_text(encoding="utf-8")
        except OSError as err:
            raise _CliError(EXIT_DATA, f"`--prompts-file` (={args.prompts_file!r}) cannot be read: {err}") from err
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        prompt_set = str(args.prompts_file)  # as given, so the card's command runs again from the same folder
    else:
        prompts = list(CALIBRATION_PROMPTS)
    model, tokenizer = _load_model(args.model, args.device, args.dtype)
    try:
        result = calibrate(
            model,
            tokenizer,
            prompts=prompts,
            temperatures=temperatures,
            max_new_tokens=args.max_new_tokens,
            seed=args.seed,
            n_bootstrap=args.bootstrap,
            progress=not args.quiet,
            chat=args.chat,
            prompt_set=prompt_set,
        )
    except ValueError as err:
        raise _CliError(EXIT_USAGE, f"bad calibration setting: {err}") from err
    model_id = args.model_id or result.model_id or (args.model or "")
    if not model_id:
        raise _CliError(EXIT_USAGE, "the model has no `name_or_path`: pass `--model-id` to name its card.")
    card = write_card(result, model_id, args.out_dir)
    if args.json:
        json.dump(
            {"card": str(card), "plot": str(card.parent / PLOT_FILE), "result": result.to_dict()},
            sys.stdout,
            indent=1,
            default=str,
        )
        sys.stdout.write("\n")
    else:
        print(result.summary())
        print(f"\ncard: {card}\nplot: {card.parent / PLOT_FILE}\n({result.seconds:.0f} s)")
    return EXIT_OK


def _find_suite(explicit: str | None) -> Path:
    """eval/run.py: `--suite-dir`, else `$ICP_EVAL_DIR`, else the checkout this package was installed from."""
    if explicit:
        candidates = [Path(explicit)]
    elif os.environ.get("ICP_EVAL_DIR"):
        candidates = [Path(os.environ["ICP_EVAL_DIR"])]
    else:
        candidates = [Path(__file__).resolve().parent.parent / "eval"]
    for folder in candidates:
        if (folder / "run.py").is_file():
            return folder / "run.py"
    raise _CliError(
        4,
        f"the benchmark suite (eval/run.py) was not found in {[str(c) for c in candidates]}: it lives in the icp "
        "repository, not in the wheel. Run from a checkout (pip install -e .), or pass --suite-dir / set ICP_EVAL_DIR.",
    )


def _eval(args: argparse.Namespace) -> int:
    import importlib.util

    run_py = _find_suite(args.suite_dir)
    spec = importlib.util.spec_from_file_location("icp_eval_run", run_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    forwarded = [a for a in args.suite_args if a != "--"]
    try:
        return int(module.main(forwarded) or 0)
    except SystemExit as done:  # argparse errors in run.py exit 2 with their message
        return int(done.code or 0)


def _model_help() -> str:
    """`--model`'s help: any model id or folder, or an embedded model by name ([`icp.models.EMBEDDED_MODELS`])."""
    from .models import DEFAULT_MODEL_NAME, EMBEDDED_MODELS

    default = next(spec.name for spec in EMBEDDED_MODELS.values() if spec.model_id == DEFAULT_MODEL_NAME)
    return f"model id or folder, or an embedded model ({', '.join(EMBEDDED_MODELS)}; default: {default})"


def _add_model_options(sub: argparse.ArgumentParser) -> None:
    """`--model`, `--device` and `--dtype`: the options of every subcommand that loads a model."""
    sub.add_argument("--model", default=None, help=_model_help())
    sub.add_argument(
        "--device",
        type=_device,
        default=None,
        help="torch device to run the model on, e.g. cpu, cuda, cuda:1, mps (default: cpu)",
    )
    sub.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="the model's weights: auto (the checkpoint's own dtype), float32, float16 or bfloat16 (default: float32)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `icp` command.

    Each subparser is also its namespace's `parser` default, so that [`main`] reports a subcommand's
    errors with that subcommand's usage.

    Example:
        >>> from icp.cli import build_parser
        >>> args = build_parser().parse_args(["generate", "--dtype", "bfloat16", "--device", "cpu"])
        >>> args.dtype, args.device, args.parser.prog
        ('bfloat16', 'cpu', 'icp generate')
    """
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="icp",
        description="Inference Control Plane: closed-loop control of transformers decoding.",
        epilog="Exit codes: 0 ok, 2 bad usage or setting, 3 model not loadable, 4 input file not readable "
        "(or output file not writable).",
    )
    parser.add_argument("--version", action="version", version=f"icp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_generate_parser(commands)
    _add_trace_parser(commands)
    _add_calibrate_parser(commands)
    _add_eval_parser(commands)
    return parser


def _add_generate_parser(commands: argparse._SubParsersAction) -> None:
    """`icp generate`: generate with ICP, print the texts and the trace summary."""
    gen = commands.add_parser(
        "generate",
        help="generate with ICP and print the texts and the trace summary",
        description="Generate with ICP (the whole sampling policy: generate's own warpers off) and report the trace.",
    )
    _add_model_options(gen)
    gen.add_argument("--prompt", action="append", help="a prompt; repeat for a batch (default: 8 built-in prompts)")
    gen.add_argument("--prompts-file", help="a text file with one prompt per line")
    gen.add_argument("--max-new-tokens", type=int, default=128, help="tokens to generate per prompt (default 128)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--no-chat", dest="chat", action="store_false", help="do not apply the chat template")
    gen.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="an ICPConfig value, e.g. target_entropy=1.8 or divergence.patience=4",
    )
    gen.add_argument("--trace-out", help="save the trace (.npz) for `icp trace`")
    gen.add_argument("--plot", help="write the trace plot (PNG)")
    gen.add_argument("--json", action="store_true", help="print JSON (texts and per-row summaries) instead of text")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=_generate, parser=gen)


def _add_trace_parser(commands: argparse._SubParsersAction) -> None:
    """`icp trace`: summarise, plot or export a saved trace."""
    tr = commands.add_parser(
        "trace",
        help="summarise, plot or export a saved trace",
        description="Summarise, plot or export a trace saved by `icp generate --trace-out`. Formats: table (the "
        "per-row summary), json (the whole trace, Trace.to_json: every signal, stop reasons, metadata; NaN as null), "
        "csv (Trace.to_csv: one line per (row, step) a row decoded, with its stop reason and meta.* columns; NaN as "
        "an empty field), parquet (the csv's table with native types; needs icp[pandas] and --out).",
    )
    tr.add_argument("path", help="the .npz file")
    tr.add_argument("--plot", help="write the trace plot (PNG)")
    shape = tr.add_mutually_exclusive_group()
    shape.add_argument("--format", choices=TRACE_FORMATS, default="table", help="what to write (default: table)")
    shape.add_argument("--json", action="store_true", help="print the per-row summary (the table) as JSON")
    tr.add_argument("--out", metavar="PATH", help="write there instead of stdout (required for parquet)")
    tr.set_defaults(handler=_trace, parser=tr)


def _add_calibrate_parser(commands: argparse._SubParsersAction) -> None:
    """`icp calibrate`: sweep temperatures, fit C(H) and write the model card."""
    cal = commands.add_parser(
        "calibrate",
        help="sweep temperatures, fit C(H) and write the model card",
        description="Sample the prompts at a sweep of fixed temperatures, fit coherence against entropy, locate the "
        "critical entropy, set the target entropy and the regime thresholds, and write the model card "
        "(<out-dir>/<slug>/README.md and c_of_h.png) that ICP(model) then loads.",
    )
    _add_model_options(cal)
    cal.add_argument("--model-id", default=None, help="the id the card is written for (default: the model's own)")
    cal.add_argument("--out-dir", default="model_cards", help="folder of model cards (default: model_cards)")
    cal.add_argument("--prompts-file", help="a text file with one prompt per line (default: 16 built-in prompts)")
    cal.add_argument(
        "--temperatures", help="comma-separated sweep (default: 0.3,0.5,0.7,0.85,1.0,1.1,1.2,1.35,1.6,2.0)"
    )
    cal.add_argument("--max-new-tokens", type=int, default=64, help="tokens per prompt and temperature (default 64)")
    cal.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    cal.add_argument("--bootstrap", type=int, default=200, help="prompt resamples for the intervals (default 200)")
    cal.add_argument("--no-chat", dest="chat", action="store_false", help="do not apply the chat template")
    cal.add_argument("--json", action="store_true", help="print the card path and the full result as JSON")
    cal.add_argument("--quiet", action="store_true", help="no progress bar")
    cal.set_defaults(handler=_calibrate, parser=cal)


def _add_eval_parser(commands: argparse._SubParsersAction) -> None:
    """`icp eval`: the benchmark suite of the checkout (eval/run.py), its arguments passed through."""
    ev = commands.add_parser(
        "eval",
        help="run the benchmark suite (eval/run.py): ICP against the baselines",
        description="Run the benchmark suite of the icp checkout (eval/run.py) with the arguments that follow, e.g. "
        "`icp eval --suite loops --decoders greedy,min_p,icp --limit 16`; `icp eval -- --help` lists them.",
    )
    ev.add_argument("--suite-dir", help="the folder holding run.py (default: $ICP_EVAL_DIR, else the checkout's eval/)")
    ev.add_argument("suite_args", nargs=argparse.REMAINDER, help="arguments for eval/run.py")
    ev.set_defaults(handler=_eval, parser=ev)


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code.

    Args:
        argv (`list[str]`, *optional*): arguments (default: `sys.argv[1:]`).
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    sub = args.parser  # errors of a subcommand's options: that subcommand's usage and prog, exit 2
    if args.command == "eval":  # everything eval does not know goes to eval/run.py
        args.suite_args = [*extra, *args.suite_args]
    elif extra:
        sub.error(f"unrecognized arguments: {' '.join(extra)}")
    if getattr(args, "max_new_tokens", 1) < 1:
        sub.error(f"`--max-new-tokens` (={args.max_new_tokens}) has to be >= 1.")
    if args.command == "trace" and args.format == "parquet" and not args.out:
        sub.error("`--format parquet` writes a binary file: give it `--out PATH`.")
    try:
        return args.handler(args)
    except _CliError as err:
        print(f"icp {args.command}: error: {err}", file=sys.stderr)
        return err.code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
