"""What ICP costs: generate() throughput with ICP against plain multinomial sampling, and the per-step
cost of ICP's signals against one read of the logits.

Every decoder generates exactly `--max-new-tokens` tokens per row (EOS masked with `min_new_tokens`,
ICP's stopping bounds out of reach) so that all do the same model work; runs are interleaved
(plain, icp, ..., plain, icp, ...) and repeated, and the table reports the median time per step and
the median ratio to plain sampling with its min-max spread over repeats.

Run:
    python eval/overhead.py                                   # batches 1,8,32,64, 128 tokens, 3 repeats
    python eval/overhead.py --batches 1,8 --repeats 5 --decoders plain,icp
    python eval/overhead.py --memory                           # ICP's memory over 4096 steps at batch 32
    python eval/overhead.py --signals-only --compile           # adds ICP with torch.compile'd fused passes
    python eval/overhead.py --kernels                          # exp vs exp2, fresh vs reused, at batch 32
    python eval/overhead.py --model gemma-3-270m --batches 1,8,32   # the second model (262,144-token vocabulary)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icp import ICP, load_default_model  # noqa: E402
from icp.prompts import DEMO_PROMPTS as PROMPTS  # noqa: E402

# ICP with its stopping bounds out of reach: the same number of steps as plain sampling.
NEVER_STOP = {
    "loop": {"max_period": 1, "min_repeats": 2, "min_loop_tokens": 1_000_000},
    "divergence": {"free_energy_bound": 1e9, "meta_uncertainty_bound": 1e9},
}
BASELINES = {
    "mirostat": ("icp.baselines", "MirostatV2LogitsProcessor"),
    "edt": ("icp.baselines", "EDTLogitsProcessor"),
    "entropix": ("icp.baselines", "EntropixLogitsProcessor"),
    "adaptive_p": ("icp.baselines", "AdaptivePLogitsProcessor"),
    "dry": ("icp.baselines", "DRYLogitsProcessor"),
}
# ICP's per-step variants in the signals table: the default (embedding coherence, de-repetition),
# with online tracking of the critical region (opt-in), and without the model (logits-only coherence).
ICP_VARIANTS = {
    "embedding": {},
    "tracking": {"tracking": {"rate": 0.05}},
    "logits": {},
}


def make_inputs(tokenizer, batch: int):
    """`batch` prompts, through the chat template when the tokenizer has one (a base model gets them plain)."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    if getattr(tokenizer, "chat_template", None):
        prompts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    return tokenizer(prompts, return_tensors="pt", padding=True)


def decoder_kwargs(name: str, model):
    plain = {"do_sample": True, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    if name == "plain":
        return plain
    if name == "icp":
        return ICP(model, **NEVER_STOP).generation_kwargs()
    module, cls = BASELINES[name]
    processor = getattr(importlib.import_module(module), cls)()
    return {**plain, "logits_processor": [processor]}


def time_generate(model, inputs, kwargs, max_new_tokens: int, pad_token_id: int) -> tuple[float, int]:
    from transformers import LogitsProcessorList

    kwargs = dict(kwargs)
    if isinstance(kwargs.get("logits_processor"), list) and not isinstance(kwargs["logits_processor"], ICP):
        kwargs["logits_processor"] = LogitsProcessorList(kwargs["logits_processor"])
    torch.manual_seed(0)
    start = time.perf_counter()
    out = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens,
        pad_token_id=pad_token_id,
        **kwargs,
    )
    elapsed = time.perf_counter() - start
    return elapsed, out.shape[1] - inputs["input_ids"].shape[1]


def throughput_table(model, tokenizer, batches, decoders, repeats, max_new_tokens):
    rows = []
    for batch in batches:
        inputs = make_inputs(tokenizer, batch)
        time_generate(model, inputs, decoder_kwargs("plain", model), 4, tokenizer.pad_token_id)  # warm-up
        per_step = {name: [] for name in decoders}
        for _ in range(repeats):
            for name in decoders:
                kwargs = decoder_kwargs(name, model)
                elapsed, steps = time_generate(model, inputs, kwargs, max_new_tokens, tokenizer.pad_token_id)
                per_step[name].append(elapsed / steps)
                del kwargs
                gc.collect()
        for name in decoders:
            ratios = [t / p for t, p in zip(per_step[name], per_step["plain"])]
            rows.append(
                {
                    "batch": batch,
                    "decoder": name,
                    "ms_per_step": 1000 * statistics.median(per_step[name]),
                    "tokens_per_s": batch / statistics.median(per_step[name]),
                    "ratio": statistics.median(ratios),
                    "ratio_min": min(ratios),
                    "ratio_max": max(ratios),
                }
            )
            r = rows[-1]
            print(
                f"batch {batch:>3} {name:<9} {r['ms_per_step']:8.2f} ms/step {r['tokens_per_s']:8.1f} tok/s  "
                f"x{r['ratio']:.3f} [{r['ratio_min']:.3f}, {r['ratio_max']:.3f}]",
                flush=True,
            )
    return rows


@contextlib.contextmanager
def compiled_fused_passes():
    """Within the block, ICP's processor runs `torch.compile(dynamic=True)` versions of its two fused
    distribution passes (`observed_step`, `control_side`): a benchmark switch, not an ICP option.
    Compilation happens in the first calls, which the table's warm-up steps absorb. The eager
    functions are put back on exit, so later rows of a table are not timed compiled by mistake."""
    import icp.processors as processors
    from icp.signals import fused

    eager = processors.observed_step, processors.control_side
    torch._dynamo.reset()  # each batch size compiles afresh, not against the previous ones' recompile budget
    processors.observed_step = torch.compile(fused.observed_step, dynamic=True)
    processors.control_side = torch.compile(fused.control_side, dynamic=True)
    try:
        yield
    finally:
        processors.observed_step, processors.control_side = eager


def signal_cost_table(
    vocab: int, batches, embeddings: torch.Tensor, baselines=(), repeats: int = 50, compiled: bool = False
):
    """Per-step cost of ICP's processor and criteria alone against one read of the logits, for the
    default embedding coherence, with tracking, for the logits-only fallback (and, with `compiled`,
    with torch.compile'd fused passes), and of each baseline processor."""
    from icp import ICPConfig
    from icp.criteria import DivergenceStoppingCriteria, LoopStoppingCriteria
    from icp.processors import ICPLogitsProcessor

    variants = dict(ICP_VARIANTS)
    if compiled:
        variants["compiled"] = {}
    rows = []
    for batch in batches:
        scores = torch.randn(batch, vocab) * 3
        steps = repeats + 5
        ids = torch.randint(0, vocab, (batch, 9 + steps))
        timings = {"read": [], **{name: [] for name in variants}, **{name: [] for name in baselines}}
        for name in baselines:
            module, cls = BASELINES[name]
            baseline = getattr(importlib.import_module(module), cls)()
            for t in range(steps):
                start = time.perf_counter()
                baseline(ids[:, : 8 + t], scores)
                if t >= 5:
                    timings[name].append(time.perf_counter() - start)
        for source, overrides in variants.items():
            proc = ICPLogitsProcessor(ICPConfig(**overrides), embeddings=embeddings if source != "logits" else None)
            criteria = [LoopStoppingCriteria(proc.state), DivergenceStoppingCriteria(proc.state)]
            switch = compiled_fused_passes() if source == "compiled" else contextlib.nullcontext()
            with switch:
                timings[source] += _time_icp_steps(proc, criteria, ids, scores, steps, timings["read"])
        read_us = 1e6 * statistics.median(timings["read"])
        row = {"batch": batch, "read_us": read_us}
        for source in variants:
            row[f"{source}_us"] = 1e6 * statistics.median(timings[source])
        for name in baselines:
            row[f"{name}_us"] = 1e6 * statistics.median(timings[name])
        rows.append(row)
        print(
            f"batch {batch:>3}: one read of B x V logits {read_us:8.1f} us; ICP step (processor + criteria) "
            f"{row['embedding_us']:8.1f} us = {row['embedding_us'] / read_us:5.1f} reads (embedding coherence), "
            f"{row['tracking_us']:8.1f} us with tracking, "
            f"{row['logits_us']:8.1f} us = {row['logits_us'] / read_us:5.1f} reads (logits-only)"
            + (f"; compiled fused passes {row['compiled_us']:8.1f} us" if compiled else "")
            + "".join(f"; {name} {row[f'{name}_us']:8.1f} us" for name in baselines)
        )
    return rows


def _time_icp_steps(proc, criteria, ids, scores, steps: int, reads: list) -> list[float]:
    """Seconds per step of `proc` and `criteria` on `scores`, after 5 warm-up steps; appends the time
    of one read of `scores` per timed step to `reads`."""
    timings = []
    for t in range(steps):
        start = time.perf_counter()
        scores.sum()
        read = time.perf_counter() - start
        start = time.perf_counter()
        proc(ids[:, : 8 + t], scores)
        for criterion in criteria:
            criterion(ids[:, : 9 + t], None)
        elapsed = time.perf_counter() - start
        # Called by hand, ICP returns a fresh tensor every step; inside generate() (without
        # output_scores) it reuses one buffer. Time what generate() gets.
        proc.state.workspace.reuse_output = True
        if t >= 5:
            timings.append(elapsed)
            reads.append(read)
    return timings


def memory_check(vocab: int, embeddings: torch.Tensor, batch: int = 32, new_tokens: int = 4096):
    """Runs ICP's processor and criteria alone (synthetic logits, growing input_ids) for `new_tokens`
    steps at `batch` and reports process memory against the trace buffers' size.

    The model is left out on purpose: its KV cache grows with every token whatever the decoder, and
    would hide what ICP itself holds.
    """
    from icp import ICPConfig
    from icp.criteria import DivergenceStoppingCriteria, LoopStoppingCriteria
    from icp.processors import ICPLogitsProcessor

    torch.manual_seed(0)
    prompt = 16
    ids = torch.randint(0, vocab, (batch, prompt + new_tokens))
    proc = ICPLogitsProcessor(ICPConfig(**NEVER_STOP), embeddings=embeddings)
    criteria = [LoopStoppingCriteria(proc.state), DivergenceStoppingCriteria(proc.state)]
    scores = torch.randn(batch, vocab) * 3
    rss = []
    start = time.perf_counter()
    for t in range(new_tokens):
        proc(ids[:, : prompt + t], scores)
        proc.state.workspace.reuse_output = True  # as inside generate() without output_scores
        if t == 0:
            # Preallocate as generate() would (max_new_tokens is known there): one allocation.
            proc.state.buffers.ensure(new_tokens - 1)
        if t == 32:
            # Baseline after the first steps, once the per-step (batch, vocab) temporaries exist.
            gc.collect()
            base = _rss_mb()
        for criterion in criteria:
            criterion(ids[:, : prompt + t + 1], None)
        if t % 512 == 511:
            rss.append(_rss_mb())
    elapsed = time.perf_counter() - start
    trace_mb = proc.state.buffers.nbytes() / 2**20
    lengths = proc.state.repeat_lengths
    repeat_mb = lengths.numel() * lengths.element_size() / 2**20 if lengths is not None else 0.0
    growth = max(rss) - base
    workspace_mb = proc.state.workspace.nbytes() / 2**20
    print(f"ICP alone, batch {batch}, {new_tokens} steps in {elapsed:.0f} s")
    print(f"trace buffers: {trace_mb:.1f} MiB, preallocated at step 0 (before the baseline below)")
    print(
        f"fused-pass workspace (batch x vocab intermediates and output, reused every step): {workspace_mb:.1f} MiB, "
        "allocated at step 0"
    )
    print(
        f"de-repetition state (repeat length per searched position, at most derepeat_window, replaced each step): "
        f"{repeat_mb:.2f} MiB at the end"
    )
    print(f"RSS at step 32: {base:.0f} MiB; every 512 steps: " + ", ".join(f"{r:.0f}" for r in rss))
    print(f"RSS growth from step 32 to the end: {growth:.1f} MiB (the trace was allocated at step 0)")
    return {
        "trace_mib": trace_mb,
        "repeat_state_mib": repeat_mb,
        "workspace_mib": workspace_mb,
        "rss_base_mib": base,
        "rss_mib": rss,
        "growth_mib": growth,
        "seconds": elapsed,
    }


def kernel_table(vocab: int, batch: int = 32, repeats: int = 50) -> list[dict]:
    """The two kernel facts the fused passes rely on, at (batch, vocab): torch's `exp2` against `exp`,
    and writing into a reused buffer against allocating the result."""
    x = torch.randn(batch, vocab) * 3
    x -= x.amax(dim=-1, keepdim=True)
    out = torch.empty_like(x)
    cases = {
        "exp (fresh result)": lambda: torch.exp(x),
        "exp into a reused buffer": lambda: torch.exp(x, out=out),
        "exp2 into a reused buffer": lambda: torch.exp2(x, out=out),
        "multiply by log2 e, then exp2, into a reused buffer": lambda: torch.mul(x, 1.4427, out=out).exp2_(),
        "x * x (fresh result)": lambda: x * x,
        "x * x into a reused buffer": lambda: torch.mul(x, x, out=out),
    }
    rows = []
    for name, fn in cases.items():
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        rows.append({"kernel": name, "us": 1e6 * statistics.median(times), "us_max": 1e6 * max(times)})
        print(f"batch {batch}, vocab {vocab}: {name:<55} {rows[-1]['us']:8.1f} us (max {rows[-1]['us_max']:.1f})")
    return rows


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,8,32,64")
    parser.add_argument("--decoders", default="plain,icp", help="plain,icp and any of " + ",".join(BASELINES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--memory", action="store_true", help="run the 4,096-token, batch-32 memory check instead")
    parser.add_argument("--signals-only", action="store_true", help="only the per-step cost table")
    parser.add_argument(
        "--compile", action="store_true", help="signals table: also ICP with torch.compile'd fused passes (last)"
    )
    parser.add_argument("--kernels", action="store_true", help="only time exp against exp2, fresh against reused")
    parser.add_argument("--out", default=None, help="write the tables as JSON")
    parser.add_argument(
        "--model", default=None, help="an embedded model name (e.g. gemma-3-270m) or a folder (default: SmolLM2)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_default_model(args.model)
    print(f"{model.name_or_path} (vocabulary {model.config.vocab_size}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device cpu")
    result = {}
    if args.kernels:
        result["kernels"] = kernel_table(model.config.vocab_size)
    elif args.memory:
        result["memory"] = memory_check(model.config.vocab_size, model.get_input_embeddings().weight.detach())
    else:
        batches = [int(b) for b in args.batches.split(",")]
        decoders = args.decoders.split(",")
        if decoders[0] != "plain":
            decoders = ["plain"] + [d for d in decoders if d != "plain"]
        print("\nper-step cost of ICP alone against one read of the logits:")
        embeddings = model.get_input_embeddings().weight.detach()
        baselines = [d for d in decoders if d in BASELINES]
        result["signals"] = signal_cost_table(
            model.config.vocab_size, batches, embeddings, baselines, compiled=args.compile
        )
        if not args.signals_only:
            print(f"\ngenerate() with {args.max_new_tokens} new tokens, median of {args.repeats} interleaved repeats:")
            result["throughput"] = throughput_table(
                model, tokenizer, batches, decoders, args.repeats, args.max_new_tokens
            )
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
