"""MAUVE on MiniLM sentence embeddings: a documented substitute for GPT-2-large MAUVE (an `evaluate` metric)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

# The MiniLM helpers shared with the other embedding metrics; load_minilm is re-exported, one of this
# module's plain functions. (No comment on the import line: evaluate.load would read it as a source URL.)
from .minilm import check_embed_args, check_texts, embed
from .minilm import load_minilm as load_minilm

_CITATION = """\
@inproceedings{pillutla2021mauve,
  title     = {MAUVE: Measuring the Gap Between Neural Text and Human Text using Divergence Frontiers},
  author    = {Pillutla, Krishna and Swayamdipta, Swabha and Zellers, Rowan and Thickstun, John and
               Welleck, Sean and Choi, Yejin and Harchaoui, Zaid},
  booktitle = {Advances in Neural Information Processing Systems},
  year      = {2021}
}
"""

_DESCRIPTION = """\
MAUVE (Pillutla et al. 2021) between model continuations P and human continuations Q, computed on
all-MiniLM-L6-v2 sentence embeddings instead of the paper's GPT-2-large features, so the numbers are NOT
comparable with published MAUVE. The algorithm follows the reference implementation: embed both sets
(L2-normalised), PCA on their union keeping `explained_variance` of the variance, k-means on the union
(`num_buckets` clusters; "auto" = max(2, round(min(|P|, |Q|) / 10))), histograms p and q (counts / n),
divergence curve over mixtures R = lambda P + (1 - lambda) Q for 25 lambdas in [1e-6, 1 - 1e-6], points
(exp(-c KL(Q||R)), exp(-c KL(P||R))) plus the end points (0, 1) and (1, 0), and MAUVE = the area under
that curve (trapezoid rule, points sorted by x). Small sets (fewer than about 50 texts each) give noisy
values.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): model continuations (P).
    references (`list` of `str`): human continuations (Q). The two sets need not be paired, but `evaluate`
        stores inputs as table columns of one length: for sets of different sizes call `mauve_scores`
        (or `mauve_from_features`) from this module directly.
    seed (`int`, *optional*, defaults to 25): seeds PCA and k-means.
    scaling (`float`, *optional*, defaults to 5.0): the constant c of the divergence curve.
    num_buckets (`int` or `"auto"`, *optional*, defaults to `"auto"`): number of k-means clusters.
    explained_variance (`float`, *optional*, defaults to 0.9): share of variance PCA keeps, in (0, 1).
    batch_size (`int`, *optional*, defaults to 64): embedding batch size.
    device (`str`, *optional*): where MiniLM runs; defaults to `"cpu"`.
    per_example (`bool`, *optional*, defaults to `False`): MAUVE compares two distributions and has no
        per-example value; `"per_example"` is then an empty dict (bootstrap by resampling the texts).

Returns:
    mauve (`float`): in [0, 1]; 1 when the two histograms coincide, near 0 when they do not overlap.

Examples:

    >>> import evaluate
    >>> metric = evaluate.load("eval/metrics/mauve")
    >>> human = [f"The {a} {b} near the old river bridge." for a in ("cat", "dog", "bird", "horse")
    ...          for b in ("slept", "played", "waited", "sang", "ran")]
    >>> metric.compute(predictions=human, references=human)["mauve"] > 0.99
    True
    >>> noise = ["qz xv" + "kjw" * (i % 5) + " pfh zzq" for i in range(20)]
    >>> metric.compute(predictions=noise, references=human)["mauve"] < 0.1
    True
"""


def auto_buckets(n_p: int, n_q: int) -> int:
    """The reference heuristic: max(2, round(min(n_p, n_q) / 10)).

    >>> auto_buckets(1000, 5000), auto_buckets(12, 12)
    (100, 2)
    """
    return max(2, int(round(min(n_p, n_q) / 10)))


def quantize(
    p_features: np.ndarray,
    q_features: np.ndarray,
    num_buckets: int,
    explained_variance: float = 0.9,
    seed: int = 25,
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms (p, q) of the two sets over k-means clusters of their PCA-reduced union.

    Rows are L2-normalised, PCA keeps the fewest leading components that explain `explained_variance` of the
    variance, k-means (scikit-learn, 5 restarts, 500 iterations) runs on the union; each histogram is
    counts / n.
    """
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    p_features, q_features = np.asarray(p_features, np.float64), np.asarray(q_features, np.float64)
    data = np.vstack([q_features, p_features])
    norms = np.linalg.norm(data, axis=1, keepdims=True)
    data = np.divide(data, norms, out=np.zeros_like(data), where=norms > 0)
    if np.allclose(data, data[0]):
        reduced = np.zeros((len(data), 1))  # a single point: PCA has no variance to explain
    else:
        pca = PCA(n_components=None, random_state=seed + 1).fit(data)
        keep = int(np.argmax(np.cumsum(pca.explained_variance_ratio_) >= explained_variance)) + 1
        reduced = pca.transform(data)[:, :keep]
    k = min(num_buckets, len(data))
    with warnings.catch_warnings():
        # duplicate points may leave fewer distinct clusters than k: harmless, the empty bins stay 0
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters=k, n_init=5, max_iter=500, random_state=seed).fit_predict(reduced)
    q_labels, p_labels = labels[: len(q_features)], labels[len(q_features) :]
    p = np.bincount(p_labels, minlength=num_buckets) / len(p_labels)
    q = np.bincount(q_labels, minlength=num_buckets) / len(q_labels)
    return p, q


def kl_multinomial(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p || q) of two histograms; inf when p has mass where q has none.

    >>> kl_multinomial(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    0.0
    """
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if np.any((p > 0) & (q == 0)):
        return float("inf")
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def divergence_curve(p: np.ndarray, q: np.ndarray, scaling: float = 5.0, num_points: int = 25) -> np.ndarray:
    """Points (exp(-c KL(Q||R)), exp(-c KL(P||R))) for R = w P + (1 - w) Q, w in linspace(1e-6, 1 - 1e-6),
    with the end points (1, 0) and (0, 1) of the reference implementation; shape (num_points + 2, 2)."""
    points = [[0.0, np.inf]]
    for w in np.linspace(1e-6, 1 - 1e-6, num_points):
        r = w * p + (1 - w) * q
        points.append([kl_multinomial(q, r), kl_multinomial(p, r)])
    points.append([np.inf, 0.0])
    return np.exp(-scaling * np.asarray(points))


def area_under_curve(curve: np.ndarray) -> float:
    """Trapezoid area under the points of `curve` (shape (m, 2)), sorted by x.

    Among points with equal x the highest comes first, so the area is that of the upper frontier whatever
    order ties arrive in (the reference's plain argsort may pick either).

    >>> area_under_curve(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    1.0
    """
    x, y = curve[:, 0], curve[:, 1]
    order = np.lexsort((-y, x))
    x, y = x[order], y[order]
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2))


def mauve_from_histograms(p: np.ndarray, q: np.ndarray, scaling: float = 5.0) -> float:
    """MAUVE of two histograms over the same buckets.

    >>> mauve_from_histograms(np.array([0.5, 0.5]), np.array([0.5, 0.5]))
    1.0
    >>> mauve_from_histograms(np.array([1.0, 0.0]), np.array([0.0, 1.0])) < 0.01  # disjoint supports
    True
    """
    return area_under_curve(divergence_curve(np.asarray(p, np.float64), np.asarray(q, np.float64), scaling))


def mauve_from_features(
    p_features: np.ndarray,
    q_features: np.ndarray,
    num_buckets: int | str = "auto",
    explained_variance: float = 0.9,
    scaling: float = 5.0,
    seed: int = 25,
) -> float:
    """MAUVE from feature matrices (n_p, d) and (n_q, d): quantize, then [`mauve_from_histograms`]."""
    buckets = auto_buckets(len(p_features), len(q_features)) if num_buckets == "auto" else num_buckets
    p, q = quantize(p_features, q_features, buckets, explained_variance, seed)
    return mauve_from_histograms(p, q, scaling)


def _check_nonempty_texts(name: str, texts: Sequence[object]) -> None:
    if len(texts) == 0:
        raise ValueError(f"`{name}` is empty: MAUVE needs at least one text on each side")
    check_texts(name, texts)


def _check_options(seed: object, scaling: object, num_buckets: object, explained_variance: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be a non-negative int, got {seed!r}")
    if isinstance(scaling, bool) or not isinstance(scaling, (int, float)) or not 0 < scaling < float("inf"):
        raise ValueError(f"`scaling` must be a positive finite number, got {scaling!r}")
    if num_buckets != "auto" and (
        isinstance(num_buckets, bool) or not isinstance(num_buckets, (int, np.integer)) or num_buckets < 2
    ):
        raise ValueError(f'`num_buckets` must be "auto" or an int >= 2, got {num_buckets!r}')
    if isinstance(explained_variance, bool) or not isinstance(explained_variance, (int, float)):
        raise ValueError(f"`explained_variance` must be a float in (0, 1), got {explained_variance!r}")
    if not 0 < explained_variance < 1:
        raise ValueError(f"`explained_variance` must be a float in (0, 1), got {explained_variance!r}")


def mauve_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    seed: int = 25,
    scaling: float = 5.0,
    num_buckets: int | str = "auto",
    explained_variance: float = 0.9,
    batch_size: int = 64,
    device: str | None = None,
    per_example: bool = False,
) -> dict:
    """The metric without `evaluate`: see the module's `_KWARGS_DESCRIPTION` for arguments and keys."""
    _check_nonempty_texts("predictions", predictions)
    _check_nonempty_texts("references", references)
    _check_options(seed, scaling, num_buckets, explained_variance)
    check_embed_args(batch_size, device)
    vectors = embed(list(predictions) + list(references), batch_size, device)
    p_features, q_features = vectors[: len(predictions)], vectors[len(predictions) :]
    out: dict = {
        "mauve": mauve_from_features(p_features, q_features, num_buckets, explained_variance, float(scaling), seed)
    }
    if per_example:
        out["per_example"] = {}
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Mauve(evaluate.Metric):
    """MAUVE between model and human continuations, on MiniLM embeddings."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://arxiv.org/abs/2102.01454", "https://github.com/krishnap25/mauve"],
        )

    def _compute(
        self,
        predictions,
        references,
        seed=25,
        scaling=5.0,
        num_buckets="auto",
        explained_variance=0.9,
        batch_size=64,
        device=None,
        per_example=False,
    ):
        return mauve_scores(
            predictions, references, seed, scaling, num_buckets, explained_variance, batch_size, device, per_example
        )
