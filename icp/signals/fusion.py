"""The inference free energy F = H + KL(Q||P) - γ·C + λ·U of one decoding step."""

from __future__ import annotations

import torch

__all__ = ["free_energy"]


def free_energy(
    entropy: torch.Tensor,
    kl: torch.Tensor,
    coherence: torch.Tensor,
    meta_uncertainty: torch.Tensor,
    gamma: float,
    lam: float,
) -> torch.Tensor:
    """F = H + KL(Q||P) - γ·C + λ·U per row: entropy production, plus the cost of control, minus the
    resonance gain of coherence, plus the meta-uncertainty.

    A trajectory's F is the running mean of its steps' F.

    Args:
        entropy (`torch.FloatTensor` of shape `(batch,)`): H, nats.
        kl (`torch.FloatTensor` of shape `(batch,)`): KL(Q||P), nats.
        coherence (`torch.FloatTensor` of shape `(batch,)`): C in [0, 1].
        meta_uncertainty (`torch.FloatTensor` of shape `(batch,)`): U.
        gamma (`float`): weight γ of coherence.
        lam (`float`): weight λ of meta-uncertainty.

    Example:

    >>> import torch
    >>> from icp.signals import free_energy
    >>> one = torch.ones(1)
    >>> free_energy(2 * one, 0.5 * one, one, one, gamma=1.0, lam=0.5)
    tensor([2.])
    """
    return entropy + kl - gamma * coherence + lam * meta_uncertainty
