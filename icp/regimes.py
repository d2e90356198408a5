"""Per-token regime classification in the (H, C, U, repetition) phase space.

Codes: 0 rigid, 1 reasoning, 2 exploratory, 3 unstable; -1 in a trace marks a step after the row
stopped. The boundaries live in one [`RegimeThresholds`] object (see its docstring for the rules).
"""

from __future__ import annotations

import torch

from .config import RegimeThresholds

__all__ = ["REGIMES", "RIGID", "REASONING", "EXPLORATORY", "UNSTABLE", "STOPPED", "classify_regime"]

REGIMES: tuple[str, ...] = ("rigid", "reasoning", "exploratory", "unstable")
RIGID, REASONING, EXPLORATORY, UNSTABLE = range(4)
STOPPED = -1


def classify_regime(
    entropy: torch.Tensor,
    coherence: torch.Tensor,
    meta_uncertainty: torch.Tensor,
    repetition: torch.Tensor,
    thresholds: RegimeThresholds,
) -> torch.Tensor:
    """Regime code of each row, vectorised, on the inputs' device.

    Args:
        entropy (`torch.FloatTensor` of shape `(batch,)`): H of the model's distribution, nats.
        coherence (`torch.FloatTensor` of shape `(batch,)`): C in [0, 1].
        meta_uncertainty (`torch.FloatTensor` of shape `(batch,)`): U.
        repetition (`torch.FloatTensor` of shape `(batch,)`): loop progress (1 = a loop).
        thresholds ([`RegimeThresholds`]): the boundaries.

    Returns:
        `torch.LongTensor` of shape `(batch,)` with codes in {0, 1, 2, 3}.

    Example:
        >>> import torch
        >>> from icp import RegimeThresholds
        >>> from icp.regimes import classify_regime, REGIMES
        >>> h = torch.tensor([0.1, 1.0, 3.5, 5.0]); c = torch.tensor([0.9, 0.9, 0.9, 0.3])
        >>> codes = classify_regime(h, c, torch.zeros(4), torch.tensor([0.9, 0.0, 0.0, 0.0]), RegimeThresholds())
        >>> [REGIMES[i] for i in codes]
        ['rigid', 'reasoning', 'exploratory', 'unstable']
    """
    t = thresholds
    coherent = coherence >= t.coherent
    unstable = ((entropy >= t.unstable_entropy) | (meta_uncertainty >= t.unstable_meta_uncertainty)) & ~coherent
    rigid = (entropy < t.rigid_entropy) & (repetition >= t.rigid_repetition)
    exploratory = (entropy >= t.exploratory_entropy) & coherent
    codes = torch.full_like(entropy, REASONING, dtype=torch.long)
    codes = torch.where(exploratory, EXPLORATORY, codes)
    codes = torch.where(rigid, RIGID, codes)
    return torch.where(unstable, UNSTABLE, codes)
