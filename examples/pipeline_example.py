"""ICP through `pipeline("text-generation")`: pass it in the generate kwargs.

Run:
    python examples/pipeline_example.py
"""

from __future__ import annotations

import torch
from transformers import pipeline

from icp import ICP, load_default_model


def main() -> None:
    model, tokenizer = load_default_model()
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    icp = ICP(model)
    messages = [{"role": "user", "content": "Name three rivers in Europe and one fact about each."}]
    torch.manual_seed(0)
    result = generator(messages, max_new_tokens=64, **icp.generation_kwargs())
    print(result[0]["generated_text"][-1]["content"])
    print(icp.trace.summary())
    # The convenience: each answer comes with its own trace summary.
    for answers in icp.pipeline(generator, [messages, "The three largest oceans are"], max_new_tokens=32):
        text = answers[0]["generated_text"]
        text = text if isinstance(text, str) else text[-1]["content"]
        summary = answers[0]["icp"]
        print(f"\n{text!r}\n  F={summary['free_energy']:.3f} stop={summary['stop_reason']} tokens={summary['tokens']}")


if __name__ == "__main__":
    main()
