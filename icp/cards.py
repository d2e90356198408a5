"""Model cards: a model's calibrated ICP settings, in Hugging Face model-card format.

A card is a folder `<slug>/` holding `README.md` (YAML front matter, then prose) and the C(H) plot
`c_of_h.png`. The front matter is Hub metadata: `base_model` (the model the card calibrates),
`library_name: transformers`, `license`, `tags` (with `icp`), ICP's own `icp:` block (the calibrated
values and their provenance) and a `model-index` whose `name` is the model id (and which holds
benchmark-suite results). `icp calibrate` writes cards ([`write_card`]); [`icp.ICP`] reads the card of
its model ([`find_card`]) and takes its target entropy and regime thresholds.

Cards are read and written with `huggingface_hub` ([`huggingface_hub.ModelCard`],
[`huggingface_hub.ModelCardData`]), and written exactly as `huggingface_hub` writes them: a card
loaded with `huggingface_hub.ModelCard.load(path)` and saved again is byte for byte the same file. What
`huggingface_hub` rewrites on save, and how ICP reads a card regardless:

- `model_name` is not kept next to a `model-index`: the Hub reads the model name from
  `model-index[*].name` and writes it only there (one entry, named after the last entry). ICP reads the
  model id the way the Hub does: `model-index[0].name`, else `model_name` (entries have to agree).
- `model-index` is parsed into `eval_results` and written back normalised (last key of the front
  matter, `None` fields dropped, results merged into one entry); a `model-index` the Hub cannot parse
  makes `ModelCard.load` fail, so [`validate_card`] rejects it.
- Flow-style YAML (`[a, b]`, `{k: v}`) becomes block style; `tags` lose duplicates; the other keys
  keep their order. ICP's calibration stays one nested mapping under `icp:`, which the Hub keeps as is.

Where cards are looked up, in order:

1. the folders in `$ICP_MODEL_CARDS` (separated by `os.pathsep`);
2. the `model_cards/` folder of the checkout the package runs from (a source checkout or an editable
   install: `<repo>/icp/cards.py` → `<repo>/model_cards`).

A wheel install ships no cards: set `ICP_MODEL_CARDS` to a folder of cards, or pass `card=` to `ICP`.

Slugs: the model id's last path component, lower-cased (`HuggingFaceTB/SmolLM2-135M-Instruct` →
`smollm2-135m-instruct`); the org-qualified `huggingfacetb--smollm2-135m-instruct` is tried first, and
a card in any folder whose model id (`model-index` name) equals the id is found too.

By what the model is ([`find_card_for_model`], what `ICP(model)` uses): when `model.name_or_path` finds no
card (the model was loaded from a folder or a file under another name), the card whose
`icp.fingerprint` equals the model's fingerprint ([`icp.fingerprint.model_fingerprint`]: architecture,
vocabulary and a dtype-robust checksum of a few embedding rows) is used, in the same folder order. A
different model (other weights, even of the same architecture) has another fingerprint and gets no card.
`card_version` 3 added the optional `icp.fingerprint` (a mapping, or a list of mappings for several
builds of the model); cards without it load as before and are found by name only.
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
from .fingerprint import ModelFingerprint, model_architecture, model_fingerprint

__all__ = [
    "CARD_FILE",
    "CARD_TAGS",
    "DEFAULT_LICENSE",
    "ENV_VAR",
    "LIBRARY_NAMES",
    "PLOT_FILE",
    "CardNotFoundError",
    "ICPCardWarning",
    "ModelCard",
    "available_cards",
    "card_metadata",
    "card_model_id",
    "default_search_dirs",
    "describe_available_cards",
    "card_fingerprints",
    "find_card",
    "find_card_for_model",
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
CARD_VERSION = 3  # 3: the optional `icp.fingerprint` (cards of version 2 load unchanged)
LIBRARY_NAMES = ("transformers",)
DEFAULT_LICENSE = "apache-2.0"
REQUIRED_TAG = "icp"
CARD_TAGS = (REQUIRED_TAG, "decoding", "sampling", "entropy", "calibration", "criticality")
_LICENSE_ID = re.compile(r"[a-z0-9][a-z0-9.+-]*\Z")
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
    """The raw front matter (parsed by `huggingface_hub.metadata_load`, the Hub's own regex and YAML
    loader) and the Markdown body of a card file."""
    import yaml
    from huggingface_hub import metadata_load
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

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


def available_cards(search_dirs: list[str | os.PathLike] | None = None) -> list[tuple[str, Path]]:
    """`(model id, card path)` of every card in the search folders (unreadable ones as `("<invalid>", path)`)."""
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else default_search_dirs()
    out = []
    for path in _card_files(dirs):
        try:
            meta, _ = _read_front_matter(path)
            out.append((card_model_id(meta) or "<no model id>", path))
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
    whose model id ([`card_model_id`]: `model-index[0].name`, else `model_name`) equals `model_id`
    (case-insensitive). A card that is found but invalid raises.

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
        if str(card_model_id(meta) or "").lower() == wanted:
            return load_card(path)
    if required:
        raise CardNotFoundError(
            f"No ICP model card for `model_id` (={model_id!r}); looked for the folders {slugs}. "
            f"{describe_available_cards(dirs)} Write one with `icp calibrate --model {model_id}`."
        )
    return None


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


def find_card_for_model(model: Any, search_dirs: list[str | os.PathLike] | None = None) -> ModelCard | None:
    """The model card of a model: by its `name_or_path` ([`find_card`]), else by its fingerprint.

    The fingerprint ([`icp.fingerprint.model_fingerprint`]) finds the card of a model loaded under any path
    (e.g. the default model read with `AutoModelForCausalLM.from_pretrained(folder, gguf_file=...)`): the
    first card, in search order, whose `icp.fingerprint` equals the model's. It is computed only when the
    name found nothing and some card records the model's architecture (model type, vocabulary, hidden size,
    layers), so a model no card could match costs nothing. Unreadable cards are skipped here.

    Args:
        model (`PreTrainedModel`): the model.
        search_dirs (`list`, *optional*): folders to search; defaults to [`default_search_dirs`].

    Returns:
        [`ModelCard`] or `None`.

    Example:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from icp.cards import find_card_for_model
        >>> _ = torch.manual_seed(0)
        >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
        >>> find_card_for_model(model) is None  # a random model: no name, no card with its fingerprint
        True
    """
    dirs = [Path(d) for d in search_dirs] if search_dirs is not None else default_search_dirs()
    name = getattr(model, "name_or_path", None)
    if isinstance(name, str) and name:
        found = find_card(name, dirs)
        if found is not None:
            return found
    architecture = model_architecture(model)
    if architecture is None:
        return None
    candidates = []
    for path in _card_files(dirs):
        try:
            meta, _ = _read_front_matter(path)
            recorded = card_fingerprints(meta, path)
        except (OSError, ValueError):
            continue
        if any(fp.architecture == architecture for fp in recorded):
            candidates.append((path, recorded))
    if not candidates:
        return None
    fingerprint = model_fingerprint(model)
    for path, recorded in candidates:
        if fingerprint is not None and fingerprint in recorded:
            return load_card(path)
    return None


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
        path = path if path is not None else card.path
        meta = card.metadata
    else:
        meta = card
    meta = _hub_metadata(_mapping(meta, "front matter", path), path)
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
    card_fingerprints(meta, path)  # optional; a malformed one raises
    return meta


def _check_model_index(index: Any, path: Path | None) -> None:
    """A `model-index` that `huggingface_hub.ModelCardData` parses, with one model name (precise errors)."""
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
            where = f"model-index[{i}].results[{j}]"
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
    for i, name in enumerate(names[1:], start=1):
        if name != names[0]:
            raise ValueError(
                f"{_where(path)}`model-index[{i}].name` (={name!r}) differs from `model-index[0].name` "
                f"(={names[0]!r}): every entry has to name the model id (huggingface_hub keeps one name on save)."
            )


def _hub_metadata(meta: dict[str, Any], path: Path | None) -> dict[str, Any]:
    """The front matter as `huggingface_hub.ModelCardData` reads it and a `ModelCard.save` writes it."""
    from huggingface_hub import ModelCardData

    if "model-index" in meta:
        _check_model_index(meta["model-index"], path)
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


def card_metadata(
    result: Any,
    model_id: str,
    model_index: list | None = None,
    *,
    license: str = DEFAULT_LICENSE,
    fingerprint: Any = None,
) -> dict[str, Any]:
    """The front matter of the card for a [`icp.calibrate.CalibrationResult`], as `huggingface_hub`
    writes it (`ModelCardData(...).to_dict()`: `base_model`, `library_name`, `license`, `tags`, `icp`,
    `model-index`, in that order).

    Args:
        result ([`icp.calibrate.CalibrationResult`]): what `calibrate()` returned.
        model_id (`str`): the model the card calibrates (`base_model` and `model-index[0].name`).
        model_index (`list`, *optional*): benchmark results to keep (a previous card's `model-index`; its
            results are kept, renamed to `model_id`).
        license (`str`, *optional*, defaults to `"apache-2.0"`): the card's Hub license id.
        fingerprint ([`icp.fingerprint.ModelFingerprint`], `dict` or `list`, *optional*): the calibrated
            model's fingerprint (`icp.fingerprint`); defaults to `result.fingerprint` when the result has one.

    Returns:
        `dict`: the front matter.

    Example:
        >>> from icp.calibrate import calibrate
        >>> from icp.cards import card_metadata
        >>> result = calibrate(model, tokenizer)  # doctest: +SKIP
        >>> list(card_metadata(result, "org/model"))  # doctest: +SKIP
        ['base_model', 'library_name', 'license', 'tags', 'icp', 'model-index']
    """
    heat = {k: v for k, v in result.heat_capacity.items() if k != "peaks"}
    sweep = [{k: v for k, v in row.items() if k != "seconds"} for row in result.sweep]
    if fingerprint is None:
        fingerprint = getattr(result, "fingerprint", None)
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
    if fingerprint is not None:
        entries = fingerprint if isinstance(fingerprint, list) else [fingerprint]
        recorded = [e.to_dict() if isinstance(e, ModelFingerprint) else dict(e) for e in entries]
        block["fingerprint"] = recorded[0] if len(recorded) == 1 else recorded
    from huggingface_hub import ModelCardData
    from huggingface_hub.repocard_data import model_index_to_eval_results

    eval_results = []
    if model_index:
        _check_model_index(model_index, None)
        eval_results = model_index_to_eval_results(model_index)[1]
    data = ModelCardData(
        base_model=model_id,
        library_name=LIBRARY_NAMES[0],
        license=license,
        tags=list(CARD_TAGS),
        model_name=model_id,  # written as `model-index[0].name`
        eval_results=eval_results,
        icp=_plain(block),
    )
    return data.to_dict()


def _command(result: Any, model_id: str) -> str:
    """The `icp calibrate` command line that reproduces a calibration (prompt files by name)."""
    from .calibrate import DEFAULT_TEMPERATURES
    from .models import DEFAULT_MODEL_NAME, EMBEDDED_MODELS

    parts = ["icp calibrate"]
    embedded = {spec.model_id: spec.name for spec in EMBEDDED_MODELS.values()}
    if model_id != DEFAULT_MODEL_NAME:
        parts.append(f"--model {embedded.get(model_id, model_id)}")  # an embedded model by its name (offline)
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
`model.name_or_path` (or, under another name, by the model's fingerprint, `icp.fingerprint`) and takes
the target entropy and the regime thresholds from it.
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


def write_card(
    result: Any,
    model_id: str | None = None,
    folder: str | os.PathLike = "model_cards",
    *,
    license: str = DEFAULT_LICENSE,
) -> Path:
    """Writes `<folder>/<slug>/README.md` and the plot `<folder>/<slug>/c_of_h.png` for a calibration.

    The card is written by `huggingface_hub` (`ModelCardData.to_yaml`, `ModelCard.save`), so loading it
    with `huggingface_hub.ModelCard.load(path)` and saving it again gives the same file. An existing
    card's `model-index` (benchmark results) is kept; one that `huggingface_hub` cannot parse raises
    before anything is written. An existing card's `icp.fingerprint` is kept when `result` has none.

    Args:
        result ([`icp.calibrate.CalibrationResult`]): what `calibrate()` returned.
        model_id (`str`, *optional*): the model id (defaults to `result.model_id`).
        folder (`str` or `os.PathLike`, *optional*, defaults to `"model_cards"`): the folder of cards.
        license (`str`, *optional*, defaults to `"apache-2.0"`): the card's Hub license id.

    Returns:
        `Path`: the card's README.md (validated by reading it back).

    Example:
        >>> import tempfile
        >>> from icp.calibrate import calibrate
        >>> from icp.cards import load_card, write_card
        >>> result = calibrate(model, tokenizer)  # doctest: +SKIP
        >>> path = write_card(result, folder=tempfile.mkdtemp())  # doctest: +SKIP
        >>> load_card(path).target_entropy == result.target_entropy  # doctest: +SKIP
        True
    """
    from huggingface_hub import ModelCard as HubModelCard
    from huggingface_hub import ModelCardData

    from .calibrate import plot_calibration

    model_id = model_id or result.model_id
    if not model_id:
        raise ValueError("`model_id` is empty: pass the model's id (the calibrated model had no `name_or_path`).")
    target = Path(folder) / model_slug(model_id)
    path = target / CARD_FILE
    model_index = None
    fingerprint = getattr(result, "fingerprint", None)
    if path.is_file():
        try:
            previous, _ = _read_front_matter(path)
        except (OSError, ValueError):
            previous = {}
        if fingerprint is None:  # the same model id: keep what identifies the model
            previous_icp = previous.get("icp") if isinstance(previous.get("icp"), dict) else {}
            fingerprint = previous_icp.get("fingerprint")
        if "model-index" in previous:
            model_index = previous["model-index"]
            try:
                _check_model_index(model_index, path)
            except ValueError as err:
                raise ValueError(
                    f"{err} The card is not rewritten: fix or remove its `model-index` (benchmark results it "
                    "keeps), then write it again."
                ) from err
    meta = card_metadata(result, model_id, model_index, license=license, fingerprint=fingerprint)
    validate_card(meta, path=path)  # nothing is written for a bad card (a bad `license`, say)
    target.mkdir(parents=True, exist_ok=True)
    front = ModelCardData(**meta).to_yaml()
    HubModelCard(f"---\n{front}\n---\n{_card_body(result, model_id)}").save(path)
    plot_calibration(result, str(target / PLOT_FILE))
    load_card(path)  # what we wrote must read back
    return path
