"""Repetition and diversity of generated text: rep-n, diversity and distinct-n (an `evaluate` metric)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import datasets
import evaluate

_CITATION = """\
@inproceedings{su2022contrastive,
  title     = {A Contrastive Framework for Neural Text Generation},
  author    = {Su, Yixuan and Lan, Tian and Wang, Yan and Yogatama, Dani and Kong, Lingpeng and Collier, Nigel},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2022}
}
@article{su2022empirical,
  title   = {Contrastive Search Is What You Need For Neural Text Generation},
  author  = {Su, Yixuan and Collier, Nigel},
  journal = {arXiv preprint arXiv:2210.14140},
  year    = {2022}
}
@inproceedings{li2016diversity,
  title     = {A Diversity-Promoting Objective Function for Neural Conversation Models},
  author    = {Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill},
  booktitle = {Proceedings of NAACL-HLT},
  year      = {2016}
}
"""

_DESCRIPTION = """\
Repetition of a corpus of generations, as in SimCTG / "Contrastive Search Is What You Need" (Su & Collier
2022): rep-n = 100 x (1 - sum_i |unique n-grams of generation i| / sum_i |n-grams of generation i|), so
repetition is counted within each generation and pooled over the corpus; diversity = prod_n (1 - rep-n/100)
over `ngram_sizes`. distinct-n (Li et al. 2016) = |unique n-grams of the whole corpus| / |n-grams of the
corpus|, which also counts repetition across generations.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the generated continuations, one per prompt.
    ngram_sizes (`tuple` of `int`, *optional*, defaults to `(2, 3, 4)`): the n of the rep-n values; diversity
        is the product over these.
    distinct_sizes (`tuple` of `int`, *optional*, defaults to `(1, 2, 3, 4)`): the n of the distinct-n values.
    tokenizer (`Callable[[str], list[str]]`, *optional*): splits a text into tokens; defaults to whitespace
        splitting (`text.split()`), as the reference implementation does.
    per_example (`bool`, *optional*, defaults to `False`): also return, under `"per_example"`, the counts
        `unique_{n}` and `total_{n}` of every generation, from which rep-n of any resample is
        `100 * (1 - sum(unique_n) / sum(total_n))`.

Returns:
    rep_{n} (`float`): percent of repeated n-grams, in [0, 100], for each n in `ngram_sizes`.
    diversity (`float`): prod_n (1 - rep_n / 100), in [0, 1].
    distinct_{n} (`float`): corpus unique n-grams / corpus n-grams, in [0, 1], for each n in `distinct_sizes`.

    A generation shorter than n contributes no n-gram; with no n-gram at all, rep-n and distinct-n are 0.0.

Examples:

    >>> import evaluate
    >>> metric = evaluate.load("eval/metrics/repetition")
    >>> out = metric.compute(predictions=["a b a b a b", "the cat sat on the mat"])
    >>> round(out["rep_2"], 2), round(out["rep_3"], 2), round(out["rep_4"], 2)
    (30.0, 25.0, 16.67)
    >>> round(out["diversity"], 4), round(out["distinct_1"], 4)
    (0.4375, 0.5833)
    >>> metric.compute(predictions=["a b a b"], ngram_sizes=(2,), per_example=True)["per_example"]
    {'unique_2': [2], 'total_2': [3]}
"""


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    """All contiguous n-grams of `tokens`, in order (empty when there are fewer than n tokens).

    >>> ngrams(["a", "b", "c"], 2)
    [('a', 'b'), ('b', 'c')]
    """
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def ngram_counts(token_lists: Iterable[Sequence[str]], n: int) -> tuple[list[int], list[int]]:
    """Per generation: (number of distinct n-grams, number of n-grams).

    >>> ngram_counts([["a", "b", "a", "b"], ["x"]], 2)
    ([2, 0], [3, 0])
    """
    unique, total = [], []
    for tokens in token_lists:
        grams = ngrams(tokens, n)
        unique.append(len(set(grams)))
        total.append(len(grams))
    return unique, total


def rep_n(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """rep-n in percent: 100 x (1 - sum of per-generation unique n-grams / sum of n-grams); 0.0 without n-grams.

    >>> round(rep_n([["a", "b", "a", "b"]], 2), 4)  # n-grams ab, ba, ab: one of three repeats
    33.3333
    """
    unique, total = ngram_counts(token_lists, n)
    return rep_from_counts(unique, total)


def rep_from_counts(unique: Sequence[int], total: Sequence[int]) -> float:
    """rep-n in percent from per-generation counts (see [`ngram_counts`]); 0.0 when there is no n-gram."""
    n_total = sum(total)
    if n_total == 0:
        return 0.0
    return 100.0 * (1.0 - sum(unique) / n_total)


def distinct_n(token_lists: Iterable[Sequence[str]], n: int) -> float:
    """distinct-n: distinct n-grams of the whole corpus / n-grams of the corpus; 0.0 without n-grams.

    >>> distinct_n([["a", "b"], ["a", "b"]], 1)
    0.5
    """
    seen: set[tuple[str, ...]] = set()
    n_total = 0
    for tokens in token_lists:
        grams = ngrams(tokens, n)
        seen.update(grams)
        n_total += len(grams)
    return len(seen) / n_total if n_total else 0.0


def diversity(reps: Iterable[float]) -> float:
    """prod_n (1 - rep_n / 100) over rep-n values given in percent.

    >>> diversity([50.0, 0.0])
    0.5
    """
    return math.prod(1.0 - r / 100.0 for r in reps)


def _check_sizes(name: str, value: object) -> tuple[int, ...]:
    try:
        sizes = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"`{name}` must be a non-empty sequence of positive ints, got {value!r}") from None
    if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
        raise ValueError(f"`{name}` must be a non-empty sequence of positive ints, got {value!r}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"`{name}` must not repeat a size, got {value!r}")
    return sizes


def tokenize_all(predictions: Sequence[str], tokenizer: Callable[[str], Sequence[str]] | None) -> list[list[str]]:
    """Validates `predictions` and splits each with `tokenizer` (default: whitespace split)."""
    if tokenizer is not None and not callable(tokenizer):
        raise ValueError(f"`tokenizer` must be a callable str -> list[str] or None, got {tokenizer!r}")
    split = tokenizer if tokenizer is not None else str.split
    out = []
    for i, text in enumerate(predictions):
        if not isinstance(text, str):
            raise ValueError(f"`predictions[{i}]` must be a string, got {text!r}")
        tokens = split(text)
        if isinstance(tokens, str) or not isinstance(tokens, Sequence):
            raise ValueError(f"`tokenizer` must return a list of strings, got {type(tokens).__name__} for {text!r}")
        out.append(list(tokens))
    return out


def repetition_scores(
    predictions: Sequence[str],
    ngram_sizes: Iterable[int] = (2, 3, 4),
    distinct_sizes: Iterable[int] = (1, 2, 3, 4),
    tokenizer: Callable[[str], Sequence[str]] | None = None,
    per_example: bool = False,
) -> dict:
    """The metric without `evaluate`: see the module's `_KWARGS_DESCRIPTION` for arguments and keys."""
    if len(predictions) == 0:
        raise ValueError("`predictions` is empty: repetition needs at least one generation")
    ngram_sizes = _check_sizes("ngram_sizes", ngram_sizes)
    distinct_sizes = _check_sizes("distinct_sizes", distinct_sizes)
    token_lists = tokenize_all(predictions, tokenizer)
    out: dict = {}
    details: dict[str, list[int]] = {}
    for n in ngram_sizes:
        unique, total = ngram_counts(token_lists, n)
        out[f"rep_{n}"] = rep_from_counts(unique, total)
        details[f"unique_{n}"], details[f"total_{n}"] = unique, total
    out["diversity"] = diversity(out[f"rep_{n}"] for n in ngram_sizes)
    for n in distinct_sizes:
        out[f"distinct_{n}"] = distinct_n(token_lists, n)
    if per_example:
        out["per_example"] = details
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Repetition(evaluate.Metric):
    """rep-n, diversity and distinct-n of a corpus of generations."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
            reference_urls=[
                "https://github.com/yxuansu/SimCTG",
                "https://github.com/yxuansu/Contrastive_Search_Is_What_You_Need",
            ],
        )

    def _compute(
        self,
        predictions,
        ngram_sizes=(2, 3, 4),
        distinct_sizes=(1, 2, 3, 4),
        tokenizer=None,
        per_example=False,
    ):
        return repetition_scores(predictions, ngram_sizes, distinct_sizes, tokenizer, per_example)
