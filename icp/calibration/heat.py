"""Heat capacity: softmax(z/T) is the Gibbs distribution of energies E = -z at temperature T, so
C_v(T) = Var_{softmax(z/T)}(E) / T² is its heat capacity (the varentropy of the tempered distribution).

For every step of one sweep run, calibration finds the temperature T_c at which that step's C_v(T)
peaks ([`heat_capacity_peak`], recorded by [`HeatCapacityProbe`]) and compares the steps' T_c with the
temperatures at which the sweep reaches H_c and H* ([`heat_capacity_summary`]).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..signals import sanitize_logits

__all__ = [
    "HEAT_CAPACITY_GRID",
    "HeatCapacityProbe",
    "heat_capacity_curve",
    "heat_capacity_peak",
    "heat_capacity_summary",
    "interp_temperature",
    "log_grid",
]

#: The temperature grid of the per-step heat-capacity curves: log-spaced, 0.05 to 20.
HEAT_CAPACITY_GRID: tuple[float, float, int] = (0.05, 20.0, 48)


def heat_capacity_curve(
    logits: torch.Tensor, temperatures: torch.Tensor | Sequence[float], chunk: int = 8, bins: int | None = 1024
) -> torch.Tensor:
    """Heat capacity C_v(T) = Var_{softmax(z/T)}(E) / T² of each distribution, with energies E = -z.

    It equals the varentropy of the tempered distribution softmax(z/T), so C_v(1) is the trace's
    varentropy. Masked (`-inf`, NaN) logits carry no mass and contribute 0.

    For a vocabulary larger than `2 * bins`, the energies are first grouped into `bins` equal-width bins
    per row (each bin weighted by its token count, at its tokens' mean energy): the curve then costs
    O(vocab + bins·len(temperatures)) instead of O(vocab·len(temperatures)). Binning ignores the
    spread of energies inside a bin: on 49k-token logits the curve moves by < 1e-4 of its peak and
    T_c by < 1e-4 relative.

    Args:
        logits (`torch.Tensor` of shape `(..., vocab)`): raw logits z, any floating dtype (computed in float32).
        temperatures (`torch.Tensor` or sequence of `float`): the T grid, each > 0.
        chunk (`int`, *optional*, defaults to 8): temperatures evaluated at once (bounds the memory).
        bins (`int`, *optional*, defaults to 1024): energy bins for large vocabularies; `None` is exact.

    Returns:
        `torch.FloatTensor` of shape `(..., len(temperatures))`.

    Example:
        >>> import torch
        >>> from icp.calibrate import heat_capacity_curve
        >>> c = heat_capacity_curve(torch.tensor([0.0, -2.0]), [1.0])   # a two-level system, gap 2
        >>> x = torch.tensor(2.0); round(float(c[0]), 4) == round(float(x**2 * x.exp() / (1 + x.exp()) ** 2), 4)
        True
    """
    z = sanitize_logits(logits)
    z = z - z.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float32).min)
    t = torch.as_tensor(temperatures, dtype=torch.float32, device=z.device).reshape(-1)
    if t.numel() == 0 or not bool((t > 0).all()):
        raise ValueError(f"`temperatures` (={t.tolist()}) has to be a non-empty list of positive numbers.")
    log_weight = None
    if bins is not None and z.shape[-1] > 2 * bins:
        z, log_weight = _energy_histogram(z, bins)
    out = []
    for start in range(0, t.numel(), chunk):
        tc = t[start : start + chunk]
        scaled = z.unsqueeze(-2) / tc.unsqueeze(-1)  # (..., k, vocab or bins)
        logits_t = scaled if log_weight is None else scaled + log_weight.unsqueeze(-2)
        p = torch.softmax(logits_t, dim=-1)
        # Var_p(z/T); 0 * -inf = NaN on masked entries (or empty bins): nansum drops them.
        mean = (p * scaled).nansum(dim=-1, keepdim=True)
        out.append((p * (scaled - mean).square()).nansum(dim=-1))
    return torch.cat(out, dim=-1)


def _energy_histogram(z: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Groups each row's (max-shifted, <= 0) logits into equal-width bins: (mean logit, log count) per bin."""
    finite = torch.isfinite(z)
    low = torch.where(finite, z, torch.zeros_like(z)).amin(dim=-1, keepdim=True)
    width = (-low / bins).clamp_min(1e-12)
    index = ((z - low) / width).floor().clamp(0, bins - 1)
    index = torch.where(finite, index, torch.full_like(index, bins)).long()  # masked -> a dropped extra bin
    shape = z.shape[:-1] + (bins + 1,)
    counts = torch.zeros(shape, dtype=z.dtype, device=z.device).scatter_add_(-1, index, finite.to(z.dtype))
    sums = torch.zeros(shape, dtype=z.dtype, device=z.device).scatter_add_(
        -1, index, torch.where(finite, z, torch.zeros_like(z))
    )
    counts, sums = counts[..., :bins], sums[..., :bins]
    occupied = counts > 0
    energy = torch.where(occupied, sums / counts.clamp_min(1.0), torch.full_like(sums, -math.inf))
    return energy, counts.log()


def log_grid(low: float, high: float, n: int) -> torch.Tensor:
    """`n` log-spaced temperatures from `low` to `high`.

    Example:
        >>> log_grid(0.1, 10.0, 3).tolist()
        [0.10000000149011612, 1.0, 10.0]
    """
    return torch.logspace(math.log10(low), math.log10(high), n)


def heat_capacity_peak(
    logits: torch.Tensor, temperatures: torch.Tensor | Sequence[float] | None = None, chunk: int = 8
) -> tuple[torch.Tensor, torch.Tensor]:
    """Temperature T_c at which each distribution's heat capacity peaks, and the peak value.

    The curve is evaluated on a log-spaced grid and the maximum refined by a parabola through the
    grid maximum and its two neighbours (in log T). A peak on the grid's edge is returned at the
    edge; a distribution with a single unmasked token (no heat capacity anywhere) gives NaN.

    Args:
        logits (`torch.Tensor` of shape `(..., vocab)`): raw logits.
        temperatures (`torch.Tensor` or sequence of `float`, *optional*): increasing T grid; defaults
            to 48 log-spaced values from 0.05 to 20 (`HEAT_CAPACITY_GRID`).
        chunk (`int`, *optional*, defaults to 8): see [`heat_capacity_curve`].

    Returns:
        `(T_c, C_max)`: two `torch.FloatTensor` of shape `(...)`.

    Example:
        >>> import torch
        >>> from icp.calibrate import heat_capacity_peak
        >>> t_c, _ = heat_capacity_peak(torch.tensor([0.0, -2.0]))   # two levels: T_c = gap / 2.3994
        >>> abs(float(t_c) - 2.0 / 2.3994) < 0.01
        True
    """
    grid = log_grid(*HEAT_CAPACITY_GRID) if temperatures is None else torch.as_tensor(temperatures).float()
    grid = grid.to(logits.device).reshape(-1)
    if grid.numel() < 3 or not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError(f"`temperatures` (={grid.tolist()}) has to be an increasing grid of at least 3 values.")
    curve = heat_capacity_curve(logits, grid, chunk=chunk)
    log_tc = _refined_log_argmax(curve, grid.log())
    peak = curve.amax(dim=-1)
    t_c = torch.where(peak > 0, log_tc.exp(), torch.full_like(peak, math.nan))
    return t_c, peak


def _refined_log_argmax(curve: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """log T of each curve's maximum on the grid `u` (= log T), refined by the vertex of the parabola through
    the grid maximum and its two neighbours; a maximum on the grid's edge stays at the edge."""
    n = u.numel()
    best = curve.argmax(dim=-1)
    mid = best.clamp(1, n - 2)
    y0 = curve.gather(-1, (mid - 1).unsqueeze(-1)).squeeze(-1)
    y1 = curve.gather(-1, mid.unsqueeze(-1)).squeeze(-1)
    y2 = curve.gather(-1, (mid + 1).unsqueeze(-1)).squeeze(-1)
    x0, x1, x2 = u[mid - 1], u[mid], u[mid + 1]
    # Vertex of the parabola through (x0, y0), (x1, y1), (x2, y2).
    num = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    den = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    vertex = x1 - 0.5 * num / torch.where(den.abs() > 1e-12, den, torch.ones_like(den))
    vertex = torch.where(den.abs() > 1e-12, vertex.clamp(torch.minimum(x0, x2), torch.maximum(x0, x2)), x1)
    interior = (best > 0) & (best < n - 1)
    return torch.where(interior, vertex, u[best])


class HeatCapacityProbe:
    """Pass-through logits processor: records each row's heat-capacity peak temperature per step.

    Args:
        temperatures (`torch.Tensor`): the increasing T grid of [`heat_capacity_peak`].

    Example:
        >>> import torch
        >>> probe = HeatCapacityProbe(log_grid(0.05, 20.0, 48))
        >>> scores = torch.tensor([[0.0, -2.0], [0.0, -1.0]])
        >>> probe(None, scores) is scores, len(probe.peaks), tuple(probe.peaks[0].shape)
        (True, 1, (2,))
    """

    def __init__(self, temperatures: torch.Tensor) -> None:
        self.temperatures = temperatures
        self.peaks: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.peaks.append(heat_capacity_peak(scores, self.temperatures.to(scores.device))[0])
        return scores


def interp_temperature(target: float, temperatures: np.ndarray, entropies: np.ndarray) -> float:
    """Temperature at which the sweep's mean tempered entropy reaches `target` (log-T interpolation); NaN
    outside the swept entropies.

    Example:
        >>> import numpy as np
        >>> round(interp_temperature(1.5, np.array([0.5, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])), 4)
        0.7071
    """
    order = np.argsort(temperatures)
    t, h = temperatures[order], np.maximum.accumulate(entropies[order])
    if not np.isfinite(target) or target < h[0] or target > h[-1]:
        return math.nan
    return float(np.exp(np.interp(target, h, np.log(t))))


def _rounded(x: float) -> float:
    return round(x, 4) if math.isfinite(x) else math.nan


def heat_capacity_summary(
    t_c: np.ndarray,
    probe_t: float,
    h_c: float,
    h_c_ci: list[float],
    h_star: float,
    temperatures: np.ndarray,
    mean_ht: np.ndarray,
    grid: torch.Tensor,
) -> dict[str, Any]:
    """Compares the per-step heat-capacity peaks T_c with the temperatures where the sweep reaches H_c and H*.

    They agree when the temperature interval of H_c (its bootstrap interval mapped through the sweep's
    mean H_T(T)) overlaps the interquartile range of T_c.

    Args:
        t_c (`np.ndarray`): every step's finite peak temperature (of the run at `probe_t`).
        probe_t (`float`): the sweep temperature the peaks were measured at.
        h_c (`float`), h_c_ci (`list[float]`): H_c and its bootstrap interval.
        h_star (`float`): H*.
        temperatures (`np.ndarray`), mean_ht (`np.ndarray`): the sweep's temperatures and mean H_T at each.
        grid (`torch.Tensor`): the T grid the peaks were searched on.

    Returns:
        `dict`: the `heat_capacity` entry of [`CalibrationResult`].

    Example:
        >>> import numpy as np
        >>> temps, mean_ht = np.array([0.5, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
        >>> out = heat_capacity_summary(np.array([0.9, 1.0, 1.1]), 1.0, 2.0, [1.9, 2.1], 1.5, temps, mean_ht,
        ...                             log_grid(0.05, 20.0, 48))
        >>> out["median"], out["temperature_at_critical_entropy"], out["agrees"]
        (1.0, 1.0, True)
    """
    t_hc = interp_temperature(h_c, temperatures, mean_ht)
    t_hc_ci = [interp_temperature(h, temperatures, mean_ht) for h in h_c_ci]
    t_star = interp_temperature(h_star, temperatures, mean_ht)
    out: dict[str, Any] = {
        "probe_temperature": float(probe_t),
        "grid": [round(float(grid[0]), 4), round(float(grid[-1]), 4), int(grid.numel())],
        "n_steps": int(t_c.size),
        "temperature_at_critical_entropy": _rounded(t_hc),
        "temperature_at_critical_entropy_ci": [_rounded(t) for t in t_hc_ci],
        "temperature_at_target_entropy": _rounded(t_star),
    }
    if t_c.size == 0:
        out.update(median=math.nan, q25=math.nan, q75=math.nan, edge_share=math.nan, agrees=False, peaks=[])
        out["share_above_target_temperature"] = math.nan
        out["verdict"] = "no heat-capacity peaks were measured"
        return out
    q25, med, q75 = (float(np.quantile(t_c, q)) for q in (0.25, 0.5, 0.75))
    lo, hi = float(grid[0]), float(grid[-1])
    edge = float(np.mean((t_c <= lo * 1.0001) | (t_c >= hi * 0.9999)))
    # The interval of H_c in temperature: its CI where defined, else the point estimate.
    t_lo = t_hc_ci[0] if math.isfinite(t_hc_ci[0]) else t_hc
    t_hi = t_hc_ci[1] if math.isfinite(t_hc_ci[1]) else t_hc
    agrees = bool(math.isfinite(t_lo) and math.isfinite(t_hi) and t_lo <= q75 and t_hi >= q25)
    above_star = float(np.mean(t_c > t_star)) if math.isfinite(t_star) else math.nan
    out.update(
        median=round(med, 4),
        q25=round(q25, 4),
        q75=round(q75, 4),
        edge_share=round(edge, 4),
        share_above_target_temperature=_rounded(above_star),
        agrees=agrees,
        verdict=_verdict(t_c.size, probe_t, (q25, med, q75), t_hc, (t_lo, t_hi), t_star, above_star, agrees),
        peaks=[round(float(x), 4) for x in t_c],
    )
    return out


def _verdict(
    n_steps: int,
    probe_t: float,
    quartiles: tuple[float, float, float],
    t_hc: float,
    t_hc_interval: tuple[float, float],
    t_star: float,
    above_star: float,
    agrees: bool,
) -> str:
    """The heat-capacity read-out in words: the peaks' median and IQR, where the sweep reaches H_c (and
    whether that agrees with the peaks), and the share of steps on the cold side of their peak at H*."""
    q25, med, q75 = quartiles
    t_lo, t_hi = t_hc_interval
    head = (
        f"per-step heat-capacity peaks (T={probe_t:g} run, {n_steps} steps): median T_c {med:.2f}, "
        f"IQR {q25:.2f}-{q75:.2f}"
    )
    if not math.isfinite(t_hc):
        return f"{head}; H_c lies outside the swept entropies, so no temperature could be assigned to it"
    ci = f" (CI {t_lo:.2f}-{t_hi:.2f})" if t_lo != t_hi else ""
    if agrees:
        relation = "overlaps the IQR of T_c: they agree"
        if t_hc < q25:
            relation += " (the C(H) transition sits at the low end of the per-step peaks)"
        elif t_hc > q75:
            relation += " (the C(H) transition sits at the high end of the per-step peaks)"
    else:
        relation = f"lies {'above' if t_lo > q75 else 'below'} the IQR of T_c: they disagree"
    verdict = f"{head}. The sweep reaches H_c at T={t_hc:.2f}{ci}, which {relation}."
    if math.isfinite(t_star):
        verdict += (
            f" At H*'s temperature (T={t_star:.2f}) {above_star:.0%} of steps sit on the cold side of their peak."
        )
    return verdict
