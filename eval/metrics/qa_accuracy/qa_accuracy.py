"""Open-domain QA accuracy with abstentions: alias containment, exact match, abstention rate (an `evaluate` metric)."""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Iterable, Sequence

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{rajpurkar2016squad,
  title     = {SQuAD: 100,000+ Questions for Machine Comprehension of Text},
  author    = {Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle = {Proceedings of EMNLP},
  year      = {2016}
}
@inproceedings{lee2019latent,
  title     = {Latent Retrieval for Weakly Supervised Open Domain Question Answering},
  author    = {Lee, Kenton and Chang, Ming-Wei and Toutanova, Kristina},
  booktitle = {Proceedings of ACL},
  year      = {2019}
}
@article{kadavath2022language,
  title   = {Language Models (Mostly) Know What They Know},
  author  = {Kadavath, Saurav and others},
  journal = {arXiv preprint arXiv:2207.05221},
  year    = {2022}
}
"""

_DESCRIPTION = """\
Accuracy of free-form answers against gold aliases (NQ-open style), with abstentions. Texts are normalised as
in SQuAD (lowercase, punctuation removed, articles a/an/the removed, whitespace collapsed; curly apostrophes
are first made ASCII and Unicode punctuation is removed too). An answer is correct when some normalised alias
occurs in the normalised answer as a whole-word substring; it is an exact match when the normalised answer,
its first line or its first sentence equals some normalised alias. An answer is an abstention when
`abstained[i]` is set (e.g. ICP stopped the row) or when it reads as one ("I don't know", "no comment", ...):
a multi-word abstention phrase inside its first sentence, or the whole answer being an abstention phrase.
An abstention is never correct.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the model's answers.
    references (`list` of `list` of `str`): the gold aliases of each question (at least one each).
    abstained (`list` of `bool`, *optional*): per answer, whether the decoder chose to abstain.
    abstention_phrases (`list` of `str`, *optional*): replaces the default abstention phrases
        (`DEFAULT_ABSTENTION_PHRASES`).
    per_example (`bool`, *optional*, defaults to `False`): also return
        `{"per_example": {"correct": [...], "abstained": [...]}}` (lists of bools).

Returns:
    accuracy (`float`): correct / all answers.
    exact_match (`float`): exact matches / all answers.
    abstention_rate (`float`): abstentions / all answers.
    answered_accuracy (`float`): correct / answers that are not abstentions; NaN when every answer abstains.

Examples:

    >>> import evaluate
    >>> metric = evaluate.load("eval/metrics/qa_accuracy")
    >>> out = metric.compute(
    ...     predictions=["The Eiffel Tower.", "It was built in 1889 by Gustave Eiffel.", "I don't know.", "Lyon"],
    ...     references=[["Eiffel Tower"], ["1889"], ["Paris"], ["Paris"]],
    ...     per_example=True,
    ... )
    >>> out["accuracy"], out["exact_match"], out["abstention_rate"], out["answered_accuracy"]
    (0.5, 0.25, 0.25, 0.6666666666666666)
    >>> out["per_example"]["correct"]
    [True, True, False, False]
    >>> metric.compute(predictions=["Paris"], references=[["Paris"]], abstained=[True])["answered_accuracy"]
    nan
"""

DEFAULT_ABSTENTION_PHRASES = (
    "i don't know",
    "i do not know",
    "i dont know",
    "i'm not sure",
    "i am not sure",
    "i have no comment",
    "no comment",
    "cannot answer",
    "can't answer",
    "unknown",
    "not sure",
)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch).startswith("P")


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lowercase, drop punctuation, drop articles, collapse whitespace.

    >>> normalize_answer("  The  U.S.A.’s capital!")
    'usas capital'
    """
    text = text.translate(_APOSTROPHES).lower()
    text = "".join(ch for ch in text if not _is_punct(ch))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def first_line(text: str) -> str:
    """The first non-empty line of `text` (stripped), or "".

    >>> first_line("\\n  Paris\\nbecause ...")
    'Paris'
    """
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def first_sentence(text: str) -> str:
    """The first sentence of the first line: up to the first '.', '!' or '?' followed by whitespace.

    >>> first_sentence("Paris. It is the capital.")
    'Paris.'
    """
    return _SENTENCE_END.split(first_line(text), maxsplit=1)[0]


def contains_alias(prediction: str, aliases: Iterable[str]) -> bool:
    """Whether some normalised alias occurs in the normalised prediction on word boundaries.

    >>> contains_alias("It is in Paris, France", ["paris"]), contains_alias("Parisian", ["Paris"])
    (True, False)
    """
    padded = f" {normalize_answer(prediction)} "
    return any(norm and f" {norm} " in padded for norm in map(normalize_answer, aliases))


def exact_match(prediction: str, aliases: Iterable[str]) -> bool:
    """Whether the normalised prediction, its first line or its first sentence equals a normalised alias.

    >>> exact_match("Paris.\\nIt is the capital of France.", ["paris"]), exact_match("in Paris", ["Paris"])
    (True, False)
    """
    gold = {normalize_answer(a) for a in aliases} - {""}
    candidates = {normalize_answer(t) for t in (prediction, first_line(prediction), first_sentence(prediction))}
    return bool(gold & candidates)


def _abstention_text(text: str) -> str:
    text = text.translate(_APOSTROPHES).lower()
    text = "".join(" " if _is_punct(ch) and ch != "'" else ch for ch in text)
    return " ".join(text.split())


def is_abstention(prediction: str, phrases: Iterable[str] = DEFAULT_ABSTENTION_PHRASES) -> bool:
    """Whether the answer reads as an abstention: the whole answer is an abstention phrase, or a multi-word
    phrase occurs (on word boundaries, case-insensitive, apostrophes normalised) in its first sentence.

    >>> is_abstention("I’m not sure."), is_abstention("Sorry, I do not know who that is.")
    (True, True)
    >>> is_abstention("Unknown"), is_abstention("The Unknown Soldier"), is_abstention("Paris. Not sure though.")
    (True, False, False)
    """
    whole = _abstention_text(prediction)
    first = f" {_abstention_text(first_sentence(prediction))} "
    for phrase in phrases:
        norm = _abstention_text(phrase)
        if norm and (whole == norm or (" " in norm and f" {norm} " in first)):
            return True
    return False


def _check_bools(name: str, values: Sequence[object] | None, n: int) -> list[bool] | None:
    if values is None:
        return None
    values = list(values)
    if len(values) != n:
        raise ValueError(f"`{name}` must have one bool per prediction ({n}), got {len(values)}")
    for i, v in enumerate(values):
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"`{name}[{i}]` must be a bool, got {v!r}")
    return [bool(v) for v in values]


def qa_scores(
    predictions: Sequence[str],
    references: Sequence[Sequence[str]],
    abstained: Sequence[bool] | None = None,
    abstention_phrases: Iterable[str] | None = None,
    per_example: bool = False,
) -> dict:
    """The metric without `evaluate`: see the module's `_KWARGS_DESCRIPTION` for arguments and keys."""
    n = len(predictions)
    if n == 0:
        raise ValueError("`predictions` is empty: QA accuracy needs at least one answer")
    if len(references) != n:
        raise ValueError(f"`references` must have one list of aliases per prediction ({n}), got {len(references)}")
    flags = _check_bools("abstained", abstained, n) or [False] * n
    if abstention_phrases is None:
        phrases: tuple[str, ...] = DEFAULT_ABSTENTION_PHRASES
    elif isinstance(abstention_phrases, str) or not all(isinstance(p, str) for p in abstention_phrases):
        raise ValueError(f"`abstention_phrases` must be a list of strings, got {abstention_phrases!r}")
    else:
        phrases = tuple(abstention_phrases)
    correct, exact, abstain = [], [], []
    for i, (pred, aliases) in enumerate(zip(predictions, references)):
        if not isinstance(pred, str):
            raise ValueError(f"`predictions[{i}]` must be a string, got {pred!r}")
        if aliases is None or isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
            raise ValueError(f"`references[{i}]` must be a list of alias strings, got {aliases!r}")
        if not any(normalize_answer(a) for a in aliases):
            raise ValueError(f"`references[{i}]` has no alias left after normalisation, got {list(aliases)!r}")
        skip = flags[i] or is_abstention(pred, phrases)
        abstain.append(skip)
        correct.append(not skip and contains_alias(pred, aliases))
        exact.append(not skip and exact_match(pred, aliases))
    answered = n - sum(abstain)
    out: dict = {
        "accuracy": sum(correct) / n,
        "exact_match": sum(exact) / n,
        "abstention_rate": sum(abstain) / n,
        "answered_accuracy": sum(correct) / answered if answered else float("nan"),
    }
    if per_example:
        out["per_example"] = {"correct": correct, "abstained": abstain}
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class QAAccuracy(evaluate.Metric):
    """Alias-containment accuracy, exact match and abstention rate of free-form answers."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            reference_urls=["https://github.com/google-research-datasets/natural-questions/tree/master/nq_open"],
        )

    def _compute(self, predictions, references, abstained=None, abstention_phrases=None, per_example=False):
        return qa_scores(predictions, references, abstained, abstention_phrases, per_example)
