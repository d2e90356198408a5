"""ICP on the embedded default model: generate for a batch of prompts, print the trace summary, plot it.

Run:
    python examples/quickstart.py                      # 8 prompts, 128 new tokens, writes trace.png
    python examples/quickstart.py --max-new-tokens 32 --plot outputs/trace.png
"""

from __future__ import annotations

import argparse
import time

import torch

from icp import ICP, load_default_model
from icp.prompts import DEMO_PROMPTS as PROMPTS


def main() -> None:
    parser = argparse.ArgumentParser(description="Generate with ICP on SmolLM2-135M-Instruct and plot the trace.")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="trace.png", help="where to write the trace plot (PNG)")
    parser.add_argument("--show", type=int, default=2, help="how many generations to print")
    args = parser.parse_args()

    model, tokenizer = load_default_model()
    chats = [[{"role": "user", "content": p}] for p in PROMPTS]
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    inputs = tokenizer(texts, return_tensors="pt", padding=True)

    icp = ICP(model)  # the model card's target entropy and thresholds; embedding coherence; EOS ids from the model
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    out = model.generate(
        **inputs,
        max_new_tokens=args.max_new_tokens,
        pad_token_id=tokenizer.pad_token_id,
        **icp.generation_kwargs(),  # do_sample=True, temperature=1, top_k=0, top_p=1, ICP's processor + criteria
    )
    elapsed = time.perf_counter() - start
    generated = out[:, inputs["input_ids"].shape[1] :]

    trace = icp.trace
    print(
        f"{len(PROMPTS)} prompts, {trace.steps} steps in {elapsed:.1f} s; coherence from {icp.coherence_source} states"
    )
    print(trace.summary())
    for i in range(min(args.show, len(PROMPTS))):
        print(f"\n[{i}] {PROMPTS[i]}\n -> {tokenizer.decode(generated[i], skip_special_tokens=True).strip()}")
    print(f"\ntrace plot: {trace.plot(args.plot)}")


if __name__ == "__main__":
    main()
