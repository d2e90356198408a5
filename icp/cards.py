"""Model cards: a model's calibrated ICP settings, in Hugging Face model-card format.

A card is a folder `<slug>/` holding `README.md` (YAML front matter, then prose) and the C(H) plot
`c_of_h.png`. The front matter carries the model id (`model_name`, `base_model`), `library_name: icp`,
`tags`, an `icp:` block with the calibrated values and their provenance, and a `model-index` for
benchmark-suite results. `icp calibrate` writes cards ([`write_card`]); [`icp.ICP`] reads the card of
its model ([`find_card`]) and takes its target entropy and regime thresholds.

Where cards are looked up, in order:

1. the folders in `$ICP_MODEL_CARDS` (separated by `os.pathsep`);
2. the `model_cards/` folder of the checkout the package runs from (a source checkout or an editable
   install: `<repo>/icp/cards.py` → `<repo>/model_cards`).

A wheel install ships no cards: set `ICP_MODEL_CARDS` to a folder of cards, or pass `card=` to `ICP`.

Slugs: the model id's last path component, lower-cased (`HuggingFaceTB/SmolLM2-135M-Instruct` →
`smollm2-135m-instruct`); the org-qualified `huggingfacetb--smollm2-135m-instruct` is tried first, and
a card in any folder whose `model_name` equals the id is found too.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .config import RegimeThresholds

__all__ = [
    "CARD_FILE",
    "PLOT_FILE",
    "ENV_VAR",
    "CardNotFoundError",
    "ICPCardWarning",
    "ModelCard",
    "available_cards",
    "default_search_dirs",
    "describe_available_cards",
    "find_card",
    "fitted_slope_at",
    "load_card",
    "local_sensitivity_at",
    "model_slug",
    "qualified_slug",
    "validate_card",
    "write_card",
]

CARD_FILE = "README.md"
PLOT_FILE = "c_of_h.png"
ENV_VAR = "ICP_MODEL_CARDS"
CARD_VERSION = 1
_REPO_CARDS = Path(__file__).resolve().parent.parent / "model_cards"


class ICPCardWarning(UserWarning):
    """ICP found no model card for its model and uses the documented defaults (once per model and process)."""


class CardNotFoundError(LookupError):
    """No model card for a model id; the message lists the cards that exist."""


# ----------------------------------------------------------------------------- slugs and lookup
def _clean(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.") or "model"


def model_slug(model_id: str) -> str:
    """The card folder name of a model id: its last path component, lower-cased.

    Example:
        >>> from icp.cards import model_slug
        >>> model_slug("HuggingFaceTB/SmolLM2-135M-Instruct")
        'smollm2-135m-instruct'
    """
    return _clean(str(model_id).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1])


def qualified_slug(model_id: str) -> str:
    """`org--name` for a hub id `org/name` (the plain slug otherwise).

    Example:
        >>> from icp.cards import qualified_slug
        >>> qualified_slug("HuggingFaceTB/SmolLM2-135M-Instruct")
        'huggingfacetb--smollm2-135m-instruct'
    """
    parts = str(model_id).strip("/").split("/")
    if len(parts) == 2 and not os.path.isabs(str(model_id)):
        return f"{_clean(parts[0])}--{_clean(parts[1])}"
    return model_slug(model_id)


def default_search_dirs() -> list[Path]:
    """Folders searched for cards: `$ICP_MODEL_CARDS` (os.pathsep-separated), then the checkout's `model_cards/`."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    if _REPO_CARDS.is_dir():
        dirs.append(_REPO_CARDS)
    return dirs


def _card_files(search_dirs: list[Path]) -> list[Path]:
    files = []
    for d in search_dirs:
        if Path(d).is_dir():
            files += sorted(p for p in Path(d).glob(f"*/{CARD_FILE}") if p.is_file())
    return files


def _read_front_matter(path: Path) -> tuple[dict[str, Any], str]:
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    match = re.match(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)(.*)\Z", text, flags=re.S)
    if match is None:
        raise ValueError(f"Model card {path}: no YAML front matter (the file must start with a '---' line).")
    try:
        meta = yaml.load(match.group(1), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # safe, C if built
    except yaml.YAMLError as err:
        raise ValueError(f"Model card {path}: the front matter is not valid YAML: {err}") from err
    if not isinstance(meta, dict):
        raise ValueError(f"Model card {path}: the front matter has to be a mapping, got {type(meta).__name__}.")
    return meta, match.group(2)


def available_cards(search_dirs: list[str | os.PathLike] | None = None) -> list[tuple[str, Path]]:
    """`(model id, card path)` of every card in the search folders (unreadable ones as `("<invalid>", path)`)."""
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else default_search_dirs()
    out = []
    for path in _card_files(dirs):
        try:
            meta, _ = _read_front_matter(path)
            out.append((str(meta.get("model_name", "<no model_name>")), path))
        except (OSError, ValueError):
            out.append(("<invalid>", path))
    return out


def describe_available_cards(search_dirs: list[str | os.PathLike] | None = None) -> str:
    """One sentence listing the cards that exist and where ICP looked."""
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else default_search_dirs()
    cards = available_cards(dirs)
    where = ", ".join(str(d) for d in dirs) or f"nowhere (set ${ENV_VAR})"
    if not cards:
        return f"No model cards in {where}."
    listed = "; ".join(f"{model_id} ({path.parent.name})" for model_id, path in cards)
    return f"Available cards: {listed} (searched {where})."


def find_card(
    model_id: str, search_dirs: list[str | os.PathLike] | None = None, *, required: bool = False
) -> ModelCard | None:
    """The model card of `model_id`, or `None` when there is none.

    Looks in each search folder for `<qualified slug>/README.md`, then `<slug>/README.md`, then any card
    whose `model_name` equals `model_id` (case-insensitive). A card that is found but invalid raises.

    Args:
        model_id (`str`): a hub id (`org/name`) or a local folder.
        search_dirs (`list`, *optional*): folders to search; defaults to [`default_search_dirs`].
        required (`bool`, *optional*, defaults to `False`): raise [`CardNotFoundError`], listing the
            available cards, instead of returning `None`.

    Returns:
        [`ModelCard`] or `None`.

    Example:
        >>> from icp.cards import find_card
        >>> find_card("no-such-org/no-such-model", search_dirs=[]) is None
        True
    """
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else default_search_dirs()
    slugs = list(dict.fromkeys([qualified_slug(model_id), model_slug(model_id)]))
    for d in dirs:
        for slug in slugs:
            path = d / slug / CARD_FILE
            if path.is_file():
                return load_card(path)
    wanted = str(model_id).lower()
    for path in _card_files(dirs):
        try:
            meta, _ = _read_front_matter(path)
        except (OSError, ValueError):
            continue
        if str(meta.get("model_name", "")).lower() == wanted:
            return load_card(path)
    if required:
        raise CardNotFoundError(
            f"No ICP model card for `model_id` (={model_id!r}); looked for the folders {slugs}. "
            f"{describe_available_cards(dirs)} Write one with `icp calibrate --model {model_id}`."
        )
    return None


# ----------------------------------------------------------------------------- the card
@dataclass
class ModelCard:
    """A parsed, validated model card.

    Args:
        model_id (`str`): the model it calibrates (`model_name`).
        target_entropy (`float`): H*, nats of the tempered distribution.
        critical_entropy (`float`): H_c.
        critical_entropy_ci (`tuple[float, float]`): its confidence interval.
        regimes ([`icp.RegimeThresholds`]): calibrated regime thresholds.
        icp (`dict`): the whole `icp:` block (sweep, fit, heat capacity, calibration provenance).
        metadata (`dict`): the whole front matter.
        body (`str`): the Markdown after the front matter.
        path (`Path`, *optional*): where it was read from.
    """

    model_id: str
    target_entropy: float
    critical_entropy: float
    critical_entropy_ci: tuple[float, float]
    regimes: RegimeThresholds
    icp: dict[str, Any] = field(repr=False)
    metadata: dict[str, Any] = field(repr=False)
    body: str = field(default="", repr=False)
    path: Path | None = None

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], body: str = "", path: Path | None = None) -> ModelCard:
        """Validates front matter ([`validate_card`]) and builds the card."""
        validate_card(metadata, path=path)
        block = metadata["icp"]
        return cls(
            model_id=str(metadata["model_name"]),
            target_entropy=float(block["target_entropy"]),
            critical_entropy=float(block["critical_entropy"]),
            critical_entropy_ci=tuple(float(v) for v in block["critical_entropy_ci"]),
            regimes=RegimeThresholds.from_dict(dict(block["regimes"])),
            icp=block,
            metadata=metadata,
            body=body,
            path=path,
        )

    @property
    def reference_sensitivity(self) -> float | None:
        """The sensitivity the online tracker holds each row to (`icp.TrackingConfig.reference_sensitivity`):
        the sweep's per-step local slope -dE[C]/dH_T interpolated at H* (the very quantity the tracker
        measures), or, on a card without that column, |dC/dH| of the fitted C(H) at H*. None if neither."""
        local = local_sensitivity_at(self.icp.get("sweep") or [], self.target_entropy)
        if local is not None:
            return local
        return fitted_slope_at(self.icp.get("fit") or {}, self.target_entropy)

    @property
    def fitted_sensitivity(self) -> float | None:
        """|dC/dH| of the fitted C(H) curve at H* (None if the fit is missing)."""
        return fitted_slope_at(self.icp.get("fit") or {}, self.target_entropy)

    def config_overrides(self) -> dict[str, Any]:
        """The [`icp.ICPConfig`] fields the card sets: `target_entropy`, `regimes` and the tracker's
        `reference_sensitivity` (a partial `tracking` dict, merged into the config's)."""
        overrides: dict[str, Any] = {"target_entropy": self.target_entropy, "regimes": self.regimes.to_dict()}
        reference = self.reference_sensitivity
        if reference is not None and reference > 0:
            overrides["tracking"] = {"reference_sensitivity": round(reference, 6)}
        return overrides

    def summary(self) -> dict[str, Any]:
        """What a trace records about the card (`trace.metadata["card"]`)."""
        calibration = self.icp.get("calibration", {})
        return {
            "model_id": self.model_id,
            "path": str(self.path) if self.path is not None else None,
            "date": calibration.get("date"),
            "target_entropy": self.target_entropy,
            "critical_entropy": self.critical_entropy,
            "regimes": self.regimes.to_dict(),
        }


def _where(path: Path | None) -> str:
    return f"Model card {path}: " if path is not None else "Model card: "


def _number(value: Any, name: str, path: Path | None, *, minimum: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{_where(path)}`{name}` (={value!r}) has to be a finite number.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{_where(path)}`{name}` (={value!r}) has to be >= {minimum}.")
    return float(value)


def _integer(value: Any, name: str, path: Path | None, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{_where(path)}`{name}` (={value!r}) has to be an integer >= {minimum}.")
    return int(value)


def _mapping(value: Any, name: str, path: Path | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{_where(path)}`{name}` (={value!r}) has to be a mapping.")
    return value


def _require(block: dict[str, Any], key: str, prefix: str, path: Path | None) -> Any:
    if key not in block:
        raise ValueError(f"{_where(path)}`{prefix}{key}` is missing; the card has {sorted(block)} there.")
    return block[key]


def _interval(value: Any, name: str, path: Path | None) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"{_where(path)}`{name}` (={value!r}) has to be a list [low, high].")
    low, high = (_number(v, name, path) for v in value)
    if low > high:
        raise ValueError(f"{_where(path)}`{name}` (={value!r}) has to satisfy low <= high.")
    return low, high


_REGIME_FIELDS = tuple(RegimeThresholds().to_dict())
_SWEEP_FIELDS = ("temperature", "entropy", "tempered_entropy", "coherence", "meta_uncertainty", "loop_rate")


def validate_card(card: ModelCard | dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """Checks a card's front matter; raises `ValueError` naming the first bad field.

    Required: `model_name` (non-empty string), `library_name: icp`, and an `icp:` mapping with
    `target_entropy` and `critical_entropy` (finite, >= 0, target <= critical: the target sits on the
    coherent side), `critical_entropy_ci` (`[low, high]`, low <= high), `regimes`
    (every [`icp.RegimeThresholds`] field, numeric and ordered), `sweep` (a non-empty list of rows with
    numeric `temperature`, `entropy`, `tempered_entropy`, `coherence`, `meta_uncertainty`,
    `loop_rate`) and `calibration` (`prompt_set`, `n_prompts`, `max_new_tokens`, `seed`, `date`,
    `versions`). `model-index`, when present, has to be a list.

    Args:
        card ([`ModelCard`] or `dict`): a card or its front matter.
        path (`Path`, *optional*): named in the error messages.

    Returns:
        `dict`: the front matter.
    """
    if isinstance(card, ModelCard):
        path = path if path is not None else card.path
        meta = card.metadata
    else:
        meta = card
    meta = _mapping(meta, "front matter", path)
    name = _require(meta, "model_name", "", path)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{_where(path)}`model_name` (={name!r}) has to be a non-empty model id.")
    library = _require(meta, "library_name", "", path)
    if library != "icp":
        raise ValueError(f"{_where(path)}`library_name` (={library!r}) has to be 'icp'.")
    block = _mapping(_require(meta, "icp", "", path), "icp", path)
    target = _number(_require(block, "target_entropy", "icp.", path), "icp.target_entropy", path, minimum=0.0)
    critical = _number(_require(block, "critical_entropy", "icp.", path), "icp.critical_entropy", path, minimum=0.0)
    if target > critical:
        raise ValueError(
            f"{_where(path)}`icp.target_entropy` (={target}) has to be <= `icp.critical_entropy` (={critical}): the "
            "target sits on the coherent side of the critical point."
        )
    _interval(_require(block, "critical_entropy_ci", "icp.", path), "icp.critical_entropy_ci", path)
    if "target_entropy_ci" in block:
        _interval(block["target_entropy_ci"], "icp.target_entropy_ci", path)
    regimes = _mapping(_require(block, "regimes", "icp.", path), "icp.regimes", path)
    for key in _REGIME_FIELDS:
        _number(_require(regimes, key, "icp.regimes.", path), f"icp.regimes.{key}", path, minimum=0.0)
    unknown = sorted(set(regimes) - set(_REGIME_FIELDS))
    if unknown:
        raise ValueError(
            f"{_where(path)}`icp.regimes` has unknown fields {unknown}; allowed are {list(_REGIME_FIELDS)}."
        )
    try:
        RegimeThresholds.from_dict(dict(regimes))
    except ValueError as err:
        raise ValueError(f"{_where(path)}`icp.regimes`: {err}") from err
    sweep = _require(block, "sweep", "icp.", path)
    if not isinstance(sweep, list) or not sweep:
        raise ValueError(f"{_where(path)}`icp.sweep` (={sweep!r}) has to be a non-empty list of rows.")
    for i, row in enumerate(sweep):
        row = _mapping(row, f"icp.sweep[{i}]", path)
        for key in _SWEEP_FIELDS:
            _number(_require(row, key, f"icp.sweep[{i}].", path), f"icp.sweep[{i}].{key}", path)
    calibration = _mapping(_require(block, "calibration", "icp.", path), "icp.calibration", path)
    prompt_set = _require(calibration, "prompt_set", "icp.calibration.", path)
    if not isinstance(prompt_set, str) or not prompt_set:
        raise ValueError(f"{_where(path)}`icp.calibration.prompt_set` (={prompt_set!r}) has to be a non-empty string.")
    _integer(_require(calibration, "n_prompts", "icp.calibration.", path), "icp.calibration.n_prompts", path, 1)
    _integer(
        _require(calibration, "max_new_tokens", "icp.calibration.", path), "icp.calibration.max_new_tokens", path, 1
    )
    _integer(_require(calibration, "seed", "icp.calibration.", path), "icp.calibration.seed", path, 0)
    date = _require(calibration, "date", "icp.calibration.", path)
    if not isinstance(date, str) or not date:
        raise ValueError(f"{_where(path)}`icp.calibration.date` (={date!r}) has to be an ISO 8601 date string.")
    _mapping(_require(calibration, "versions", "icp.calibration.", path), "icp.calibration.versions", path)
    if "model-index" in meta and not isinstance(meta["model-index"], list):
        raise ValueError(f"{_where(path)}`model-index` (={meta['model-index']!r}) has to be a list.")
    return meta


def load_card(path: str | os.PathLike) -> ModelCard:
    """Reads and validates a card: its folder or its README.md.

    Raises:
        FileNotFoundError: no card at `path`.
        ValueError: the card is malformed (the message names the field).
    """
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"`path` (={str(path)!r}) is not a model card: no such file.")
    meta, body = _read_front_matter(path)
    return ModelCard.from_metadata(meta, body, path)


# ----------------------------------------------------------------------------- writing
def _plain(value: Any) -> Any:
    """Plain YAML-safe values: floats rounded, NaN as null, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)  # a str subclass (torch's TorchVersion) is not safe YAML
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return None if not math.isfinite(value) else round(float(value), 4)
    return str(value)


def card_metadata(result: Any, model_id: str, model_index: list | None = None) -> dict[str, Any]:
    """The front matter of the card for a [`icp.calibrate.CalibrationResult`]."""
    heat = {k: v for k, v in result.heat_capacity.items() if k != "peaks"}
    sweep = [{k: v for k, v in row.items() if k != "seconds"} for row in result.sweep]
    block = {
        "card_version": CARD_VERSION,
        "entropy": "tempered: H of softmax(z/T) in nats, what the controller steers",
        "target_entropy": result.target_entropy,
        "target_entropy_ci": list(result.target_entropy_ci),
        "critical_entropy": result.critical_entropy,
        "critical_entropy_ci": list(result.critical_entropy_ci),
        "ci_level": result.ci_level,
        "fit": {k: v for k, v in result.fit.items()},
        "regimes": dict(result.regimes),
        "reference_temperature": result.reference_temperature,
        "threshold_rules": result.threshold_rules,
        "heat_capacity": heat,
        "sweep": sweep,
        "calibration": {
            "prompt_set": result.prompt_set,
            "n_prompts": result.n_prompts,
            "max_new_tokens": result.max_new_tokens,
            "temperatures": [row["temperature"] for row in result.sweep],
            "seed": result.seed,
            "n_bootstrap": result.bootstrap.get("n"),
            "n_bootstrap_ok": result.bootstrap.get("n_ok"),
            "date": result.date,
            "seconds": result.seconds,
            "versions": dict(result.versions),
            "command": _command(result, model_id),
        },
    }
    return {
        "model_name": model_id,
        "base_model": model_id,
        "library_name": "icp",
        "tags": ["icp", "decoding", "sampling", "entropy", "calibration", "criticality"],
        "icp": _plain(block),
        "model-index": model_index if model_index is not None else [{"name": model_id, "results": []}],
    }


def _command(result: Any, model_id: str) -> str:
    """The `icp calibrate` command line that reproduces a calibration (prompt files by name)."""
    from .calibrate import DEFAULT_TEMPERATURES
    from .models import DEFAULT_MODEL_NAME

    parts = ["icp calibrate"]
    if model_id != DEFAULT_MODEL_NAME:
        parts.append(f"--model {model_id}")
    if result.prompt_set != "icp.prompts.CALIBRATION_PROMPTS":
        parts.append(f"--prompts-file {result.prompt_set}")
    temperatures = [row["temperature"] for row in result.sweep]
    if temperatures != list(DEFAULT_TEMPERATURES):
        parts.append("--temperatures " + ",".join(f"{t:g}" for t in temperatures))
    parts.append(f"--max-new-tokens {result.max_new_tokens} --seed {result.seed}")
    if result.bootstrap.get("n", 200) != 200:
        parts.append(f"--bootstrap {result.bootstrap.get('n')}")
    return " ".join(parts)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fitted_slope_at(fit: dict[str, Any], entropy: float) -> float | None:
    """|dC/dH| of a card's logistic fit (its `c0, a, h0, w`) at `entropy`; None if the fit is unusable.

    Example:
        >>> from icp.cards import fitted_slope_at
        >>> round(fitted_slope_at({"a": 0.2, "h0": 5.0, "w": 1.0}, 5.0), 4)  # the peak, a / (4 w)
        0.05
    """
    try:
        a, h0, w = float(fit["a"]), float(fit["h0"]), float(fit["w"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (w > 0 and a > 0):
        return None
    from .calibrate import LogisticFit

    return abs(float(LogisticFit(0.0, a, h0, w).slope(entropy)))


def local_sensitivity_at(sweep: list[dict[str, Any]], entropy: float) -> float | None:
    """The sweep's `local_sensitivity` (per-step causal slope) linearly interpolated in H_T at `entropy`;
    None when fewer than two rows recorded it.

    Example:
        >>> from icp.cards import local_sensitivity_at
        >>> rows = [{"tempered_entropy": 1.0, "local_sensitivity": 0.01},
        ...         {"tempered_entropy": 3.0, "local_sensitivity": 0.03}]
        >>> round(local_sensitivity_at(rows, 2.0), 4)
        0.02
    """
    rows = [
        r
        for r in sweep
        if isinstance(r, dict)
        and isinstance(r.get("local_sensitivity"), (int, float))
        and math.isfinite(r["local_sensitivity"])
        and isinstance(r.get("tempered_entropy"), (int, float))
    ]
    if len(rows) < 2:
        return None
    h = np.array([float(r["tempered_entropy"]) for r in rows])
    v = np.array([float(r["local_sensitivity"]) for r in rows])
    order = np.argsort(h)
    value = float(np.interp(entropy, h[order], v[order]))
    return value if value > 0 else None


def _local_slope_sentence(result: Any) -> str:
    at_target = local_sensitivity_at(result.sweep, result.target_entropy)
    if at_target is None:
        return "This calibration did not record it."
    rows = sorted(
        (r for r in result.sweep if math.isfinite(r.get("local_sensitivity", math.nan))),
        key=lambda r: r["tempered_entropy"],
    )
    fitted = fitted_slope_at(result.fit, result.target_entropy)
    return (
        f"Interpolated at H* it is {at_target:.4f} coherence per nat (the tracker's reference σ*), against "
        f"{_fmt(fitted, 4)} for the fitted curve's slope there (a per-step causal slope and a slope across "
        f"temperatures: the same order, not the same number); it rises from {rows[0]['local_sensitivity']:.4f} "
        f"at H_T {rows[0]['tempered_entropy']:.2f} to {rows[-1]['local_sensitivity']:.4f} at H_T "
        f"{rows[-1]['tempered_entropy']:.2f}."
    )


def _card_body(result: Any, model_id: str) -> str:
    r = result
    fit = r.fit
    heat = r.heat_capacity
    lo, hi = r.critical_entropy_ci
    tlo, thi = r.target_entropy_ci
    level = f"{r.ci_level:.0%}"
    rg = r.regimes
    rows = "\n".join(
        f"| {s['temperature']:g} | {s['entropy']:.3f} | {s['tempered_entropy']:.3f} | {s['coherence']:.3f} | "
        f"{s['meta_uncertainty']:.3f} | {s['heat_capacity']:.3f} | {s['loop_rate']:.2f} | {s['divergence_rate']:.2f} | "
        f"{s['tokens']} |"
        for s in r.sweep
    )
    w = fit["w"]
    margin = (r.critical_entropy - r.target_entropy) / w if w > 0 else math.nan
    verdict = heat.get("verdict", "")
    versions = ", ".join(f"{k} {v}" for k, v in r.versions.items())
    thresholds = (
        f"rigid H < {rg['rigid_entropy']:g}, exploratory H >= {rg['exploratory_entropy']:g}, unstable H >= "
        f"{rg['unstable_entropy']:g} or U >= {rg['unstable_meta_uncertainty']:g} with C < {rg['coherent']:g}"
    )
    peaks = (
        f"median {_fmt(heat.get('median'), 2)} (IQR {_fmt(heat.get('q25'), 2)}-{_fmt(heat.get('q75'), 2)}, "
        f"{heat.get('n_steps', 0)} steps)"
    )
    reference = _fmt(local_sensitivity_at(r.sweep, r.target_entropy), 4)
    fitted = _fmt(fitted_slope_at(r.fit, r.target_entropy), 4)
    return f"""
# ICP calibration: {model_id}

This card holds the settings ICP uses for `{model_id}`: `ICP(model)` finds it by
`model.name_or_path` and takes the target entropy and the regime thresholds from it.
Calibrated on {r.date[:10]} in {r.seconds:.0f} s ({versions}).

| quantity | value |
|---|---|
| target entropy H* | **{r.target_entropy:.3f}** nats ({level} CI {_fmt(tlo)}-{_fmt(thi)}) |
| critical entropy H_c | {r.critical_entropy:.3f} nats ({level} CI {_fmt(lo)}-{_fmt(hi)}) |
| regime thresholds (read at T = {r.reference_temperature:g}) | {thresholds} |
| per-step heat-capacity peak T_c | {peaks} |
| tracker's reference σ* (local slope at H*) | {reference} coherence per nat (fitted curve at H*: {fitted}) |

## How the numbers were measured

For each of {len(r.sweep)} temperatures T, the model sampled {r.max_new_tokens} tokens for each of the
{r.n_prompts} prompts of `{r.prompt_set}` (seed {r.seed}) with ICP pinned at T (no min-p, no
dissipation, no de-repetition; loop and divergence stops on, so a row's means cover the tokens
before it stopped: at temperatures where most rows diverge, the means describe the early tokens and
the incoherent end of the curve is flattened). Per prompt and temperature, ICP
recorded the mean raw entropy H, the mean tempered entropy H_T (entropy of softmax(z/T), the quantity
the controller steers), the mean coherence C, the mean meta-uncertainty U and the mean per-step heat
capacity C_v(1) = varentropy.

**C(H).** The mean coherence against the mean tempered entropy, one point per temperature, is fitted
by a logistic C = c0 - a·σ((H_T - h0)/w) (c0 = {fit["c0"]:.3f}, a = {fit["a"]:.3f}, h0 = {fit["h0"]:.3f},
w = {w:.3f} nats, RMSE {fit["rmse"]:.3f}): coherence is an order parameter that falls from one plateau
to another, and the logistic's slope peaks exactly once, at h0. **H_c** = h0 is where |dC/dH| peaks.
**H\\*** sits on the coherent side, where the fitted |dC/dH| has fallen to {fit["slope_fraction"]:g} of its
peak: {margin:.2f} widths below H_c. The intervals come from {r.bootstrap.get("n_ok", 0)} refits on
prompts resampled with replacement.

**Regime thresholds** are per-token quantiles at T = {r.reference_temperature:g}, the sweep temperature
whose mean H_T is nearest H*: rigid entropy = half the lower quartile of H, exploratory = the upper
quartile of H, unstable = the 95th percentile of H and of U, coherent = the 10th percentile of C
(`icp.calibrate.THRESHOLD_RULES`). `rigid_repetition` (loop progress) is not calibrated.

**Heat capacity** (`004_*`: softmax is the Gibbs distribution of energies E = -z at temperature T, and
Var(E)/T² is its heat capacity). For every step of the T = {heat.get("probe_temperature", float("nan")):g} run
the curve C_v(T) was evaluated on a log grid of T and its peak T_c located. Read-out: {verdict.rstrip(".")}.

**Local slope** (`icp.signals.criticality`): at every step ICP also measures, per row, the causal
slope -dE[C]/dH_T = Cov_q[c, y] / Var_q[y] of the step's own distribution (its top 32 tokens) and
averages it over the row. The sweep's `local_sensitivity` column is the median over prompts of each
row's average. {_local_slope_sentence(r)} Online, ICP moves each row's target toward where its own
local slope equals σ* (`icp.TrackingConfig`).

![C(H) and the heat-capacity peaks]({PLOT_FILE})

## The sweep

| T | H | H_T | C | U | C_v(1) | loop rate | divergence rate | tokens |
|---|---|---|---|---|---|---|---|---|
{rows}

## Reproduce

```bash
{card_metadata(r, model_id)["icp"]["calibration"]["command"]} --out-dir model_cards
```
"""


def write_card(result: Any, model_id: str | None = None, folder: str | os.PathLike = "model_cards") -> Path:
    """Writes `<folder>/<slug>/README.md` and the plot `<folder>/<slug>/c_of_h.png` for a calibration.

    An existing card's `model-index` (benchmark results) is kept.

    Args:
        result ([`icp.calibrate.CalibrationResult`]): what `calibrate()` returned.
        model_id (`str`, *optional*): the model id (defaults to `result.model_id`).
        folder (`str` or `os.PathLike`, *optional*, defaults to `"model_cards"`): the folder of cards.

    Returns:
        `Path`: the card's README.md (validated by reading it back).
    """
    import yaml

    from .calibrate import plot_calibration

    model_id = model_id or result.model_id
    if not model_id:
        raise ValueError("`model_id` is empty: pass the model's id (the calibrated model had no `name_or_path`).")
    target = Path(folder) / model_slug(model_id)
    target.mkdir(parents=True, exist_ok=True)
    path = target / CARD_FILE
    model_index = None
    if path.is_file():
        try:
            previous, _ = _read_front_matter(path)
            if isinstance(previous.get("model-index"), list):
                model_index = previous["model-index"]
        except (OSError, ValueError):
            pass
    meta = card_metadata(result, model_id, model_index)
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
    path.write_text(f"---\n{front}---\n{_card_body(result, model_id)}", encoding="utf-8")
    plot_calibration(result, str(target / PLOT_FILE))
    load_card(path)  # what we wrote must read back
    return path
