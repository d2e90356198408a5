"""Decoders transformers lacks, as batched LogitsProcessors: baselines for the suite, usable as is."""

from .edt import EDTLogitsProcessor
from .entropix import EntropixLogitsProcessor
from .mirostat import MirostatV2LogitsProcessor

__all__ = ["EDTLogitsProcessor", "EntropixLogitsProcessor", "MirostatV2LogitsProcessor"]
