"""Configuration of ICP: one validated dataclass holding every constant the control plane uses.

Defaults are for the embedded default model (SmolLM2-135M-Instruct) and come from measurements
that `examples/measure_defaults.py` reproduces (see docs/defaults.md, "Defaults and where they come
from"). A calibrated model card (later) overrides them per model.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

__all__ = ["ICPConfig", "RegimeThresholds", "LoopConfig", "DivergenceConfig", "TrackingConfig", "SEEDS_LAW"]

#: The cold law's base temperature (`ICPConfig.initial_temperature`): the warmest of 0.5, 0.3, 0.2, 0.1 whose
#: accuracy on the knowledge and reading dev splits is within 1 point of greedy's, else the coldest
#: (`python eval/ablation.py --split dev`, docs/control.md). On knowledge dev: 0.438, 0.460, 0.473 against
#: greedy's 0.487, so 0.1.
COLD_TEMPERATURE = 0.1

#: The seeds' law, as ICP ran it before the cold law: lagging entropy feedback (gain 0.3) toward
#: `target_entropy` from T0 = 1, T_min = 0.2. `ICP(model, **SEEDS_LAW)` or `ICPConfig(**SEEDS_LAW)` brings it back.
SEEDS_LAW: dict[str, float] = {"gain": 0.3, "initial_temperature": 1.0, "min_temperature": 0.2}

CoherenceSource = Literal["auto", "embedding", "hidden", "logits"]
MetaUncertaintyKind = Literal["entropy_volatility", "varentropy"]
_COHERENCE_SOURCES = ("auto", "embedding", "hidden", "logits")
_MIN_TEMPERATURE = 1e-3
_META_UNCERTAINTY_KINDS = ("entropy_volatility", "varentropy")
CONFIG_NAME = "icp_config.json"  # the file `ICPConfig.save_pretrained` writes in its directory
_METADATA_KEYS = ("icp_version",)  # written next to the fields, ignored on reading


def _check_finite(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"`{name}` (={value!r}) has to be a finite number.")


def _check_positive(name: str, value: Any) -> None:
    _check_finite(name, value)
    if value <= 0:
        raise ValueError(f"`{name}` (={value!r}) has to be strictly positive.")


def _check_non_negative(name: str, value: Any) -> None:
    _check_finite(name, value)
    if value < 0:
        raise ValueError(f"`{name}` (={value!r}) has to be non-negative.")


def _check_unit_interval(name: str, value: Any, *, closed_right: bool = False) -> None:
    _check_finite(name, value)
    ok = 0 <= value <= 1 if closed_right else 0 <= value < 1
    if not ok:
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"`{name}` (={value!r}) has to be in {interval}.")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"`{name}` (={value!r}) has to be an integer >= {minimum}.")


def _from_dict(cls, data: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"Unknown {cls.__name__} keys {unknown}; allowed keys are {sorted(known)}.")
    return cls(**data)


class _DictSerialisable:
    """`to_dict`/`from_dict` for ICP's config dataclasses: one implementation for all of them."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (nested groups as dicts) that `from_dict` turns back into an equal config."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Builds the config from `to_dict`'s output; unknown keys raise a ValueError listing the allowed ones."""
        return _from_dict(cls, data)


@dataclass
class RegimeThresholds(_DictSerialisable):
    """Boundaries of the four regimes in the (H, C, U, repetition) phase space.

    A token is, in this order of precedence:

    - **unstable** if (H >= `unstable_entropy` or U >= `unstable_meta_uncertainty`) and
      C < `coherent`: high uncertainty with coherence lost;
    - **rigid** if H < `rigid_entropy` and the row's loop progress >= `rigid_repetition`: confident
      and repeating, a loop in the making;
    - **exploratory** if H >= `exploratory_entropy` and C >= `coherent`: uncertain, still coherent;
    - **reasoning** otherwise: structured and stable.

    Args:
        rigid_entropy (`float`, *optional*, defaults to 0.5): nats.
        rigid_repetition (`float`, *optional*, defaults to 0.5): loop progress (1 = a loop, see
            [`icp.signals.trailing_cycle`]).
        exploratory_entropy (`float`, *optional*, defaults to 3.3): nats.
        unstable_entropy (`float`, *optional*, defaults to 4.75): nats.
        unstable_meta_uncertainty (`float`, *optional*, defaults to 1.75): units of U.
        coherent (`float`, *optional*, defaults to 0.65): coherence in [0, 1].

    Example:
        >>> from icp import RegimeThresholds
        >>> RegimeThresholds(rigid_entropy=0.3).rigid_entropy
        0.3
    """

    rigid_entropy: float = 0.5
    rigid_repetition: float = 0.5
    exploratory_entropy: float = 3.3
    unstable_entropy: float = 4.75
    unstable_meta_uncertainty: float = 1.75
    coherent: float = 0.65

    def __post_init__(self) -> None:
        for name in ("rigid_entropy", "exploratory_entropy", "unstable_entropy", "unstable_meta_uncertainty"):
            _check_non_negative(name, getattr(self, name))
        _check_positive("rigid_repetition", self.rigid_repetition)
        _check_unit_interval("coherent", self.coherent, closed_right=True)
        if not self.rigid_entropy <= self.exploratory_entropy <= self.unstable_entropy:
            raise ValueError(
                "Regime entropies must be ordered `rigid_entropy` <= `exploratory_entropy` <= `unstable_entropy`, "
                f"got {self.rigid_entropy} <= {self.exploratory_entropy} <= {self.unstable_entropy}."
            )



@dataclass
class LoopConfig(_DictSerialisable):
    """When a row counts as looping: a cycle of at most `max_period` tokens seen `min_repeats` times
    in a row, covering at least `min_loop_tokens` repeated tokens.

    Args:
        max_period (`int`, *optional*, defaults to 32): longest cycle searched for.
        min_repeats (`int`, *optional*, defaults to 3): sightings of the cycle that make a loop.
        min_loop_tokens (`int`, *optional*, defaults to 16): least repeated tokens that make a loop,
            so that "the the" or a short legitimate refrain does not count.

    Example:
        >>> from icp import LoopConfig
        >>> LoopConfig(max_period=8).window
        24
    """

    max_period: int = 32
    min_repeats: int = 3
    min_loop_tokens: int = 16

    def __post_init__(self) -> None:
        _check_int("max_period", self.max_period, 1)
        _check_int("min_repeats", self.min_repeats, 2)
        _check_int("min_loop_tokens", self.min_loop_tokens, 1)

    @property
    def window(self) -> int:
        """Tokens the detector needs to see: enough for the longest loop it can report."""
        return max(self.max_period * self.min_repeats, self.min_loop_tokens + self.max_period)



@dataclass
class DivergenceConfig(_DictSerialisable):
    """When a row counts as diverging: F above `free_energy_bound` or U above
    `meta_uncertainty_bound` for `patience` consecutive steps; and, when `answer_free_energy_bound` is
    set, a row that ends (an end-of-sequence token, or the last step of `max_length`) with its trajectory
    F (the mean of its steps' F) above that bound. The second rule is ICP's abstention on short answers,
    which end long before `patience` steps: the row's text is returned, but its stop reason says
    "divergence", so a caller can answer "I don't know" instead (the suite counts it as an abstention).

    Args:
        free_energy_bound (`float`, *optional*, defaults to 5.0): nats.
        meta_uncertainty_bound (`float`, *optional*, defaults to 2.5): units of U.
        patience (`int`, *optional*, defaults to 8): consecutive steps k.
        answer_free_energy_bound (`float`, *optional*): nats; `None` (the default) never abstains on a
            finished row. See docs/control.md ("Abstention") for the value measured on the suite.

    Example:
        >>> from icp import DivergenceConfig
        >>> DivergenceConfig(patience=4).patience
        4
        >>> DivergenceConfig(answer_free_energy_bound=3.5).answer_free_energy_bound
        3.5
    """

    free_energy_bound: float = 5.0
    meta_uncertainty_bound: float = 2.5
    patience: int = 8
    answer_free_energy_bound: float | None = None

    def __post_init__(self) -> None:
        _check_finite("free_energy_bound", self.free_energy_bound)
        _check_positive("meta_uncertainty_bound", self.meta_uncertainty_bound)
        _check_int("patience", self.patience, 1)
        if self.answer_free_energy_bound is not None:
            _check_finite("answer_free_energy_bound", self.answer_free_energy_bound)



@dataclass
class TrackingConfig(_DictSerialisable):
    """How each row's target entropy follows the critical region online (see [`icp.controller`]).

    Per row and step ICP measures the local sensitivity of coherence to entropy along the temperature
    direction, σ = -dE[C]/dH_T = Cov_q[c, y] / Var_q[y] on the row's `candidates` most likely tokens
    ([`icp.signals.criticality`]), averages both moments over steps (decay `decay`, with `prior` nats²
    of pseudo-variance at `reference_sensitivity`), and moves the row's target by at most `rate` nats
    a step toward where its σ equals `reference_sensitivity`, the sensitivity at the calibrated target:
    flatter than that (coherence indifferent to heat) -> hotter; steeper (the row is nearer its cliff)
    -> cooler. The target stays within `bound` nats of H*.

    Needs embedding coherence (candidate tokens' coherence is read from the embedding matrix); with
    `"hidden"` or `"logits"` coherence the target stays at H* and the trace's metadata says so.

    Args:
        rate (`float`, *optional*, defaults to 0.0): nats the target may move per step; 0 (the default)
            keeps the target at H*. 0.05 is the setting measured in docs/control.md, where its dev-split
            evidence is mixed and inside the noise, so tracking is opt-in.
        bound (`float`, *optional*, defaults to 1.0): largest |target - H*| in nats.
        reference_sensitivity (`float`, *optional*, defaults to 0.0111): σ* in coherence per nat; a model
            card sets it to its calibration sweep's local slope at H* (0.0111 for the default model,
            whose value this default is).
        decay (`float`, *optional*, defaults to 0.9): decay of the moments' running averages, in [0, 1).
        prior (`float`, *optional*, defaults to 0.5): pseudo-variance (nats²) pulling σ toward σ*
            while a row has seen little entropy variation.
        candidates (`int`, *optional*, defaults to 32): tokens per row the moments are taken over.

    Example:
        >>> from icp import TrackingConfig
        >>> TrackingConfig(rate=0.05).enabled  # opt-in: the default rate 0 keeps the target at H*
        True
    """

    rate: float = 0.0
    bound: float = 1.0
    reference_sensitivity: float = 0.0111
    decay: float = 0.9
    prior: float = 0.5
    candidates: int = 32

    def __post_init__(self) -> None:
        for name in ("rate", "bound"):
            _check_non_negative(name, getattr(self, name))
        _check_positive("reference_sensitivity", self.reference_sensitivity)
        _check_positive("prior", self.prior)
        _check_unit_interval("decay", self.decay)
        _check_int("candidates", self.candidates, 2)

    @property
    def enabled(self) -> bool:
        """Whether the target moves at all."""
        return self.rate > 0 and self.bound > 0



@dataclass
class ICPConfig(_DictSerialisable):
    """Every constant of the Inference Control Plane, validated on construction.

    Args:
        target_entropy (`float`, *optional*, defaults to 1.5): H*, the entropy (nats) of the tempered
            distribution softmax(z/T) the controller steers each row toward. Must not exceed
            log(vocab size).
        gain (`float`, *optional*, defaults to 0.0): η of the entropy feedback on log-temperature, >= 0.
            The default 0 is the cold law: T stays at `initial_temperature`, heated only while a row is
            rigid (looping) and cooled while it is unstable (the regime dissipation, `heat_rate` and
            `cool_rate`), the leak pulling it back. A gain > 0 adds the seeds' lagging feedback toward
            `target_entropy` ([`SEEDS_LAW`] restores that law as ICP had it: gain 0.3, T0 1.0). Why the
            cold law: docs/control.md (the ablation on the suite's dev splits).
        min_temperature (`float`, *optional*, defaults to 0.1): lower bound of T, at least 1e-3 (0.2 in the
            seeds' law).
        max_temperature (`float`, *optional*, defaults to 1.5): upper bound of T.
        initial_temperature (`float`, *optional*, defaults to 0.1): T at the first step, and the cold
            law's base temperature; the leak pulls log T back toward it.
        leak (`float`, *optional*, defaults to 0.02): share of (log T - log T0) removed each step, in
            [0, 1); keeps the controller from drifting on long generations.
        cool_rate (`float`, *optional*, defaults to 0.15): log-temperature removed per unstable step.
        heat_rate (`float`, *optional*, defaults to 0.15): log-temperature added per rigid step.
        sensitivity_floor (`float`, *optional*, defaults to 0.02): κ in the controller's gate
            g = V/(κ + V): steps whose tempered varentropy V is far below κ (near-deterministic
            tokens, whose entropy no temperature moves) barely move the temperature.
        derepeat_penalty (`float`, *optional*, defaults to 3.0): ICP's de-repetition, applied to every
            row before tempering (DRY's rule, p-e-w 2024): a token that would extend a repeat of
            L >= `derepeat_allowed_length` tokens of the generated text (and of the prompt with
            `derepeat_prompt=True`) loses
            `derepeat_penalty` · `derepeat_base`^(L - `derepeat_allowed_length`) nats. 0 disables it.
            3.0 rather than DRY's 0.8: picked on the suite's dev splits, and what its results use
            (docs/benchmark.md, "The benchmark suite").
        derepeat_base (`float`, *optional*, defaults to 1.75): growth of that penalty per extra
            repeated token, >= 1.
        derepeat_allowed_length (`int`, *optional*, defaults to 2): repeats shorter than this are free.
        derepeat_window (`int`, *optional*, defaults to 512): the last tokens searched for repeats (0:
            all); bounds the de-repetition's per-step work and memory on long generations.
        derepeat_prompt (`bool`, *optional*, defaults to `False`): whether repeats of the prompt count too
            (DRY searches the whole context). Off by default: answering from given facts, continuing a
            document or naming the prompt's multi-token entities all repeat the prompt on purpose, and
            a 3-nat penalty on them cost ICP grounded-QA accuracy and instruct coherence in the suite.
        min_p (`float`, *optional*, defaults to 0.05): ICP's own truncation after temperature, in
            [0, 1) (0 disables it): tokens below `min_p` × the top probability are dropped.
        gamma (`float`, *optional*, defaults to 1.0): γ, the weight of coherence in F.
        lam (`float`, *optional*, defaults to 1.0): λ, the weight of meta-uncertainty in F.
        coherence (`str`, *optional*, defaults to `"auto"`): one of `"auto"`, `"embedding"`, `"hidden"`,
            `"logits"` (see [`icp.signals.coherence`]). `"embedding"` and `"hidden"` need the model;
            `"auto"` is `"embedding"` with the model and `"logits"` without.
        coherence_decay (`float`, *optional*, defaults to 0.9): α of the decaying average of past
            states that `"embedding"`/`"hidden"` coherence compares against, in [0, 1).
        logit_floor (`float`, *optional*, defaults to -20.0): log-probability floor of the
            logits-only coherence.
        recall_window (`int`, *optional*, defaults to 16): context tokens the logits-only coherence
            looks back at.
        meta_uncertainty (`str`, *optional*, defaults to `"entropy_volatility"`): one of
            `"entropy_volatility"`, `"varentropy"`.
        volatility_window (`int`, *optional*, defaults to 16): steps of the entropy-volatility window.
        regimes ([`RegimeThresholds`], *optional*): regime boundaries.
        loop ([`LoopConfig`], *optional*): loop detection.
        divergence ([`DivergenceConfig`], *optional*): divergence detection.
        tracking ([`TrackingConfig`], *optional*): online tracking of the critical region (the
            per-row target entropy).
        control (`bool`, *optional*, defaults to `True`): `False` makes ICP an observer: it records
            every signal and returns the logits untouched.
        eos_token_id (`int` or `list[int]`, *optional*): end-of-sequence ids; read from the model's
            generation config when ICP is given the model or runs inside `generate()`.

    Example:
        >>> from icp import ICPConfig
        >>> ICPConfig(target_entropy=2.0).target_entropy
        2.0
        >>> ICPConfig(gain=-1.0)
        Traceback (most recent call last):
        ...
        ValueError: `gain` (=-1.0) has to be non-negative.
    """

    target_entropy: float = 1.5
    gain: float = 0.0
    min_temperature: float = 0.1
    max_temperature: float = 1.5
    initial_temperature: float = COLD_TEMPERATURE
    leak: float = 0.02
    cool_rate: float = 0.15
    heat_rate: float = 0.15
    sensitivity_floor: float = 0.02
    derepeat_penalty: float = 3.0
    derepeat_base: float = 1.75
    derepeat_allowed_length: int = 2
    derepeat_window: int = 512
    derepeat_prompt: bool = False
    min_p: float = 0.05
    gamma: float = 1.0
    lam: float = 1.0
    coherence: CoherenceSource = "auto"
    coherence_decay: float = 0.9
    logit_floor: float = -20.0
    recall_window: int = 16
    meta_uncertainty: MetaUncertaintyKind = "entropy_volatility"
    volatility_window: int = 16
    regimes: RegimeThresholds = field(default_factory=RegimeThresholds)
    loop: LoopConfig = field(default_factory=LoopConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    control: bool = True
    eos_token_id: int | list[int] | None = None

    def __post_init__(self) -> None:
        # The checks run in this order, each raising on the first bad field it finds.
        self._coerce_sub_configs()
        self._check_controller()
        self._check_rates_and_derepeat()
        self._check_signals()
        self._check_windows_and_flags()
        self._check_eos_token_id()

    def _coerce_sub_configs(self) -> None:
        """`regimes`, `loop`, `divergence` and `tracking`: a dict of fields becomes its config class."""
        if isinstance(self.regimes, dict):
            self.regimes = RegimeThresholds.from_dict(self.regimes)
        if isinstance(self.loop, dict):
            self.loop = LoopConfig.from_dict(self.loop)
        if isinstance(self.divergence, dict):
            self.divergence = DivergenceConfig.from_dict(self.divergence)
        if isinstance(self.tracking, dict):
            self.tracking = TrackingConfig.from_dict(self.tracking)
        for name, cls in (
            ("regimes", RegimeThresholds),
            ("loop", LoopConfig),
            ("divergence", DivergenceConfig),
            ("tracking", TrackingConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(
                    f"`{name}` (={getattr(self, name)!r}) has to be a {cls.__name__} or a dict of its fields."
                )

    def _check_controller(self) -> None:
        """The controller's law: target and gain, the temperature bounds and start, the gate's floor, the leak."""
        _check_non_negative("target_entropy", self.target_entropy)
        _check_non_negative("gain", self.gain)
        for name in ("min_temperature", "max_temperature", "initial_temperature", "sensitivity_floor"):
            _check_positive(name, getattr(self, name))
        if self.min_temperature < _MIN_TEMPERATURE:
            raise ValueError(
                f"`min_temperature` (={self.min_temperature}) has to be >= {_MIN_TEMPERATURE}: below it, logits "
                "divided by T leave the float32 range."
            )
        if self.min_temperature > self.max_temperature:
            raise ValueError(
                f"`min_temperature` (={self.min_temperature}) has to be <= `max_temperature` (={self.max_temperature})."
            )
        if not self.min_temperature <= self.initial_temperature <= self.max_temperature:
            raise ValueError(
                f"`initial_temperature` (={self.initial_temperature}) has to lie in "
                f"[`min_temperature`, `max_temperature`] = [{self.min_temperature}, {self.max_temperature}]."
            )
        _check_unit_interval("leak", self.leak)

    def _check_rates_and_derepeat(self) -> None:
        """The regime rates, the de-repetition's penalty, growth and free length, F's weights, and `min_p`."""
        for name in ("cool_rate", "heat_rate", "derepeat_penalty", "gamma", "lam"):
            _check_non_negative(name, getattr(self, name))
        _check_finite("derepeat_base", self.derepeat_base)
        if self.derepeat_base < 1:
            raise ValueError(f"`derepeat_base` (={self.derepeat_base!r}) has to be >= 1.")
        _check_int("derepeat_allowed_length", self.derepeat_allowed_length, 1)
        _check_unit_interval("min_p", self.min_p)

    def _check_signals(self) -> None:
        """How coherence and meta-uncertainty are measured: their kinds, decay, floor and windows."""
        if self.coherence not in _COHERENCE_SOURCES:
            raise ValueError(f"`coherence` (={self.coherence!r}) has to be one of {_COHERENCE_SOURCES}.")
        _check_unit_interval("coherence_decay", self.coherence_decay)
        _check_finite("logit_floor", self.logit_floor)
        if self.logit_floor >= 0:
            raise ValueError(f"`logit_floor` (={self.logit_floor}) has to be a negative log-probability.")
        if self.meta_uncertainty not in _META_UNCERTAINTY_KINDS:
            raise ValueError(
                f"`meta_uncertainty` (={self.meta_uncertainty!r}) has to be one of {_META_UNCERTAINTY_KINDS}."
            )
        _check_int("volatility_window", self.volatility_window, 2)
        _check_int("recall_window", self.recall_window, 1)

    def _check_windows_and_flags(self) -> None:
        """The de-repetition's window, and the `derepeat_prompt` and `control` switches."""
        _check_int("derepeat_window", self.derepeat_window, 0)
        if self.derepeat_window == 1:
            raise ValueError("`derepeat_window` (=1) has to be 0 (no limit) or >= 2: one token holds no repeat.")
        if not isinstance(self.derepeat_prompt, bool):
            raise ValueError(f"`derepeat_prompt` (={self.derepeat_prompt!r}) has to be a bool.")
        if not isinstance(self.control, bool):
            raise ValueError(f"`control` (={self.control!r}) has to be a bool.")

    def _check_eos_token_id(self) -> None:
        """`eos_token_id`: unset, a non-negative int, or a non-empty list of them."""
        if self.eos_token_id is not None:
            ids = [self.eos_token_id] if isinstance(self.eos_token_id, int) else self.eos_token_id
            if (
                not isinstance(ids, (list, tuple))
                or not ids
                or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
            ):
                raise ValueError(
                    f"`eos_token_id` (={self.eos_token_id!r}) has to be a non-negative int or a non-empty list of them."
                )

    @property
    def eos_token_ids(self) -> list[int]:
        """`eos_token_id` as a list (empty when unset)."""
        if self.eos_token_id is None:
            return []
        return [self.eos_token_id] if isinstance(self.eos_token_id, int) else list(self.eos_token_id)

    def check_vocab(self, vocab_size: int) -> None:
        """Raises if `target_entropy` is unreachable for a vocabulary of `vocab_size` tokens."""
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, numbers.Integral) or vocab_size < 1:
            raise ValueError(f"`vocab_size` (={vocab_size!r}) has to be a positive integer.")
        if self.target_entropy > math.log(vocab_size):
            raise ValueError(
                f"`target_entropy` (={self.target_entropy}) exceeds log(vocab size) = {math.log(vocab_size):.4f} "
                f"(vocab size {vocab_size}): no distribution over this vocabulary has that much entropy."
            )

    def with_overrides(self, **overrides: Any) -> ICPConfig:
        """A new config: this one with `overrides` applied (this one is unchanged).

        The one place ICP's settings are composed: `ICP(**overrides)` applies the card's values and then
        the caller's with it, `ICPConfig.from_pretrained` its overrides, and the CLI's `--set` reaches it
        through `ICP`.

        Args:
            **overrides: fields of [`ICPConfig`]. A dict for a nested group (`regimes`, `loop`,
                `divergence`, `tracking`) changes only the fields it names; a group instance replaces the
                whole group; any other value replaces the field.

        Returns:
            [`ICPConfig`]: the validated new config.

        Raises:
            TypeError: an override names no field of [`ICPConfig`] (the message lists the allowed ones).
            ValueError: a nested dict names a field its group lacks, or a value fails validation.

        Example:
            >>> from icp import ICPConfig
            >>> config = ICPConfig().with_overrides(gain=0.3, divergence={"patience": 4})
            >>> config.gain, config.divergence.patience, config.divergence.free_energy_bound
            (0.3, 4, 5.0)
        """
        data = self.to_dict()
        unknown = sorted(set(overrides) - set(data))
        if unknown:
            raise TypeError(f"Unknown ICP option(s) {unknown}; allowed are the ICPConfig fields {sorted(data)}.")
        for key, value in overrides.items():
            if key in _NESTED_CLASSES and isinstance(value, dict):
                _check_keys({key: value}, "the overrides")
                data[key] = {**data[key], **value}
            else:
                data[key] = value.to_dict() if key in _NESTED_CLASSES and hasattr(value, "to_dict") else value
        return ICPConfig.from_dict(data)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Writes the config as JSON to `save_directory/icp_config.json`, creating the directory.

        [`ICPConfig.from_pretrained`] reads it back into an equal config. The file holds every field
        (nested ones as objects) and the writing ICP's version under `"icp_version"`.

        Args:
            save_directory (`str` or `os.PathLike`): the directory to write into; created with its parents
                when missing. An existing `icp_config.json` in it is overwritten.

        Returns:
            `pathlib.Path`: the file written.

        Example:
            >>> import tempfile
            >>> from icp import ICPConfig
            >>> config = ICPConfig(target_entropy=2.0, loop={"max_period": 8})
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     path = config.save_pretrained(folder)
            ...     loaded = ICPConfig.from_pretrained(folder)
            >>> path.name, loaded == config
            ('icp_config.json', True)
        """
        if not isinstance(save_directory, (str, os.PathLike)):
            raise TypeError(f"`save_directory` (={save_directory!r}) has to be a path (str or os.PathLike).")
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(
                f"`save_directory` (={str(save_directory)!r}) is a file; pass a directory to write {CONFIG_NAME} into."
            )
        directory.mkdir(parents=True, exist_ok=True)
        from . import __version__

        path = directory / CONFIG_NAME
        text = json.dumps(
            {"icp_version": __version__, **self.to_dict()},
            indent=2,
            sort_keys=True,
            allow_nan=False,
            default=_json_scalar,
        )
        path.write_text(text + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_pretrained(cls, pretrained_path: str | os.PathLike, **overrides: Any) -> ICPConfig:
        """Reads a config written by [`ICPConfig.save_pretrained`], then applies `overrides`.

        Local files only (a directory holding `icp_config.json`, or the JSON file itself): ICP configs are
        not fetched from the Hugging Face Hub.

        Args:
            pretrained_path (`str` or `os.PathLike`): a directory containing `icp_config.json`, or the path of
                such a JSON file.
            **overrides: fields of [`ICPConfig`] to change after reading, e.g. `target_entropy=1.8`. A dict
                for `regimes`, `loop`, `divergence` or `tracking` changes only the fields it names (as in
                `ICP(**overrides)`); a dataclass instance replaces the whole group.

        Returns:
            [`ICPConfig`]: the validated config.

        Raises:
            FileNotFoundError: `pretrained_path` does not exist, or the directory holds no `icp_config.json`.
            ValueError: the file is not a JSON object, has a key that is not a field (the message names the key,
                the file and the allowed keys), or a value fails validation.
            TypeError: an override names no field of [`ICPConfig`].

        Example:
            >>> import tempfile
            >>> from icp import ICPConfig
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     _ = ICPConfig(gain=0.5).save_pretrained(folder)
            ...     config = ICPConfig.from_pretrained(folder, target_entropy=2.0, regimes={"coherent": 0.5})
            >>> config.gain, config.target_entropy, config.regimes.coherent, config.regimes.rigid_entropy
            (0.5, 2.0, 0.5, 0.5)
        """
        if not isinstance(pretrained_path, (str, os.PathLike)):
            raise TypeError(f"`pretrained_path` (={pretrained_path!r}) has to be a path (str or os.PathLike).")
        given = Path(pretrained_path)
        path = given / CONFIG_NAME if given.is_dir() else given
        if not path.is_file():
            where = (
                f"the directory {str(given)!r} has no {CONFIG_NAME}"
                if given.is_dir()
                else f"{str(given)!r} does not exist"
            )
            raise FileNotFoundError(
                f"Cannot load an ICP config from `pretrained_path` (={str(pretrained_path)!r}): {where}. Pass a "
                f"directory written by `ICPConfig.save_pretrained` or the path of its {CONFIG_NAME} (local paths "
                "only, not Hub ids)."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{str(path)!r} is not valid JSON: {err}.") from err
        if not isinstance(data, dict):
            raise ValueError(f"{str(path)!r} has to hold a JSON object of ICPConfig fields, got {type(data).__name__}.")
        data = {k: v for k, v in data.items() if k not in _METADATA_KEYS}
        _check_keys(data, f"{str(path)!r}")
        try:
            config = cls.from_dict(data)
        except (ValueError, TypeError) as err:
            raise ValueError(f"Invalid ICP config from {str(path)!r}: {err}") from err
        try:
            return config.with_overrides(**overrides)
        except TypeError as err:
            raise TypeError(f"{err} (the overrides of `from_pretrained`)") from err
        except ValueError as err:
            source = f"{str(path)!r} with the overrides {sorted(overrides)}" if overrides else f"{str(path)!r}"
            raise ValueError(f"Invalid ICP config from {source}: {err}") from err


def _json_scalar(value: Any) -> Any:
    """`json.dumps`'s fallback: numpy scalars (a field set from a computed value) as Python numbers."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    raise TypeError(f"ICPConfig value {value!r} ({type(value).__name__}) cannot be written as JSON.")


_NESTED_CLASSES: dict[str, type] = {
    "regimes": RegimeThresholds,
    "loop": LoopConfig,
    "divergence": DivergenceConfig,
    "tracking": TrackingConfig,
}


def _check_keys(data: dict[str, Any], source: str) -> None:
    """Raises a ValueError naming every key of `data` (nested ones as `group.key`) that is not a field."""
    allowed = sorted(f.name for f in fields(ICPConfig))
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in {source}; allowed keys are the ICPConfig fields {allowed}.")
    for key, cls in _NESTED_CLASSES.items():
        value = data.get(key)
        if value is None or not isinstance(value, dict):
            continue  # a missing group takes its defaults; a wrong type is reported by validation
        known = sorted(f.name for f in fields(cls))
        extra = sorted(set(value) - set(known))
        if extra:
            raise ValueError(
                f"Unknown key(s) {[f'{key}.{k}' for k in extra]} in {source}; allowed keys of `{key}` "
                f"({cls.__name__}) are {known}."
            )
