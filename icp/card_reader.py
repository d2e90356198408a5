"""Reading a model card: [`ModelCard`] (the parsed, validated card), [`load_card`] and [`validate_card`].

A card file is parsed by `huggingface_hub` (`metadata_load`, the Hub's own regex and YAML loader, then
`ModelCardData`) and checked by [`icp.card_validation`]. The sensitivities a card implies
([`fitted_slope_at`], [`local_sensitivity_at`]) are read off its fit and its sweep here too, for the card
and for the Markdown [`icp.card_render`] writes. [`icp.cards`] documents the format.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from huggingface_hub import metadata_load
from huggingface_hub.repocard import REGEX_YAML_BLOCK

from .calibration.fit import LogisticFit
from .card_validation import card_fingerprints, card_model_id, check_front_matter
from .config import RegimeThresholds
from .fingerprint import ModelFingerprint

__all__ = [
    "CARD_FILE",
    "PLOT_FILE",
    "ModelCard",
    "fitted_slope_at",
    "load_card",
    "local_sensitivity_at",
    "read_front_matter",
    "validate_card",
]

CARD_FILE = "README.md"
PLOT_FILE = "c_of_h.png"


def read_front_matter(path: Path) -> tuple[dict[str, Any], str]:
    """The raw front matter (parsed by `huggingface_hub.metadata_load`, the Hub's own regex and YAML
    loader) and the Markdown body of a card file.

    Args:
        path (`Path`): a card's README.md.

    Returns:
        `tuple[dict, str]`: the front matter, unchecked, and the Markdown after it.

    Raises:
        ValueError: no front matter, or one that is not a YAML mapping.

    Example:
        >>> from icp.card_reader import read_front_matter
        >>> from icp.cards import find_card
        >>> meta, body = read_front_matter(find_card("HuggingFaceTB/SmolLM2-135M-Instruct", required=True).path)
        >>> meta["library_name"], body.lstrip().splitlines()[0]
        ('transformers', '# ICP calibration: HuggingFaceTB/SmolLM2-135M-Instruct')
    """
    try:
        meta = metadata_load(path)
    except yaml.YAMLError as err:
        raise ValueError(f"Model card {path}: the front matter is not valid YAML: {err}") from err
    except ValueError as err:  # the YAML block is not a mapping
        raise ValueError(f"Model card {path}: the front matter has to be a mapping ({err}).") from err
    if meta is None:
        raise ValueError(
            f"Model card {path}: no YAML front matter (the file must start with a '---' line and a mapping)."
        )
    text = Path(path).read_text(encoding="utf-8-sig")
    return meta, text[REGEX_YAML_BLOCK.search(text).end() :]


# ----------------------------------------------------------------------------- the card
@dataclass
class ModelCard:
    """A parsed, validated model card.

    Args:
        model_id (`str`): the model it calibrates ([`card_model_id`]: `model-index[0].name`, else
            `model_name`).
        target_entropy (`float`): H*, nats of the tempered distribution.
        critical_entropy (`float`): H_c.
        critical_entropy_ci (`tuple[float, float]`): its confidence interval.
        regimes ([`icp.RegimeThresholds`]): calibrated regime thresholds.
        icp (`dict`): the whole `icp:` block (sweep, fit, heat capacity, calibration provenance).
        metadata (`dict`): the whole front matter as `huggingface_hub` reads it
            (`huggingface_hub.ModelCardData(**front_matter).to_dict()`: what a `ModelCard.save` writes).
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
        """Validates front matter ([`validate_card`]) and builds the card.

        Args:
            metadata (`dict`): the front matter (raw, or as `huggingface_hub` reads it).
            body (`str`, *optional*): the Markdown after the front matter.
            path (`Path`, *optional*): where it was read from (named in errors).

        Example:
            >>> from icp.cards import ModelCard, find_card
            >>> shipped = find_card("HuggingFaceTB/SmolLM2-135M-Instruct", required=True)  # the shipped card
            >>> card = ModelCard.from_metadata(shipped.metadata)
            >>> card.model_id, card.target_entropy == shipped.target_entropy
            ('HuggingFaceTB/SmolLM2-135M-Instruct', True)
        """
        metadata = validate_card(metadata, path=path)
        block = metadata["icp"]
        return cls(
            model_id=str(card_model_id(metadata)),
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
    def fingerprints(self) -> list[ModelFingerprint]:
        """The fingerprints of the model the card calibrated (`icp.fingerprint`); `[]` on an older card."""
        return card_fingerprints(self.metadata, self.path)

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


def validate_card(card: ModelCard | dict[str, Any], path: Path | None = None) -> dict[str, Any]:
    """Checks a card's front matter; raises `ValueError` naming the first bad key, its value and what is allowed.

    The front matter is read the way `huggingface_hub.ModelCardData` reads it, so a card passes before and
    after a `huggingface_hub.ModelCard.load(path).save(path)` alike. Required:

    - the model id: `model-index[0].name` (a `model-index` the Hub can parse: a non-empty list of
      entries, all with the same `name`, each with a `results` list of `{task: {type}, dataset: {type,
      name}, metrics: [{type, value}]}`), or `model_name` when there is no `model-index` (both given:
      they have to agree);
    - `base_model`: the model id (a string, or a list that holds it);
    - `library_name`: one of [`LIBRARY_NAMES`] (`transformers`);
    - `license`: a Hub license id (lower case, e.g. `apache-2.0`; `other` needs `license_name`);
    - `tags`: a list of strings that holds `icp`;
    - an `icp:` mapping with `target_entropy` and `critical_entropy` (finite, >= 0, target <= critical:
      the target sits on the coherent side), `critical_entropy_ci` (`[low, high]`, low <= high), `regimes`
      (every [`icp.RegimeThresholds`] field, numeric and ordered), `sweep` (a non-empty list of rows with
      numeric `temperature`, `entropy`, `tempered_entropy`, `coherence`, `meta_uncertainty`,
      `loop_rate`) and `calibration` (`prompt_set`, `n_prompts`, `max_new_tokens`, `seed`, `date`,
      `versions`).

    Optional: `icp.fingerprint` (card_version 3), the fingerprint of the model the card calibrated
    ([`icp.fingerprint.ModelFingerprint`]: `version`, `model_type`, `vocab_size`, `hidden_size`, `num_layers`,
    `embedding_signs`), a mapping or a list of mappings.

    The checks themselves live in [`icp.card_validation`] ([`icp.card_validation.check_front_matter`]).

    Args:
        card ([`ModelCard`] or `dict`): a card or its front matter.
        path (`Path`, *optional*): named in the error messages.

    Returns:
        `dict`: the front matter as `huggingface_hub` reads it (`ModelCardData(**front_matter).to_dict()`).

    Example:
        >>> from icp.cards import find_card, validate_card
        >>> meta = dict(find_card("HuggingFaceTB/SmolLM2-135M-Instruct", required=True).metadata)
        >>> validate_card(meta)["library_name"]
        'transformers'
        >>> validate_card({**meta, "library_name": "icp"})
        Traceback (most recent call last):
        ...
        ValueError: Model card: `library_name` (='icp') has to be one of ['transformers'] ...
    """
    if isinstance(card, ModelCard):
        return check_front_matter(card.metadata, path if path is not None else card.path)
    return check_front_matter(card, path)


def load_card(path: str | os.PathLike) -> ModelCard:
    """Reads and validates a card: its folder or its README.md.

    The front matter is parsed by `huggingface_hub` (`metadata_load`, then `ModelCardData`), so a card
    saved again by `huggingface_hub.ModelCard.load(path).save(path)` reads the same.

    Args:
        path (`str` or `os.PathLike`): a card's folder or its README.md (a local path: the Hub is never
            asked).

    Returns:
        [`ModelCard`].

    Raises:
        FileNotFoundError: no card at `path`.
        ValueError: the card is malformed (the message names the key, its value and what is allowed).

    Example:
        >>> from icp.cards import find_card, load_card
        >>> path = find_card("HuggingFaceTB/SmolLM2-135M-Instruct", required=True).path  # the shipped card
        >>> card = load_card(path.parent)
        >>> card.model_id, card.metadata["library_name"], card.target_entropy
        ('HuggingFaceTB/SmolLM2-135M-Instruct', 'transformers', 1.9424)
    """
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"`path` (={str(path)!r}) is not a model card: no such file.")
    meta, body = read_front_matter(path)
    return ModelCard.from_metadata(meta, body, path)


# ----------------------------------------------------------------------------- sensitivities
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
