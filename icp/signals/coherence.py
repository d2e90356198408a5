"""Coherence C in [0, 1]: how well a decoding trajectory holds together.

Three sources, chosen by `ICPConfig.coherence` (measurements: docs/defaults.md, "Choosing the coherence"):

- ``"embedding"`` (default when ICP has the model): continuity of the trajectory in the model's
  input-embedding space. With e_t the embedding of the token fed at step t, centred by the mean
  embedding of the vocabulary (which removes the direction all tokens share),

      C_t = (1 + cos(e_t, m_{t-1})) / 2,        m_t = α·m_{t-1} + (1 - α)·e_t,

  m_0 the mean centred embedding of the prompt. On-topic text keeps C near its ordered-phase level;
  as sampling degrades into random tokens C falls toward 0.5 (orthogonal). No hook, no extra pass:
  one row gather from the embedding matrix per step.
- ``"hidden"``: the same continuity measured on the model's final hidden states (forward hook on the
  final norm). Kept for research: on the default model it *rises* with temperature (degenerate text
  drives the final states into one shared direction), so it is not a coherence signal there.
- ``"logits"`` (the fallback without the model): context recall, the mean standardised score that
  the current logits give to the last `window` tokens of the context, squashed to (0, 1) by a
  sigmoid. A model still "on" its context ranks those tokens high; one that has lost it does not.

All three are independent of the entropy H as a function (H is a property of one distribution),
so ∂C/∂H measured over a temperature sweep is not an artefact of the definition.
"""

from __future__ import annotations

import torch

__all__ = ["context_recall", "cosine_continuity", "ema_update"]

#: Floor of a vector norm in a cosine (below it, a state counts as zero); `criticality` uses the same.
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


def context_recall(
    logp: torch.Tensor, context: torch.Tensor, valid: torch.Tensor, floor: float = -20.0
) -> torch.Tensor:
    """Logits-only coherence: sigmoid of the mean z-score the distribution gives to context tokens.

    The log-probabilities are floored at `floor` (so masked tokens count as merely impossible), then
    standardised over the vocabulary; the scores of the `context` tokens are averaged over `valid`
    positions and passed through a sigmoid. A row with no valid context token gets 1.

    Args:
        logp (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities.
        context (`torch.LongTensor` of shape `(batch, window)`): recent token ids.
        valid (`torch.BoolTensor` of shape `(batch, window)`): which positions count (not padding).
        floor (`float`, *optional*, defaults to -20.0): log-probability floor.

    Example:
        >>> import torch
        >>> from icp.signals import context_recall
        >>> logp = torch.log_softmax(torch.tensor([[4.0, 0.0, 0.0, 0.0, 0.0]]), -1)
        >>> on = context_recall(logp, torch.tensor([[0]]), torch.tensor([[True]]))
        >>> off = context_recall(logp, torch.tensor([[1]]), torch.tensor([[True]]))
        >>> bool(on > 0.8), bool(off < 0.5)
        (True, True)
    """
    x = logp.clamp_min(floor)  # a row with no distribution stays NaN here and gets 1 at the end
    std, mean = torch.std_mean(x, dim=-1, keepdim=True)
    scores = (x.gather(1, context) - mean) / std.clamp_min(1e-6)
    weights = valid.to(scores.dtype)
    count = weights.sum(dim=-1)
    average = (scores * weights).sum(dim=-1) / count.clamp_min(1.0)
    recall = torch.where(count > 0, torch.sigmoid(average), torch.ones_like(average))
    return torch.nan_to_num(recall, nan=1.0)
