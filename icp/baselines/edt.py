"""Entropy-based Dynamic Temperature (EDT) as a LogitsProcessor (transformers has none).

Zhang, Shu, et al., "EDT: Improving Large Language Models' Generation by Entropy-based Dynamic
Temperature Sampling", 2024 (arXiv:2403.14541): T = T0 · N^(θ / H).
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from ..signals.fused import observed_step

__all__ = ["EDTLogitsProcessor"]

_MIN_TEMPERATURE = 1e-3


class EDTLogitsProcessor(LogitsProcessor):
    """EDT: each row's temperature follows its entropy, T = t0 · n^(theta / H), open loop.

    With 0 < n < 1 a confident row (small H) gets a temperature near 0 and an uncertain one a
    temperature near t0. Stateless; T is floored at 1e-3 (H = 0 would give T = 0).

    Args:
        t0 (`float`, *optional*, defaults to 1.0): the temperature approached as H grows.
        theta (`float`, *optional*, defaults to 1.0): θ (nats).
        n (`float`, *optional*, defaults to 0.8): base N in (0, 1).

    Example:
        >>> import torch
        >>> from icp.baselines import EDTLogitsProcessor
        >>> z = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.0, 0.0]])
        >>> t = EDTLogitsProcessor().temperatures(z)
        >>> bool(t[0] < t[1] < 1.0)
        True
    """

    def __init__(self, t0: float = 1.0, theta: float = 1.0, n: float = 0.8) -> None:
        for name, value in (("t0", t0), ("theta", theta)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"`{name}` (={value!r}) has to be a strictly positive finite float.")
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not 0 < n < 1:
            raise ValueError(f"`n` (={n!r}) has to be in (0, 1).")
        self.t0, self.theta, self.n = float(t0), float(theta), float(n)

    def _temperature(self, entropy: torch.Tensor) -> torch.Tensor:
        return (self.t0 * torch.pow(self.n, self.theta / entropy.clamp_min(1e-6))).clamp_min(_MIN_TEMPERATURE)

    def temperatures(self, scores: torch.Tensor) -> torch.Tensor:
        """Per-row T = t0 · n^(theta / H), floored at 1e-3."""
        return self._temperature(observed_step(scores).entropy)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = observed_step(scores)
        scaled = step.shifted_logits / self._temperature(step.entropy).unsqueeze(-1)
        return torch.log_softmax(scaled, dim=-1).nan_to_num_(nan=float("-inf"), neginf=float("-inf"))
