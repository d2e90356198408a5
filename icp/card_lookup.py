"""Finding a model's card: by its name ([`find_card`]), then by what the model is ([`find_card_for_model`]).

The search path ([`default_search_dirs`]): the folders in `$ICP_MODEL_CARDS`, then the `model_cards/`
folder of the checkout the package runs from. In each folder a card is `<slug>/README.md`
([`qualified_slug`], then [`model_slug`]), or any card whose model id equals the one asked for; a model
found by no name is matched by its fingerprint (`icp.fingerprint`). [`icp.cards`] documents the order.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from .card_reader import CARD_FILE, ModelCard, load_card, read_front_matter
from .card_validation import card_fingerprints, card_model_id
from .fingerprint import model_architecture, model_fingerprint

__all__ = [
    "ENV_VAR",
    "CardNotFoundError",
    "ICPCardWarning",
    "available_cards",
    "default_search_dirs",
    "describe_available_cards",
    "find_card",
    "find_card_for_model",
    "model_slug",
    "qualified_slug",
]

ENV_VAR = "ICP_MODEL_CARDS"
_REPO_CARDS = Path(__file__).resolve().parent.parent / "model_cards"


class ICPCardWarning(UserWarning):
    """ICP found no model card for its model and uses the documented defaults (once per model and process)."""


class CardNotFoundError(LookupError):
    """No model card for a model id; the message lists the cards that exist."""


# ----------------------------------------------------------------------------- slugs
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


# ----------------------------------------------------------------------------- the search path
def default_search_dirs() -> list[Path]:
    """Folders searched for cards: `$ICP_MODEL_CARDS` (os.pathsep-separated), then the checkout's `model_cards/`."""
    dirs = [Path(p).expanduser() for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p.strip()]
    if _REPO_CARDS.is_dir():
        dirs.append(_REPO_CARDS)
    return dirs


def _search_dirs(search_dirs: list[str | os.PathLike] | None) -> list[Path]:
    return [Path(d) for d in search_dirs] if search_dirs is not None else default_search_dirs()


def _card_files(search_dirs: list[Path]) -> list[Path]:
    """Every `<folder>/<slug>/README.md` in the search folders, folder by folder, sorted within a folder."""
    files = []
    for d in search_dirs:
        if Path(d).is_dir():
            files += sorted(p for p in Path(d).glob(f"*/{CARD_FILE}") if p.is_file())
    return files


def available_cards(search_dirs: list[str | os.PathLike] | None = None) -> list[tuple[str, Path]]:
    """`(model id, card path)` of every card in the search folders (unreadable ones as `("<invalid>", path)`)."""
    out = []
    for path in _card_files(_search_dirs(search_dirs)):
        try:
            meta, _ = read_front_matter(path)
            out.append((card_model_id(meta) or "<no model id>", path))
        except (OSError, ValueError):
            out.append(("<invalid>", path))
    return out


def describe_available_cards(search_dirs: list[str | os.PathLike] | None = None) -> str:
    """One sentence listing the cards that exist and where ICP looked."""
    dirs = _search_dirs(search_dirs)
    cards = available_cards(dirs)
    where = ", ".join(str(d) for d in dirs) or f"nowhere (set ${ENV_VAR})"
    if not cards:
        return f"No model cards in {where}."
    listed = "; ".join(f"{model_id} ({path.parent.name})" for model_id, path in cards)
    return f"Available cards: {listed} (searched {where})."


# ----------------------------------------------------------------------------- by name, then by fingerprint
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
    dirs = _search_dirs(search_dirs)
    slugs = list(dict.fromkeys([qualified_slug(model_id), model_slug(model_id)]))
    for d in dirs:
        for slug in slugs:
            path = d / slug / CARD_FILE
            if path.is_file():
                return load_card(path)
    wanted = str(model_id).lower()
    for path in _card_files(dirs):
        try:
            meta, _ = read_front_matter(path)
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
    dirs = _search_dirs(search_dirs)
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
            meta, _ = read_front_matter(path)
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
