"""Repetition of a token sequence: the longest repeated cycle at the end of each row.

For a period p, the trailing run r_p is the number of consecutive positions, counting back from the
last token, where token[i] == token[i - p]. A cycle of length p seen n times in a row ends the
sequence exactly when r_p >= (n - 1)·p. Everything is computed with one gather over a fixed window,
vectorised over rows and periods.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = [
    "RepeatedCycle",
    "extend_repeat_lengths",
    "loop_progress",
    "repeat_lengths",
    "repeat_penalty",
    "trailing_cycle",
]


class RepeatedCycle(NamedTuple):
    """The most advanced repeated cycle at the end of each row.

    Attributes:
        run (`torch.LongTensor` of shape `(batch,)`): trailing run r_p of the chosen period.
        period (`torch.LongTensor` of shape `(batch,)`): the chosen period p (1 where there is none).
        progress (`torch.FloatTensor` of shape `(batch,)`): r_p divided by the run that counts as a
            loop, maximised over periods; >= 1 means a loop.
    """

    run: torch.Tensor
    period: torch.Tensor
    progress: torch.Tensor


def _trailing_runs(window: torch.Tensor, max_period: int) -> torch.Tensor:
    """(batch, max_period) trailing runs r_p for p = 1..max_period. Negative ids never match."""
    batch, width = window.shape
    device = window.device
    periods = torch.arange(1, max_period + 1, device=device)  # (P,)
    back = torch.arange(width, device=device)  # offset i from the last token
    pos = width - 1 - back  # (L,)
    earlier = pos.unsqueeze(0) - periods.unsqueeze(1)  # (P, L)
    in_range = earlier >= 0
    cur = window[:, pos].unsqueeze(1).expand(batch, max_period, width)
    prev = window.gather(1, earlier.clamp_min(0).reshape(1, -1).expand(batch, -1)).reshape(batch, max_period, width)
    match = (cur == prev) & in_range.unsqueeze(0) & (cur >= 0)
    return match.long().cumprod(dim=-1).sum(dim=-1)


def trailing_cycle(window: torch.Tensor, max_period: int, min_repeats: int, min_loop_tokens: int) -> RepeatedCycle:
    """Finds, per row, the repeated cycle at the end of ``window`` that is closest to being a loop.

    A loop is a cycle of period p <= ``max_period`` seen ``min_repeats`` times in a row, covering at
    least ``min_loop_tokens`` repeated tokens: r_p >= max((min_repeats - 1)·p, min_loop_tokens).

    Args:
        window (`torch.LongTensor` of shape `(batch, width)`): the last tokens of each row, oldest
            first; negative entries mark positions to ignore (prompt, padding) and never match.
        max_period (`int`): longest cycle considered.
        min_repeats (`int`): how many times the cycle must be seen (>= 2).
        min_loop_tokens (`int`): least number of repeated tokens that make a loop.

    Example:

    >>> import torch
    >>> from icp.signals import trailing_cycle
    >>> w = torch.tensor([[5, 1, 2, 3, 1, 2, 3, 1, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    >>> c = trailing_cycle(w, max_period=4, min_repeats=3, min_loop_tokens=4)
    >>> c.period.tolist(), c.run.tolist(), (c.progress >= 1).tolist()
    ([3, 1], [6, 0], [True, False])
    """
    runs = _trailing_runs(window, max_period)  # (B, P)
    periods = torch.arange(1, max_period + 1, device=window.device)
    needed = torch.clamp_min((min_repeats - 1) * periods, min_loop_tokens).to(torch.float32)
    progress = runs.to(torch.float32) / needed  # (B, P)
    best_progress, best = progress.max(dim=-1)
    return RepeatedCycle(runs.gather(1, best.unsqueeze(1)).squeeze(1), best + 1, best_progress)


def loop_progress(window: torch.Tensor, max_period: int, min_repeats: int, min_loop_tokens: int) -> torch.Tensor:
    """Shorthand for ``trailing_cycle(...).progress``: >= 1 where the row ends in a loop.

    Args:
        window (`torch.LongTensor` of shape `(batch, width)`): see [`trailing_cycle`].
        max_period (`int`): see [`trailing_cycle`].
        min_repeats (`int`): see [`trailing_cycle`].
        min_loop_tokens (`int`): see [`trailing_cycle`].

    Example:

    >>> import torch
    >>> from icp.signals import loop_progress
    >>> loop_progress(torch.tensor([[7, 7, 7, 7]]), max_period=2, min_repeats=2, min_loop_tokens=4)
    tensor([0.7500])
    """
    return trailing_cycle(window, max_period, min_repeats, min_loop_tokens).progress


# ------------------------------------------------------------------------------ repeat lengths (DRY-like)
# For the last position n-1 of a row and every earlier position i, the repeat length L(i) is the
# length of the longest common run of tokens ending at i and at n-1 (L(i) >= 1 iff token[i] equals the
# last token). Emitting token[i + 1] next would extend that repeat to L(i) + 1 tokens. When one token
# is appended, L obeys  L_new(i) = [token[i] == new token] · (L_old(i - 1) + 1),  so ICP keeps L per row
# and updates it with one comparison and one shift per step, whatever the repeat lengths.


def repeat_lengths(ids: torch.Tensor, valid: torch.Tensor | None, cap: int) -> torch.Tensor:
    """L(i) for every position i < n - 1 against the last one, computed from scratch (a loop over
    at most `cap` offsets; ICP runs it once per generation, on the prompt).

    Args:
        ids (`torch.LongTensor` of shape `(batch, n)`): token ids, oldest first.
        valid (`torch.BoolTensor` of shape `(batch, n)`, *optional*): False marks padding, which never
            matches (it ends a repeat).
        cap (`int`): the largest length counted (>= 1).

    Returns:
        `torch.IntTensor` of shape `(batch, n - 1)` (empty when n < 2).

    Example:

    >>> import torch
    >>> from icp.signals.repetition import repeat_lengths
    >>> repeat_lengths(torch.tensor([[7, 1, 2, 9, 1, 2]]), None, cap=8)  # "1 2" ends at i = 2
    tensor([[0, 0, 2, 0, 0]], dtype=torch.int32)
    """
    batch, n = ids.shape
    if n < 2:
        return torch.zeros(batch, 0, dtype=torch.int32, device=ids.device)
    ok = torch.ones_like(ids, dtype=torch.bool) if valid is None else valid
    length = torch.zeros(batch, n - 1, dtype=torch.int32, device=ids.device)
    alive = torch.ones(batch, n - 1, dtype=torch.bool, device=ids.device)
    padded_ids = torch.nn.functional.pad(ids[:, :-1], (cap, 0), value=0)
    padded_ok = torch.nn.functional.pad(ok[:, :-1], (cap, 0), value=False)
    for j in range(min(cap, n - 1)):
        earlier = padded_ids[:, cap - j : cap - j + n - 1]  # token[i - j]
        earlier_ok = padded_ok[:, cap - j : cap - j + n - 1]
        last = ids[:, n - 1 - j : n - j]  # token[n - 1 - j]
        alive = alive & earlier_ok & ok[:, n - 1 - j : n - j] & (earlier == last)
        length = length + alive.to(torch.int32)
    return length


def extend_repeat_lengths(
    previous: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor | None, cap: int
) -> torch.Tensor:
    """L after appending the last token of `ids` to a context whose lengths were `previous`.

    The context either grew by the new token (`previous` has n - 2 columns) or is a window of fixed
    width that slid by one (`previous` has n - 1 columns, its first column being the position that
    fell out): in both cases L_new(i) = [ids[i] == new token]·(L_old(i - 1) + 1).

    Args:
        previous (`torch.IntTensor` of shape `(batch, n - 2)` or `(batch, n - 1)`): the lengths before
            the new token (of `ids[:, :-1]`, or of the window before it slid).
        ids (`torch.LongTensor` of shape `(batch, n)`): the context with the new token last.
        valid (`torch.BoolTensor` of shape `(batch, n)`, *optional*): see [`repeat_lengths`].
        cap (`int`): the largest length counted.

    Example:

    >>> import torch
    >>> from icp.signals.repetition import extend_repeat_lengths, repeat_lengths
    >>> ids = torch.tensor([[7, 1, 2, 9, 1, 2, 9]])
    >>> torch.equal(extend_repeat_lengths(repeat_lengths(ids[:, :-1], None, 8), ids, None, 8),
    ...             repeat_lengths(ids, None, 8))
    True
    """
    same = ids[:, :-1] == ids[:, -1:]
    if valid is not None:
        same = same & valid[:, :-1] & valid[:, -1:]
    width = ids.shape[1] - 1
    if previous.shape[1] == width - 1:  # grew: L_old(-1) = 0
        grown = torch.nn.functional.pad(previous, (1, 0), value=0) + 1
    elif previous.shape[1] == width:  # slid: column i - 1 of `previous` is position i - 1 of the new window
        grown = previous + 1
    else:
        raise ValueError(
            f"`previous` has {previous.shape[1]} columns; for `ids` of width {ids.shape[1]} it must have "
            f"{width - 1} (the context grew) or {width} (a fixed window slid)."
        )
    return torch.where(same, grown.clamp_max(cap), 0).to(torch.int32)


def repeat_penalty(lengths: torch.Tensor, multiplier: float, base: float, allowed_length: int) -> torch.Tensor:
    """DRY's penalty, in nats, for the token after each position: ``multiplier · base^(L - allowed_length)``
    where ``L >= allowed_length``, else 0 (p-e-w, text-generation-webui PR #5677).

    Args:
        lengths (`torch.IntTensor` of shape `(batch, m)`): repeat lengths from [`repeat_lengths`].
        multiplier (`float`): penalty at ``L = allowed_length``.
        base (`float`): growth per extra repeated token, >= 1.
        allowed_length (`int`): repeats shorter than this are free.

    Example:

    >>> import torch
    >>> from icp.signals.repetition import repeat_penalty
    >>> repeat_penalty(torch.tensor([[0, 1, 2, 3]]), 0.8, 2.0, 2)
    tensor([[0.0000, 0.0000, 0.8000, 1.6000]])
    """
    exponent = (lengths - allowed_length).clamp(0, 60).to(torch.float32)
    value = (multiplier * torch.pow(base, exponent)).clamp_max(_MAX_REPEAT_PENALTY)
    return torch.where(lengths >= allowed_length, value, 0.0)


_MAX_REPEAT_PENALTY = 1.0e4  # nats: far beyond any logit gap, and finite
