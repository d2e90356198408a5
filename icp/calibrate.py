"""Calibration: measure a model's coherence-vs-entropy curve C(H) and read ICP's settings off it.

`calibrate(model, tokenizer)` samples every calibration prompt at a sweep of fixed temperatures
(ICP pinned at each T: `min_temperature = max_temperature = initial_temperature = T`, no min-p,
no dissipation, no de-repetition, stopping criteria on, exactly as `examples/measure_defaults.py`
does) and records, per prompt and temperature, the mean raw entropy H, the mean tempered entropy
H_T (of softmax(z/T), what ICP's controller steers), mean coherence C, mean meta-uncertainty U, the
mean per-step heat capacity (the varentropy V = Var(E)/T² at T = 1, E = -z) and whether the row
looped. From these it derives:

- **the critical entropy H_c**, where |dC/dH_T| peaks, from a logistic fit of the per-temperature
  mean C against the mean H_T (`fit_coherence_curve`), with a confidence interval from refits on
  prompts resampled with replacement;
- **the target entropy H\\***, on the coherent side of H_c where the fitted slope has fallen to
  `slope_fraction` of its peak (`LogisticFit.target_entropy`), with its interval;
- **the regime thresholds**, from per-token quantiles at the sweep temperature whose mean H_T is
  nearest H\\* (`THRESHOLD_RULES`, the quantile choices docs/defaults.md made by hand);
- **the thermodynamic read-out** (softmax(z/T) is the Gibbs distribution of energies E = -z at
  temperature T, so Var(E)/T² is its heat capacity): for every step of the sweep run nearest T = 1,
  the temperature T_c at which that step's heat capacity C_v(T) = Var_{softmax(z/T)}(E)/T² peaks
  (`heat_capacity_peak`), summarised by its median and IQR and compared with the temperatures at
  which the sweep reaches H_c and H\\*.

Everything lands in a [`CalibrationResult`]; [`icp.cards.write_card`] turns it into a model card.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from .optional import require
from .prompts import CALIBRATION_PROMPTS

__all__ = [
    "CalibrationResult",
    "LogisticFit",
    "THRESHOLD_RULES",
    "DEFAULT_TEMPERATURES",
    "DEFAULT_SLOPE_FRACTION",
    "calibrate",
    "fit_coherence_curve",
    "heat_capacity_curve",
    "heat_capacity_peak",
    "regime_thresholds_from_tokens",
    "plot_calibration",
]

#: Ten temperatures from 0.3 to 2.0, denser around T = 1.0-1.35 where the default model's coherence falls.
DEFAULT_TEMPERATURES: tuple[float, ...] = (0.3, 0.5, 0.7, 0.85, 1.0, 1.1, 1.2, 1.35, 1.6, 2.0)
#: H* is where the fitted |dC/dH| has fallen to this share of its peak, on the coherent side.
DEFAULT_SLOPE_FRACTION = 0.25
#: The temperature grid of the per-step heat-capacity curves: log-spaced, 0.05 to 20.
HEAT_CAPACITY_GRID: tuple[float, float, int] = (0.05, 20.0, 48)

#: How each regime threshold is read off the per-token distributions at the reference temperature
#: (the sweep temperature whose mean H_T is nearest H*). These are the choices that
#: docs/defaults.md made by hand at T = 0.9: exploratory from the upper quartile of H, unstable
#: from the 95th percentiles of H and U, rigid from half the lower quartile of H, coherence from the
#: 10th percentile of C. `rigid_repetition` (loop progress) is not a calibrated quantity.
THRESHOLD_RULES: dict[str, dict[str, Any]] = {
    "rigid_entropy": {"signal": "entropy", "quantile": 0.25, "scale": 0.5},
    "exploratory_entropy": {"signal": "entropy", "quantile": 0.75, "scale": 1.0},
    "unstable_entropy": {"signal": "entropy", "quantile": 0.95, "scale": 1.0},
    "unstable_meta_uncertainty": {"signal": "meta_uncertainty", "quantile": 0.95, "scale": 1.0},
    "coherent": {"signal": "coherence", "quantile": 0.10, "scale": 1.0},
}


# ----------------------------------------------------------------------------- heat capacity
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
    from .signals import sanitize_logits

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


def _log_grid(low: float, high: float, n: int) -> torch.Tensor:
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
    grid = _log_grid(*HEAT_CAPACITY_GRID) if temperatures is None else torch.as_tensor(temperatures).float()
    grid = grid.to(logits.device).reshape(-1)
    if grid.numel() < 3 or not bool((grid[1:] > grid[:-1]).all()):
        raise ValueError(f"`temperatures` (={grid.tolist()}) has to be an increasing grid of at least 3 values.")
    curve = heat_capacity_curve(logits, grid, chunk=chunk)
    u = grid.log()
    n = grid.numel()
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
    log_tc = torch.where(interior, vertex, u[best])
    peak = curve.amax(dim=-1)
    t_c = torch.where(peak > 0, log_tc.exp(), torch.full_like(peak, math.nan))
    return t_c, peak


class _HeatCapacityProbe:
    """Pass-through logits processor: records each row's heat-capacity peak temperature per step."""

    def __init__(self, temperatures: torch.Tensor) -> None:
        self.temperatures = temperatures
        self.peaks: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.peaks.append(heat_capacity_peak(scores, self.temperatures.to(scores.device))[0])
        return scores


class _Progress:
    """Pass-through logits processor advancing a progress bar once per decoding step."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.steps = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.bar.update(1)
        self.steps += 1
        return scores


# ----------------------------------------------------------------------------- the C(H) fit
def _expit(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


@dataclass
class LogisticFit:
    """C(H) = c0 - a·σ((H - h0) / w): coherence falling from a plateau c0 (ordered, coherent phase)
    by a step of height a (to the disordered phase) centred at h0 with width w.

    Why a logistic and not a smoothing spline: C is an order parameter crossing between two plateaus,
    and with ten temperatures the derivative of a spline is dominated by its knots and noise, while
    the logistic has four parameters, a slope that peaks exactly once (at h0 = H_c, where
    |dC/dH| = a/(4w)), and a width w that gives the margin to the coherent side its natural scale.

    Args:
        c0, a, h0, w (`float`): the parameters (a >= 0: coherence falls with entropy; w > 0).
        rmse (`float`): root-mean-square residual of the fit.
        converged (`bool`): whether least squares converged (else the parameters are its last iterate).
    """

    c0: float
    a: float
    h0: float
    w: float
    rmse: float = math.nan
    converged: bool = True

    def __call__(self, h: np.ndarray | float) -> np.ndarray:
        return self.c0 - self.a * _expit((np.asarray(h, dtype=float) - self.h0) / self.w)

    def slope(self, h: np.ndarray | float) -> np.ndarray:
        """dC/dH (negative: coherence falls)."""
        s = _expit((np.asarray(h, dtype=float) - self.h0) / self.w)
        return -self.a / self.w * s * (1.0 - s)

    @property
    def critical_entropy(self) -> float:
        """H_c: where |dC/dH| peaks (the logistic's centre)."""
        return float(self.h0)

    def target_entropy(self, slope_fraction: float = DEFAULT_SLOPE_FRACTION) -> float:
        """H*: the entropy below H_c where |dC/dH| has fallen to `slope_fraction` of its peak.

        With s = σ((H - h0)/w), |dC/dH| ∝ s(1 - s) whose peak is 1/4, so s = (1 - √(1 - f))/2 and
        H* = h0 + w·logit(s): f = 0.25 puts H* 2.63 widths below H_c, f = 0.5 1.76 widths.
        """
        if not 0 < slope_fraction < 1:
            raise ValueError(f"`slope_fraction` (={slope_fraction}) has to be in (0, 1).")
        s = (1.0 - math.sqrt(1.0 - slope_fraction)) / 2.0
        return float(self.h0 + self.w * math.log(s / (1.0 - s)))

    def params(self) -> list[float]:
        return [self.c0, self.a, self.h0, self.w]


def fit_coherence_curve(entropy: np.ndarray, coherence: np.ndarray) -> LogisticFit:
    """Least-squares logistic fit of coherence against entropy (see [`LogisticFit`]).

    Bounded (scipy `curve_fit`, trust-region reflective): a in [0, 1.5], h0 within the entropies
    seen, w between 1/200 and 1 times their range. Started from five centres (the entropies'
    quantiles) and the best fit is kept, so a bootstrap resample does not get stuck in a plateau.
    With fewer than 5 points the four parameters are underdetermined (the bounds keep the fit
    defined, but sweep more temperatures for numbers you mean to use).

    Args:
        entropy (`np.ndarray`): entropies (nats), one per point; NaN points are dropped.
        coherence (`np.ndarray`): coherence of the same points.

    Returns:
        [`LogisticFit`].

    Example:
        >>> import numpy as np
        >>> from icp.calibrate import fit_coherence_curve
        >>> h = np.linspace(0, 8, 40); c = 0.82 - 0.15 / (1 + np.exp(-(h - 4.0) / 0.5))
        >>> round(fit_coherence_curve(h, c).critical_entropy, 3)
        4.0
    """
    optimize = require("scipy.optimize", "calibrate", "Fitting the coherence curve (`icp calibrate`)")
    OptimizeWarning, curve_fit = optimize.OptimizeWarning, optimize.curve_fit  # noqa: N806 - scipy's names

    h = np.asarray(entropy, dtype=float).ravel()
    c = np.asarray(coherence, dtype=float).ravel()
    if h.shape != c.shape:
        raise ValueError(f"`entropy` and `coherence` must have the same size, got {h.size} and {c.size}.")
    keep = np.isfinite(h) & np.isfinite(c)
    h, c = h[keep], c[keep]
    if h.size < 3 or np.ptp(h) <= 0:
        raise ValueError(
            f"fitting C(H) needs at least 3 points with distinct entropies, got {h.size} "
            f"(entropy range {np.ptp(h) if h.size else 0.0:.3g}): sweep more temperatures or prompts."
        )

    def model(x, c0, a, h0, w):
        return c0 - a * _expit((x - h0) / w)

    span = float(np.ptp(h))
    lower = [-0.5, 0.0, float(h.min()), span / 200]
    upper = [1.5, 1.5, float(h.max()), span]
    order = np.argsort(h)
    low_c = float(np.mean(c[order[: max(1, h.size // 4)]]))
    high_c = float(np.mean(c[order[-max(1, h.size // 4) :]]))
    a0 = float(np.clip(low_c - high_c, 1e-3, 1.4))
    best: tuple[float, np.ndarray, bool] | None = None
    for q in (0.2, 0.35, 0.5, 0.65, 0.8):
        start = [float(np.clip(low_c, -0.4, 1.4)), a0, float(np.quantile(h, q)), span / 10]
        try:
            with warnings.catch_warnings():  # the covariance is not used: the intervals come from the bootstrap
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(model, h, c, p0=start, bounds=(lower, upper), method="trf", max_nfev=2000)
            converged = True
        except RuntimeError:
            params, converged = np.asarray(start), False
        sse = float(np.sum((model(h, *params) - c) ** 2))
        if best is None or (converged and not best[2]) or (converged == best[2] and sse < best[0]):
            best = (sse, params, converged)
    sse, params, converged = best
    return LogisticFit(*(float(p) for p in params), rmse=math.sqrt(sse / h.size), converged=converged)


# ----------------------------------------------------------------------------- thresholds
def regime_thresholds_from_tokens(
    entropy: np.ndarray, meta_uncertainty: np.ndarray, coherence: np.ndarray, rigid_repetition: float = 0.5
) -> dict[str, float]:
    """Regime thresholds from per-token values by `THRESHOLD_RULES` (rounded to 3 decimals).

    Args:
        entropy, meta_uncertainty, coherence (`np.ndarray`): per-token values (NaN dropped).
        rigid_repetition (`float`, *optional*, defaults to 0.5): loop progress, passed through.

    Returns:
        `dict`: the fields of [`icp.RegimeThresholds`].

    Example:
        >>> import numpy as np
        >>> from icp.calibrate import regime_thresholds_from_tokens
        >>> h = np.linspace(0, 4, 101)
        >>> regime_thresholds_from_tokens(h, h / 4, np.linspace(0.6, 1.0, 101))["exploratory_entropy"]
        3.0
    """
    signals = {"entropy": entropy, "meta_uncertainty": meta_uncertainty, "coherence": coherence}
    out: dict[str, float] = {}
    for name, rule in THRESHOLD_RULES.items():
        values = np.asarray(signals[rule["signal"]], dtype=float).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError(f"no finite per-token `{rule['signal']}` values to read `{name}` from.")
        out[name] = round(float(rule["scale"] * np.quantile(values, rule["quantile"])), 3)
    out["coherent"] = float(min(max(out["coherent"], 0.0), 1.0))
    out["rigid_repetition"] = float(rigid_repetition)
    return out


# ----------------------------------------------------------------------------- the result
@dataclass
class CalibrationResult:
    """What [`calibrate`] measured and derived; round-trips with `to_dict()` / `from_dict()`.

    Args:
        model_id (`str`): the model's id or folder.
        target_entropy (`float`): H*, nats of the tempered distribution (what the controller steers).
        target_entropy_ci (`list[float]`): its bootstrap interval `[low, high]` (`ci_level`).
        critical_entropy (`float`): H_c, where the fitted |dC/dH_T| peaks.
        critical_entropy_ci (`list[float]`): its bootstrap interval.
        regimes (`dict`): [`icp.RegimeThresholds`] fields.
        reference_temperature (`float`): sweep temperature the thresholds were read at.
        fit (`dict`): the logistic parameters (`c0`, `a`, `h0`, `w`), `rmse`, `converged`, `method`,
            `slope_fraction`.
        heat_capacity (`dict`): per-step heat-capacity peak summary (`probe_temperature`, `n_steps`,
            `median`, `q25`, `q75`, `edge_share`, `temperature_at_critical_entropy`,
            `temperature_at_target_entropy`, `agrees`, `verdict`, `peaks`: every step's T_c).
        sweep (`list[dict]`): one row per temperature: `temperature`, `entropy`, `tempered_entropy`,
            `coherence`, `coherence_se`, `meta_uncertainty`, `heat_capacity`, `loop_rate`,
            `divergence_rate`, `eos_rate`, `tokens`, `seconds`.
        per_prompt (`dict`): `(temperatures, prompts)` arrays (nested lists) of the per-prompt means
            `entropy`, `tempered_entropy`, `coherence`, `meta_uncertainty`.
        bootstrap (`dict`): `n` requested, `n_ok` fits that converged, `params` (one `[c0, a, h0, w]`
            per resample), `seed`.
        token_quantiles (`dict`): per temperature (key `str(T)`) and signal (`entropy`, `meta_uncertainty`,
            `coherence`), per-token quantiles (keys "0.05" ... "0.95"): the thresholds can be re-read at
            any swept temperature.
        ci_level (`float`), prompt_set (`str`), n_prompts (`int`), max_new_tokens (`int`), seed (`int`),
        date (`str`, ISO 8601 UTC), seconds (`float`), versions (`dict`): provenance.
    """

    model_id: str
    target_entropy: float
    target_entropy_ci: list[float]
    critical_entropy: float
    critical_entropy_ci: list[float]
    regimes: dict[str, float]
    reference_temperature: float
    fit: dict[str, Any]
    heat_capacity: dict[str, Any]
    sweep: list[dict[str, Any]]
    per_prompt: dict[str, list[list[float]]]
    bootstrap: dict[str, Any]
    ci_level: float = 0.95
    prompt_set: str = "icp.prompts.CALIBRATION_PROMPTS"
    n_prompts: int = 0
    max_new_tokens: int = 0
    seed: int = 0
    date: str = ""
    seconds: float = 0.0
    versions: dict[str, str] = field(default_factory=dict)
    token_quantiles: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    threshold_rules: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(THRESHOLD_RULES))

    @property
    def logistic(self) -> LogisticFit:
        """The fitted C(H_T) curve."""
        f = self.fit
        return LogisticFit(f["c0"], f["a"], f["h0"], f["w"], f.get("rmse", math.nan), f.get("converged", True))

    def config_overrides(self) -> dict[str, Any]:
        """The [`icp.ICPConfig`] fields this calibration sets: `target_entropy` and `regimes`."""
        return {"target_entropy": self.target_entropy, "regimes": dict(self.regimes)}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (NaN stays a float NaN)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationResult:
        """Inverse of [`CalibrationResult.to_dict`]; unknown keys raise, listing the allowed ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown CalibrationResult keys {unknown}; allowed keys are {sorted(known)}.")
        return cls(**data)

    def summary(self) -> str:
        """A few lines for a terminal: the numbers and the sweep table."""
        lo, hi = self.critical_entropy_ci
        tlo, thi = self.target_entropy_ci
        hc = self.heat_capacity
        lines = [
            f"model: {self.model_id}",
            f"critical entropy H_c = {self.critical_entropy:.3f} nats ({self.ci_level:.0%} CI {lo:.3f}-{hi:.3f})",
            f"target entropy   H*  = {self.target_entropy:.3f} nats ({self.ci_level:.0%} CI {tlo:.3f}-{thi:.3f})",
            f"regime thresholds at T = {self.reference_temperature:g}: "
            + ", ".join(f"{k}={v:g}" for k, v in self.regimes.items()),
            f"heat capacity: {hc.get('verdict', '')}",
            "",
            _sweep_table(self.sweep),
        ]
        return "\n".join(lines)


def _sweep_table(sweep: list[dict[str, Any]]) -> str:
    head = f"{'T':>5} {'H':>6} {'H_T':>6} {'C':>6} {'U':>6} {'C_v(1)':>7} {'loop':>5} {'div':>5} {'tokens':>6}"
    rows = [head]
    for r in sweep:
        rows.append(
            f"{r['temperature']:5.2f} {r['entropy']:6.3f} {r['tempered_entropy']:6.3f} {r['coherence']:6.3f} "
            f"{r['meta_uncertainty']:6.3f} {r['heat_capacity']:7.3f} {r['loop_rate']:5.2f} "
            f"{r['divergence_rate']:5.2f} {r['tokens']:6d}"
        )
    return "\n".join(rows)


# ----------------------------------------------------------------------------- the sweep
def _encode(tokenizer: Any, prompts: Sequence[str], chat: bool) -> dict[str, torch.Tensor]:
    if chat and getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    else:
        texts = list(prompts)
    side = getattr(tokenizer, "padding_side", "left")
    tokenizer.padding_side = "left"  # decoder-only batches continue from the right end
    try:
        return tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side


def _interp_temperature(target: float, temperatures: np.ndarray, entropies: np.ndarray) -> float:
    """Temperature at which the sweep's mean tempered entropy reaches `target` (log-T interpolation)."""
    order = np.argsort(temperatures)
    t, h = temperatures[order], np.maximum.accumulate(entropies[order])
    if not np.isfinite(target) or target < h[0] or target > h[-1]:
        return math.nan
    return float(np.exp(np.interp(target, h, np.log(t))))


def _check_calibration_args(prompts, temperatures, max_new_tokens, n_bootstrap, slope_fraction, batch_size):
    if isinstance(prompts, str) or len(prompts) < 2 or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError(
            f"`prompts` (={len(prompts) if not isinstance(prompts, str) else prompts!r}) has to be a list of at least "
            "2 non-empty strings: the confidence interval resamples prompts."
        )
    temps = [float(t) for t in temperatures]
    if len(set(temps)) < 3 or not all(math.isfinite(t) and t > 0 for t in temps):
        raise ValueError(
            f"`temperatures` (={list(temperatures)}) has to hold at least 3 distinct positive values "
            "(the C(H) fit has 4 parameters)."
        )
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 2:
        raise ValueError(f"`max_new_tokens` (={max_new_tokens!r}) has to be an integer >= 2.")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"`n_bootstrap` (={n_bootstrap!r}) has to be a non-negative integer.")
    if not 0 < slope_fraction < 1:
        raise ValueError(f"`slope_fraction` (={slope_fraction!r}) has to be in (0, 1).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` (={batch_size!r}) has to be a positive integer.")
    return sorted(set(temps))


def _last_finite(values: np.ndarray) -> list[float]:
    """Each row's last finite value (rows with none are skipped)."""
    out = []
    for row in values:
        finite = row[np.isfinite(row)]
        if finite.size:
            out.append(float(finite[-1]))
    return out


def _median_or_nan(values: list[float]) -> float:
    return round(float(np.median(values)), 5) if values else math.nan


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    count = np.isfinite(x).sum(axis=axis)
    total = np.where(np.isfinite(x), x, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def calibrate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] = CALIBRATION_PROMPTS,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    max_new_tokens: int = 64,
    seed: int = 0,
    n_bootstrap: int = 200,
    progress: bool = True,
    *,
    slope_fraction: float = DEFAULT_SLOPE_FRACTION,
    heat_capacity_temperature: float = 1.0,
    ci_level: float = 0.95,
    batch_size: int = 16,
    chat: bool = True,
    prompt_set: str | None = None,
) -> CalibrationResult:
    """Sweeps temperatures over a prompt set and calibrates ICP for `model` (see the module docstring).

    Args:
        model (`PreTrainedModel`): a causal LM.
        tokenizer (`PreTrainedTokenizerBase`): its tokenizer (the chat template is applied when it has one
            and `chat` is true).
        prompts (`list[str]`, *optional*, defaults to `CALIBRATION_PROMPTS`): at least 2 prompts.
        temperatures (`list[float]`, *optional*, defaults to `DEFAULT_TEMPERATURES`): at least 3 distinct.
        max_new_tokens (`int`, *optional*, defaults to 64): tokens sampled per prompt and temperature.
        seed (`int`, *optional*, defaults to 0): torch is seeded with it before every sweep batch; the
            bootstrap's numpy generator too.
        n_bootstrap (`int`, *optional*, defaults to 200): prompt resamples for the intervals (0: none, NaN
            intervals).
        progress (`bool`, *optional*, defaults to `True`): a tqdm bar on stderr, one tick per decoding step.
        slope_fraction (`float`, *optional*, defaults to 0.25): where H* sits (see
            [`LogisticFit.target_entropy`]).
        heat_capacity_temperature (`float`, *optional*, defaults to 1.0): the per-step heat-capacity peaks
            are measured on the logits of the sweep run nearest this temperature.
        ci_level (`float`, *optional*, defaults to 0.95): two-sided level of the bootstrap intervals.
        batch_size (`int`, *optional*, defaults to 16): prompts per generate() call.
        chat (`bool`, *optional*, defaults to `True`): apply the tokenizer's chat template.
        prompt_set (`str`, *optional*): a name for the prompts in the card (defaults to
            `"icp.prompts.CALIBRATION_PROMPTS"` for the built-in set, `"custom"` otherwise).

    Returns:
        [`CalibrationResult`].
    """
    from . import ICP, __version__
    from .config import RegimeThresholds

    temps = _check_calibration_args(prompts, temperatures, max_new_tokens, n_bootstrap, slope_fraction, batch_size)
    if not 0 < ci_level < 1:
        raise ValueError(f"`ci_level` (={ci_level!r}) has to be in (0, 1).")
    prompts = list(prompts)
    if prompt_set is None:
        prompt_set = "icp.prompts.CALIBRATION_PROMPTS" if prompts == list(CALIBRATION_PROMPTS) else "custom"
    from tqdm.auto import tqdm

    started = time.perf_counter()
    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    device = next(model.parameters()).device  # the model may sit on an accelerator (icp calibrate --device)
    encoded = [_encode(tokenizer, b, chat).to(device) for b in batches]
    pad_id = getattr(tokenizer, "pad_token_id", None)
    probe_t = min(temps, key=lambda t: (abs(math.log(t / heat_capacity_temperature)), t))
    grid = _log_grid(*HEAT_CAPACITY_GRID)
    n_t, n_p = len(temps), len(prompts)
    per_token: dict[str, list[list[np.ndarray]]] = {k: [] for k in ("entropy", "tempered", "C", "U", "V")}
    looped = np.zeros((n_t, n_p), dtype=bool)
    diverged = np.zeros((n_t, n_p), dtype=bool)
    eos = np.zeros((n_t, n_p), dtype=bool)
    seconds = np.zeros(n_t)
    peaks: list[np.ndarray] = []
    sensitivity: list[list[float]] = [[] for _ in temps]  # per temperature: each row's final local slope
    bar = tqdm(total=n_t * len(batches) * max_new_tokens, desc="calibrating", unit="step", disable=not progress)
    try:
        for i, temperature in enumerate(temps):
            rows: dict[str, list[np.ndarray]] = {k: [] for k in per_token}
            t0 = time.perf_counter()
            offset = 0
            for inputs in encoded:
                icp = ICP(
                    model,
                    card=None,
                    min_temperature=temperature,
                    max_temperature=temperature,
                    initial_temperature=temperature,
                    min_p=0.0,
                    heat_rate=0.0,
                    cool_rate=0.0,
                    derepeat_penalty=0.0,
                    # A long, unshrunk average: the trace's coherence_sensitivity is then the row's own
                    # local slope -dE[C]/dH_T (the target cannot move T, which is pinned).
                    tracking={"rate": 0.05, "prior": 1e-6, "decay": 0.98},
                )
                ticker = _Progress(bar)
                probe = _HeatCapacityProbe(grid) if temperature == probe_t else None
                processors = [probe] if probe is not None else []
                torch.manual_seed(seed)
                from transformers import LogitsProcessorList

                model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    logits_processor=LogitsProcessorList([*processors, *icp, ticker]),
                    stopping_criteria=icp.stopping_criteria,
                    do_sample=True,
                    top_k=0,
                    top_p=1.0,
                    temperature=1.0,
                    pad_token_id=pad_id,
                )
                bar.update(max_new_tokens - ticker.steps)
                trace = icp.trace
                d = trace.to_dict()
                rows["entropy"].append(d["entropy"])
                rows["tempered"].append(d["tempered_entropy"])
                rows["C"].append(d["coherence"])
                rows["U"].append(d["meta_uncertainty"])
                rows["V"].append(d["varentropy"])
                sensitivity[i].extend(_last_finite(d["coherence_sensitivity"]))
                reasons = trace.stop_reasons
                b = len(reasons)
                looped[i, offset : offset + b] = [r == "loop" for r in reasons]
                diverged[i, offset : offset + b] = [r == "divergence" for r in reasons]
                eos[i, offset : offset + b] = [r == "eos" for r in reasons]
                offset += b
                if probe is not None and probe.peaks:
                    t_c = torch.stack(probe.peaks, dim=1).cpu().numpy()[:, : d["entropy"].shape[1]]
                    decoded = np.isfinite(d["entropy"][:, : t_c.shape[1]])
                    peaks.append(t_c[decoded])
            seconds[i] = time.perf_counter() - t0
            for k in per_token:
                width = max(a.shape[1] for a in rows[k])
                padded = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan) for a in rows[k]]
                per_token[k].append(np.concatenate(padded, axis=0))
    finally:
        bar.close()

    # Per-prompt means: (temperatures, prompts).
    means = {k: np.stack([_nanmean(a, axis=1) for a in per_token[k]]) for k in per_token}
    ht, c = means["tempered"], means["C"]
    # The fit runs on the per-temperature means over prompts: C(H) is a curve traced by T, and the
    # prompts' own spread at one T (some prompts are simply more open than others) is not dC/dH.
    fit = fit_coherence_curve(_nanmean(ht, axis=1), _nanmean(c, axis=1))
    h_c, h_star = fit.critical_entropy, max(0.0, fit.target_entropy(slope_fraction))  # an entropy is >= 0

    rng = np.random.default_rng(seed)
    boot_params: list[list[float]] = []
    boot_c, boot_star = [], []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n_p, n_p)
        try:
            f = fit_coherence_curve(_nanmean(ht[:, idx], axis=1), _nanmean(c[:, idx], axis=1))
        except ValueError:
            continue
        if not f.converged:
            continue
        boot_params.append([round(v, 6) for v in f.params()])
        boot_c.append(f.critical_entropy)
        boot_star.append(max(0.0, f.target_entropy(slope_fraction)))
    alpha = (1.0 - ci_level) / 2.0

    def interval(values: list[float]) -> list[float]:
        if len(values) < 2:
            return [math.nan, math.nan]
        return [round(float(np.quantile(values, alpha)), 4), round(float(np.quantile(values, 1 - alpha)), 4)]

    # Sweep table.
    sweep = []
    for i, temperature in enumerate(temps):
        decoded = np.isfinite(per_token["entropy"][i])
        sweep.append(
            {
                "temperature": float(temperature),
                "entropy": round(float(np.nanmean(means["entropy"][i])), 4),
                "tempered_entropy": round(float(np.nanmean(ht[i])), 4),
                "coherence": round(float(np.nanmean(c[i])), 4),
                "coherence_se": round(float(np.nanstd(c[i], ddof=1) / math.sqrt(max(1, np.isfinite(c[i]).sum()))), 4)
                if n_p > 1
                else math.nan,
                "meta_uncertainty": round(float(np.nanmean(means["U"][i])), 4),
                "heat_capacity": round(float(np.nanmean(means["V"][i])), 4),
                "loop_rate": round(float(looped[i].mean()), 4),
                "divergence_rate": round(float(diverged[i].mean()), 4),
                "eos_rate": round(float(eos[i].mean()), 4),
                "tokens": int(decoded.sum()),
                "local_sensitivity": _median_or_nan(sensitivity[i]),
                "seconds": round(float(seconds[i]), 2),
            }
        )
    quantile_levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    token_quantiles = {}
    for i, temperature in enumerate(temps):
        token_quantiles[str(float(temperature))] = {
            name: {
                str(q): round(float(np.nanquantile(per_token[key][i], q)), 4)
                if np.isfinite(per_token[key][i]).any()
                else math.nan
                for q in quantile_levels
            }
            for name, key in (("entropy", "entropy"), ("meta_uncertainty", "U"), ("coherence", "C"))
        }
    mean_ht = np.array([r["tempered_entropy"] for r in sweep])
    t_arr = np.array(temps)

    # Thresholds at the sweep temperature whose mean H_T is nearest H*.
    ref = int(np.nanargmin(np.abs(mean_ht - h_star))) if np.isfinite(h_star) else 0
    regimes = regime_thresholds_from_tokens(
        per_token["entropy"][ref], per_token["U"][ref], per_token["C"][ref], RegimeThresholds().rigid_repetition
    )
    RegimeThresholds(**regimes)  # validates

    # Heat-capacity read-out.
    t_c = np.concatenate(peaks) if peaks else np.zeros(0)
    t_c = t_c[np.isfinite(t_c)]
    heat = _heat_capacity_summary(t_c, probe_t, h_c, interval(boot_c), h_star, t_arr, mean_ht, grid)

    return CalibrationResult(
        model_id=str(getattr(model, "name_or_path", "") or ""),
        target_entropy=round(h_star, 4),
        target_entropy_ci=interval(boot_star),
        critical_entropy=round(h_c, 4),
        critical_entropy_ci=interval(boot_c),
        regimes=regimes,
        reference_temperature=float(temps[ref]),
        fit={
            "method": "logistic",
            "c0": round(fit.c0, 6),
            "a": round(fit.a, 6),
            "h0": round(fit.h0, 6),
            "w": round(fit.w, 6),
            "rmse": round(fit.rmse, 6),
            "converged": bool(fit.converged),
            "slope_fraction": float(slope_fraction),
            "x": "tempered_entropy",
            "points": "per-temperature means over prompts",
        },
        heat_capacity=heat,
        sweep=sweep,
        per_prompt={
            "entropy": np.round(means["entropy"], 5).tolist(),
            "tempered_entropy": np.round(ht, 5).tolist(),
            "coherence": np.round(c, 5).tolist(),
            "meta_uncertainty": np.round(means["U"], 5).tolist(),
        },
        bootstrap={"n": n_bootstrap, "n_ok": len(boot_params), "params": boot_params, "seed": seed},
        ci_level=ci_level,
        prompt_set=prompt_set,
        n_prompts=n_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        seconds=round(time.perf_counter() - started, 1),
        versions=_versions(__version__),
        token_quantiles=token_quantiles,
    )


def _versions(icp_version: str) -> dict[str, str]:
    import transformers

    return {"icp": str(icp_version), "transformers": str(transformers.__version__), "torch": str(torch.__version__)}


def _heat_capacity_summary(
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
    """

    def rounded(x: float) -> float:
        return round(x, 4) if math.isfinite(x) else math.nan

    t_hc = _interp_temperature(h_c, temperatures, mean_ht)
    t_hc_ci = [_interp_temperature(h, temperatures, mean_ht) for h in h_c_ci]
    t_star = _interp_temperature(h_star, temperatures, mean_ht)
    out: dict[str, Any] = {
        "probe_temperature": float(probe_t),
        "grid": [round(float(grid[0]), 4), round(float(grid[-1]), 4), int(grid.numel())],
        "n_steps": int(t_c.size),
        "temperature_at_critical_entropy": rounded(t_hc),
        "temperature_at_critical_entropy_ci": [rounded(t) for t in t_hc_ci],
        "temperature_at_target_entropy": rounded(t_star),
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
    head = (
        f"per-step heat-capacity peaks (T={probe_t:g} run, {t_c.size} steps): median T_c {med:.2f}, "
        f"IQR {q25:.2f}-{q75:.2f}"
    )
    if not math.isfinite(t_hc):
        verdict = f"{head}; H_c lies outside the swept entropies, so no temperature could be assigned to it"
    else:
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
    out.update(
        median=round(med, 4),
        q25=round(q25, 4),
        q75=round(q75, 4),
        edge_share=round(edge, 4),
        share_above_target_temperature=rounded(above_star),
        agrees=agrees,
        verdict=verdict,
        peaks=[round(float(x), 4) for x in t_c],
    )
    return out


# ----------------------------------------------------------------------------- the plot
def plot_calibration(result: CalibrationResult, path: str) -> str:
    """Writes the calibration plot: C against H_T (per-prompt points, per-temperature means with
    standard errors, the logistic fit with its bootstrap band, H_c with its interval and H*), and the
    distribution of per-step heat-capacity peak temperatures.

    Args:
        result ([`CalibrationResult`]): what [`calibrate`] returned.
        path (`str`): the PNG to write.

    Returns:
        `str`: `path`.
    """
    try:
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LogNorm
        from matplotlib.figure import Figure  # no pyplot: the caller's backend and figures are left alone
        from matplotlib.ticker import NullFormatter
    except ImportError as err:  # exercised by tests/test_dependencies.py in a base-only venv
        raise ImportError(
            "`plot_calibration` needs `matplotlib`, which is not installed: pip install 'icp[calibrate]'"
        ) from err

    fig = Figure(figsize=(12.5, 5))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    ht = np.asarray(result.per_prompt["tempered_entropy"], dtype=float)
    c = np.asarray(result.per_prompt["coherence"], dtype=float)
    temps = np.array([r["temperature"] for r in result.sweep])
    cmap = matplotlib.colormaps["coolwarm"]
    norm = LogNorm(vmin=temps.min(), vmax=temps.max())
    for i, t in enumerate(temps):
        label = "one prompt at one T" if i == 0 else None
        ax.scatter(ht[i], c[i], s=10, alpha=0.35, color=cmap(norm(t)), linewidths=0, label=label)
    mean_h = np.array([r["tempered_entropy"] for r in result.sweep])
    mean_c = np.array([r["coherence"] for r in result.sweep])
    se = np.array([r.get("coherence_se", np.nan) for r in result.sweep])
    ax.errorbar(mean_h, mean_c, yerr=se, fmt="none", ecolor="0.3", elinewidth=1, capsize=2, zorder=3)
    ax.scatter(
        mean_h,
        mean_c,
        s=45,
        c=[cmap(norm(t)) for t in temps],
        edgecolors="k",
        zorder=4,
        label="mean over prompts ± s.e.",
    )
    for h, cc, t in zip(mean_h, mean_c, temps):
        ax.annotate(f"{t:g}", (h, cc), textcoords="offset points", xytext=(5, 4), fontsize=7, color="0.25")
    finite = np.isfinite(ht)
    xs = np.linspace(float(np.nanmin(ht[finite])), float(np.nanmax(ht[finite])), 300)
    fit = result.logistic
    params = np.asarray(result.bootstrap.get("params") or [], dtype=float)
    if params.size:
        curves = params[:, [0]] - params[:, [1]] * _expit((xs[None, :] - params[:, [2]]) / params[:, [3]])
        alpha = (1 - result.ci_level) / 2
        ax.fill_between(
            xs,
            np.quantile(curves, alpha, axis=0),
            np.quantile(curves, 1 - alpha, axis=0),
            color="tab:blue",
            alpha=0.18,
            label=f"bootstrap {result.ci_level:.0%} band ({len(params)} prompt resamples)",
        )
    ax.plot(xs, fit(xs), color="tab:blue", lw=2, label=f"logistic fit (w={fit.w:.2f} nats)")

    def ci_text(ci: list[float]) -> str:
        return f", CI {ci[0]:.2f}-{ci[1]:.2f}" if all(np.isfinite(v) for v in ci) else ""

    for value, ci, colour, ls, name in (
        (result.critical_entropy, result.critical_entropy_ci, "tab:red", "-", "H_c (max |dC/dH|)"),
        (result.target_entropy, result.target_entropy_ci, "tab:green", "--", "H* (target)"),
    ):
        if all(np.isfinite(v) for v in ci):
            ax.axvspan(ci[0], ci[1], color=colour, alpha=0.07)
        ax.axvline(value, color=colour, lw=1.5, ls=ls, label=f"{name} = {value:.2f}{ci_text(ci)}")
    ax.set_xlabel("mean tempered entropy H_T (nats)")
    ax.set_ylabel("mean coherence C")
    ax.set_title(f"C(H): {result.model_id}", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower left")
    ax.grid(alpha=0.3)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="sampling temperature T", pad=0.01)
    bar.set_ticks(temps, labels=[f"{t:g}" for t in temps])
    bar.ax.minorticks_off()

    heat = result.heat_capacity
    peaks = np.asarray(heat.get("peaks") or [], dtype=float)
    if peaks.size:
        bins = np.logspace(np.log10(max(peaks.min(), 1e-3)), np.log10(peaks.max() * 1.01), 30)
        ax2.hist(peaks, bins=bins, color="0.6", edgecolor="0.35")
        ax2.set_xscale("log")
        ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20) if bins[0] / 1.3 <= t <= bins[-1] * 1.3]
        ax2.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        ax2.xaxis.set_minor_formatter(NullFormatter())
        ax2.axvspan(heat["q25"], heat["q75"], color="0.5", alpha=0.15, label="IQR of T_c")
        ax2.axvline(heat["median"], color="k", lw=1.5, label=f"median T_c = {heat['median']:.2f}")
    for key, colour, ls, name in (
        ("temperature_at_critical_entropy", "tab:red", "-", "H_c"),
        ("temperature_at_target_entropy", "tab:green", "--", "H*"),
    ):
        value = heat.get(key)
        ci = heat.get(f"{key}_ci") or [math.nan, math.nan]
        if all(v is not None and np.isfinite(v) for v in ci):
            ax2.axvspan(ci[0], ci[1], color=colour, alpha=0.07)
        if value is not None and np.isfinite(value):
            ax2.axvline(value, color=colour, ls=ls, lw=1.5, label=f"sweep reaches {name} at T = {value:.2f}")
    ax2.set_xlabel("per-step heat-capacity peak T_c  (argmax_T Var(E)/T², E = -z)")
    ax2.set_ylabel("steps")
    probe = heat.get("probe_temperature", float("nan"))
    ax2.set_title(f"{heat.get('n_steps', 0)} steps sampled at T = {probe:g}", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
