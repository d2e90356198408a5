"""ICP's whole per-step distribution work in one fused pass family: the hot path.

[`controlled_step`] computes, from raw logits z, a per-row temperature T and min-p:

- of P = softmax(z): entropy H, varentropy V, and what the next step needs to read the chosen
  token's surprisal (the shifted logits and their log-normaliser, no (batch, vocab) log-probs);
- of softmax(z/T): entropy H_T and varentropy V_T (what the controller steers, and its gain);
- of Q = min-p(softmax(z/T)) (what is sampled): entropy H_Q, KL(Q || P), and log q.

Everything is written with shift-invariant identities on zc = z - max(z), so that no (batch, vocab)
log-probability tensor is built for P or for softmax(z/T): with y = zc / T, c_q = log Σ_{kept} e^y,

    H   = log Σe^zc - E_p[zc]                      V   = Var_p[zc]
    H_T = log Σe^y  - E_T[y]                       V_T = Var_T[y]
    H_Q = c_q - E_q[y]                             KL(Q||P) = (1 - T)·E_q[y] - c_q + log Σe^zc

(the last since log q - log p = y - c_q - zc + log Σe^zc and zc = T·y). That is about 20 passes over
the (batch, vocab) logits instead of about 40 for the separate reference functions in
`icp.signals.distribution`, which the tests hold this function to.

Two things keep those passes cheap on CPU (`python eval/overhead.py --signals-only` measures them):

- a [`FusedWorkspace`] holds the (batch, vocab) intermediates across steps, so that a step writes
  into memory it already owns instead of allocating a dozen fresh 6 MiB tensors at batch 32; the
  processor keeps one (in its state) until `reset()`;
- torch's CPU `exp2` kernel is about twice as fast as its `exp`. The tempered side keeps its logits in
  bits, zc·log2 e / T, from its first pass, so its weights are one `exp2` pass on any device; on CPU
  the P side's e^zc is computed as 2^(zc·log2 e), where the faster kernel pays for the multiply.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .distribution import _LOG_TINY, sanitize_logits

__all__ = [
    "ControlledStep",
    "FusedWorkspace",
    "control_side",
    "controlled_step",
    "observed_step",
    "chosen_surprisal",
]

_LOG2_E = 1.0 / math.log(2.0)
_LN_2 = math.log(2.0)


class FusedWorkspace:
    """Reusable float32 `(batch, vocab)` buffers for [`observed_step`] and [`control_side`].

    A buffer is (re)allocated when the shape or device it is asked for changes, and otherwise handed
    back as is, so a generation allocates its intermediates once. What a step returns in
    `shifted_logits` lives in the workspace and stays valid until the next [`observed_step`] with the
    same workspace.

    `logq` is a fresh tensor unless `reuse_output` is True: then it too is a workspace buffer,
    overwritten by the next [`control_side`]. ICP's processor sets it only inside a generate() call
    that does not keep its scores (`output_scores` off), where nothing holds a step's scores past
    sampling.

    Args:
        reuse_output (`bool`, *optional*, defaults to `False`): whether `logq` may be a reused buffer.

    Example:
        >>> import torch
        >>> from icp.signals.fused import FusedWorkspace, observed_step
        >>> workspace = FusedWorkspace()
        >>> first = observed_step(torch.randn(2, 10), workspace=workspace)
        >>> second = observed_step(torch.randn(2, 10), workspace=workspace)
        >>> first.shifted_logits is second.shifted_logits, workspace.nbytes()
        (True, 240)
    """

    def __init__(self, reuse_output: bool = False) -> None:
        self._buffers: dict[str, torch.Tensor] = {}
        self.reuse_output = reuse_output

    def get(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """The buffer `name`, float32 with `like`'s shape and device (contents undefined)."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.shape != like.shape or buffer.device != like.device:
            buffer = torch.empty(like.shape, dtype=torch.float32, device=like.device)
            self._buffers[name] = buffer
        return buffer

    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def _buffer(workspace: FusedWorkspace | None, name: str, like: torch.Tensor) -> torch.Tensor | None:
    return workspace.get(name, like) if workspace is not None else None


def _exp(x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    """e^x, into `out` when given (`out` may be `x` itself)."""
    if x.device.type == "cpu":
        return torch.mul(x, _LOG2_E, out=out).exp2_()
    return torch.exp(x, out=out)


class ControlledStep(NamedTuple):
    """Everything one controlled step yields (all float32, shape `(batch,)` unless noted).

    Attributes:
        entropy, varentropy: H and V of P = softmax(z).
        tempered_entropy, tempered_varentropy: H_T and V_T of softmax(z/T).
        sampled_entropy: H_Q of Q = min-p(softmax(z/T)).
        kl: KL(Q || P).
        shifted_logits (`(batch, vocab)`): zc = z - max z of P (for the next step's surprisal).
        log_normalizer: log Σ exp(zc), so that log p = zc - log_normalizer.
        logq (`(batch, vocab)`): log q, ``-inf`` outside the support; None when only observing.
    """

    entropy: torch.Tensor
    varentropy: torch.Tensor
    tempered_entropy: torch.Tensor
    tempered_varentropy: torch.Tensor
    sampled_entropy: torch.Tensor
    kl: torch.Tensor
    shifted_logits: torch.Tensor
    log_normalizer: torch.Tensor
    logq: torch.Tensor | None


def _moments_of_shifted(
    x: torch.Tensor, workspace: FusedWorkspace | None = None, bits: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For x with max 0 per row (-inf allowed): the weights e^x, the log-normaliser log Σe^x, E[x] and
    Var[x]. With `bits`, x is in bits: the weights are 2^x, and the normaliser, mean and variance are
    returned in nats (ln Σ2^x, E[x]·ln 2, Var[x]·ln² 2)."""
    weights = torch.exp2(x, out=_buffer(workspace, "weights", x)) if bits else _exp(x, _buffer(workspace, "weights", x))
    total = weights.sum(dim=-1)
    # 0 * -inf = NaN on masked entries: nansum drops them (their true term is 0)
    weighted = torch.mul(weights, x, out=_buffer(workspace, "product", x))
    first = weighted.nansum(dim=-1) / total
    variance = (weighted.mul_(x).nansum(dim=-1) / total - first * first).clamp_min(0.0)
    if bits:
        first, variance = _LN_2 * first, (_LN_2 * _LN_2) * variance
    return weights, total.log(), first, variance


def _first_listing(tokens: torch.Tensor) -> torch.Tensor:
    """1.0 where an entry of `tokens` (batch, k) is the first listing of its token in its row, else 0."""
    order = tokens.argsort(dim=-1, stable=True)
    ordered = tokens.gather(1, order)
    first = torch.ones_like(ordered, dtype=torch.float32)
    first[:, 1:] = (ordered[:, 1:] != ordered[:, :-1]).float()
    return torch.empty_like(first).scatter_(1, order, first)


def _zero_if_infinite(x: torch.Tensor) -> torch.Tensor:
    """x with NaN and ±inf replaced by 0 (one small operation)."""
    return torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _finite_rows(*values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    # A row with no finite logit has no distribution: report 0 rather than NaN.
    return _zero_if_infinite(torch.stack(values)).unbind(0)


def _shift(logits: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
    z = sanitize_logits(logits, out=out)
    peak = z.amax(dim=-1, keepdim=True)
    peak = _zero_if_infinite(peak)
    return z.sub_(peak) if out is not None else z - peak


def observed_step(logits: torch.Tensor, workspace: FusedWorkspace | None = None) -> ControlledStep:
    """The P side only (ICP observing: T = 1, no truncation, KL = 0).

    Args:
        logits (`torch.Tensor` of shape `(batch, vocab)`): raw scores, any floating dtype.
        workspace ([`FusedWorkspace`], *optional*): buffers to compute in; the returned
            `shifted_logits` is then the workspace's, overwritten by the next call with it.

    Example:
        >>> import math, torch
        >>> from icp.signals.fused import observed_step
        >>> s = observed_step(torch.zeros(1, 4))
        >>> round(s.entropy.item(), 4) == round(math.log(4), 4), s.kl.item()
        (True, 0.0)
    """
    zc = _shift(logits, _buffer(workspace, "shifted_logits", logits))
    _, log_total, mean, var = _moments_of_shifted(zc, workspace)
    h, v = _finite_rows(log_total - mean, var)
    zero = torch.zeros_like(h)
    return ControlledStep(h, v, h, v, h, zero, zc, log_total, None)


def controlled_step(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    min_p: float,
    penalty_tokens: torch.Tensor | None = None,
    penalty: torch.Tensor | None = None,
    workspace: FusedWorkspace | None = None,
) -> ControlledStep:
    """P's signals, then Q = min-p(softmax((z - π) / T)) with its entropy and KL(Q||P), where π is a
    sparse per-row penalty on a few tokens (ICP's de-repetition).

    Equals [`observed_step`] followed by [`control_side`].

    Args:
        logits (`torch.Tensor` of shape `(batch, vocab)`): raw scores, any floating dtype; ``±inf``
            and ``NaN`` are handled as in [`sanitize_logits`].
        temperature (`torch.FloatTensor` of shape `(batch,)`): per-row T > 0.
        min_p (`float`): min-p level in [0, 1); 0 disables truncation.
        penalty_tokens (`torch.LongTensor` of shape `(batch, k)`, *optional*): per row, tokens whose
            logits are lowered before tempering; a token listed several times gets its largest penalty.
        penalty (`torch.FloatTensor` of shape `(batch, k)`, *optional*): nats to subtract from the
            logit of the matching `penalty_tokens` entry (>= 0; 0 = none).
        workspace ([`FusedWorkspace`], *optional*): buffers for the intermediates (see
            [`observed_step`]).

    Example:
        >>> import torch
        >>> from icp.signals import distribution_signals, kl_divergence, temper_and_truncate
        >>> from icp.signals.fused import controlled_step
        >>> z, t = torch.randn(3, 50) * 3, torch.tensor([0.5, 1.0, 1.7])
        >>> s = controlled_step(z, t, min_p=0.05)
        >>> ref = temper_and_truncate(z, t, 0.05)
        >>> bool(torch.allclose(s.logq, ref, atol=1e-5))
        True
        >>> bool(torch.allclose(s.kl, kl_divergence(ref, distribution_signals(z).logp), atol=1e-4))
        True
    """
    return control_side(observed_step(logits, workspace), temperature, min_p, penalty_tokens, penalty, workspace)


def control_side(
    observed: ControlledStep,
    temperature: torch.Tensor,
    min_p: float,
    penalty_tokens: torch.Tensor | None = None,
    penalty: torch.Tensor | None = None,
    workspace: FusedWorkspace | None = None,
) -> ControlledStep:
    """Adds the tempered and sampled sides to an [`observed_step`] result (see [`controlled_step`]).

    Args:
        observed ([`ControlledStep`]): the P side, from [`observed_step`].
        temperature (`torch.FloatTensor` of shape `(batch,)`): per-row T > 0.
        min_p (`float`): min-p level in [0, 1).
        penalty_tokens (`torch.LongTensor` of shape `(batch, k)`, *optional*): see [`controlled_step`].
        penalty (`torch.FloatTensor` of shape `(batch, k)`, *optional*): see [`controlled_step`].
        workspace ([`FusedWorkspace`], *optional*): buffers for the intermediates (the one the
            observed side used); `logq` is a fresh tensor unless its `reuse_output` is set.
    """
    zc, log_total = observed.shifted_logits, observed.log_normalizer
    # The tempered logits are kept in bits, b = y·log2 e = zc·log2 e / T: the weights are then one
    # exp2 pass, and only (batch,) results are converted back to nats.
    scale = (_LOG2_E / temperature).unsqueeze(-1)
    b = torch.mul(zc, scale, out=_buffer(workspace, "tempered", zc))
    penalised = penalty_tokens is not None and penalty is not None and penalty_tokens.shape[-1] > 0
    if penalised:
        # b_j <- min(b_j, b_j - π_i·log2 e/T over the entries i naming j): no (batch, vocab) penalty
        # tensor, one gather and one scatter over the k entries.
        before = b.gather(1, penalty_tokens)
        b.scatter_reduce_(1, penalty_tokens, before - penalty.to(b.dtype) * scale, reduce="amin", include_self=True)
        # What each entry's token actually lost (its largest listed penalty, in bits), once per distinct
        # token: KL's E_q[zc] needs E_q[π], a sum over these few entries, not over the vocabulary.
        lost = torch.nan_to_num(before - b.gather(1, penalty_tokens), nan=0.0) * _first_listing(penalty_tokens)
        shift = b.amax(dim=-1)  # below 0 only if a penalised token was the maximum
        shift = _zero_if_infinite(shift)
        b.sub_(shift.unsqueeze(-1))
    weights, log_total_t, mean_t, var_t = _moments_of_shifted(b, workspace, bits=True)
    if min_p > 0.0:
        # max(b) = 0, so q_i / q_max = 2^{b_i}: keep the weights above min_p. `threshold` is a single
        # elementwise pass; masked_fill/where with a bool mask cost 5-20x more on CPU. The untruncated
        # weights are not needed again, so they are truncated in place.
        kept = torch.nn.functional.threshold_(weights, min_p, 0.0)
        total_q = kept.sum(dim=-1)
        log_total_q = total_q.log()
        mean_q = _LN_2 * torch.mul(kept, b, out=_buffer(workspace, "product", b)).nansum(dim=-1) / total_q
    else:
        log_total_q, mean_q = log_total_t, mean_t
    # log q = b·ln 2 - c_q, one pass. A row with no finite logit has c_q = -inf; subtracting 0 there
    # keeps its -inf (-inf - -inf would be NaN), so no NaN-cleaning pass over (batch, vocab) is needed.
    c_q = _zero_if_infinite(log_total_q).unsqueeze(-1)
    out = _buffer(workspace, "logq", b) if workspace is not None and workspace.reuse_output else None
    if min_p > 0.0:
        truncated = torch.threshold(b, math.log2(min_p), float("-inf"), out=out)
        logq = torch.add(-c_q, truncated, alpha=_LN_2, out=truncated)
    else:
        logq = torch.add(-c_q, b, alpha=_LN_2, out=out)
    # KL = E_q[log q - log p] = E_q[y] - c_q - E_q[zc] + log Σe^zc, with y = b·ln 2. Without a penalty
    # zc = T·y, so E_q[zc] = T·E_q[y]. With one, zc_j = T·(y_j + shift) + π_j, π_j the penalty token j
    # lost (0 if none), so E_q[zc] = T·(E_q[y] + shift) + Σ_j q_j π_j: a sum over the listed tokens only.
    if penalised:
        kept_weights = kept if min_p > 0.0 else weights
        kept_total = total_q if min_p > 0.0 else log_total_t.exp()
        q_listed = kept_weights.gather(1, penalty_tokens) / kept_total.unsqueeze(-1)
        mean_penalty = _LN_2 * temperature * (q_listed * lost).sum(dim=-1)
        mean_zc = temperature * (mean_q + _LN_2 * shift) + mean_penalty
        kl = mean_q - log_total_q - mean_zc + log_total
    else:
        kl = (1.0 - temperature) * mean_q - log_total_q + log_total
    h_t, v_t, h_q, kl = _finite_rows(log_total_t - mean_t, var_t, log_total_q - mean_q, kl)
    return observed._replace(
        tempered_entropy=h_t, tempered_varentropy=v_t, sampled_entropy=h_q, kl=kl.clamp_min(0.0), logq=logq
    )


def chosen_surprisal(shifted_logits: torch.Tensor, log_normalizer: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """-log p(token) from a step's shifted logits and log-normaliser, capped at about 87.3 nats.

    Args:
        shifted_logits (`torch.FloatTensor` of shape `(batch, vocab)`): zc of [`ControlledStep`].
        log_normalizer (`torch.FloatTensor` of shape `(batch,)`): log Σ exp(zc).
        tokens (`torch.LongTensor` of shape `(batch,)`): chosen tokens.

    Example:
        >>> import torch
        >>> from icp.signals.fused import chosen_surprisal, observed_step
        >>> s = observed_step(torch.log(torch.tensor([[0.25, 0.75]])))
        >>> round(chosen_surprisal(s.shifted_logits, s.log_normalizer, torch.tensor([0])).item(), 4)
        1.3863
    """
    logp = shifted_logits.gather(1, tokens.long().unsqueeze(1)).squeeze(1) - log_normalizer
    return 0.0 - torch.nan_to_num(logp, nan=_LOG_TINY).clamp_min(_LOG_TINY)
