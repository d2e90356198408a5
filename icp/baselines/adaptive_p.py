"""Adaptive-P as a batched, per-row LogitsProcessor (transformers has none).

MrJackSpade's adaptive-p sampler as merged into llama.cpp (ddh0, ggml-org/llama.cpp PR #17927,
`src/llama-sampling.cpp`: `llama_sampler_adaptive_p_apply` / `_accept`), described in
github.com/MrJackSpade/adaptive-p-docs. It replaces the distribution by one that favours tokens
whose probability is near a per-step adapted target, and steers the running average of the
*original* probability of the chosen tokens towards a configured target:

- an exponential moving average (EMA) of the original probability of each selected token, started
  at `target` (llama.cpp primes its accumulators at their converged value);
- adapted target ``a = clamp(2·target − EMA, 0, 1)``: recent choices more probable than `target`
  push ``a`` down, less probable ones push it up;
- with ``d = |p − a| / 0.3``, new logits ``5 − 10·d² / (1 + d)`` (quadratic near the target,
  linear in the tails); tokens masked to ``-inf`` upstream stay masked, as in llama.cpp;
- after the token is chosen: ``EMA ← decay·EMA + (1 − decay)·p(token)``.

llama.cpp keeps two accumulators, ``weighted_sum ← p + decay·weighted_sum`` and
``total_weight ← 1 + decay·total_weight``, started at ``target/(1 − decay)`` and ``1/(1 − decay)``;
``total_weight`` therefore stays at ``1/(1 − decay)`` and their ratio is exactly the EMA above.

Adapted to transformers, and why: llama.cpp updates the EMA in `accept()` with the token it just
sampled; a LogitsProcessor learns the token only at the next call (the last column of
`input_ids`), which is when the update happens here, before the next transform, so the order of
operations is the same. llama.cpp's sampler also draws the token itself and must end its chain;
here the built-in warpers of `generate()` run after user processors, so pass ``top_k=0`` (it
defaults to 50), ``temperature=1.0`` and no ``top_p``/``min_p``. To reproduce llama.cpp's
recommended chain ``min_p → adaptive_p``, put a
``transformers.MinPLogitsWarper(0.05)`` before this processor in the `LogitsProcessorList`.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from ..signals import sanitize_logits

__all__ = ["AdaptivePLogitsProcessor"]

# llama.cpp's fixed transformation constants (not user-configurable there either).
DISTRIBUTION_WIDTH = 0.3
PEAK_LOGIT_VALUE = 5.0
SHARPNESS = 10.0


class AdaptivePLogitsProcessor(LogitsProcessor):
    """Adaptive-P: favours tokens whose probability is near a per-row adapted target, so that the
    average original probability of the chosen tokens tracks `target` over the generation.

    Per step and row: ``a = clamp(2·target − EMA, 0, 1)``; each unmasked token of probability ``p``
    gets the logit ``5 − 10·d²/(1 + d)`` with ``d = |p − a| / 0.3``; the result is returned as
    float32 log-probabilities. Once the chosen token is known (the last column of `input_ids` at the
    next call), ``EMA ← decay·EMA + (1 − decay)·p(token)`` with ``p`` its probability in this
    processor's *input*. Rows are independent; the EMA lives in a device tensor, starts at `target`
    on the first call of a generation, and restarts when a new generation starts (another batch
    size, or an input that is not one token longer than the last) or on `reset()`.

    Run it last: `generate()`'s own warpers act on its output, so call `generate` with
    ``top_k=0`` and ``temperature=1.0`` (see the module docstring).

    Args:
        target (`float`, *optional*, defaults to 0.5): the average probability of the chosen
            tokens to aim for, in [0, 1] (lower is more creative; the adaptive-p documentation's
            default and recommended 0.4–0.6). A negative value disables the processor, which then
            returns `scores` untouched (llama.cpp's convention; its command line defaults to −1).
        decay (`float`, *optional*, defaults to 0.9): EMA decay in [0, 0.99]; the history spans
            about ``1/(1 − decay)`` tokens (llama.cpp's default and upper bound).

    Example:
        >>> import torch
        >>> from icp.baselines import AdaptivePLogitsProcessor
        >>> proc = AdaptivePLogitsProcessor(target=0.2)
        >>> out = proc(torch.zeros(1, 3, dtype=torch.long), torch.tensor([[0.8, 0.15, 0.05]]).log())
        >>> out.exp().round(decimals=3)  # the EMA starts at 0.2, so a = 0.2: the 0.15 token now leads
        tensor([[0.0000, 0.8070, 0.1930]])
    """

    def __init__(self, target: float = 0.5, decay: float = 0.9) -> None:
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target > 1:
            raise ValueError(
                f"`target` (={target!r}) has to be a probability in [0, 1], or negative to disable the "
                "sampler (0.4-0.6 is the documented range)."
            )
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay <= 0.99:
            raise ValueError(
                f"`decay` (={decay!r}) has to be in [0, 0.99]; the history spans about 1/(1 - decay) tokens."
            )
        self.target = float(target)
        self.decay = float(decay)
        self.reset()

    def reset(self) -> None:
        """Forgets the current generation."""
        self.ema: torch.Tensor | None = None
        self._last_p: torch.Tensor | None = None
        self._length = -1

    @property
    def enabled(self) -> bool:
        """Whether the processor acts (`target` >= 0)."""
        return self.target >= 0

    def adapted_targets(self) -> torch.Tensor | None:
        """Per-row ``clamp(2·target − EMA, 0, 1)`` for the next step, or ``None`` before the first call."""
        if self.ema is None:
            return None
        return (2.0 * self.target - self.ema).clamp(0.0, 1.0)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if not self.enabled:
            return scores
        batch, length = input_ids.shape
        if self.ema is None or self.ema.shape[0] != batch or length != self._length + 1:
            self.ema = torch.full((batch,), self.target, dtype=torch.float32, device=scores.device)
            self._last_p = None
        elif self._last_p is not None:
            chosen = self._last_p.gather(1, input_ids[:, -1:]).squeeze(1)
            self.ema = self.decay * self.ema + (1.0 - self.decay) * chosen
        self._length = length
        logits = sanitize_logits(scores)
        # A row masked everywhere gives NaN: read it as probability 0 (its output stays -inf).
        p = torch.softmax(logits, dim=-1).nan_to_num(nan=0.0)
        self._last_p = p
        adapted = (2.0 * self.target - self.ema).clamp(0.0, 1.0).unsqueeze(-1)
        d = (p - adapted).abs() / DISTRIBUTION_WIDTH
        shaped = PEAK_LOGIT_VALUE - SHARPNESS * d * d / (1.0 + d)
        shaped = shaped.masked_fill(logits == float("-inf"), float("-inf"))
        return torch.log_softmax(shaped, dim=-1).nan_to_num_(nan=float("-inf"), neginf=float("-inf"))
