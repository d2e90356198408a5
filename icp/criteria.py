"""ICP's stopping criteria: per-row bool tensors for loops and divergence.

They never read `scores` (None unless generate was asked for `output_scores=True`); they read the
state ICP's logits processor wrote during the step, and the newest token from `input_ids`. Each
returns, on `input_ids.device`, True for the rows it has stopped (cumulatively), and records the
reason and step per row so a caller can abstain instead of returning a looping or diverging answer.
"""

from __future__ import annotations

import torch
from transformers import StoppingCriteria

from .state import DIVERGENCE, LOOP, DecodingState

__all__ = ["LoopStoppingCriteria", "DivergenceStoppingCriteria"]


class _StateCriteria(StoppingCriteria):
    reason: int

    def __init__(self, state: DecodingState) -> None:
        self.state = state

    def _rows(self) -> torch.Tensor:
        raise NotImplementedError

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None = None, **kwargs
    ) -> torch.BoolTensor:
        state = self.state
        if not state.started or input_ids.shape[0] != state.batch_size:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        state.observe_token(input_ids)
        state.stop_rows(self._rows(), self.reason, state.last_sampled_step)
        return (state.done & (state.stop_reason == self.reason)).to(input_ids.device)


class LoopStoppingCriteria(_StateCriteria):
    """Stops a row whose generated tokens end in a repeated cycle (see [`LoopConfig`]).

    Args:
        state ([`DecodingState`]): the state of the ICP processor it belongs to.

    Example:
        >>> from icp import ICP
        >>> icp = ICP()
        >>> [type(c).__name__ for c in icp.stopping_criteria]
        ['LoopStoppingCriteria', 'DivergenceStoppingCriteria']
    """

    reason = LOOP

    def _rows(self) -> torch.Tensor:
        return self.state.loop_now


class DivergenceStoppingCriteria(_StateCriteria):
    """Stops a row whose F or U stayed beyond its bound for `patience` steps, and, with
    `answer_free_energy_bound` set, marks a row that ends with a trajectory F above it as diverged (an
    abstention; see [`DivergenceConfig`]).

    Args:
        state ([`DecodingState`]): the state of the ICP processor it belongs to.

    Example:
        >>> from icp import ICP
        >>> ICP(divergence={"patience": 4}).config.divergence.patience
        4
    """

    reason = DIVERGENCE

    def _rows(self) -> torch.Tensor:
        return self.state.divergence_now()

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor | None = None, **kwargs
    ) -> torch.BoolTensor:
        stopped = super().__call__(input_ids, scores, **kwargs)
        state = self.state
        bound = state.config.divergence.answer_free_energy_bound
        if bound is None or not state.started or input_ids.shape[0] != state.batch_size:
            return stopped
        # Abstention: a row that just ended with a high trajectory F is relabelled as diverged.
        state.stop_rows(state.uncertain_answers(bound), self.reason, state.last_sampled_step, relabel=True)
        return (state.done & (state.stop_reason == self.reason)).to(input_ids.device)
