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

Each step lives in its own module of `icp.calibration` (`sweep`, `fit`, `thresholds`, `heat`, `result`,
`plot`); this module puts them together in [`calibrate`] and re-exports their public names, so
`from icp.calibrate import ...` is the one import to use.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .calibration.fit import (
    DEFAULT_SLOPE_FRACTION,
    LogisticFit,
    bootstrap_fits,
    fit_coherence_curve,
    interval,
    nanmean,
)
from .calibration.heat import (
    HEAT_CAPACITY_GRID,
    heat_capacity_curve,
    heat_capacity_peak,
    heat_capacity_summary,
)
from .calibration.plot import plot_calibration
from .calibration.result import CalibrationResult
from .calibration.sweep import DEFAULT_TEMPERATURES, SweepRecord, check_calibration_args, run_sweep, sweep_rows
from .calibration.thresholds import (
    THRESHOLD_RULES,
    calibrated_regimes,
    reference_index,
    regime_thresholds_from_tokens,
    token_quantiles,
)
from .prompts import CALIBRATION_PROMPTS

__all__ = [
    "CalibrationResult",
    "LogisticFit",
    "THRESHOLD_RULES",
    "DEFAULT_TEMPERATURES",
    "DEFAULT_SLOPE_FRACTION",
    "HEAT_CAPACITY_GRID",
    "calibrate",
    "fit_coherence_curve",
    "heat_capacity_curve",
    "heat_capacity_peak",
    "regime_thresholds_from_tokens",
    "plot_calibration",
]


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

    Example:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
        >>> from tokenizers import Tokenizer, models, pre_tokenizers
        >>> backend = Tokenizer(models.WordLevel({f"w{i}": i for i in range(64)}, unk_token="w1"))
        >>> backend.pre_tokenizer = pre_tokenizers.Whitespace()
        >>> tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="w0")
        >>> _ = torch.manual_seed(0)
        >>> config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        ...                      num_attention_heads=4, num_key_value_heads=2, eos_token_id=None, pad_token_id=0)
        >>> model = LlamaForCausalLM(config).eval()
        >>> result = calibrate(model, tokenizer, prompts=["w5 w6 w7", "w9 w3"], temperatures=(0.5, 1.0, 2.0),
        ...                    max_new_tokens=8, n_bootstrap=5, progress=False)
        >>> [row["temperature"] for row in result.sweep], result.n_prompts, 0 <= result.target_entropy
        ([0.5, 1.0, 2.0], 2, True)
    """
    temps = check_calibration_args(prompts, temperatures, max_new_tokens, n_bootstrap, slope_fraction, batch_size)
    if not 0 < ci_level < 1:
        raise ValueError(f"`ci_level` (={ci_level!r}) has to be in (0, 1).")
    prompts = list(prompts)
    if prompt_set is None:
        prompt_set = "icp.prompts.CALIBRATION_PROMPTS" if prompts == list(CALIBRATION_PROMPTS) else "custom"
    started = time.perf_counter()
    record = run_sweep(
        model,
        tokenizer,
        prompts,
        temps,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        chat=chat,
        progress=progress,
        heat_capacity_temperature=heat_capacity_temperature,
    )
    derived = _derive(record, slope_fraction=slope_fraction, n_bootstrap=n_bootstrap, seed=seed, ci_level=ci_level)
    return CalibrationResult(
        model_id=str(getattr(model, "name_or_path", "") or ""),
        **derived,
        ci_level=ci_level,
        prompt_set=prompt_set,
        n_prompts=len(prompts),
        max_new_tokens=max_new_tokens,
        seed=seed,
        date=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        seconds=round(time.perf_counter() - started, 1),
        versions=_versions(),
        fingerprint=_fingerprint(model),
        chat=bool(chat),
    )


def _fingerprint(model: Any) -> dict[str, Any] | None:
    """The calibrated model's fingerprint (what lets `ICP(model)` find the card under any path), if it has one."""
    from .fingerprint import model_fingerprint

    found = model_fingerprint(model)
    return found.to_dict() if found is not None else None


def _derive(record: SweepRecord, *, slope_fraction: float, n_bootstrap: int, seed: int, ci_level: float) -> dict:
    """Everything [`calibrate`] reads off the sweep: the fit and its bootstrap (H_c, H*), the sweep table, the
    thresholds at the reference temperature and the heat-capacity read-out, as [`CalibrationResult`] fields."""
    means = record.per_prompt_means()
    ht, c = means["tempered"], means["C"]
    # The fit runs on the per-temperature means over prompts: C(H) is a curve traced by T, and the
    # prompts' own spread at one T (some prompts are simply more open than others) is not dC/dH.
    fit = fit_coherence_curve(nanmean(ht, axis=1), nanmean(c, axis=1))
    h_c, h_star = fit.critical_entropy, max(0.0, fit.target_entropy(slope_fraction))  # an entropy is >= 0
    boot = bootstrap_fits(ht, c, n_bootstrap, seed, slope_fraction)
    sweep = sweep_rows(record, means)
    mean_ht = np.array([r["tempered_entropy"] for r in sweep])
    ref = reference_index(mean_ht, h_star)  # thresholds at the sweep temperature whose mean H_T is nearest H*
    per_token = record.per_token
    heat = heat_capacity_summary(
        record.peak_temperatures(),
        record.probe_temperature,
        h_c,
        interval(boot.critical, ci_level),
        h_star,
        np.array(record.temperatures),
        mean_ht,
        record.grid,
    )
    return {
        "target_entropy": round(h_star, 4),
        "target_entropy_ci": interval(boot.target, ci_level),
        "critical_entropy": round(h_c, 4),
        "critical_entropy_ci": interval(boot.critical, ci_level),
        "regimes": calibrated_regimes(per_token["entropy"][ref], per_token["U"][ref], per_token["C"][ref]),
        "reference_temperature": float(record.temperatures[ref]),
        "fit": _fit_entry(fit, slope_fraction),
        "heat_capacity": heat,
        "sweep": sweep,
        "per_prompt": {
            "entropy": np.round(means["entropy"], 5).tolist(),
            "tempered_entropy": np.round(ht, 5).tolist(),
            "coherence": np.round(c, 5).tolist(),
            "meta_uncertainty": np.round(means["U"], 5).tolist(),
        },
        "bootstrap": {"n": n_bootstrap, "n_ok": len(boot.params), "params": boot.params, "seed": seed},
        "token_quantiles": token_quantiles(record.temperatures, per_token["entropy"], per_token["U"], per_token["C"]),
    }


def _fit_entry(fit: LogisticFit, slope_fraction: float) -> dict[str, Any]:
    """The `fit` field of the result: the logistic's parameters (rounded) and how it was fitted."""
    return {
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
    }


def _versions() -> dict[str, str]:
    import transformers

    from . import __version__

    return {"icp": str(__version__), "transformers": str(transformers.__version__), "torch": str(torch.__version__)}
