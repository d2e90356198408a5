"""The per-row feedback law on log-temperature. Tensor in, tensor out; imports only torch.

With x = log T (so each step multiplies T by a factor instead of adding to it), each step:

    x ← x + heat·[rigid] − cool·[unstable]                       (regime-dependent dissipation)
    T = exp(clip(x, log T_min, log T_max))                        (applied to this step's logits)
    x ← clip(x − η·g·(H_Q − H*) − leak·(x − x0), log T_min, log T_max)   (entropy feedback)

H_Q is the entropy of the tempered distribution softmax(z/T) (before ICP's min-p truncation, which
only trims its tail), H* the target. g = V_Q / (κ + V_Q) ∈ [0, 1) gates the step by the local
sensitivity dH_Q/dx, which equals the varentropy V_Q of the tempered distribution (its heat
capacity): a near-deterministic step (V_Q ≈ 0), whose entropy no temperature can move, then leaves
x alone instead of winding it up. Near the fixed point, H_Q − H* ≈ μ·(x − x*) with μ = dH_Q/dx, so
one feedback step multiplies the error by 1 − η·g·μ: since 0 ≤ η·g < η, it contracts without
overshooting (0 < η·g·μ < 1) whenever η·μ_max < 1, and the clip keeps x bounded whatever the logits do.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

__all__ = ["CriticalRegionTracker", "LogTemperatureController", "TrackerState"]


class LogTemperatureController:
    """Per-row bounded feedback on log-temperature toward a target entropy.

    Args:
        target_entropy (`float`): H* in nats.
        gain (`float`): η > 0.
        min_temperature (`float`): T_min > 0.
        max_temperature (`float`): T_max >= T_min.
        initial_temperature (`float`): T0 in [T_min, T_max]; the leak pulls toward it.
        leak (`float`): in [0, 1).
        heat_rate (`float`): log-temperature added per rigid step.
        cool_rate (`float`): log-temperature removed per unstable step.
        sensitivity_floor (`float`, *optional*, defaults to 0.02): κ, the varentropy (nats²) below
            which a step barely moves x.

    Example:
        >>> import torch
        >>> from icp.controller import LogTemperatureController
        >>> ctl = LogTemperatureController(1.0, 0.5, 0.25, 4.0, 1.0, 0.0, 0.0, 0.0)
        >>> x = ctl.initial_state(2, torch.device("cpu"))
        >>> x = ctl.update(x, sampled_entropy=torch.tensor([2.0, 0.0]), sampled_varentropy=torch.ones(2))
        >>> x.exp()  # too hot -> cooler; too cold -> hotter
        tensor([0.6125, 1.6326])
    """

    def __init__(
        self,
        target_entropy: float,
        gain: float,
        min_temperature: float,
        max_temperature: float,
        initial_temperature: float,
        leak: float,
        heat_rate: float,
        cool_rate: float,
        sensitivity_floor: float = 0.02,
    ) -> None:
        self.target_entropy = float(target_entropy)
        self.gain = float(gain)
        self.log_min = math.log(min_temperature)
        self.log_max = math.log(max_temperature)
        self.log_initial = math.log(initial_temperature)
        self.leak = float(leak)
        self.heat_rate = float(heat_rate)
        self.cool_rate = float(cool_rate)
        self.sensitivity_floor = float(sensitivity_floor)

    def initial_state(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """log T0 for every row, float32, on `device`."""
        return torch.full((batch_size,), self.log_initial, dtype=torch.float32, device=device)

    def dissipate(self, x: torch.Tensor, rigid: torch.Tensor, unstable: torch.Tensor) -> torch.Tensor:
        """Heats rigid rows and cools unstable ones, then clips. Returns the new x."""
        x = x + self.heat_rate * rigid.to(x.dtype) - self.cool_rate * unstable.to(x.dtype)
        return x.clamp(self.log_min, self.log_max)

    def update(
        self,
        x: torch.Tensor,
        sampled_entropy: torch.Tensor,
        sampled_varentropy: torch.Tensor,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One feedback step from the entropy and varentropy of the steered distribution, toward
        `target` (per row, from [`CriticalRegionTracker`]) or, without it, the fixed H*."""
        sensitivity = sampled_varentropy / (self.sensitivity_floor + sampled_varentropy)
        error = sampled_entropy - (self.target_entropy if target is None else target)
        x = x - self.gain * sensitivity * error - self.leak * (x - self.log_initial)
        return x.clamp(self.log_min, self.log_max)


class TrackerState(NamedTuple):
    """Per-row state of [`CriticalRegionTracker`] (float32, shape `(batch,)`).

    Attributes:
        covariance: running average of Cov_q[c, y].
        variance: running average of Var_q[y].
        offset: the target's offset from H*, in nats.
    """

    covariance: torch.Tensor
    variance: torch.Tensor
    offset: torch.Tensor


class CriticalRegionTracker:
    """Moves each row's target entropy along its own local slope of coherence against entropy.

    With per-step moments Cov_q[c, y] and Var_q[y] ([`icp.signals.criticality`]), per row:

        A ← β·A + (1 - β)·Cov,    B ← β·B + (1 - β)·Var,    σ = (A + π·σ*) / (B + π)
        d ← clip(d + ρ·tanh((σ* - σ) / σ*), -δ, δ),        target = max(H* + d, 0)

    σ is the sensitivity -dE[C]/dH_T, a ratio of averages so that near-deterministic steps (Var ≈ 0)
    weigh nothing, shrunk toward σ* by π nats² of pseudo-variance. A row whose coherence is flatter
    than at the calibrated operating point (σ < σ*) is moved hotter, one on the steep side cooler; the
    offset integrates at most ρ nats a step and stays within ±δ, so the target can neither run away
    nor oscillate faster than the controller follows it.

    Args:
        target_entropy (`float`): H* in nats.
        rate (`float`): ρ, nats per step.
        bound (`float`): δ, nats.
        reference_sensitivity (`float`): σ*, coherence per nat.
        decay (`float`): β in [0, 1).
        prior (`float`): π, nats².

    Example:
        >>> import torch
        >>> from icp.controller import CriticalRegionTracker
        >>> tracker = CriticalRegionTracker(2.0, rate=0.1, bound=1.0, reference_sensitivity=0.02, decay=0.5, prior=0.1)
        >>> state = tracker.initial_state(2, torch.device("cpu"))
        >>> cov, var = torch.tensor([0.0, 0.2]), torch.tensor([2.0, 2.0])  # flat row, steep row
        >>> for _ in range(5):
        ...     state, target = tracker.update(state, cov, var, torch.tensor([True, True]))
        >>> bool(target[0] > 2.0), bool(target[1] < 2.0)
        (True, True)
    """

    def __init__(
        self,
        target_entropy: float,
        rate: float,
        bound: float,
        reference_sensitivity: float,
        decay: float,
        prior: float,
    ) -> None:
        self.target_entropy = float(target_entropy)
        self.rate = float(rate)
        self.bound = float(bound)
        self.reference = float(reference_sensitivity)
        self.decay = float(decay)
        self.prior = float(prior)

    def initial_state(self, batch_size: int, device: torch.device) -> TrackerState:
        """No evidence yet: σ = σ*, offset 0."""
        zeros = torch.zeros(batch_size, dtype=torch.float32, device=device)
        return TrackerState(zeros, zeros.clone(), zeros.clone())

    def sensitivity(self, state: TrackerState) -> torch.Tensor:
        """σ per row, coherence per nat."""
        return (state.covariance + self.prior * self.reference) / (state.variance + self.prior)

    def update(
        self, state: TrackerState, covariance: torch.Tensor, variance: torch.Tensor, active: torch.Tensor
    ) -> tuple[TrackerState, torch.Tensor]:
        """Folds in one step's moments (rows not `active` are left as they were); returns the new
        state and each row's target entropy."""
        keep = self.decay
        cov = torch.where(active, keep * state.covariance + (1.0 - keep) * covariance, state.covariance)
        var = torch.where(active, keep * state.variance + (1.0 - keep) * variance, state.variance)
        moved = TrackerState(cov, var, state.offset)
        error = torch.tanh((self.reference - self.sensitivity(moved)) / self.reference)
        offset = torch.where(active, (state.offset + self.rate * error).clamp(-self.bound, self.bound), state.offset)
        target = (self.target_entropy + offset).clamp_min(0.0)
        return TrackerState(cov, var, offset), target
