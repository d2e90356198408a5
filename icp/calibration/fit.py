"""The C(H) fit: a logistic of coherence against entropy ([`LogisticFit`], [`fit_coherence_curve`]), where
H_c and H* are read from, and its bootstrap over prompts ([`bootstrap_fits`]) for their intervals.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..optional import require

__all__ = [
    "DEFAULT_SLOPE_FRACTION",
    "BootstrapFits",
    "LogisticFit",
    "bootstrap_fits",
    "expit",
    "fit_coherence_curve",
    "interval",
    "nanmean",
]

#: H* is where the fitted |dC/dH| has fallen to this share of its peak, on the coherent side.
DEFAULT_SLOPE_FRACTION = 0.25
#: The centres (quantiles of the entropies) the least-squares fit is started from.
_START_QUANTILES = (0.2, 0.35, 0.5, 0.65, 0.8)


def expit(x: np.ndarray) -> np.ndarray:
    """The logistic σ(x) = 1 / (1 + e^-x), written with tanh so that it never overflows.

    Example:
        >>> expit(np.array([0.0, 50.0])).tolist()
        [0.5, 1.0]
    """
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

    Example:
        >>> fit = LogisticFit(c0=0.8, a=0.2, h0=4.0, w=0.5)
        >>> fit.critical_entropy, round(fit.target_entropy(0.25), 3), round(float(fit(4.0)), 3)
        (4.0, 2.683, 0.7)
    """

    c0: float
    a: float
    h0: float
    w: float
    rmse: float = math.nan
    converged: bool = True

    def __call__(self, h: np.ndarray | float) -> np.ndarray:
        return self.c0 - self.a * expit((np.asarray(h, dtype=float) - self.h0) / self.w)

    def slope(self, h: np.ndarray | float) -> np.ndarray:
        """dC/dH (negative: coherence falls)."""
        s = expit((np.asarray(h, dtype=float) - self.h0) / self.w)
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


def _logistic(x, c0, a, h0, w):
    return c0 - a * expit((x - h0) / w)


def _finite_points(entropy: np.ndarray, coherence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (entropy, coherence) points with both finite; raises unless 3 or more with distinct entropies."""
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
    return h, c


def _bounds_and_starts(h: np.ndarray, c: np.ndarray) -> tuple[list[float], list[float], list[list[float]]]:
    """The fit's bounds (a in [0, 1.5], h0 within the entropies, w in 1/200 to 1 times their range) and its
    starting points, one per centre in `_START_QUANTILES`."""
    span = float(np.ptp(h))
    lower = [-0.5, 0.0, float(h.min()), span / 200]
    upper = [1.5, 1.5, float(h.max()), span]
    order = np.argsort(h)
    low_c = float(np.mean(c[order[: max(1, h.size // 4)]]))
    high_c = float(np.mean(c[order[-max(1, h.size // 4) :]]))
    a0 = float(np.clip(low_c - high_c, 1e-3, 1.4))
    starts = [[float(np.clip(low_c, -0.4, 1.4)), a0, float(np.quantile(h, q)), span / 10] for q in _START_QUANTILES]
    return lower, upper, starts


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

    h, c = _finite_points(entropy, coherence)
    lower, upper, starts = _bounds_and_starts(h, c)
    best: tuple[float, np.ndarray, bool] | None = None
    for start in starts:
        try:
            with warnings.catch_warnings():  # the covariance is not used: the intervals come from the bootstrap
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(_logistic, h, c, p0=start, bounds=(lower, upper), method="trf", max_nfev=2000)
            converged = True
        except RuntimeError:
            params, converged = np.asarray(start), False
        sse = float(np.sum((_logistic(h, *params) - c) ** 2))
        if best is None or (converged and not best[2]) or (converged == best[2] and sse < best[0]):
            best = (sse, params, converged)
    sse, params, converged = best
    return LogisticFit(*(float(p) for p in params), rmse=math.sqrt(sse / h.size), converged=converged)


def nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    """The mean over `axis` of the finite values; NaN where there are none (without numpy's warning).

    Example:
        >>> nanmean(np.array([[1.0, np.nan], [np.nan, np.nan]]), axis=1).tolist()
        [1.0, nan]
    """
    count = np.isfinite(x).sum(axis=axis)
    total = np.where(np.isfinite(x), x, 0.0).sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class BootstrapFits:
    """The converged refits of C(H) on prompts resampled with replacement.

    Args:
        params (`list[list[float]]`): each refit's `[c0, a, h0, w]`, rounded to 6 decimals.
        critical (`list[float]`): each refit's H_c.
        target (`list[float]`): each refit's H* (at least 0).
    """

    params: list[list[float]] = field(default_factory=list)
    critical: list[float] = field(default_factory=list)
    target: list[float] = field(default_factory=list)


def bootstrap_fits(
    tempered: np.ndarray, coherence: np.ndarray, n_bootstrap: int, seed: int, slope_fraction: float
) -> BootstrapFits:
    """Refits C(H) on `n_bootstrap` resamples of the prompts: each refit is to the per-temperature means over
    the resampled prompts, as the fit itself is. Refits that fail or do not converge are left out.

    Args:
        tempered (`np.ndarray` of shape `(temperatures, prompts)`): per-prompt mean tempered entropy H_T.
        coherence (`np.ndarray` of the same shape): per-prompt mean coherence C.
        n_bootstrap (`int`): the number of resamples.
        seed (`int`): the seed of numpy's generator that draws them.
        slope_fraction (`float`): where H* sits (see [`LogisticFit.target_entropy`]).

    Returns:
        [`BootstrapFits`].

    Example:
        >>> h = np.linspace(0, 8, 10)[:, None] + np.array([[-0.1, 0.0, 0.1]])
        >>> c = 0.82 - 0.15 / (1 + np.exp(-(h - 4.0) / 0.5))
        >>> boot = bootstrap_fits(h, c, n_bootstrap=4, seed=0, slope_fraction=0.25)
        >>> len(boot.params), all(abs(x - 4.0) < 0.2 for x in boot.critical)
        (4, True)
    """
    n_p = tempered.shape[1]
    rng = np.random.default_rng(seed)
    boot = BootstrapFits()
    for _ in range(n_bootstrap):
        idx = rng.integers(0, n_p, n_p)
        try:
            f = fit_coherence_curve(nanmean(tempered[:, idx], axis=1), nanmean(coherence[:, idx], axis=1))
        except ValueError:
            continue
        if not f.converged:
            continue
        boot.params.append([round(v, 6) for v in f.params()])
        boot.critical.append(f.critical_entropy)
        boot.target.append(max(0.0, f.target_entropy(slope_fraction)))
    return boot


def interval(values: list[float], ci_level: float) -> list[float]:
    """The two-sided `ci_level` percentile interval of `values`, rounded to 4 decimals; NaNs with fewer than 2.

    Example:
        >>> interval([1.0, 2.0, 3.0, 4.0, 5.0], 0.5), interval([1.0], 0.95)
        ([2.0, 4.0], [nan, nan])
    """
    alpha = (1.0 - ci_level) / 2.0
    if len(values) < 2:
        return [math.nan, math.nan]
    return [round(float(np.quantile(values, alpha)), 4), round(float(np.quantile(values, 1 - alpha)), 4)]
