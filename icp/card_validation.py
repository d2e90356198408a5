"""What a valid model card is: the format's constants and the checks of a card's front matter.

Every check raises `ValueError` naming the bad key, its value and what is allowed. The front matter is
checked as `huggingface_hub.ModelCardData` reads it ([`check_front_matter`]), so a card passes before and
after a `huggingface_hub.ModelCard.load(path).save(path)` alike. [`icp.cards.validate_card`] runs these
checks on a card or its front matter; [`icp.cards`] documents the format.
"""

from __future__ import annotations

import math
import numbers
import re
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCardData

from .config import RegimeThresholds
from .fingerprint import ModelFingerprint

__all__ = [
    "CARD_TAGS",
    "CARD_VERSION",
    "DEFAULT_LICENSE",
    "LIBRARY_NAMES",
    "REQUIRED_TAG",
    "card_fingerprints",
    "card_model_id",
    "check_front_matter",
    "check_model_index",
]

CARD_VERSION = 3  # 3: the optional `icp.fingerprint` (cards of version 2 load unchanged)
LIBRARY_NAMES = ("transformers",)
DEFAULT_LICENSE = "apache-2.0"
REQUIRED_TAG = "icp"
CARD_TAGS = (REQUIRED_TAG, "decoding", "sampling", "entropy", "calibration", "criticality")
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*\Z")
_REGIME_FIELDS = tuple(RegimeThresholds().to_dict())
_SWEEP_FIELDS = ("temperature", "entropy", "tempered_entropy", "coherence", "meta_uncertainty", "loop_rate")


# ----------------------------------------------------------------------------- what a card names
def card_model_id(metadata: dict[str, Any]) -> str | None:
    """The model id a card's front matter names: `model-index[0].name` (where the Hub keeps it), else
    `model_name` (what `huggingface_hub.ModelCardData` writes when there is no `model-index`).

    Args:
        metadata (`dict`): a card's front matter.

    Returns:
        `str` or `None` (neither key is there).

    Example:
        >>> from icp.cards import card_model_id
        >>> card_model_id({"model-index": [{"name": "org/model", "results": []}]})
        'org/model'
        >>> card_model_id({"model_name": "org/model"})
        'org/model'
    """
    index = metadata.get("model-index")
    if isinstance(index, list) and index and isinstance(index[0], dict) and index[0].get("name"):
        return str(index[0]["name"])
    name = metadata.get("model_name")
    return str(name) if name else None


def card_fingerprints(metadata: dict[str, Any], path: Path | None = None) -> list[ModelFingerprint]:
    """The fingerprints a card records (`icp.fingerprint`: a mapping or a list of mappings); `[]` without one.

    Args:
        metadata (`dict`): a card's front matter.
        path (`Path`, *optional*): named in the error messages.

    Raises:
        ValueError: a recorded fingerprint is malformed (the message names the field).

    Example:
        >>> from icp.cards import card_fingerprints, find_card
        >>> card = find_card("HuggingFaceTB/SmolLM2-135M-Instruct", required=True)  # the shipped card
        >>> [str(fp) for fp in card_fingerprints(card.metadata)]
        ['llama:49152x576x30:f1ce6524c8b90121']
    """
    block = metadata.get("icp") if isinstance(metadata, dict) else None
    if not isinstance(block, dict) or block.get("fingerprint") is None:
        return []
    value = block["fingerprint"]
    entries = value if isinstance(value, list) else [value]
    if not entries:
        raise ValueError(f"{_where(path)}`icp.fingerprint` (=[]) has to be a mapping or a non-empty list of them.")
    out = []
    for i, entry in enumerate(entries):
        name = f"icp.fingerprint[{i}]" if isinstance(value, list) else "icp.fingerprint"
        try:
            out.append(ModelFingerprint.from_dict(entry, name=name))
        except ValueError as err:
            raise ValueError(f"{_where(path)}{err}") from err
    return out


# ----------------------------------------------------------------------------- the checks of one value
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


# ----------------------------------------------------------------------------- the front matter
def check_front_matter(metadata: Any, path: Path | None = None) -> dict[str, Any]:
    """The checks of [`icp.cards.validate_card`] on a card's front matter, in the order its docstring lists them.

    Args:
        metadata (`dict`): the front matter (raw, or as `huggingface_hub` reads it).
        path (`Path`, *optional*): named in the error messages.

    Returns:
        `dict`: the front matter as `huggingface_hub` reads it (`ModelCardData(**front_matter).to_dict()`).

    Example:
        >>> from icp.card_validation import check_front_matter
        >>> check_front_matter({"library_name": "transformers"})
        Traceback (most recent call last):
        ...
        ValueError: Model card: the model id is missing: give `model-index[0].name` (or `model_name` ...
    """
    meta = _hub_metadata(_mapping(metadata, "front matter", path), path)
    _check_hub_fields(meta, path)
    block = _mapping(_require(meta, "icp", "", path), "icp", path)
    _check_entropies(block, path)
    _check_regimes(block, path)
    _check_sweep(block, path)
    _check_calibration(block, path)
    card_fingerprints(meta, path)  # optional; a malformed one raises
    return meta


def _hub_metadata(meta: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """The front matter as `huggingface_hub.ModelCardData` reads it and a `ModelCard.save` writes it."""
    if "model-index" in meta:
        check_model_index(meta["model-index"], path)
        name = meta.get("model_name")
        if name is not None and name != meta["model-index"][0]["name"]:
            raise ValueError(
                f"{_where(path)}`model_name` (={name!r}) and `model-index[0].name` "
                f"(={meta['model-index'][0]['name']!r}) disagree: huggingface_hub keeps only the `model-index` "
                "name on save; give both the model id (or drop `model_name`)."
            )
    bad = [k for k in meta if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{_where(path)}the front matter's keys {bad!r} have to be strings.")
    try:
        return ModelCardData(**meta).to_dict()
    except (TypeError, ValueError) as err:
        raise ValueError(f"{_where(path)}huggingface_hub cannot read the front matter: {err}") from err


def _check_hub_fields(meta: dict[str, Any], path: Path | None) -> None:
    """The Hub's keys: the model id, `base_model`, `library_name`, `license` and `tags`."""
    model_id = card_model_id(meta)
    if model_id is None:
        raise ValueError(
            f"{_where(path)}the model id is missing: give `model-index[0].name` (or `model_name` without a "
            f"`model-index`); the front matter has {sorted(meta)}."
        )
    if not model_id.strip():
        raise ValueError(f"{_where(path)}the model id (`model-index[0].name`) (={model_id!r}) has to be non-empty.")
    _check_base_model(_require(meta, "base_model", "", path), model_id, path)
    library = _require(meta, "library_name", "", path)
    if library not in LIBRARY_NAMES:
        raise ValueError(
            f"{_where(path)}`library_name` (={library!r}) has to be one of {list(LIBRARY_NAMES)} (the library "
            f"that loads the model; ICP is named in `tags`). Cards of card_version 1 said 'icp'."
        )
    _check_license(meta, path)
    tags = _require(meta, "tags", "", path)
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags) or REQUIRED_TAG not in tags:
        raise ValueError(
            f"{_where(path)}`tags` (={tags!r}) has to be a list of non-empty strings that holds {REQUIRED_TAG!r} "
            f"(e.g. {list(CARD_TAGS)})."
        )


def _check_base_model(base: Any, model_id: str, path: Path | None) -> None:
    ids = base if isinstance(base, list) else [base]
    if not ids or not all(isinstance(b, str) and b.strip() for b in ids):
        raise ValueError(
            f"{_where(path)}`base_model` (={base!r}) has to be the id of the model the card calibrates, "
            f"{model_id!r} (a string, or a list of strings that holds it)."
        )
    if model_id.lower() not in (b.lower() for b in ids):
        raise ValueError(
            f"{_where(path)}`base_model` (={base!r}) has to be the model the card calibrates, {model_id!r} "
            "(its `model-index[0].name`)."
        )


def _check_license(meta: dict[str, Any], path: Path | None) -> None:
    license_id = _require(meta, "license", "", path)
    if not isinstance(license_id, str) or _LICENSE_ID.match(license_id) is None:
        raise ValueError(
            f"{_where(path)}`license` (={license_id!r}) has to be a Hub license id: lower-case letters, digits, "
            f"'.', '+' and '-' (e.g. {DEFAULT_LICENSE!r}, 'mit', 'other'; "
            "https://huggingface.co/docs/hub/repositories-licenses)."
        )
    if license_id == "other":
        name = meta.get("license_name")
        if not isinstance(name, str) or _LICENSE_ID.match(name) is None:
            raise ValueError(
                f"{_where(path)}`license_name` (={name!r}) has to be a lower-case license id (e.g. 'my-license-1.0') "
                "when `license` is 'other'."
            )


# ----------------------------------------------------------------------------- the `icp:` block
def _check_entropies(block: dict[str, Any], path: Path | None) -> None:
    """`icp.target_entropy` <= `icp.critical_entropy` (both finite, >= 0) and their intervals."""
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


def _check_regimes(block: dict[str, Any], path: Path | None) -> None:
    """`icp.regimes`: every [`icp.RegimeThresholds`] field, numeric, no other, and ordered."""
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


def _check_sweep(block: dict[str, Any], path: Path | None) -> None:
    """`icp.sweep`: a non-empty list of rows, each with the numeric fields the card's table shows."""
    sweep = _require(block, "sweep", "icp.", path)
    if not isinstance(sweep, list) or not sweep:
        raise ValueError(f"{_where(path)}`icp.sweep` (={sweep!r}) has to be a non-empty list of rows.")
    for i, row in enumerate(sweep):
        row = _mapping(row, f"icp.sweep[{i}]", path)
        for key in _SWEEP_FIELDS:
            _number(_require(row, key, f"icp.sweep[{i}].", path), f"icp.sweep[{i}].{key}", path)


def _check_calibration(block: dict[str, Any], path: Path | None) -> None:
    """`icp.calibration`, the provenance: `prompt_set`, `n_prompts`, `max_new_tokens`, `seed`, `date`, `versions`."""
    prefix = "icp.calibration."
    calibration = _mapping(_require(block, "calibration", "icp.", path), "icp.calibration", path)
    prompt_set = _require(calibration, "prompt_set", prefix, path)
    if not isinstance(prompt_set, str) or not prompt_set:
        raise ValueError(f"{_where(path)}`icp.calibration.prompt_set` (={prompt_set!r}) has to be a non-empty string.")
    _integer(_require(calibration, "n_prompts", prefix, path), "icp.calibration.n_prompts", path, 1)
    _integer(_require(calibration, "max_new_tokens", prefix, path), "icp.calibration.max_new_tokens", path, 1)
    _integer(_require(calibration, "seed", prefix, path), "icp.calibration.seed", path, 0)
    date = _require(calibration, "date", prefix, path)
    if not isinstance(date, str) or not date:
        raise ValueError(f"{_where(path)}`icp.calibration.date` (={date!r}) has to be an ISO 8601 date string.")
    _mapping(_require(calibration, "versions", prefix, path), "icp.calibration.versions", path)


# ----------------------------------------------------------------------------- `model-index`
def check_model_index(index: Any, path: Path | None = None) -> None:
    """Checks a `model-index` that `huggingface_hub.ModelCardData` parses, with one model name (precise errors).

    Args:
        index (`list`): the `model-index` of a card's front matter.
        path (`Path`, *optional*): named in the error messages.

    Raises:
        ValueError: the first malformed entry, result or metric, named by its position.

    Example:
        >>> from icp.card_validation import check_model_index
        >>> check_model_index([{"name": "org/model", "results": []}])
        >>> check_model_index([{"results": []}])
        Traceback (most recent call last):
        ...
        ValueError: Model card: `model-index[0].name` is missing; the card has ['results'] there.
    """
    if not isinstance(index, list) or not index:
        raise ValueError(
            f"{_where(path)}`model-index` (={index!r}) has to be a non-empty list of "
            "`{name: <model id>, results: [...]}` entries."
        )
    names = []
    for i, entry in enumerate(index):
        entry = _mapping(entry, f"model-index[{i}]", path)
        name = _require(entry, "name", f"model-index[{i}].", path)
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"{_where(path)}`model-index[{i}].name` (={name!r}) has to be the model id, a non-empty string."
            )
        names.append(name)
        results = _require(entry, "results", f"model-index[{i}].", path)
        if not isinstance(results, list):
            raise ValueError(f"{_where(path)}`model-index[{i}].results` (={results!r}) has to be a list.")
        for j, result in enumerate(results):
            _check_model_index_result(result, f"model-index[{i}].results[{j}]", path)
    for i, name in enumerate(names[1:], start=1):
        if name != names[0]:
            raise ValueError(
                f"{_where(path)}`model-index[{i}].name` (={name!r}) differs from `model-index[0].name` "
                f"(={names[0]!r}): every entry has to name the model id (huggingface_hub keeps one name on save)."
            )


def _check_model_index_result(result: Any, where: str, path: Path | None) -> None:
    """One benchmark result: `{task: {type}, dataset: {type, name}, metrics: [{type, value}]}`."""
    result = _mapping(result, where, path)
    task = _mapping(_require(result, "task", f"{where}.", path), f"{where}.task", path)
    _require(task, "type", f"{where}.task.", path)
    dataset = _mapping(_require(result, "dataset", f"{where}.", path), f"{where}.dataset", path)
    _require(dataset, "type", f"{where}.dataset.", path)
    _require(dataset, "name", f"{where}.dataset.", path)
    metrics = _require(result, "metrics", f"{where}.", path)
    if not isinstance(metrics, list):
        raise ValueError(
            f"{_where(path)}`{where}.metrics` (={metrics!r}) has to be a list of `{{type, value}}` entries."
        )
    for k, metric in enumerate(metrics):
        metric = _mapping(metric, f"{where}.metrics[{k}]", path)
        _require(metric, "type", f"{where}.metrics[{k}].", path)
        _require(metric, "value", f"{where}.metrics[{k}].", path)
