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
   install: `<repo>/icp/` → `<repo>/model_cards`).

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

This module is the public face of the cards; each job lives in its own module, and every name below is
imported from here:

- `icp.card_validation`: what a valid card is (the format's constants, [`card_model_id`],
  [`card_fingerprints`] and the checks [`validate_card`] runs);
- `icp.card_reader`: reading a card ([`ModelCard`], [`load_card`], [`validate_card`]) and the
  sensitivities read off it ([`fitted_slope_at`], [`local_sensitivity_at`]);
- `icp.card_lookup`: finding a model's card (the search path, slugs, [`find_card`], then
  [`find_card_for_model`] by fingerprint);
- `icp.card_render`: writing a card from a calibration ([`card_metadata`], the Markdown body,
  [`write_card`]);
- `icp.card_results`: the card's benchmark results, its `model-index` and the results section of its body
  ([`write_card_results`], which `eval/card_results.py` calls; [`write_card`] keeps both).
"""

from __future__ import annotations

from .card_lookup import (
    ENV_VAR,
    CardNotFoundError,
    ICPCardWarning,
    available_cards,
    default_search_dirs,
    describe_available_cards,
    find_card,
    find_card_for_model,
    model_slug,
    qualified_slug,
)
from .card_reader import (
    CARD_FILE,
    PLOT_FILE,
    ModelCard,
    fitted_slope_at,
    load_card,
    local_sensitivity_at,
    validate_card,
)
from .card_render import card_metadata, write_card
from .card_results import write_card_results
from .card_validation import CARD_VERSION as CARD_VERSION  # public, outside `__all__` (as before)
from .card_validation import REQUIRED_TAG as REQUIRED_TAG  # public, outside `__all__` (as before)
from .card_validation import (
    CARD_TAGS,
    DEFAULT_LICENSE,
    LIBRARY_NAMES,
    card_fingerprints,
    card_model_id,
)

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
    "write_card_results",
]
