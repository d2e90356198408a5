"""Generating with one decoder over a task's examples, batch by batch, and recording per-example signals.

Batches are formed from the global example order before the work is split between processes, and
each batch is seeded from (seed, batch index) alone, so one process and several give the same tokens.

Every decoder's rows carry the same uncertainty signals, so that detectors are compared on the same
generations:
- plain signals from the model's raw logits (`output_logits=True`): mean token entropy, mean top
  probability, sequence log-likelihood (sum and per token) of the generated answer;
- ICP's trajectory F and U: from ICP's own trace for the `icp` decoder, and from an observing ICP
  (`control=False`, first in the processor list, so it sees what generate's own processors produced)
  for every other decoder. The observer never changes the logits and stops nothing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from icp import ICP, ICPCompositionWarning

__all__ = [
    "answer_lengths",
    "batch_order",
    "batches",
    "encode",
    "generate_batch",
    "plain_signals",
    "stop_token_ids",
]


def batches(items: list[dict], batch_size: int) -> list[list[dict]]:
    """Consecutive batches of `items`, tagged with their global batch index.

    Example:
        >>> [len(b) for b in batches([{"i": i} for i in range(5)], 2)]
        [2, 2, 1]
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` (={batch_size!r}) must be a positive integer.")
    return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]


def batch_order(items: list[dict], by_length: bool) -> list[int]:
    """The order in which `items` are batched: as given, or by the length of their prompt (characters,
    shortest first; ties keep the given order), so that a batch pads to prompts of about one length.

    Args:
        items (`list[dict]`): the task's examples, each with its `prompt_text`.
        by_length (`bool`): order by prompt length ([`Task.group_by_length`]).

    Example:
        >>> batch_order([{"prompt_text": "abc"}, {"prompt_text": "a"}, {"prompt_text": "ab"}], by_length=True)
        [1, 2, 0]
        >>> batch_order([{"prompt_text": "abc"}, {"prompt_text": "a"}], by_length=False)
        [0, 1]
    """
    order = list(range(len(items)))
    return sorted(order, key=lambda i: len(items[i]["prompt_text"])) if by_length else order


def encode(tokenizer: Any, items: list[dict], chat: bool, device: torch.device) -> dict[str, torch.Tensor]:
    """Left-padded model inputs for `items` (through the chat template when `chat`)."""
    texts = [item["prompt_text"] for item in items]
    if chat:
        texts = [
            tokenizer.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True)
            for t in texts
        ]
    tokenizer.padding_side = "left"
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
    return {k: v.to(device) for k, v in encoded.items()}


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """The ids that end an answer: the model's EOS id(s) and the tokenizer's pad id."""
    return (set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.pad_token_id}) - {None}


def answer_lengths(generated: torch.Tensor, stop_ids: set[int]) -> torch.Tensor:
    """Per row, the index of the first EOS/pad token (rows a criterion stopped are padded after their
    last token), or the full width when there is none; on the CPU.

    Example:
        >>> answer_lengths(torch.tensor([[5, 6, 2, 2], [5, 6, 7, 8]]), {2}).tolist()
        [2, 4]
    """
    stop = torch.zeros_like(generated, dtype=torch.bool)
    for token in stop_ids:
        stop |= generated == token
    full = torch.full((generated.shape[0],), generated.shape[1], dtype=torch.long, device=generated.device)
    return torch.where(stop.any(1), stop.float().argmax(1), full).cpu()


def plain_signals(logits: tuple[torch.Tensor, ...], generated: torch.Tensor, lengths: torch.Tensor) -> dict:
    """Mean entropy, mean top probability, log-likelihood (sum, mean, and the least likely token's) of each
    row's answer under the raw model."""
    steps = len(logits)
    valid = torch.arange(steps).unsqueeze(0) < lengths.clamp(min=1).unsqueeze(1)  # the EOS step when empty
    entropy = torch.empty(generated.shape[0], steps)
    top = torch.empty_like(entropy)
    chosen = torch.empty_like(entropy)
    for t, step_logits in enumerate(logits):  # one (batch, vocab) slice at a time: no (B, S, V) copy
        logp = torch.log_softmax(step_logits.float().cpu(), dim=-1)
        entropy[:, t] = -(logp.exp() * logp).nansum(-1)
        top[:, t] = logp.amax(-1).exp()
        chosen[:, t] = logp.gather(1, generated[:, t : t + 1].cpu()).squeeze(1)
    count = valid.sum(1).float()
    loglik = torch.where(valid, chosen, torch.zeros_like(chosen)).sum(1)
    return {
        "mean_entropy": (torch.where(valid, entropy, 0.0).sum(1) / count).tolist(),
        "mean_max_prob": (torch.where(valid, top, 0.0).sum(1) / count).tolist(),
        "seq_loglik": loglik.tolist(),
        "mean_loglik": (loglik / count).tolist(),
        "min_loglik": torch.where(valid, chosen, torch.full_like(chosen, math.inf)).amin(1).tolist(),
    }


def temperature_behaviour(temperature: np.ndarray, t_min: float, t_max: float) -> dict[str, list[float]]:
    """How each row's temperature moved: lag-1 autocorrelation, share of steps at T_min and at T_max, and
    mean |ΔT| per step, over the row's steps (NaN after it stopped). A row with fewer than 3 steps, or
    a constant T (spread below 1e-6), has a NaN autocorrelation.

    Args:
        temperature (`np.ndarray` of shape `(batch, steps)`): the trace's `temperature`.
        t_min, t_max (`float`): the controller's bounds; a step counts as at a bound within 0.1 % of it.

    Example:
        >>> import numpy as np
        >>> t = np.array([[0.5, 1.5, 0.5, 1.5], [1.0, 1.0, 1.0, np.nan]])
        >>> out = temperature_behaviour(t, 0.5, 1.5)
        >>> [round(x, 2) for x in out["T_lag1_autocorr"][:1]], out["T_at_min"], out["T_mean_abs_step"]
        ([-1.0], [0.5, 0.0], [1.0, 0.0])
    """
    lag1, at_min, at_max, step = [], [], [], []
    for row in temperature:
        t = row[np.isfinite(row)]
        if t.size == 0:
            lag1.append(math.nan), at_min.append(math.nan), at_max.append(math.nan), step.append(math.nan)
            continue
        a, b = t[:-1] - t[:-1].mean(), t[1:] - t[1:].mean()
        denominator = math.sqrt(float((a * a).sum() * (b * b).sum()))
        lag1.append(float((a * b).sum() / denominator) if t.size >= 3 and t.std() > 1e-6 else math.nan)
        at_min.append(float(np.mean(t <= t_min * 1.001)))
        at_max.append(float(np.mean(t >= t_max * 0.999)))
        step.append(float(np.abs(np.diff(t)).mean()) if t.size >= 2 else 0.0)
    return {"T_lag1_autocorr": lag1, "T_at_min": at_min, "T_at_max": at_max, "T_mean_abs_step": step}


def _trajectory(icp: ICP) -> dict[str, list[float]]:
    trace = icp.trace
    data = trace.to_dict()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows (stopped at once) give NaN
        u = np.nanmean(data["meta_uncertainty"], axis=1)
        h = np.nanmean(data["entropy"], axis=1)
        c = np.nanmean(data["coherence"], axis=1)
        temperature = np.nanmean(data["temperature"], axis=1)
    return {
        "icp_F": [float(x) for x in trace.trajectory_free_energy()],
        "icp_U": [float(x) for x in u],
        "icp_H": [float(x) for x in h],
        "icp_C": [float(x) for x in c],
        "icp_T": [float(x) for x in temperature],
        "icp_stop": list(trace.stop_reasons),
        **{
            f"icp_{k}": v
            for k, v in temperature_behaviour(
                data["temperature"], icp.config.min_temperature, icp.config.max_temperature
            ).items()
        },
    }


def generate_batch(
    model: Any,
    tokenizer: Any,
    items: list[dict],
    *,
    chat: bool,
    plan: Any,
    observer: ICP | None,
    max_new_tokens: int,
    seed: int,
    want_logit_signals: bool,
    extra_criteria: Iterable[Any] = (),
) -> list[dict]:
    """Generates one batch with one decoder setting and returns one result row per example.

    Args:
        model, tokenizer: the model under test.
        items (`list[dict]`): the batch's examples (`prompt_text` and the task's fields).
        chat (`bool`): apply the chat template.
        plan (`GenerationPlan`): the decoder's kwargs, processors and criteria.
        observer (`ICP`, *optional*): an observing ICP (`control=False`) run first, for decoders other than ICP.
        max_new_tokens (`int`): the task's generation length.
        seed (`int`): the batch's seed (`torch.manual_seed` right before generate()).
        want_logit_signals (`bool`): also compute the plain signals from the raw logits (QA suites).

    Returns:
        `list[dict]`: per example: `id`, `text`, `tokens` (generated ids up to EOS), `reached_limit`,
        `stop_reason`, and the signals.
    """
    device = next(model.parameters()).device
    inputs = encode(tokenizer, items, chat, device)
    processors = (list(observer) if observer is not None else []) + list(plan.processors)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        # The observer "warns" that it cannot steer under greedy decoding or warpers: that is its job.
        warnings.simplefilter("ignore", ICPCompositionWarning)
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([*plan.stopping_criteria, *extra_criteria]),
            return_dict_in_generate=True,
            output_logits=want_logit_signals,
            pad_token_id=tokenizer.pad_token_id,
            **plan.kwargs,
        )
    prompt_length = inputs["input_ids"].shape[1]
    generated = out.sequences[:, prompt_length:]
    lengths = answer_lengths(generated, stop_token_ids(model, tokenizer))
    rows = []
    signals = plain_signals(out.logits, generated, lengths) if want_logit_signals else {}
    icp = plan.icp if plan.icp is not None else observer
    trajectory = _trajectory(icp) if icp is not None else {}
    for i, item in enumerate(items):
        n = int(lengths[i])
        tokens = generated[i, :n].tolist()
        row = {
            "id": item["id"],
            "tokens": tokens,
            "text": tokenizer.decode(tokens, skip_special_tokens=True),
            "n_tokens": n,
            "reached_limit": n == generated.shape[1],  # no EOS/pad anywhere in the row
        }
        for key, values in signals.items():
            row[key] = values[i]
        for key, values in trajectory.items():
            row[key] = values[i]
        # ICP's own reason (eos, loop, divergence, length) for the ICP decoder; eos or length otherwise.
        row["stop_reason"] = (
            row.pop("icp_stop") if plan.icp is not None else ("length" if row["reached_limit"] else "eos")
        )
        row.pop("icp_stop", None)
        rows.append(row)
    return rows


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, int):
        return [value]
    return [int(v) for v in value]
