"""Coherence C in [0, 1]: how well a decoding trajectory holds together.

C_t compares the state at step t with a decaying average of the states before it:

    C_t = (1 + cos(s_t, m_{t-1})) / 2,        m_t = α·m_{t-1} + (1 - α)·s_t

so C = 1 when the trajectory keeps its direction, 0.5 when the new state is orthogonal to where
it has been, and 0 when it turns around. ``s_t`` is either

- the model's own final hidden state at step t (the default when ICP is given the model; read by a
  forward hook on the final norm, no extra forward pass), or
- the logits-only fallback: the row's log-probabilities floored at ``floor`` nats and centred
  (:func:`logit_features`). Logits are a linear read-out of the hidden state, so this measures the
  same continuity seen through the unembedding; it is cheaper to set up and needs no model, but it
  sees only what the vocabulary projection keeps.

Both are independent of the entropy H as a function: H is a property of one distribution, C of how
successive states relate, so ∂C/∂H measured over a temperature sweep is not an artefact.
"""

from __future__ import annotations

import torch

__all__ = ["cosine_continuity", "ema_update", "logit_features"]

_EPS = 1e-12


def cosine_continuity(state: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Coherence (1 + cos(state, reference)) / 2 per row, in [0, 1], never NaN.

    A zero vector on either side (no history yet) gives 1: nothing to be incoherent with.

    Args:
        state (`torch.Tensor` of shape `(batch, dim)`): the current state s_t.
        reference (`torch.Tensor` of shape `(batch, dim)`): the decaying average m_{t-1}.

    Example:

    >>> import torch
    >>> from icp.signals import cosine_continuity
    >>> a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    >>> b = torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    >>> cosine_continuity(a, b)
    tensor([1.0000, 0.5000, 0.0000])
    """
    s = state.float()
    r = reference.float()
    dot = (s * r).sum(dim=-1)
    norms = s.norm(dim=-1) * r.norm(dim=-1)
    cos = torch.where(norms > _EPS, dot / norms.clamp_min(_EPS), torch.ones_like(dot))
    cos = torch.nan_to_num(cos, nan=1.0).clamp(-1.0, 1.0)
    return 0.5 * (1.0 + cos)


def ema_update(reference: torch.Tensor, state: torch.Tensor, decay: float, mask: torch.Tensor) -> torch.Tensor:
    """Returns m_t = decay·m_{t-1} + (1 - decay)·s_t on rows where ``mask`` is set, m_{t-1} elsewhere.

    Args:
        reference (`torch.Tensor` of shape `(batch, dim)`): m_{t-1}.
        state (`torch.Tensor` of shape `(batch, dim)`): s_t.
        decay (`float`): α in [0, 1).
        mask (`torch.BoolTensor` of shape `(batch,)`): rows still decoding.

    Example:

    >>> import torch
    >>> from icp.signals import ema_update
    >>> ema_update(torch.zeros(2, 1), torch.ones(2, 1), 0.5, torch.tensor([True, False]))
    tensor([[0.5000],
            [0.0000]])
    """
    updated = torch.lerp(state.float(), reference, decay)
    return torch.where(mask.unsqueeze(-1), updated, reference)


def logit_features(logp: torch.Tensor, floor: float = -20.0) -> torch.Tensor:
    """The logits-only coherence state: log-probabilities floored at ``floor`` nats, centred per row.

    Flooring makes masked (``-inf``) and negligible tokens equal, so the state is dominated by the
    tokens the model actually considers.

    Args:
        logp (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities.
        floor (`float`, *optional*, defaults to -20.0): the log-probability below which tokens count
            as impossible.

    Example:

    >>> import torch
    >>> from icp.signals import logit_features
    >>> logit_features(torch.tensor([[0.0, float("-inf")]]), floor=-2.0)
    tensor([[ 1., -1.]])
    """
    x = logp.clamp_min(floor)
    return x - x.mean(dim=-1, keepdim=True)
