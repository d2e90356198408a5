"""Measures the signals of the default model over a temperature sweep: where ICP's defaults come from.

For each temperature T, the model samples `--max-new-tokens` tokens for each built-in prompt with a
fixed temperature T and no truncation (ICP pinned at T: `min_temperature = max_temperature = T`,
`min_p = 0`, no dissipation), and ICP records H, H_Q, C, U, F and loop progress per token. The
script prints, per T, the means and the loop rate, the coherence-vs-entropy slope, and the per-token
quantiles that the default regime thresholds are read from.

Run:
    python examples/measure_defaults.py --out outputs/defaults.json
    python examples/measure_defaults.py --coherence hidden     # compare coherence sources
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from icp import ICP, REGIMES, load_default_model
from icp.prompts import CALIBRATION_PROMPTS as PROMPTS


def chat_batch(tokenizer, prompts):
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--temperatures", default="0.3,0.5,0.7,0.9,1.1,1.3,1.6,2.0")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write per-temperature results as JSON")
    parser.add_argument(
        "--coherence", default="auto", choices=["auto", "embedding", "hidden", "logits"], help="coherence source"
    )
    parser.add_argument(
        "--meta-uncertainty", default="entropy_volatility", choices=["entropy_volatility", "varentropy"]
    )
    args = parser.parse_args()

    model, tokenizer = load_default_model()
    inputs = chat_batch(tokenizer, PROMPTS)
    results = []
    tokens = {}
    for temperature in [float(t) for t in args.temperatures.split(",")]:
        icp = ICP(
            model,
            card=None,  # the documented defaults, which this script measures, not the model card's values
            min_temperature=temperature,
            max_temperature=temperature,
            initial_temperature=temperature,
            min_p=0.0,
            heat_rate=0.0,
            cool_rate=0.0,
            derepeat_penalty=0.0,
            coherence=args.coherence,
            meta_uncertainty=args.meta_uncertainty,
        )
        torch.manual_seed(args.seed)
        start = time.perf_counter()
        model.generate(
            **inputs,
            max_new_tokens=args.max_new_tokens,
            logits_processor=icp,
            stopping_criteria=icp.stopping_criteria,
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            pad_token_id=tokenizer.pad_token_id,
        )
        elapsed = time.perf_counter() - start
        trace = icp.trace
        d = trace.to_dict()
        decoded = d["regime"] >= 0
        row = {
            "temperature": temperature,
            "seconds": elapsed,
            "entropy": float(np.nanmean(d["entropy"])),
            "sampled_entropy": float(np.nanmean(d["sampled_entropy"])),
            "coherence": float(np.nanmean(d["coherence"])),
            "meta_uncertainty": float(np.nanmean(d["meta_uncertainty"])),
            "free_energy": float(np.nanmean(d["free_energy"])),
            "varentropy": float(np.nanmean(d["varentropy"])),
            "loop_rate": trace.stop_reasons.count("loop") / trace.batch_size,
            "eos_rate": trace.stop_reasons.count("eos") / trace.batch_size,
            "divergence_rate": trace.stop_reasons.count("divergence") / trace.batch_size,
            "regime_shares": {
                name: float((d["regime"] == code).sum() / decoded.sum()) for code, name in enumerate(REGIMES)
            },
            "row_F": [float(x) for x in trace.trajectory_free_energy()],
            "tokens": int(decoded.sum()),
        }
        for name in ("entropy", "coherence", "meta_uncertainty", "free_energy"):
            values = d[name][decoded]
            row[f"{name}_quantiles"] = {q: float(np.quantile(values, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)}
        results.append(row)
        tokens[temperature] = d["token"]
        print(
            f"T={temperature:4.2f} H={row['entropy']:.3f} H_Q={row['sampled_entropy']:.3f} C={row['coherence']:.3f} "
            f"U={row['meta_uncertainty']:.3f} F={row['free_energy']:.3f} loops={row['loop_rate']:.2f} "
            f"eos={row['eos_rate']:.2f} div={row['divergence_rate']:.2f} tokens={row['tokens']} ({elapsed:.1f}s) "
            + " ".join(f"{k[:5]}={v:.2f}" for k, v in row["regime_shares"].items()),
            flush=True,
        )
    # Coherence-vs-entropy slope between neighbouring temperatures.
    print("\nslope dC/dH_Q between neighbouring temperatures:")
    for a, b in zip(results, results[1:]):
        dh = b["sampled_entropy"] - a["sampled_entropy"]
        slope = (b["coherence"] - a["coherence"]) / dh if abs(dh) > 1e-9 else math.nan
        mid = 0.5 * (a["sampled_entropy"] + b["sampled_entropy"])
        print(f"  H_Q~{mid:.3f} (T {a['temperature']}->{b['temperature']}): dC/dH = {slope:+.4f}")
    for row in results:
        q = row["entropy_quantiles"], row["coherence_quantiles"], row["meta_uncertainty_quantiles"]
        print(
            f"T={row['temperature']:4.2f} H q05/25/50/75/95 = "
            + "/".join(f"{v:.2f}" for v in q[0].values())
            + "  C = "
            + "/".join(f"{v:.3f}" for v in q[1].values())
            + "  U = "
            + "/".join(f"{v:.2f}" for v in q[2].values())
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"results": results, "prompts": PROMPTS, "seed": args.seed}, f, indent=1)
        example = {t: tokenizer.decode([i for i in toks[0] if i >= 0]) for t, toks in tokens.items()}
        with open(args.out.replace(".json", "_samples.json"), "w") as f:
            json.dump(example, f, indent=1)


if __name__ == "__main__":
    main()
