"""The regime thresholds, read off per-token quantiles of the sweep at the reference temperature (the
sweep temperature whose mean H_T is nearest H*), by [`THRESHOLD_RULES`]."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..config import RegimeThresholds

__all__ = [
    "QUANTILE_LEVELS",
    "THRESHOLD_RULES",
    "calibrated_regimes",
    "reference_index",
    "regime_thresholds_from_tokens",
    "token_quantiles",
]

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
#: The per-token quantiles a result keeps for every swept temperature, so the thresholds can be re-read.
QUANTILE_LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


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


def calibrated_regimes(entropy: np.ndarray, meta_uncertainty: np.ndarray, coherence: np.ndarray) -> dict[str, float]:
    """[`regime_thresholds_from_tokens`] with the default `rigid_repetition`, checked by [`icp.RegimeThresholds`]
    (which raises, naming the field, when the quantiles are out of order).

    Example:
        >>> h = np.linspace(0, 4, 101)
        >>> calibrated_regimes(h, h / 4, np.linspace(0.6, 1.0, 101))["rigid_repetition"]
        0.5
    """
    regimes = regime_thresholds_from_tokens(entropy, meta_uncertainty, coherence, RegimeThresholds().rigid_repetition)
    RegimeThresholds(**regimes)  # validates
    return regimes


def reference_index(mean_tempered: np.ndarray, target_entropy: float) -> int:
    """The index of the sweep temperature whose mean H_T is nearest `target_entropy` (0 when it is not finite).

    Example:
        >>> reference_index(np.array([0.5, 1.4, 2.9]), 1.5), reference_index(np.array([0.5, 1.4]), float("nan"))
        (1, 0)
    """
    return int(np.nanargmin(np.abs(mean_tempered - target_entropy))) if np.isfinite(target_entropy) else 0


def token_quantiles(
    temperatures: list[float],
    entropy: list[np.ndarray],
    meta_uncertainty: list[np.ndarray],
    coherence: list[np.ndarray],
) -> dict[str, dict[str, dict[str, float]]]:
    """Per temperature (key `str(T)`) and signal, the per-token quantiles at `QUANTILE_LEVELS` (keys `str(q)`),
    rounded to 4 decimals; NaN for a signal without a finite value.

    Args:
        temperatures (`list[float]`): the sweep's temperatures.
        entropy, meta_uncertainty, coherence (`list[np.ndarray]`): per temperature, the per-token values
            (NaN where nothing was decoded).

    Example:
        >>> h = [np.array([[0.0, 1.0, 2.0]])]
        >>> token_quantiles([1.0], h, h, [np.full((1, 3), np.nan)])["1.0"]["entropy"]["0.5"]
        1.0
    """
    signals = {"entropy": entropy, "meta_uncertainty": meta_uncertainty, "coherence": coherence}
    table = {}
    for i, temperature in enumerate(temperatures):
        table[str(float(temperature))] = {
            name: {str(q): _quantile(values[i], q) for q in QUANTILE_LEVELS} for name, values in signals.items()
        }
    return table


def _quantile(values: np.ndarray, q: float) -> float:
    return round(float(np.nanquantile(values, q)), 4) if np.isfinite(values).any() else math.nan
