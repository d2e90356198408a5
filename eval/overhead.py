"""What ICP costs: generate() throughput with ICP against plain multinomial sampling, and the per-step
cost of ICP's signals against one read of the logits.

Every decoder generates exactly `--max-new-tokens` tokens per row (EOS masked with `min_new_tokens`,
ICP's stopping bounds out of reach) so that all do the same model work; runs are interleaved
(plain, icp, ..., plain, icp, ...) and repeated, and the table reports the median time per step and
the median ratio to plain sampling with its min-max spread over repeats.

Run:
    python eval/overhead.py                                   # batches 1,8,32,64, 128 tokens, 3 repeats
    python eval/overhead.py --batches 1,8 --repeats 5 --decoders plain,icp
    python eval/overhead.py --memory                           # trace memory at 4096 tokens, batch 32
"""

from __future__ import annotations

import argparse
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

PROMPTS = [
    "Write a short story about a robot who learns to paint.",
    "Explain why the sea is salty.",
    "What are three good habits for staying healthy?",
    "Describe a walk through a forest in autumn.",
    "How do vaccines train the immune system?",
    "Write a haiku about the first snow.",
    "What is the difference between weather and climate?",
    "Give advice to someone starting their first job.",
]
# ICP with its stopping bounds out of reach: the same number of steps as plain sampling.
NEVER_STOP = {
    "loop": {"max_period": 1, "min_repeats": 2, "min_loop_tokens": 1_000_000},
    "divergence": {"free_energy_bound": 1e9, "meta_uncertainty_bound": 1e9},
}
BASELINES = {
    "mirostat": ("icp.baselines", "MirostatV2LogitsProcessor"),
    "edt": ("icp.baselines", "EDTLogitsProcessor"),
    "entropix": ("icp.baselines", "EntropixLogitsProcessor"),
    "dry": ("icp.baselines", "DRYLogitsProcessor"),
}


def make_inputs(tokenizer, batch: int):
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


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


def signal_cost_table(vocab: int, batches, repeats: int = 50):
    """Per-step cost of ICP's processor alone (logits-only coherence) against one read of the logits."""
    from icp import ICPConfig
    from icp.processors import ICPLogitsProcessor

    rows = []
    for batch in batches:
        scores = torch.randn(batch, vocab)
        proc = ICPLogitsProcessor(ICPConfig(**NEVER_STOP))
        steps = repeats + 5
        ids = torch.randint(0, vocab, (batch, 8 + steps))

        def read(scores=scores):
            return scores.sum()

        def icp_step(t, proc=proc, ids=ids, scores=scores):
            return proc(ids[:, : 8 + t], scores)

        for t in range(5):
            icp_step(t)
            read()
        timings = {"read": [], "icp": []}
        for t in range(5, steps):
            start = time.perf_counter()
            read()
            timings["read"].append(time.perf_counter() - start)
            start = time.perf_counter()
            icp_step(t)
            timings["icp"].append(time.perf_counter() - start)
        read_us = 1e6 * statistics.median(timings["read"])
        icp_us = 1e6 * statistics.median(timings["icp"])
        rows.append({"batch": batch, "read_us": read_us, "icp_us": icp_us, "reads": icp_us / read_us})
        print(
            f"batch {batch:>3}: one read of B x V logits {read_us:9.1f} us, "
            f"ICP step {icp_us:9.1f} us = {icp_us / read_us:6.1f} reads"
        )
    return rows


def memory_check(model, tokenizer, batch: int, new_tokens: int):
    """Generates `new_tokens` at `batch` with ICP and reports trace size and process memory growth."""
    import resource

    inputs = make_inputs(tokenizer, batch)
    icp = ICP(model, **NEVER_STOP)
    rss = []

    class Probe:
        def __call__(self, input_ids, scores):
            if (input_ids.shape[1] - inputs["input_ids"].shape[1]) % 512 == 0:
                rss.append(_rss_mb())
            return scores

    from transformers import LogitsProcessorList

    kwargs = icp.generation_kwargs()
    kwargs["logits_processor"] = LogitsProcessorList([*icp, Probe()])
    start = time.perf_counter()
    model.generate(
        **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id, **kwargs
    )
    elapsed = time.perf_counter() - start
    trace_mb = icp.processor.state.buffers.nbytes() / 2**20
    print(f"batch {batch}, {new_tokens} tokens in {elapsed:.0f} s: trace buffers {trace_mb:.1f} MiB (preallocated)")
    print("RSS (MiB) every 512 steps: " + ", ".join(f"{r:.0f}" for r in rss))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return {"trace_mib": trace_mb, "rss_mib": rss, "seconds": elapsed}


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
    parser.add_argument("--out", default=None, help="write the tables as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tokenizer = load_default_model()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    result = {}
    if args.memory:
        result["memory"] = memory_check(model, tokenizer, 32, 4096)
    else:
        batches = [int(b) for b in args.batches.split(",")]
        decoders = args.decoders.split(",")
        if decoders[0] != "plain":
            decoders = ["plain"] + [d for d in decoders if d != "plain"]
        print("\nsignal cost (ICP processor alone, logits-only coherence) vs one read of the logits:")
        result["signals"] = signal_cost_table(model.config.vocab_size, batches)
        print(f"\ngenerate() with {args.max_new_tokens} new tokens, median of {args.repeats} interleaved repeats:")
        result["throughput"] = throughput_table(model, tokenizer, batches, decoders, args.repeats, args.max_new_tokens)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
