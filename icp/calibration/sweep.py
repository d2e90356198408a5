"""The temperature sweep: every calibration prompt sampled at each fixed temperature, with ICP pinned there.

ICP is pinned at each T (`min_temperature = max_temperature = initial_temperature = T`, no min-p, no
dissipation, no de-repetition, stopping criteria on, exactly as `examples/measure_defaults.py` does), so its
trace records, per token, the raw entropy H, the tempered entropy H_T, coherence C, meta-uncertainty U and
the varentropy V, and per row why it stopped. [`run_sweep`] collects them in a [`SweepRecord`];
[`sweep_rows`] summarises each temperature.

This is the only calibration module that runs a model: it imports ICP's processors inside the function
that builds ICP, so the others stay importable from [`icp.cards`] without an import cycle.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..progress import StepProgress
from .fit import nanmean
from .heat import HEAT_CAPACITY_GRID, HeatCapacityProbe, log_grid

__all__ = [
    "DEFAULT_TEMPERATURES",
    "SweepRecord",
    "check_calibration_args",
    "encode",
    "probe_temperature",
    "run_sweep",
    "sweep_rows",
]

#: Ten temperatures from 0.3 to 2.0, denser around T = 1.0-1.35 where the default model's coherence falls.
DEFAULT_TEMPERATURES: tuple[float, ...] = (0.3, 0.5, 0.7, 0.85, 1.0, 1.1, 1.2, 1.35, 1.6, 2.0)
#: The per-token signals a sweep keeps: record key -> the trace's key.
_TRACE_KEYS = {"entropy": "entropy", "tempered": "tempered_entropy", "C": "coherence", "U": "meta_uncertainty",
               "V": "varentropy"}  # fmt: skip


def check_calibration_args(
    prompts: Sequence[str],
    temperatures: Sequence[float],
    max_new_tokens: int,
    n_bootstrap: int,
    slope_fraction: float,
    batch_size: int,
) -> list[float]:
    """Checks [`icp.calibrate.calibrate`]'s arguments, each error naming its argument; returns the sorted,
    distinct temperatures.

    Example:
        >>> check_calibration_args(["a", "b"], [1.0, 0.5, 2.0, 1.0], 8, 0, 0.25, 4)
        [0.5, 1.0, 2.0]
    """
    if isinstance(prompts, str) or len(prompts) < 2 or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError(
            f"`prompts` (={len(prompts) if not isinstance(prompts, str) else prompts!r}) has to be a list of at least "
            "2 non-empty strings: the confidence interval resamples prompts."
        )
    temps = [float(t) for t in temperatures]
    if len(set(temps)) < 3 or not all(math.isfinite(t) and t > 0 for t in temps):
        raise ValueError(
            f"`temperatures` (={list(temperatures)}) has to hold at least 3 distinct positive values "
            "(the C(H) fit has 4 parameters)."
        )
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 2:
        raise ValueError(f"`max_new_tokens` (={max_new_tokens!r}) has to be an integer >= 2.")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        raise ValueError(f"`n_bootstrap` (={n_bootstrap!r}) has to be a non-negative integer.")
    if not 0 < slope_fraction < 1:
        raise ValueError(f"`slope_fraction` (={slope_fraction!r}) has to be in (0, 1).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"`batch_size` (={batch_size!r}) has to be a positive integer.")
    return sorted(set(temps))


def encode(tokenizer: Any, prompts: Sequence[str], chat: bool) -> dict[str, torch.Tensor]:
    """`prompts` as one left-padded batch, through the chat template when `chat` and the tokenizer has one."""
    if chat and getattr(tokenizer, "chat_template", None):
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
            for p in prompts
        ]
    else:
        texts = list(prompts)
    side = getattr(tokenizer, "padding_side", "left")
    tokenizer.padding_side = "left"  # decoder-only batches continue from the right end
    try:
        return tokenizer(texts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = side


def probe_temperature(temperatures: Sequence[float], heat_capacity_temperature: float) -> float:
    """The swept temperature nearest `heat_capacity_temperature` in log T (the lower one on a tie): the run
    whose logits the per-step heat-capacity peaks are measured on.

    Example:
        >>> probe_temperature([0.5, 0.85, 1.2, 2.0], 1.0)
        0.85
    """
    return min(temperatures, key=lambda t: (abs(math.log(t / heat_capacity_temperature)), t))


def _last_finite(values: np.ndarray) -> list[float]:
    """Each row's last finite value (rows with none are skipped)."""
    out = []
    for row in values:
        finite = row[np.isfinite(row)]
        if finite.size:
            out.append(float(finite[-1]))
    return out


def _median_or_nan(values: list[float]) -> float:
    return round(float(np.median(values)), 5) if values else math.nan


@dataclass
class SweepRecord:
    """What the sweep recorded, per temperature `i` of `temperatures` (sorted) and prompt `j`.

    Args:
        temperatures (`list[float]`): the swept temperatures, increasing.
        probe_temperature (`float`): the one whose run the heat-capacity peaks were measured on.
        grid (`torch.Tensor`): the T grid of those peaks.
        per_token (`dict[str, list[np.ndarray]]`): `entropy`, `tempered`, `C`, `U`, `V`: per temperature an
            array of shape `(prompts, steps)`, NaN after a row stopped.
        looped, diverged, eos (`np.ndarray` of shape `(temperatures, prompts)`): how each row stopped.
        seconds (`np.ndarray`): wall time per temperature.
        peaks (`list[np.ndarray]`): the heat-capacity peak temperature of every decoded step, per batch.
        sensitivity (`list[list[float]]`): per temperature, each row's last local slope -dE[C]/dH_T.
    """

    temperatures: list[float]
    probe_temperature: float
    grid: torch.Tensor
    looped: np.ndarray
    diverged: np.ndarray
    eos: np.ndarray
    seconds: np.ndarray
    per_token: dict[str, list[np.ndarray]] = field(default_factory=lambda: {k: [] for k in _TRACE_KEYS})
    peaks: list[np.ndarray] = field(default_factory=list)
    sensitivity: list[list[float]] = field(default_factory=list)

    @classmethod
    def empty(cls, temperatures: list[float], n_prompts: int, probe_temperature: float) -> SweepRecord:
        """A record with nothing swept yet."""
        n_t = len(temperatures)
        return cls(
            temperatures=list(temperatures),
            probe_temperature=probe_temperature,
            grid=log_grid(*HEAT_CAPACITY_GRID),
            looped=np.zeros((n_t, n_prompts), dtype=bool),
            diverged=np.zeros((n_t, n_prompts), dtype=bool),
            eos=np.zeros((n_t, n_prompts), dtype=bool),
            seconds=np.zeros(n_t),
            sensitivity=[[] for _ in temperatures],
        )

    def add_batch(self, i: int, offset: int, trace: Any, probe: HeatCapacityProbe | None, rows: dict) -> int:
        """Records one batch of temperature `i` (its rows start at prompt `offset`): its per-token arrays go to
        `rows` (merged by [`add_temperature`]); returns the offset of the next batch."""
        d = trace.to_dict()
        for key, name in _TRACE_KEYS.items():
            rows[key].append(d[name])
        self.sensitivity[i].extend(_last_finite(d["coherence_sensitivity"]))
        reasons = trace.stop_reasons
        b = len(reasons)
        self.looped[i, offset : offset + b] = [r == "loop" for r in reasons]
        self.diverged[i, offset : offset + b] = [r == "divergence" for r in reasons]
        self.eos[i, offset : offset + b] = [r == "eos" for r in reasons]
        if probe is not None and probe.peaks:
            t_c = torch.stack(probe.peaks, dim=1).cpu().numpy()[:, : d["entropy"].shape[1]]
            decoded = np.isfinite(d["entropy"][:, : t_c.shape[1]])
            self.peaks.append(t_c[decoded])
        return offset + b

    def add_temperature(self, rows: dict[str, list[np.ndarray]]) -> None:
        """Appends one temperature's batches to `per_token`, padded with NaN to the longest batch."""
        for k in self.per_token:
            width = max(a.shape[1] for a in rows[k])
            padded = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=np.nan) for a in rows[k]]
            self.per_token[k].append(np.concatenate(padded, axis=0))

    def per_prompt_means(self) -> dict[str, np.ndarray]:
        """Each per-token signal's mean over each row's decoded steps, shape `(temperatures, prompts)`."""
        return {k: np.stack([nanmean(a, axis=1) for a in self.per_token[k]]) for k in self.per_token}

    def peak_temperatures(self) -> np.ndarray:
        """The finite heat-capacity peak temperatures of every decoded step of the probe run."""
        t_c = np.concatenate(self.peaks) if self.peaks else np.zeros(0)
        return t_c[np.isfinite(t_c)]


def run_sweep(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    temperatures: list[float],
    *,
    max_new_tokens: int,
    seed: int,
    batch_size: int,
    chat: bool,
    progress: bool,
    heat_capacity_temperature: float,
) -> SweepRecord:
    """Samples every prompt at every temperature with ICP pinned there (see the module docstring).

    Args:
        model (`PreTrainedModel`), tokenizer (`PreTrainedTokenizerBase`): the causal LM and its tokenizer.
        prompts (`list[str]`): the calibration prompts, in batches of `batch_size`.
        temperatures (`list[float]`): increasing, as [`check_calibration_args`] returns them.
        max_new_tokens (`int`), seed (`int`), batch_size (`int`), chat (`bool`), progress (`bool`),
        heat_capacity_temperature (`float`): as [`icp.calibrate.calibrate`] takes them.

    Returns:
        [`SweepRecord`].
    """
    from tqdm.auto import tqdm

    batches = [prompts[i : i + batch_size] for i in range(0, len(prompts), batch_size)]
    device = next(model.parameters()).device  # the model may sit on an accelerator (icp calibrate --device)
    encoded = [encode(tokenizer, b, chat).to(device) for b in batches]
    pad_id = getattr(tokenizer, "pad_token_id", None)
    record = SweepRecord.empty(temperatures, len(prompts), probe_temperature(temperatures, heat_capacity_temperature))
    total = len(temperatures) * len(batches) * max_new_tokens
    bar = tqdm(total=total, desc="calibrating", unit="step", disable=not progress)
    try:
        for i in range(len(temperatures)):
            _sweep_temperature(record, i, model, encoded, pad_id, max_new_tokens, seed, bar)
    finally:
        bar.close()
    return record


def _sweep_temperature(
    record: SweepRecord, i: int, model: Any, encoded: list, pad_id: int | None, max_new_tokens: int, seed: int, bar: Any
) -> None:
    """Samples every batch at temperature `i` of the record and records it."""
    temperature = record.temperatures[i]
    rows: dict[str, list[np.ndarray]] = {k: [] for k in record.per_token}
    t0 = time.perf_counter()
    offset = 0
    for inputs in encoded:
        probe = HeatCapacityProbe(record.grid) if temperature == record.probe_temperature else None
        trace = _generate_pinned(model, inputs, temperature, max_new_tokens, seed, pad_id, bar, probe)
        offset = record.add_batch(i, offset, trace, probe, rows)
    record.seconds[i] = time.perf_counter() - t0
    record.add_temperature(rows)


def _generate_pinned(
    model: Any,
    inputs: dict[str, torch.Tensor],
    temperature: float,
    max_new_tokens: int,
    seed: int,
    pad_id: int | None,
    bar: Any,
    probe: HeatCapacityProbe | None,
) -> Any:
    """One batch sampled with ICP pinned at `temperature` (torch seeded with `seed` first); returns ICP's trace.
    The bar ticks once per step and is topped up to `max_new_tokens` when every row stopped early."""
    from transformers import LogitsProcessorList

    from ..processors import ICP

    icp = ICP(
        model,
        card=None,
        min_temperature=temperature,
        max_temperature=temperature,
        initial_temperature=temperature,
        min_p=0.0,
        heat_rate=0.0,
        cool_rate=0.0,
        derepeat_penalty=0.0,
        # A long, unshrunk average: the trace's coherence_sensitivity is then the row's own
        # local slope -dE[C]/dH_T (the target cannot move T, which is pinned).
        tracking={"rate": 0.05, "prior": 1e-6, "decay": 0.98},
    )
    ticker = StepProgress(bar)
    processors = [probe] if probe is not None else []
    torch.manual_seed(seed)
    model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        logits_processor=LogitsProcessorList([*processors, *icp, ticker]),
        stopping_criteria=icp.stopping_criteria,
        do_sample=True,
        top_k=0,
        top_p=1.0,
        temperature=1.0,
        pad_token_id=pad_id,
    )
    bar.update(max_new_tokens - ticker.steps)
    return icp.trace


def sweep_rows(record: SweepRecord, means: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The sweep table: one row per temperature with the means over prompts (rounded), the stop rates, the
    tokens decoded, the median local slope and the wall time.

    Args:
        record ([`SweepRecord`]): what the sweep recorded.
        means (`dict[str, np.ndarray]`): its [`SweepRecord.per_prompt_means`].
    """
    return [_sweep_row(record, means, i) for i in range(len(record.temperatures))]


def _sweep_row(record: SweepRecord, means: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    c = means["C"][i]
    n_p = c.shape[0]
    decoded = np.isfinite(record.per_token["entropy"][i])
    return {
        "temperature": float(record.temperatures[i]),
        "entropy": round(float(np.nanmean(means["entropy"][i])), 4),
        "tempered_entropy": round(float(np.nanmean(means["tempered"][i])), 4),
        "coherence": round(float(np.nanmean(c)), 4),
        "coherence_se": round(float(np.nanstd(c, ddof=1) / math.sqrt(max(1, np.isfinite(c).sum()))), 4)
        if n_p > 1
        else math.nan,
        "meta_uncertainty": round(float(np.nanmean(means["U"][i])), 4),
        "heat_capacity": round(float(np.nanmean(means["V"][i])), 4),
        "loop_rate": round(float(record.looped[i].mean()), 4),
        "divergence_rate": round(float(record.diverged[i].mean()), 4),
        "eos_rate": round(float(record.eos[i].mean()), 4),
        "tokens": int(decoded.sum()),
        "local_sensitivity": _median_or_nan(record.sensitivity[i]),
        "seconds": round(float(record.seconds[i]), 2),
    }
