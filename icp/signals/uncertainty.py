"""Meta-uncertainty U: the model's uncertainty about its own uncertainty.

Two estimators are available (``ICPConfig.meta_uncertainty``):

- ``"entropy_volatility"`` (default): the standard deviation of the entropy H over the last
  ``window`` steps of the row. A model that swings between certainty and confusion is unsure of
  its own uncertainty even where each single step looks calm; this is temporal, so it adds
  information the per-step varentropy (always recorded in the trace) does not have.
- ``"varentropy"``: the per-step varentropy Var_p[-log p] (entropix's choice): how unequal the
  surprisals of the candidate tokens are.
"""

from __future__ import annotations

import torch

__all__ = ["entropy_volatility"]


def entropy_volatility(window: torch.Tensor) -> torch.Tensor:
    """Population standard deviation of each row's entropies over a window, ignoring NaN entries.

    Rows with fewer than two finite entries get 0.

    Args:
        window (`torch.FloatTensor` of shape `(batch, steps)`): recent entropies; NaN marks steps a
            row did not decode.

    Example:

    >>> import torch
    >>> from icp.signals import entropy_volatility
    >>> entropy_volatility(torch.tensor([[1.0, 3.0, float("nan")], [2.0, 2.0, 2.0]]))
    tensor([1., 0.])
    """
    finite = torch.isfinite(window)
    count = finite.sum(dim=-1)
    x = torch.where(finite, window, torch.zeros_like(window))
    n = count.clamp_min(1).to(window.dtype)
    mean = x.sum(dim=-1) / n
    dev = torch.where(finite, window - mean.unsqueeze(-1), torch.zeros_like(window))
    var = (dev * dev).sum(dim=-1) / n
    return torch.where(count >= 2, var.sqrt(), torch.zeros_like(var))
