"""DRY ("Don't Repeat Yourself") as a batched, per-row LogitsProcessor (transformers has none).

p-e-w, text-generation-webui PR #5677 (2024), `modules/sampler_hijack.py` `DRYLogitsProcessor`;
ported to koboldcpp (PR #982) and llama.cpp (`src/llama-sampling.cpp`, `llama_sampler_dry_apply`).
A token that would extend a sequence already seen in the context is penalised exponentially in the
length of that sequence: the penalty is ``multiplier · base^(L − allowed_length)`` for a repeat of
length ``L >= allowed_length``.

Semantics (text-generation-webui's, which llama.cpp's Z-algorithm version reproduces): the match
length ``L(i)`` of an earlier position ``i`` counts the tokens ending at ``i`` that equal the
tokens ending at the last position, the last token included (so ``L >= 1`` whenever
``input_ids[i]`` equals the last token). A match never includes a sequence breaker; a last token
that is a breaker gives no penalty, and a breaker is never penalised as the candidate
``input_ids[i + 1]``. Matches are capped at ``max_match_length`` (50, as text-generation-webui).

Deviations: sequence breakers are single token ids (text-generation-webui's own representation:
it keeps the last token of each breaker string); llama.cpp's multi-token restart sequences are not
supported. llama.cpp does not cap the match length but clamps the exponent at
``88.72 / ln(base)`` so that the power stays finite in float32; both clamps are applied here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from transformers import LogitsProcessor

from ..signals import sanitize_logits

__all__ = ["DRYLogitsProcessor"]

_FLOAT32_MAX_LOG = 88.7228391  # ln(float32 max): llama.cpp's bound on the exponent
_MAX_PENALTY = torch.finfo(torch.float32).max / 4  # keeps `logit - penalty` finite


def _is_real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int)


class DRYLogitsProcessor(LogitsProcessor):
    """DRY: subtracts ``multiplier · base^(L − allowed_length)`` from every token that would
    extend a repeat of length ``L >= allowed_length`` of the context's trailing tokens, per row.

    For each row and each earlier position ``i`` whose token equals the last token, ``L(i)`` is
    the length of the longest common run ending at ``i`` and at the last position (not crossing a
    sequence breaker, at most `max_match_length`); the candidate ``input_ids[i + 1]`` is penalised
    by the largest penalty over its positions. Stateless: everything is recomputed from
    `input_ids`, batched over rows and positions (a loop over match lengths up to
    `max_match_length`, none over rows or vocabulary), with no host-device synchronisation.
    Returns float32 logits (the input is read in float32 and never modified).

    Args:
        multiplier (`float`, *optional*, defaults to 0.8): penalty at ``L = allowed_length``;
            0 disables the processor (text-generation-webui's recommended value is 0.8).
        base (`float`, *optional*, defaults to 1.75): growth of the penalty per extra matched
            token, ``>= 1``.
        allowed_length (`int`, *optional*, defaults to 2): repeats shorter than this are free.
        sequence_breakers (`Iterable[int]`, *optional*, defaults to none): token ids that end a
            match. text-generation-webui uses the strings ``"\\n"``, ``":"``, ``"\\""`` and
            ``"*"``; to reproduce it, tokenise each one after a letter and keep its last token,
            e.g. ``{tokenizer.encode("a" + s, add_special_tokens=False)[-1] for s in ("\\n", ":",
            '"', "*")}``.
        penalty_last_n (`int`, *optional*, defaults to 0): only the last `penalty_last_n`
            tokens of `input_ids` (prompt included) are searched; 0 searches the whole context.
        max_match_length (`int`, *optional*, defaults to 50): cap on ``L``; it also bounds the
            per-step work, O(max_match_length · batch · context).

    Example:
        >>> import torch
        >>> from icp.baselines import DRYLogitsProcessor
        >>> ids = torch.tensor([[0, 1, 2, 3, 0, 1]])  # a b c x a b: emitting c would repeat "a b c"
        >>> out = DRYLogitsProcessor(multiplier=0.8, base=1.75, allowed_length=2)(ids, torch.zeros(1, 5))
        >>> out  # L = 2 for the candidate c (= 2): penalty 0.8 · 1.75^0
        tensor([[ 0.0000,  0.0000, -0.8000,  0.0000,  0.0000]])
    """

    def __init__(
        self,
        multiplier: float = 0.8,
        base: float = 1.75,
        allowed_length: int = 2,
        sequence_breakers: Iterable[int] = (),
        penalty_last_n: int = 0,
        max_match_length: int = 50,
    ) -> None:
        if not _is_real(multiplier) or multiplier < 0:
            raise ValueError(f"`multiplier` (={multiplier!r}) has to be a finite float >= 0 (0 disables DRY).")
        if not _is_real(base) or base < 1:
            raise ValueError(f"`base` (={base!r}) has to be a finite float >= 1 (1.75 is the usual value).")
        if not _is_int(allowed_length) or allowed_length < 1:
            raise ValueError(f"`allowed_length` (={allowed_length!r}) has to be an integer >= 1.")
        if not _is_int(penalty_last_n) or penalty_last_n < 0:
            raise ValueError(
                f"`penalty_last_n` (={penalty_last_n!r}) has to be an integer >= 0 (0 searches the whole context)."
            )
        if not _is_int(max_match_length) or max_match_length < allowed_length:
            raise ValueError(
                f"`max_match_length` (={max_match_length!r}) has to be an integer >= `allowed_length` "
                f"(={allowed_length}), otherwise nothing is ever penalised."
            )
        if isinstance(sequence_breakers, (str, bytes)) or not isinstance(sequence_breakers, Iterable):
            raise ValueError(
                f"`sequence_breakers` (={sequence_breakers!r}) has to be a collection of token ids; "
                "tokenise breaker strings first (see the docstring)."
            )
        breakers = list(sequence_breakers)
        bad = [b for b in breakers if not _is_int(b) or b < 0]
        if bad:
            raise ValueError(f"`sequence_breakers` (={breakers!r}) has to hold token ids (integers >= 0); got {bad!r}.")
        self.multiplier = float(multiplier)
        self.base = float(base)
        self.allowed_length = allowed_length
        self.sequence_breakers = frozenset(breakers)
        self.penalty_last_n = penalty_last_n
        self.max_match_length = max_match_length
        # llama.cpp's overflow guard: base^exponent stays below float32 max.
        self._max_exponent = int(_FLOAT32_MAX_LOG / math.log(self.base)) if self.base > 1.000001 else 0
        self._breaker_ids = torch.tensor(sorted(self.sequence_breakers), dtype=torch.long)
        self.reset()

    def reset(self) -> None:
        """Drops the device copy of the breaker ids (DRY keeps no per-generation state)."""
        self._device_breakers: torch.Tensor | None = None

    def _breakers_on(self, device: torch.device) -> torch.Tensor:
        if self._device_breakers is None or self._device_breakers.device != device:
            self._device_breakers = self._breaker_ids.to(device, non_blocking=True)
        return self._device_breakers

    def _window(self, input_ids: torch.LongTensor) -> torch.LongTensor:
        return input_ids if self.penalty_last_n == 0 else input_ids[:, -self.penalty_last_n :]

    def _scan(self, ids: torch.LongTensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Match lengths over the window `ids` (width >= 2) and its breaker mask (``None`` if none)."""
        width = ids.shape[1]
        breaks = torch.isin(ids, self._breakers_on(ids.device)) if self.sequence_breakers else None
        candidates = ids[:, :-1]  # position i, followed by ids[:, i + 1]
        alive = candidates == ids[:, -1:]
        if breaks is not None:
            alive = alive & ~breaks[:, -1:]
        length = alive.to(torch.int32)
        steps = min(self.max_match_length, width - 1)  # k <= width - 2 keeps i - k >= 0 possible
        # earlier[:, steps - k + i] = ids[:, i - k], or -1 (never a token id) before the window.
        earlier = torch.nn.functional.pad(candidates, (steps, 0), value=-1)
        for k in range(1, steps):
            back = earlier[:, steps - k : steps - k + width - 1]
            tail = ids[:, width - 1 - k : width - k]  # the k-th token before the last one
            alive = alive & (back == tail)
            if breaks is not None:  # a match never includes a breaker
                alive = alive & ~breaks[:, width - 1 - k : width - k]
            length = length + alive
        return length, breaks

    def match_lengths(self, input_ids: torch.LongTensor) -> torch.Tensor:
        """Per row and candidate position ``i`` (0 .. window − 2 of the searched window), the
        match length ``L(i)`` (0 where ``input_ids[i]`` is not the last token), int32, shape
        `(batch, window - 1)`; the candidate token of column ``i`` is ``window[:, i + 1]``."""
        ids = self._window(input_ids)
        if ids.shape[1] < 2:
            return torch.zeros(ids.shape[0], 0, dtype=torch.int32, device=ids.device)
        return self._scan(ids)[0]

    def penalties(self, input_ids: torch.LongTensor, vocab_size: int) -> torch.Tensor:
        """The float32 penalty of every token, shape `(batch, vocab_size)` (0 where none)."""
        ids = self._window(input_ids)
        penalty = torch.zeros(ids.shape[0], vocab_size, dtype=torch.float32, device=ids.device)
        if ids.shape[1] < 2 or self.multiplier == 0:
            return penalty
        length, breaks = self._scan(ids)
        following = ids[:, 1:]
        valid = length >= self.allowed_length
        if breaks is not None:  # a breaker is never penalised
            valid = valid & ~breaks[:, 1:]
        exponent = (length - self.allowed_length).clamp_min(0)
        if self._max_exponent > 0:
            exponent = exponent.clamp_max(self._max_exponent)
        value = self.multiplier * torch.pow(self.base, exponent.to(torch.float32))
        value = torch.where(valid, value.clamp_max(_MAX_PENALTY), 0.0)
        # Ids beyond the scores' vocabulary (never sampled) are dropped, not scattered.
        inside = following < vocab_size
        index = torch.where(inside, following, 0)
        value = torch.where(inside, value, 0.0)
        return penalty.scatter_reduce(1, index, value, reduce="amax", include_self=True)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = sanitize_logits(scores)
        return logits - self.penalties(input_ids, logits.shape[-1])
