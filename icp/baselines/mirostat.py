"""Mirostat v2 as a batched, per-row LogitsProcessor (transformers has none).

Basu, Ramachandran, Keskar, Varshney, "Mirostat: A Neural Text Decoding Algorithm that Directly
Controls Perplexity", ICLR 2021 (arXiv:2007.14966), Algorithm 2 (v2, as in llama.cpp).
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from ..signals import sanitize_logits

__all__ = ["MirostatV2LogitsProcessor"]

_LN2 = math.log(2.0)


class MirostatV2LogitsProcessor(LogitsProcessor):
    """Mirostat v2: keeps each row's observed surprisal near a target `tau` (bits) by truncating
    tokens more surprising than a per-row threshold mu, which feedback adjusts after every token.

    Per step and row: drop tokens with surprisal −log2 p > mu (the most probable always stays),
    renormalise; once the next token is known (the last column of `input_ids` at the next call),
    observe its surprisal s under that truncated distribution and set mu ← mu − eta·(s − tau).
    Rows are independent; state lives in device tensors, set up on the first call of a generation
    and reset when a new generation starts (another batch size, or an input that is not one token
    longer than the last) or on `reset()`.

    Args:
        tau (`float`, *optional*, defaults to 5.0): target surprisal in bits (llama.cpp's default).
        eta (`float`, *optional*, defaults to 0.1): learning rate of mu.

    Example:
        >>> import torch
        >>> from icp.baselines import MirostatV2LogitsProcessor
        >>> proc = MirostatV2LogitsProcessor(tau=1.0)
        >>> out = proc(torch.zeros(1, 3, dtype=torch.long), torch.log(torch.tensor([[0.5, 0.3, 0.2]])))
        >>> out.exp()  # mu starts at 2·tau = 2 bits: tokens with p < 0.25 are dropped
        tensor([[0.6250, 0.3750, 0.0000]])
    """

    def __init__(self, tau: float = 5.0, eta: float = 0.1) -> None:
        for name, value in (("tau", tau), ("eta", eta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"`{name}` (={value!r}) has to be a strictly positive finite float.")
        self.tau = float(tau)
        self.eta = float(eta)
        self.reset()

    def reset(self) -> None:
        """Forgets the current generation."""
        self.mu: torch.Tensor | None = None
        self._last_logq: torch.Tensor | None = None
        self._length = -1

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch, length = input_ids.shape
        if self.mu is None or self.mu.shape[0] != batch or length != self._length + 1:
            self.mu = torch.full((batch,), 2.0 * self.tau, dtype=torch.float32, device=scores.device)
            self._last_logq = None
        elif self._last_logq is not None:
            chosen = self._last_logq.gather(1, input_ids[:, -1:]).squeeze(1)
            observed = torch.nan_to_num(-chosen / _LN2, nan=0.0, posinf=100.0)  # bits, capped
            self.mu = self.mu - self.eta * (observed - self.tau)
        self._length = length
        logp = torch.log_softmax(sanitize_logits(scores), dim=-1)
        # surprisal (bits) <= mu  <=>  log p >= -mu·ln 2; the argmax (log p = max) always stays.
        threshold = torch.minimum(-self.mu * _LN2, logp.amax(dim=-1)).unsqueeze(-1)
        # threshold() keeps x > -1e-6 (so the argmax, at x = 0 when mu is below it, stays); one pass.
        kept = torch.nn.functional.threshold(logp - threshold, -1e-6, float("-inf"))
        logq = torch.nan_to_num(torch.log_softmax(kept, dim=-1), nan=float("-inf"), neginf=float("-inf"))
        self._last_logq = logq
        return logq
