"""The calibration plot: C against H_T with the fit (left), and the per-step heat-capacity peaks (right)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .fit import expit
from .result import CalibrationResult

__all__ = ["plot_calibration"]


def _matplotlib() -> dict[str, Any]:
    """The matplotlib pieces the plot uses (no pyplot: the caller's backend and figures are left alone)."""
    try:
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import LogNorm
        from matplotlib.figure import Figure
        from matplotlib.ticker import NullFormatter
    except ImportError as err:  # exercised by tests/test_dependencies.py in a base-only venv
        raise ImportError(
            "`plot_calibration` needs `matplotlib`, which is not installed: pip install 'icp[calibrate]'"
        ) from err
    return {
        "colormaps": matplotlib.colormaps,
        "ScalarMappable": ScalarMappable,
        "LogNorm": LogNorm,
        "Figure": Figure,
        "NullFormatter": NullFormatter,
    }


def plot_calibration(result: CalibrationResult, path: str) -> str:
    """Writes the calibration plot: C against H_T (per-prompt points, per-temperature means with
    standard errors, the logistic fit with its bootstrap band, H_c with its interval and H*), and the
    distribution of per-step heat-capacity peak temperatures.

    Args:
        result ([`CalibrationResult`]): what [`calibrate`] returned.
        path (`str`): the PNG to write.

    Returns:
        `str`: `path`.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> points = ((0.5, 1.0, 0.8), (1.0, 2.0, 0.7), (2.0, 3.0, 0.5))
        >>> result = CalibrationResult(
        ...     model_id="toy", target_entropy=1.5, target_entropy_ci=[1.2, 1.8], critical_entropy=2.2,
        ...     critical_entropy_ci=[2.0, 2.5], regimes={}, reference_temperature=1.0,
        ...     fit={"c0": 0.8, "a": 0.3, "h0": 2.2, "w": 0.4}, bootstrap={},
        ...     sweep=[{"temperature": t, "tempered_entropy": h, "coherence": c} for t, h, c in points],
        ...     per_prompt={"tempered_entropy": [[h, h + 0.1] for _, h, _ in points],
        ...                 "coherence": [[c, c - 0.01] for _, _, c in points]},
        ...     heat_capacity={"peaks": [0.9, 1.0, 1.2], "q25": 0.95, "median": 1.0, "q75": 1.1},
        ... )
        >>> path = plot_calibration(result, str(Path(tempfile.mkdtemp()) / "c_of_h.png"))
        >>> Path(path).stat().st_size > 10_000
        True
    """
    mpl = _matplotlib()
    fig = mpl["Figure"](figsize=(12.5, 5))
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.6, 1]})
    _plot_curve(ax, fig, result, mpl)
    _plot_heat_capacity(ax2, result.heat_capacity, mpl)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _plot_curve(ax: Any, fig: Any, result: CalibrationResult, mpl: dict[str, Any]) -> None:
    """The left panel: per-prompt points and per-temperature means coloured by T, the fit and its band,
    H_c and H* with their intervals, and the temperature colour bar."""
    ht = np.asarray(result.per_prompt["tempered_entropy"], dtype=float)
    c = np.asarray(result.per_prompt["coherence"], dtype=float)
    temps = np.array([r["temperature"] for r in result.sweep])
    cmap = mpl["colormaps"]["coolwarm"]
    norm = mpl["LogNorm"](vmin=temps.min(), vmax=temps.max())
    for i, t in enumerate(temps):
        label = "one prompt at one T" if i == 0 else None
        ax.scatter(ht[i], c[i], s=10, alpha=0.35, color=cmap(norm(t)), linewidths=0, label=label)
    _plot_means(ax, result.sweep, temps, [cmap(norm(t)) for t in temps])
    finite = np.isfinite(ht)
    xs = np.linspace(float(np.nanmin(ht[finite])), float(np.nanmax(ht[finite])), 300)
    _plot_fit(ax, result, xs)
    for value, ci, colour, ls, name in (
        (result.critical_entropy, result.critical_entropy_ci, "tab:red", "-", "H_c (max |dC/dH|)"),
        (result.target_entropy, result.target_entropy_ci, "tab:green", "--", "H* (target)"),
    ):
        if all(np.isfinite(v) for v in ci):
            ax.axvspan(ci[0], ci[1], color=colour, alpha=0.07)
        ax.axvline(value, color=colour, lw=1.5, ls=ls, label=f"{name} = {value:.2f}{_ci_text(ci)}")
    ax.set_xlabel("mean tempered entropy H_T (nats)")
    ax.set_ylabel("mean coherence C")
    ax.set_title(f"C(H): {result.model_id}", fontsize=10)
    ax.legend(fontsize=7.5, loc="lower left")
    ax.grid(alpha=0.3)
    bar = fig.colorbar(mpl["ScalarMappable"](norm=norm, cmap=cmap), ax=ax, label="sampling temperature T", pad=0.01)
    bar.set_ticks(temps, labels=[f"{t:g}" for t in temps])
    bar.ax.minorticks_off()


def _ci_text(ci: list[float]) -> str:
    return f", CI {ci[0]:.2f}-{ci[1]:.2f}" if all(np.isfinite(v) for v in ci) else ""


def _plot_means(ax: Any, sweep: list[dict[str, Any]], temps: np.ndarray, colours: list) -> None:
    """The per-temperature means over prompts with their standard errors, each labelled with its T."""
    mean_h = np.array([r["tempered_entropy"] for r in sweep])
    mean_c = np.array([r["coherence"] for r in sweep])
    se = np.array([r.get("coherence_se", np.nan) for r in sweep])
    ax.errorbar(mean_h, mean_c, yerr=se, fmt="none", ecolor="0.3", elinewidth=1, capsize=2, zorder=3)
    ax.scatter(mean_h, mean_c, s=45, c=colours, edgecolors="k", zorder=4, label="mean over prompts ± s.e.")
    for h, cc, t in zip(mean_h, mean_c, temps):
        ax.annotate(f"{t:g}", (h, cc), textcoords="offset points", xytext=(5, 4), fontsize=7, color="0.25")


def _plot_fit(ax: Any, result: CalibrationResult, xs: np.ndarray) -> None:
    """The fitted logistic over `xs` and, with bootstrap refits, their `ci_level` band."""
    fit = result.logistic
    params = np.asarray(result.bootstrap.get("params") or [], dtype=float)
    if params.size:
        curves = params[:, [0]] - params[:, [1]] * expit((xs[None, :] - params[:, [2]]) / params[:, [3]])
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


def _plot_heat_capacity(ax2: Any, heat: dict[str, Any], mpl: dict[str, Any]) -> None:
    """The right panel: the histogram of per-step peak temperatures T_c (median, IQR) and the temperatures at
    which the sweep reaches H_c and H*."""
    peaks = np.asarray(heat.get("peaks") or [], dtype=float)
    if peaks.size:
        bins = np.logspace(np.log10(max(peaks.min(), 1e-3)), np.log10(peaks.max() * 1.01), 30)
        ax2.hist(peaks, bins=bins, color="0.6", edgecolor="0.35")
        ax2.set_xscale("log")
        ticks = [t for t in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20) if bins[0] / 1.3 <= t <= bins[-1] * 1.3]
        ax2.set_xticks(ticks, labels=[f"{t:g}" for t in ticks])
        ax2.xaxis.set_minor_formatter(mpl["NullFormatter"]())
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
