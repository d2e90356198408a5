"""The local slope of coherence against entropy, per row and step: where the row sits on its C(H) curve.

Heating a distribution moves its entropy and, through what gets sampled, its expected coherence. With
y = z / T the tempered logits, q = softmax(y) and x = log T, two exact identities hold:

    dH_T / dx = Var_q[y]                 (the heat capacity: heating always raises the entropy)
    dE_q[c] / dx = -Cov_q[c, y]          (c_i: the coherence the step would have if token i were drawn)

so the local sensitivity of coherence to entropy along the temperature direction is

    dE_q[c] / dH_T = -Cov_q[c, y] / Var_q[y].

It is causal (a change of T, the controller's own knob), not the observational correlation between a
row's entropy and coherence over its tokens, which mixes token types (content words are uncertain and
on-topic, function words certain and off-topic). [`coherence_sensitivity_moments`] evaluates both
moments on the row's `k` most likely tokens (the support that min-p truncation keeps, in practice);
the controller averages them over steps (ratio of averages, so near-deterministic steps, whose Var is
about 0, weigh nothing) and moves each row's target entropy along the slope (`icp.controller`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .coherence import _EPS  # the floor of a norm in a cosine, shared with the coherence signals

__all__ = ["SensitivityMoments", "coherence_sensitivity_moments", "candidate_coherence"]


class SensitivityMoments(NamedTuple):
    """The two moments of one step (float32, shape `(batch,)`).

    Attributes:
        covariance: Cov_q[c, y]; -covariance is dE_q[c]/dlog T.
        variance: Var_q[y] = dH_T/dlog T.
    """

    covariance: torch.Tensor
    variance: torch.Tensor


def coherence_sensitivity_moments(
    candidate_logits: torch.Tensor, candidate_coherence: torch.Tensor, temperature: torch.Tensor
) -> SensitivityMoments:
    """Cov_q[c, y] and Var_q[y] of q = softmax(z / T) restricted to the candidates.

    The slope of expected coherence against tempered entropy is ``-covariance / variance``.

    Args:
        candidate_logits (`torch.Tensor` of shape `(batch, k)`): raw (or shifted) logits z of each row's
            candidate tokens; ``-inf`` marks a missing candidate.
        candidate_coherence (`torch.Tensor` of shape `(batch, k)`): the coherence c_i each candidate
            would give.
        temperature (`torch.Tensor` of shape `(batch,)`): T > 0 per row.

    Example:
        >>> import torch
        >>> from icp.signals.criticality import coherence_sensitivity_moments
        >>> z = torch.tensor([[2.0, 0.0, -1.0]])
        >>> c = torch.tensor([[0.9, 0.6, 0.5]])  # the likely token is the coherent one
        >>> m = coherence_sensitivity_moments(z, c, torch.tensor([1.0]))
        >>> bool(m.covariance > 0), bool(m.variance > 0)  # heating lowers E[c]
        (True, True)
    """
    y = candidate_logits.float() / temperature.float().unsqueeze(-1)
    y = y - y.amax(dim=-1, keepdim=True).nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    weights = torch.softmax(y, dim=-1).nan_to_num(nan=0.0)
    y = torch.where(weights > 0, y, torch.zeros_like(y))  # -inf candidates weigh 0 and must not make NaN
    c = candidate_coherence.float()
    mean_y = (weights * y).sum(dim=-1, keepdim=True)
    mean_c = (weights * c).sum(dim=-1, keepdim=True)
    dy = y - mean_y
    covariance = (weights * dy * (c - mean_c)).sum(dim=-1)
    variance = (weights * dy * dy).sum(dim=-1)
    return SensitivityMoments(covariance, variance.clamp_min(0.0))


def candidate_coherence(
    candidate_ids: torch.Tensor,
    embeddings: torch.Tensor,
    center: torch.Tensor,
    center_norms: torch.Tensor,
    reference: torch.Tensor,
) -> torch.Tensor:
    """The embedding coherence (1 + cos(e_i - center, m)) / 2 each candidate token i would have.

    Args:
        candidate_ids (`torch.LongTensor` of shape `(batch, k)`): token ids.
        embeddings (`torch.Tensor` of shape `(vocab, dim)`): the input embedding matrix.
        center (`torch.Tensor` of shape `(dim,)`): the mean embedding removed before the cosine.
        center_norms (`torch.Tensor` of shape `(vocab,)`): norms of the centred embeddings.
        reference (`torch.Tensor` of shape `(batch, dim)`): the row's decaying average m.

    Example:
        >>> import torch
        >>> from icp.signals.criticality import candidate_coherence
        >>> emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> center = torch.zeros(2)
        >>> candidate_coherence(torch.tensor([[0, 1, 2]]), emb, center, emb.norm(dim=-1), torch.tensor([[2.0, 0.0]]))
        tensor([[1.0000, 0.5000, 0.0000]])
    """
    vectors = embeddings[candidate_ids].float() - center  # (batch, k, dim): k rows of the matrix
    dot = torch.bmm(vectors, reference.float().unsqueeze(-1)).squeeze(-1)
    norms = center_norms[candidate_ids] * reference.float().norm(dim=-1, keepdim=True)
    cos = (dot / norms.clamp_min(_EPS)).clamp(-1.0, 1.0)
    return 0.5 * (1.0 + cos)
