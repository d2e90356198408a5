"""Share of generations that end in a repeated cycle of tokens (an `evaluate` metric)."""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{holtzman2020curious,
  title     = {The Curious Case of Neural Text Degeneration},
  author    = {Holtzman, Ari and Buys, Jan and Du, Li and Forbes, Maxwell and Choi, Yejin},
  booktitle = {International Conference on Learning Representations},
  year      = {2020}
}
"""

_DESCRIPTION = """\
Loop rate: the share of generations whose generated token ids end in a loop, the degenerate repetition of
Holtzman et al. (2020). The rule is icp's own (`icp.signals.trailing_cycle`, `icp.LoopConfig`): for a period
p <= `max_period`, let r_p be the number of trailing positions i with token[i] == token[i - p]. The
generation ends in a loop when, for some p, r_p >= max((min_repeats - 1) * p, min_tokens): equivalently,
the last k = max(p * min_repeats, min_tokens + p) tokens are periodic with period p, i.e. one cycle of p
tokens is seen at least `min_repeats` times in a row and at least `min_tokens` tokens repeat an earlier one.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `int`): generated token ids per row, prompt, EOS and padding stripped.
    reached_limit (`list` of `bool`, *optional*): per row, whether the generation hit `max_new_tokens`.
    max_period (`int`, *optional*, defaults to 32): longest cycle searched for (LoopConfig.max_period).
    min_repeats (`int`, *optional*, defaults to 3): sightings of the cycle that make a loop, >= 2
        (LoopConfig.min_repeats).
    min_tokens (`int`, *optional*, defaults to 16): least number of tokens that repeat an earlier one
        (LoopConfig.min_loop_tokens), so that "the the" or a short refrain does not count.
    per_example (`bool`, *optional*, defaults to `False`): also return `{"per_example": {"looped": [...]}}`.

Returns:
    loop_rate (`float`): share of rows ending in a loop, in [0, 1].
    loop_at_limit_rate (`float`): share of rows that reached the limit and end in a loop, in [0, 1]; only
        when `reached_limit` is given.

    A row that ICP stopped because it looped still ends in a cycle and counts as looped.

Examples:

    >>> import evaluate
    >>> metric = evaluate.load("eval/metrics/loop_rate")
    >>> rows = [[1, 2, 3] * 10, list(range(30)), [5] * 20]
    >>> out = metric.compute(predictions=rows, reached_limit=[True, True, False], per_example=True)
    >>> round(out["loop_rate"], 4), round(out["loop_at_limit_rate"], 4), out["per_example"]["looped"]
    (0.6667, 0.3333, [True, False, True])
    >>> metric.compute(predictions=[[7] * 10])  # 9 repeated tokens < min_tokens = 16
    {'loop_rate': 0.0}
"""


def trailing_runs(tokens: Sequence[int], max_period: int) -> np.ndarray:
    """r_p for p = 1..max_period: how many trailing positions i have tokens[i] == tokens[i - p].

    >>> trailing_runs([9, 1, 2, 1, 2, 1, 2], 3).tolist()
    [0, 4, 0]
    """
    t = np.asarray(tokens, dtype=np.int64)
    runs = np.zeros(max_period, dtype=np.int64)
    for p in range(1, min(max_period, len(t) - 1) + 1):
        mismatch = np.flatnonzero(t[p:][::-1] != t[:-p][::-1])
        runs[p - 1] = mismatch[0] if mismatch.size else len(t) - p
    return runs


def loop_window(max_period: int, min_repeats: int, min_tokens: int) -> int:
    """Trailing tokens the rule needs to see (as `icp.LoopConfig.window`).

    >>> loop_window(32, 3, 16)
    96
    """
    return max(max_period * min_repeats, min_tokens + max_period)


def loop_period(tokens: Sequence[int], max_period: int = 32, min_repeats: int = 3, min_tokens: int = 16) -> int:
    """The shortest period p of a loop that ends `tokens`, or 0 when it does not end in a loop.

    >>> loop_period([4, 1, 2, 3] + [1, 2, 3] * 6, max_period=8, min_repeats=3, min_tokens=6)
    3
    """
    _check_int("max_period", max_period, 1)
    _check_int("min_repeats", min_repeats, 2)
    _check_int("min_tokens", min_tokens, 1)
    window = list(tokens[-loop_window(max_period, min_repeats, min_tokens) :])
    runs = trailing_runs(window, max_period)
    periods = np.arange(1, max_period + 1)
    needed = np.maximum((min_repeats - 1) * periods, min_tokens)
    hits = np.flatnonzero(runs >= needed)
    return int(periods[hits[0]]) if hits.size else 0


def ends_in_loop(tokens: Sequence[int], max_period: int = 32, min_repeats: int = 3, min_tokens: int = 16) -> bool:
    """Whether `tokens` ends in a loop (icp's rule, see the module description).

    >>> ends_in_loop([1, 2, 3] * 10), ends_in_loop(list(range(40)))
    (True, False)
    """
    return loop_period(tokens, max_period, min_repeats, min_tokens) > 0


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")


def loop_scores(
    predictions: Sequence[Sequence[int]],
    reached_limit: Sequence[bool] | None = None,
    max_period: int = 32,
    min_repeats: int = 3,
    min_tokens: int = 16,
    per_example: bool = False,
) -> dict:
    """The metric without `evaluate`: see the module's `_KWARGS_DESCRIPTION` for arguments and keys."""
    if len(predictions) == 0:
        raise ValueError("`predictions` is empty: the loop rate needs at least one generation")
    _check_int("max_period", max_period, 1)
    _check_int("min_repeats", min_repeats, 2)
    _check_int("min_tokens", min_tokens, 1)
    for i, row in enumerate(predictions):
        if row is None or isinstance(row, str):
            raise ValueError(f"`predictions[{i}]` must be a list of token ids, got {row!r}")
        if any(isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0 for t in row):
            raise ValueError(f"`predictions[{i}]` must hold non-negative int token ids, got {list(row)[:20]!r}")
    if reached_limit is not None:
        reached_limit = list(reached_limit)
        if len(reached_limit) != len(predictions):
            raise ValueError(
                f"`reached_limit` must have one bool per prediction ({len(predictions)}), got {len(reached_limit)}"
            )
        bad = [v for v in reached_limit if not isinstance(v, (bool, np.bool_))]
        if bad:
            raise ValueError(f"`reached_limit` must hold bools, got {bad[0]!r}")
    looped = [ends_in_loop(row, max_period, min_repeats, min_tokens) for row in predictions]
    out: dict = {"loop_rate": float(np.mean(looped))}
    if reached_limit is not None:
        out["loop_at_limit_rate"] = float(np.mean([lo and bool(r) for lo, r in zip(looped, reached_limit)]))
    if per_example:
        out["per_example"] = {"looped": looped}
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LoopRate(evaluate.Metric):
    """Share of generations that end in a repeated cycle of tokens."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("int64"))}),
            reference_urls=["https://arxiv.org/abs/1904.09751"],
        )

    def _compute(
        self,
        predictions,
        reached_limit=None,
        max_period=32,
        min_repeats=3,
        min_tokens=16,
        per_example=False,
    ):
        return loop_scores(predictions, reached_limit, max_period, min_repeats, min_tokens, per_example)
