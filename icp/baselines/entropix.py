"""An entropix-style entropy/varentropy sampler as a batched LogitsProcessor, decided per row.

After the sampler of the entropix project (xjdr-alt/entropix, `torch_sampler.py`, 2024): the
model's entropy H and varentropy V put each step in one of four quadrants, each with its own
sampling rule. Adapted here, and why:

- decisions are per row (entropix's torch sampler averages H and V over the batch, so one row's
  confusion changes every other row's sampling);
- attention-entropy terms are left out (they need eager attention and attention weights);
- "high H, low V: insert a clarifying-question token" cannot be done by a logits processor (it would
  inject text); that quadrant samples at T = 1.3 instead, entropix's own fallback temperature there;
- the adaptive branch uses only the logits' uncertainty H + V.

Quadrants (entropix's default thresholds, nats): H < 0.1 and V < 0.1: argmax; H > 3 and V < 0.1:
T = 1.3; H < 5 and V > 5: T = 1.2 (explore); H > 5 and V > 5: T = 2.0 (resample); otherwise
T = 0.666·(1 + 0.3·(H + V)), clipped to [0.1, 2]. Then entropix's truncation: top-k 27 and min-p
0.03 (after temperature).
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from ..signals.fused import observed_step

__all__ = ["EntropixLogitsProcessor"]


class EntropixLogitsProcessor(LogitsProcessor):
    """Entropix-style quadrant sampler on the model's entropy and varentropy, per row, stateless.

    Args:
        top_k (`int`, *optional*, defaults to 27): tokens kept at most (entropix's default).
        min_p (`float`, *optional*, defaults to 0.03): min-p after temperature (entropix's default).
        base_temperature (`float`, *optional*, defaults to 0.666): the adaptive branch's base T.

    Example:
        >>> import torch
        >>> from icp.baselines import EntropixLogitsProcessor
        >>> confident = torch.tensor([[20.0] + [0.0] * 9])
        >>> EntropixLogitsProcessor()(torch.zeros(1, 2, dtype=torch.long), confident).exp()[0, :2]
        tensor([1., 0.])
    """

    def __init__(self, top_k: int = 27, min_p: float = 0.03, base_temperature: float = 0.666) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"`top_k` (={top_k!r}) has to be an integer >= 1.")
        if isinstance(min_p, bool) or not isinstance(min_p, (int, float)) or not 0 <= min_p < 1:
            raise ValueError(f"`min_p` (={min_p!r}) has to be in [0, 1).")
        if (
            isinstance(base_temperature, bool)
            or not isinstance(base_temperature, (int, float))
            or not math.isfinite(base_temperature)
            or base_temperature <= 0
        ):
            raise ValueError(f"`base_temperature` (={base_temperature!r}) has to be a strictly positive float.")
        self.top_k, self.min_p, self.base_temperature = top_k, float(min_p), float(base_temperature)

    def quadrants(self, entropy: torch.Tensor, varentropy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-row temperature and whether the row is decided greedily (low H, low V)."""
        adaptive = (self.base_temperature * (1.0 + 0.3 * (entropy + varentropy))).clamp(0.1, 2.0)
        temperature = adaptive
        temperature = torch.where((entropy > 5.0) & (varentropy > 5.0), 2.0, temperature)
        temperature = torch.where((entropy < 5.0) & (varentropy > 5.0), 1.2, temperature)
        temperature = torch.where((entropy > 3.0) & (varentropy < 0.1), 1.3, temperature)
        greedy = (entropy < 0.1) & (varentropy < 0.1)
        return temperature, greedy

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = observed_step(scores)
        temperature, greedy = self.quadrants(step.entropy, step.varentropy)
        y = step.shifted_logits / temperature.unsqueeze(-1)  # max(y) = 0
        k = min(self.top_k, y.shape[-1])
        kth = torch.topk(y, k, dim=-1).values[:, -1:]
        # Greedy rows keep only their maximum (y = 0); others keep top-k and min-p.
        floor = torch.where(greedy, 0.0, math.log(self.min_p) if self.min_p > 0 else float("-inf"))
        cut = torch.maximum(kth, floor.unsqueeze(-1))
        kept = torch.nn.functional.threshold(y - cut, -1e-6, float("-inf"))
        return torch.log_softmax(kept, dim=-1).nan_to_num_(nan=float("-inf"), neginf=float("-inf"))
