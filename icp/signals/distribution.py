"""Signals of one next-token distribution: log-probabilities, entropy, varentropy, surprisal, KL.

Every function here is a pure tensor function: vectorised over the batch, computed in float32 on the
device of its input, with no host-device synchronisation. Logits may carry ``-inf`` masks (from
top-k, bad words, ``min_new_tokens`` ...), ``+inf`` and ``NaN``; the outputs are never NaN:

- ``NaN`` logits are treated as masked (``-inf``);
- ``+inf`` logits take all the probability mass, shared equally among them;
- a row with no finite logit at all (fully masked) has entropy 0 and varentropy 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = [
    "DistributionSignals",
    "sanitize_logits",
    "distribution_signals",
    "entropy",
    "varentropy",
    "token_surprisal",
    "kl_divergence",
    "temper_and_truncate",
    "tempered_signals",
    "truncate_min_p",
    "log_prob_moments",
]

# A stand-in for +inf logits: far above any real logit, yet finite after division by the smallest
# temperature ICP allows (1e-3, see ICPConfig), so that log_softmax stays finite.
_POSINF_STAND_IN = 1e30
# log of the smallest normal float32 (about -87.3): the floor of a log-probability that must stay finite.
_LOG_TINY = math.log(torch.finfo(torch.float32).tiny)


class DistributionSignals(NamedTuple):
    """Log-probabilities of a distribution and its first two surprisal moments.

    Attributes:
        logp (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities, ``-inf`` where masked.
        entropy (`torch.FloatTensor` of shape `(batch,)`): H = E_p[-log p] in nats.
        varentropy (`torch.FloatTensor` of shape `(batch,)`): V = Var_p[-log p] in nats².
    """

    logp: torch.Tensor
    entropy: torch.Tensor
    varentropy: torch.Tensor


def sanitize_logits(logits: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Returns float32 logits with ``NaN`` mapped to ``-inf`` and ``+inf`` to a huge finite value.

    Never modifies its input.

    Args:
        logits (`torch.Tensor` of shape `(..., vocab)`): raw scores, any floating dtype.
        out (`torch.FloatTensor` of `logits`' shape, *optional*): a float32 tensor to write the result
            into (and return) instead of allocating one.

    Example:

    >>> import torch
    >>> from icp.signals import sanitize_logits
    >>> sanitize_logits(torch.tensor([[float("nan"), 0.0, float("-inf")]]))
    tensor([[-inf, 0., -inf]])
    """
    stand_ins = {"nan": float("-inf"), "posinf": _POSINF_STAND_IN, "neginf": float("-inf")}
    if out is None:
        return torch.nan_to_num(logits.float(), **stand_ins)
    if logits.dtype != torch.float32:
        return out.copy_(logits).nan_to_num_(**stand_ins)
    return torch.nan_to_num(logits, **stand_ins, out=out)


def _moments(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # 0 * -inf = NaN on masked entries: nansum drops them, which is their correct contribution (0).
    p_logp = logp.exp() * logp
    h = 0.0 - p_logp.nansum(dim=-1)  # 0 - x, not -x: a one-hot row gives +0.0, not -0.0
    second = (p_logp * logp).nansum(dim=-1)
    v = (second - h * h).clamp_min(0.0)
    return h, v


def distribution_signals(logits: torch.Tensor) -> DistributionSignals:
    """Computes log-probabilities, entropy and varentropy from logits in one fused pass.

    With energies E_i = -z_i, the varentropy equals the heat capacity Var(E)/T² at T = 1 (see
    docs/signals.md): the temperature at which it peaks marks the step's phase transition.

    Args:
        logits (`torch.Tensor` of shape `(batch, vocab)`): raw scores, any floating dtype, may
            contain ``±inf`` and ``NaN``.

    Returns:
        [`DistributionSignals`]: ``logp`` (float32), ``entropy`` and ``varentropy`` of shape `(batch,)`.

    Example:

    >>> import math, torch
    >>> from icp.signals import distribution_signals
    >>> s = distribution_signals(torch.zeros(2, 8))
    >>> bool(torch.allclose(s.entropy, torch.full((2,), math.log(8))))
    True
    >>> s.varentropy.abs().max().item() < 1e-5
    True
    """
    # A fully masked row has no distribution: log_softmax gives NaN there; keep it all -inf.
    logp = torch.log_softmax(sanitize_logits(logits), dim=-1).nan_to_num_(nan=float("-inf"), neginf=float("-inf"))
    h, v = _moments(logp)
    return DistributionSignals(logp, h, v)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy H = E_p[-log p] (nats) of softmax(logits), per row, never NaN.

    Args:
        logits (`torch.Tensor` of shape `(batch, vocab)`): raw scores.

    Example:

    >>> import torch
    >>> from icp.signals import entropy
    >>> entropy(torch.tensor([[0.0, float("-inf")], [0.0, 0.0]]))
    tensor([0.0000, 0.6931])
    """
    return distribution_signals(logits).entropy


def varentropy(logits: torch.Tensor) -> torch.Tensor:
    """Varentropy V = Var_p[-log p] (nats²) of softmax(logits), per row, never NaN.

    Args:
        logits (`torch.Tensor` of shape `(batch, vocab)`): raw scores.

    Example:

    >>> import torch
    >>> from icp.signals import varentropy
    >>> varentropy(torch.tensor([[0.0, 0.0, 0.0]])).abs().item() < 1e-6
    True
    """
    return distribution_signals(logits).varentropy


def token_surprisal(logp: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Surprisal -log p(token) of the chosen token of each row, capped to stay finite.

    A token the distribution had masked gets the surprisal of the float32 range's end (about 87.3 nats,
    -log of the smallest normal float32) rather than ``inf``.

    Args:
        logp (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities.
        tokens (`torch.LongTensor` of shape `(batch,)`): the chosen token ids.

    Example:

    >>> import torch
    >>> from icp.signals import token_surprisal
    >>> logp = torch.log(torch.tensor([[0.5, 0.5], [1.0, 0.0]]))
    >>> token_surprisal(logp, torch.tensor([0, 0]))
    tensor([0.6931, 0.0000])
    """
    chosen = logp.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)
    return 0.0 - chosen.clamp_min(_LOG_TINY)


def kl_divergence(logq: torch.Tensor, logp: torch.Tensor) -> torch.Tensor:
    """KL(Q || P) = Σ q (log q - log p) per row, in nats: the cost of moving from P to Q.

    Entries where q = 0 contribute 0. Where q > 0 but p = 0 the divergence is infinite in theory; it
    is capped (p is floored at the smallest normal float32) so the result stays finite.

    Args:
        logq (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities of Q.
        logp (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities of P.

    Example:

    >>> import torch
    >>> from icp.signals import kl_divergence
    >>> logp = torch.log(torch.tensor([[0.5, 0.5]]))
    >>> logq = torch.log(torch.tensor([[1.0, 0.0]]))
    >>> kl_divergence(logq, logp)
    tensor([0.6931])
    """
    terms = logq.exp() * (logq - logp.clamp_min(_LOG_TINY))
    return terms.nansum(dim=-1).clamp_min(0.0)


def log_prob_moments(logp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy and varentropy of a distribution given by its log-probabilities (``-inf`` allowed).

    Args:
        logp (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities.

    Example:
        >>> import math, torch
        >>> from icp.signals import log_prob_moments
        >>> h, v = log_prob_moments(torch.log(torch.tensor([[0.5, 0.5, 0.0]])))
        >>> round(h.item(), 4), round(v.item(), 4)
        (0.6931, 0.0)
    """
    return _moments(logp)


def tempered_signals(logits: torch.Tensor, temperature: torch.Tensor) -> DistributionSignals:
    """Log-probabilities, entropy and varentropy of softmax(logits / T), T per row.

    dH/dlog T equals the varentropy of the tempered distribution (its heat capacity), which is
    what ICP's controller uses as its local gain.

    Args:
        logits (`torch.Tensor` of shape `(batch, vocab)`): sanitised float32 logits (see
            [`sanitize_logits`]).
        temperature (`torch.FloatTensor` of shape `(batch,)`): strictly positive per-row temperature.

    Example:
        >>> import torch
        >>> from icp.signals import tempered_signals
        >>> s = tempered_signals(torch.tensor([[2.0, 0.0], [2.0, 0.0]]), torch.tensor([1.0, 100.0]))
        >>> bool(s.entropy[0] < s.entropy[1])
        True
    """
    logp = torch.log_softmax(logits / temperature.unsqueeze(-1), dim=-1).nan_to_num_(
        nan=float("-inf"), neginf=float("-inf")
    )
    h, v = _moments(logp)
    return DistributionSignals(logp, h, v)


def truncate_min_p(logp: torch.Tensor, min_p: float) -> torch.Tensor:
    """Min-p truncation of a distribution given by log-probabilities, renormalised.

    Keeps the tokens whose probability is at least `min_p` times the row's largest (the argmax
    always survives); `min_p = 0` returns `logp` itself.

    Args:
        logp (`torch.FloatTensor` of shape `(batch, vocab)`): log-probabilities.
        min_p (`float`): in [0, 1).

    Example:
        >>> import torch
        >>> from icp.signals import truncate_min_p
        >>> truncate_min_p(torch.log(torch.tensor([[0.6, 0.36, 0.04]])), 0.1).exp()
        tensor([[0.6250, 0.3750, 0.0000]])
    """
    if min_p <= 0.0:
        return logp
    threshold = logp.amax(dim=-1, keepdim=True) + math.log(min_p)
    kept = logp.masked_fill(logp < threshold, float("-inf"))
    return torch.log_softmax(kept, dim=-1).nan_to_num_(nan=float("-inf"), neginf=float("-inf"))


def temper_and_truncate(logits: torch.Tensor, temperature: torch.Tensor, min_p: float) -> torch.Tensor:
    """Log-probabilities of the distribution ICP samples from: tempered, then min-p truncated.

    ``q ∝ exp(z / T)`` restricted to tokens whose tempered probability is at least ``min_p`` times
    the row's most probable one (min-p truncation after temperature). The most probable token
    always survives.

    Args:
        logits (`torch.Tensor` of shape `(batch, vocab)`): sanitised float32 logits (see
            [`sanitize_logits`]).
        temperature (`torch.FloatTensor` of shape `(batch,)`): strictly positive per-row temperature.
        min_p (`float`): truncation level in [0, 1); 0 disables truncation.

    Returns:
        `torch.FloatTensor` of shape `(batch, vocab)`: log q, ``-inf`` outside the support.

    Example:

    >>> import torch
    >>> from icp.signals import temper_and_truncate
    >>> z = torch.tensor([[2.0, 1.0, -5.0]])
    >>> temper_and_truncate(z, torch.tensor([1.0]), min_p=0.1).exp()
    tensor([[0.7311, 0.2689, 0.0000]])
    """
    scaled = logits / temperature.unsqueeze(-1)
    if min_p > 0.0:
        # log q_i >= log q_max + log(min_p)  <=>  scaled_i >= max(scaled) + log(min_p)
        threshold = scaled.amax(dim=-1, keepdim=True) + math.log(min_p)
        scaled = scaled.masked_fill(scaled < threshold, float("-inf"))
    return torch.log_softmax(scaled, dim=-1).nan_to_num_(
        nan=float("-inf"), neginf=float("-inf")
    )  # fully masked rows stay -inf
