"""A progress bar that ticks once per decoding step, as a pass-through logits processor."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["StepProgress"]


class StepProgress:
    """Pass-through logits processor advancing a progress bar once per decoding step, and counting the steps.

    `generate()` calls every logits processor once per step, so putting this one last in the list ticks the
    bar as tokens come; it returns `scores` untouched.

    Args:
        bar (`tqdm.tqdm` or any object with `update(n)`): the bar to advance.

    Example:
        >>> import torch
        >>> from tqdm.auto import tqdm
        >>> progress = StepProgress(tqdm(total=2, disable=True))
        >>> scores = torch.zeros(1, 4)
        >>> progress(None, scores) is scores, progress.steps
        (True, 1)
    """

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.steps = 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.bar.update(1)
        self.steps += 1
        return scores
