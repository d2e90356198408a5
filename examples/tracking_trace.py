"""Online tracking of the critical region, on traces: does each row's target move the way it should?

Generates with ICP's tracker on (`tracking={"rate": 0.05}`) for the 8 demo chat prompts, prints per
row its measured local sensitivity σ = -dE[C]/dH_T (averaged over the row's steps), the reference σ*
from the model card, where its target ended and its mean temperature, checks that every row moved in
the direction of its own evidence (σ below σ* -> target raised, above -> lowered), and plots H_T with
the target dashed.

Run:
    python examples/tracking_trace.py --plot examples/tracking_trace.png
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from icp import ICP, load_default_model
from icp.prompts import DEMO_PROMPTS as PROMPTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.05, help="tracker rate, nats per step")
    parser.add_argument("--plot", default="tracking_trace.png")
    args = parser.parse_args()

    model, tokenizer = load_default_model()
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    icp = ICP(model, tracking={"rate": args.rate})
    reference, h_star = icp.config.tracking.reference_sensitivity, icp.config.target_entropy
    torch.manual_seed(args.seed)
    model.generate(
        **inputs, max_new_tokens=args.max_new_tokens, pad_token_id=tokenizer.pad_token_id, **icp.generation_kwargs()
    )
    trace = icp.trace
    d = trace.to_dict()
    print(f"H* = {h_star:.3f} nats, reference σ* = {reference:.4f} coherence per nat (model card), rate {args.rate}")
    print(
        f"{'row':>3} {'steps':>5} {'σ mean':>8} {'σ end':>8} {'target end':>10} {'mean H_T':>8} {'mean T':>6}  agrees"
    )
    agree = 0
    for b in range(trace.batch_size):
        decoded = np.isfinite(d["entropy"][b])
        sigma, target = d["coherence_sensitivity"][b][decoded], d["target"][b][decoded]
        moved = target[-1] - h_star
        # The offset integrates tanh((σ* - σ)/σ*): its sign follows the σ the row has mostly seen.
        expected = np.sign(np.sum(np.tanh((reference - sigma) / reference)))
        ok = np.sign(moved) == expected or abs(moved) < 1e-6
        agree += bool(ok)
        print(
            f"{b:>3} {decoded.sum():>5} {sigma.mean():8.4f} {sigma[-1]:8.4f} {target[-1]:10.3f} "
            f"{np.nanmean(d['tempered_entropy'][b]):8.3f} {np.nanmean(d['temperature'][b]):6.2f}  "
            + ("yes" if ok else "NO")
        )
    print(f"{agree}/{trace.batch_size} rows moved their target in the direction of their own measured slope")
    print(f"trace plot (H_T with the target dashed): {trace.plot(args.plot)}")


if __name__ == "__main__":
    main()
