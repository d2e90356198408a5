"""Repetition of a token sequence: the longest repeated cycle at the end of each row.

For a period p, the trailing run r_p is the number of consecutive positions, counting back from the
last token, where token[i] == token[i - p]. A cycle of length p seen n times in a row ends the
sequence exactly when r_p >= (n - 1)·p. Everything is computed with one gather over a fixed window,
vectorised over rows and periods.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["RepeatedCycle", "trailing_cycle", "loop_progress"]


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
