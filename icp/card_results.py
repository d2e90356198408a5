"""Benchmark results in a model card: the `model-index` entries and the Markdown section that shows them.

A card's calibration (the `icp:` block and the body `icp calibrate` renders) and its benchmark results
have different owners: `icp calibrate` writes the first, the benchmark suite (`eval/card_results.py`)
the second. [`write_card_results`] replaces a card's `model-index` results and its results section and
leaves the calibration as it is; [`icp.cards.write_card`] keeps both when it rewrites the calibration.

The results section is the part of the body between [`RESULTS_START`] and [`RESULTS_END`] (two HTML
comments, invisible on the Hub), placed at the end of the body.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData
from huggingface_hub import ModelCard as HubModelCard

from .card_reader import load_card, read_front_matter, validate_card
from .card_validation import card_model_id

RESULTS_START = "<!-- icp-results:start -->"
RESULTS_END = "<!-- icp-results:end -->"


def results_section(body: str) -> str | None:
    """The results section of a card's body, markers included, or `None` when it has none.

    Args:
        body (`str`): the Markdown after a card's front matter.

    Returns:
        `str` or `None`: the text from [`RESULTS_START`] to [`RESULTS_END`], both included.

    Raises:
        ValueError: a start marker without an end marker after it, or either marker twice.

    Example:
        >>> from icp.card_results import RESULTS_END, RESULTS_START, results_section
        >>> section = f"{RESULTS_START}\\n| a |\\n{RESULTS_END}"
        >>> results_section(f"# Card\\n{section}\\n") == section
        True
        >>> results_section("# Card\\n") is None
        True
    """
    starts, ends = body.count(RESULTS_START), body.count(RESULTS_END)
    if starts == ends == 0:
        return None
    if starts != 1 or ends != 1 or body.index(RESULTS_END) < body.index(RESULTS_START):
        raise ValueError(
            f"the card's results section needs one `{RESULTS_START}` followed by one `{RESULTS_END}`; "
            f"the body has {starts} start and {ends} end markers."
        )
    return body[body.index(RESULTS_START) : body.index(RESULTS_END) + len(RESULTS_END)]


def with_results_section(body: str, section: str | None) -> str:
    """`body` with its results section replaced by `section` (appended when it has none; removed for `None`).

    Args:
        body (`str`): the Markdown after a card's front matter.
        section (`str` or `None`): the new section, markers included (as [`results_section`] returns it).

    Returns:
        `str`: the new body (`body` itself when there is nothing to replace or add).

    Example:
        >>> from icp.card_results import RESULTS_END, RESULTS_START, with_results_section
        >>> new = f"{RESULTS_START}\\nnew\\n{RESULTS_END}"
        >>> old = f"{RESULTS_START}\\nold\\n{RESULTS_END}"
        >>> with_results_section(f"# Card\\n\\n{old}\\n", new) == f"# Card\\n\\n{new}\\n"
        True
    """
    if section is not None and results_section(section) != section:
        raise ValueError(f"`section` has to start with `{RESULTS_START}` and end with `{RESULTS_END}`.")
    old = results_section(body)
    if old is None and section is None:
        return body
    kept = body if old is None else body.replace(old, "")
    kept = kept.rstrip("\n") + "\n"
    return kept if section is None else f"{kept}\n{section}\n"


def write_card_results(path: str | Path, eval_results: list[EvalResult], section: str) -> Path:
    """Replaces the benchmark results of the card at `path`: its `model-index` results and its results section.

    The calibration (the `icp:` block and the rest of the body) is left as it is; the card is written by
    `huggingface_hub` and read back through [`icp.cards.load_card`], and nothing is written when the new
    card would not validate.

    Args:
        path (`str` or `Path`): a card's README.md (it must exist and be a valid card).
        eval_results (`list[huggingface_hub.EvalResult]`): the results; an empty list clears them.
        section (`str`): the Markdown that shows them, markers included.

    Returns:
        `Path`: the card's path.

    Example:
        >>> import shutil, tempfile
        >>> from pathlib import Path
        >>> from huggingface_hub import EvalResult
        >>> from icp.card_results import RESULTS_END, RESULTS_START, write_card_results
        >>> from icp.cards import find_card, load_card
        >>> card = Path(tempfile.mkdtemp()) / "README.md"
        >>> _ = shutil.copy(find_card("HuggingFaceTB/SmolLM2-135M-Instruct", required=True).path, card)
        >>> result = EvalResult(task_type="text-generation", dataset_type="knowledge_countries",
        ...                     dataset_name="knowledge_countries", metric_type="accuracy", metric_value=0.48)
        >>> _ = write_card_results(card, [result], f"{RESULTS_START}\\n| accuracy | 0.48 |\\n{RESULTS_END}")
        >>> load_card(card).metadata["model-index"][0]["results"][0]["metrics"]
        [{'type': 'accuracy', 'value': 0.48}]
    """
    path = Path(path)
    meta, body = read_front_matter(path)
    model_id = card_model_id(meta)
    if not model_id:
        raise ValueError(f"Model card {path}: it names no model (`model-index[0].name` or `model_name`).")
    kept = {key: value for key, value in meta.items() if key not in ("model-index", "model_name")}
    new_meta = ModelCardData(**kept, model_name=model_id, eval_results=list(eval_results)).to_dict()
    validate_card(new_meta, path=path)  # nothing is written for a card that would not read back
    front = ModelCardData(**new_meta).to_yaml()
    HubModelCard(f"---\n{front}\n---\n{with_results_section(body, section)}").save(path)
    load_card(path)  # what we wrote must read back
    return path
