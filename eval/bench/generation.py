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

A task run in its base-model form ([`Task.for_tokenizer`]) has a stop string (`task.stop`, e.g. a
newline): generate() stops a row once its text contains it (transformers' `stop_strings`), and the
row's answer ends there, as if the token that completed it were an EOS ([`cut_at_stop`]).
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
from icp.trace import STOP_REASONS, Trace

__all__ = [
    "answer_lengths",
    "batch_order",
    "batches",
    "cut_at_stop",
    "encode",
    "generate_batch",
    "plain_signals",
    "stop_kwargs",
    "stop_token_ids",
    "trim_trace",
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


def stop_kwargs(tokenizer: Any, stop: str | None) -> dict[str, Any]:
    """generate()'s arguments that stop a row at `stop` (transformers' `stop_strings`, which needs the
    tokenizer); none without a stop string. A stopped row is padded with `pad_token_id` where generate()
    pads finished rows (the model has an EOS id); [`cut_at_stop`] cuts the answer either way.

    Example:
        >>> stop_kwargs(None, None)
        {}
        >>> sorted(stop_kwargs("a tokenizer", "\\n"))
        ['stop_strings', 'tokenizer']
    """
    return {} if stop is None else {"stop_strings": [stop], "tokenizer": tokenizer}


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


def _decode(tokenizer: Any, tokens: list[int]) -> str:
    return tokenizer.decode(tokens, skip_special_tokens=True)


def _stop_end(tokenizer: Any, tokens: list[int], stop: str) -> int | None:
    """The number of `tokens` up to and including the one whose text completes `stop`, or None."""
    if stop not in _decode(tokenizer, tokens):
        return None
    return next(k for k in range(1, len(tokens) + 1) if stop in _decode(tokenizer, tokens[:k]))


def cut_at_stop(
    tokenizer: Any, generated: torch.Tensor, lengths: torch.Tensor, stop: str | None
) -> tuple[torch.Tensor, list[int | None], list[str]]:
    """Each row's answer: its tokens before the first EOS/pad (`lengths`), and with a stop string, what
    comes before the first occurrence of `stop`, as if the token that completed it were an EOS.

    Without `stop` the texts are the decoded tokens, as they always were. With it, a row whose text contains
    `stop` ends at the token that completed it (`ends[i]`, counted in tokens, that token included): its
    text is cut before `stop` and stripped, and its answer length keeps that token only when it carries
    part of the answer (a token that is just the stop string, like an EOS, is left out, so a row whose first
    token is the stop string has an empty answer of 0 tokens). A row whose text does not contain `stop` keeps
    its length and its (stripped) text; its `ends[i]` is None.

    Args:
        tokenizer: the model's tokenizer (decodes without special tokens).
        generated (`torch.Tensor` of shape `(batch, steps)`): the generated ids.
        lengths (`torch.Tensor` of shape `(batch,)`): [`answer_lengths`].
        stop (`str`, *optional*): the task's stop string ([`Task.stop`]).

    Returns:
        `(lengths, ends, texts)`: the answers' lengths in tokens (on the CPU), where the stop string ended
        each row (or None) and the answers' texts.

    Example:
        >>> from types import SimpleNamespace
        >>> words = {1: "Au", 2: "\\n", 3: "Q:", 4: "Paris\\n"}
        >>> tok = SimpleNamespace(decode=lambda ids, skip_special_tokens: "".join(words[i] for i in ids))
        >>> generated = torch.tensor([[1, 2, 3], [2, 1, 3], [4, 3, 3], [1, 3, 3]])
        >>> lengths, ends, texts = cut_at_stop(tok, generated, torch.tensor([3, 3, 3, 3]), "\\n")
        >>> lengths.tolist(), ends, texts
        ([1, 0, 1, 3], [2, 1, 1, None], ['Au', '', 'Paris', 'AuQ:Q:'])
    """
    rows = [row[:n] for row, n in zip(generated.tolist(), lengths.tolist())]
    if stop is None:
        return lengths.cpu(), [None] * len(rows), [_decode(tokenizer, row) for row in rows]
    ends = [_stop_end(tokenizer, row, stop) for row in rows]
    texts, kept = [], []
    for row, end in zip(rows, ends):
        text = _decode(tokenizer, row[:end]).split(stop, 1)[0].strip()
        short = end is not None and _decode(tokenizer, row[: end - 1]).strip() == text
        texts.append(text)
        kept.append(len(row) if end is None else end - 1 if short else end)
    return torch.tensor(kept, dtype=torch.long), ends, texts


def trim_trace(trace: Trace, ends: list[int | None]) -> Trace:
    """`trace` as if each row with an end (`ends[i]`, from [`cut_at_stop`]) had stopped on an EOS at its
    last token (step `ends[i] - 1`): its signals NaN (tokens and regimes -1) after that step, its stop reason
    "eos". A row ICP stopped no later than that keeps its own stop. What ICP records after the stop string
    (the padding generate() appends to finished rows) is not part of the answer. With no end at all (no stop
    string, or none reached), `trace` itself.

    Example:
        >>> import numpy as np
        >>> t = Trace({"free_energy": np.ones((2, 4))}, np.array([0, 3]), np.array([-1, 1]))
        >>> trimmed = trim_trace(t, [2, 3])  # row 1 diverged at step 1, before its stop string
        >>> trimmed.trajectory_free_energy().tolist(), trimmed.stop_reasons, trimmed.stop_step.tolist()
        ([1.0, 1.0], ['eos', 'divergence'], [1, 1])
        >>> np.isnan(trimmed["free_energy"][0]).tolist(), np.isnan(trimmed["free_energy"][1]).tolist()
        ([False, False, True, True], [False, False, False, False])
    """
    if all(end is None for end in ends):
        return trace
    arrays = {name: values.copy() for name, values in trace.arrays.items()}
    reasons, steps = trace.stop_reason_codes.copy(), trace.stop_step.copy()
    for row, end in enumerate(ends):
        if end is None or 0 <= steps[row] <= end - 1:
            continue
        for values in arrays.values():
            values[row, end:] = np.nan if np.issubdtype(values.dtype, np.floating) else -1
        reasons[row], steps[row] = STOP_REASONS.index("eos"), end - 1
    return Trace(arrays, reasons, steps, dict(trace.metadata))


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


def _trajectory(icp: ICP, ends: list[int | None]) -> dict[str, list[float]]:
    trace = trim_trace(icp.trace, ends)
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
    stop: str | None = None,
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
        stop (`str`, *optional*): a stop string ([`Task.stop`], a base-model prompt's): generate() stops a row
            once its text contains it (`stop_strings`), and the row's answer ends there ([`cut_at_stop`]).
        plan (`GenerationPlan`): the decoder's kwargs, processors and criteria.
        observer (`ICP`, *optional*): an observing ICP (`control=False`) run first, for decoders other than ICP.
        max_new_tokens (`int`): the task's generation length.
        seed (`int`): the batch's seed (`torch.manual_seed` right before generate()).
        want_logit_signals (`bool`): also compute the plain signals from the raw logits (QA suites).

    Returns:
        `list[dict]`: per example: `id`, `text`, `tokens` (generated ids up to EOS; with `stop`, up to the
        token that completed the stop string, that token included only when it carries part of the answer:
        see [`cut_at_stop`]), `n_tokens` (their number), `reached_limit`, `stop_reason` (a row the stop string
        ended stopped on "eos"), and the signals (over the answer's steps).
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
            **stop_kwargs(tokenizer, stop),
            **plan.kwargs,
        )
    prompt_length = inputs["input_ids"].shape[1]
    generated = out.sequences[:, prompt_length:]
    lengths = answer_lengths(generated, stop_token_ids(model, tokenizer))
    lengths, ends, texts = cut_at_stop(tokenizer, generated, lengths, stop)
    rows = []
    signals = plain_signals(out.logits, generated, lengths) if want_logit_signals else {}
    icp = plan.icp if plan.icp is not None else observer
    trajectory = _trajectory(icp, ends) if icp is not None else {}
    for i, item in enumerate(items):
        n = int(lengths[i])
        row = {
            "id": item["id"],
            "tokens": generated[i, :n].tolist(),
            "text": texts[i],
            "n_tokens": n,
            # no EOS/pad anywhere in the row, and no stop string
            "reached_limit": n == generated.shape[1] and ends[i] is None,
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
