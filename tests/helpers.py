"""Small models and scripted logits for tests: built from a config, never loaded from a hub."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor

VOCAB = 64


def tiny_llama(
    vocab_size: int = VOCAB, seed: int = 0, eos_token_id: int | None = None, hidden_size: int = 32
) -> LlamaForCausalLM:
    """A 2-layer random Llama (a few thousand parameters) with a final RMSNorm ICP can hook."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=eos_token_id,
        bos_token_id=None,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = eos_token_id
    model.generation_config.pad_token_id = 0
    return model


def prompt(batch: int = 4, length: int = 5, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (batch, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class ForceTokens(LogitsProcessor):
    """Upstream processor that forces, for chosen rows, a scripted token at each step.

    `script[row]` is a list of tokens cycled through (``None`` leaves the row alone). Forcing is done
    with a large logit bump, so every other token keeps a finite logit.
    """

    def __init__(self, script: dict[int, list[int]], prompt_length: int, bump: float = 1e4) -> None:
        self.script = script
        self.prompt_length = prompt_length
        self.bump = bump

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_length
        scores = scores.clone()
        for row, tokens in self.script.items():
            scores[row, tokens[step % len(tokens)]] += self.bump
        return scores
