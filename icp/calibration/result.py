"""What a calibration returns: [`CalibrationResult`], the numbers a model card is written from."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .fit import LogisticFit
from .thresholds import THRESHOLD_RULES

__all__ = ["CalibrationResult"]


@dataclass
class CalibrationResult:
    """What [`calibrate`] measured and derived; round-trips with `to_dict()` / `from_dict()`.

    Args:
        model_id (`str`): the model's id or folder.
        target_entropy (`float`): H*, nats of the tempered distribution: what the seeds' law
            (`icp.SEEDS_LAW`) steers toward; the default cold law does not steer toward it (docs/control.md).
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
        chat (`bool`, *optional*, defaults to `True`): whether the prompts went through the chat template
            (`False` for a base model's continuation prompts; the card's command says `--no-chat`).
        fingerprint (`dict`, *optional*): the model's [`icp.fingerprint.ModelFingerprint`] as a dict, which
            the card records so that `ICP(model)` finds it under any path; `None` for a model without one.

    Example:
        >>> r = CalibrationResult(
        ...     model_id="m", target_entropy=1.9, target_entropy_ci=[1.5, 2.3], critical_entropy=2.6,
        ...     critical_entropy_ci=[2.4, 2.9], regimes={}, reference_temperature=0.85,
        ...     fit={"c0": 0.8, "a": 0.2, "h0": 2.6, "w": 0.3}, heat_capacity={}, sweep=[], per_prompt={}, bootstrap={},
        ... )
        >>> r.logistic.critical_entropy, CalibrationResult.from_dict(r.to_dict()) == r
        (2.6, True)
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
    fingerprint: dict[str, Any] | None = None
    chat: bool = True

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
