"""Decoders transformers lacks, as batched LogitsProcessors: baselines for the suite, usable as is."""

from .adaptive_p import AdaptivePLogitsProcessor
from .dry import DRYLogitsProcessor
from .edt import EDTLogitsProcessor
from .entropix import EntropixLogitsProcessor
from .mirostat import MirostatV2LogitsProcessor

__all__ = [
    "AdaptivePLogitsProcessor",
    "DRYLogitsProcessor",
    "EDTLogitsProcessor",
    "EntropixLogitsProcessor",
    "MirostatV2LogitsProcessor",
]
