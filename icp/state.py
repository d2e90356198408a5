"""Per-generation state shared by ICP's logits processor and its stopping criteria.

Batch size, vocabulary and device are unknown until the first call of a generation, so the state is
set up lazily there (`start`) and thrown away by `reset()` or by the next generation. Everything a
step touches is a device tensor; the bookkeeping that decides *which* step it is uses Python ints
derived from tensor shapes, never tensor values, so nothing here synchronises with the host.
"""

from __future__ import annotations

from typing import Any

import torch

from .config import ICPConfig
from .generation_context import GenerationContext
from .signals import extend_repeat_lengths, repeat_lengths, trailing_cycle
from .signals.fused import FusedWorkspace, chosen_surprisal
from .trace import STOP_REASONS, Trace, TraceBuffers

__all__ = ["DecodingState", "LENGTH", "EOS", "LOOP", "DIVERGENCE", "REPEAT_CAP"]


def config_penalises(config: ICPConfig) -> bool:
    """Whether ICP's de-repetition is on (it needs the repeat lengths)."""
    return config.control and config.derepeat_penalty > 0


LENGTH, EOS, LOOP, DIVERGENCE = range(len(STOP_REASONS))
_DEFAULT_CAPACITY = 256
#: Longest repeat the de-repetition counts (its penalty is far beyond any logit gap well before).
REPEAT_CAP = 32


class DecodingState:
    """Device-side state of one generation: control variables, stop bookkeeping and trace buffers.

    Args:
        config ([`ICPConfig`]): the configuration.

    Attributes:
        started (`bool`): whether a generation has been set up.
        step (`int`): index of the next step the processor will run.
        batch_size (`int`), vocab_size (`int`), prompt_length (`int`), device (`torch.device`).
        log_temperature (`torch.FloatTensor` of shape `(batch,)`): the controller's x = log T.
        done (`torch.BoolTensor` of shape `(batch,)`): rows that stopped (frozen in the trace).
        stop_reason (`torch.LongTensor` of shape `(batch,)`): codes into `STOP_REASONS`.
        stop_step (`torch.LongTensor` of shape `(batch,)`): step each row stopped at, -1 if running.
    """

    def __init__(self, config: ICPConfig) -> None:
        self.config = config
        self.generation_id: int | None = None
        self.context: GenerationContext | None = None
        self.started = False
        self._trace_cache: Trace | None = None
        # The fused passes' (batch, vocab) intermediates, reused from step to step and across
        # generations of the same shape; `reset()` releases them.
        self.workspace = FusedWorkspace()

    # ----------------------------------------------------------------------------------- lifecycle
    def reset(self) -> None:
        """Forgets the current generation; the next processor call starts a new one."""
        self.started = False
        self.context = None
        self._trace_cache = None
        self.workspace = FusedWorkspace()

    def start(
        self,
        input_ids: torch.Tensor,
        scores: torch.Tensor,
        log_temperature: torch.Tensor,
        context: GenerationContext | None,
        generation_id: int | None,
        tracker: Any = None,
        fixed_target: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """Sets up buffers for a generation whose first processor call sees `input_ids`, `scores`.

        Every field of a generation's state is declared here. The processor writes the control side
        (`log_temperature`, `tracker`, `coherence_reference`, `over_bound_steps`, `free_energy_sum`,
        `active_steps`, `last_step`, the trace buffers); the token side (`observe_token`: tokens,
        surprisal, loop progress, repeat lengths, EOS) runs once per token for whoever sees it first;
        the stopping criteria read those and write only the stop flags (`stop_rows`).

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, prompt_length)`): the prompt.
            scores (`torch.FloatTensor` of shape `(batch, vocab)`): the first step's logits.
            log_temperature (`torch.FloatTensor` of shape `(batch,)`): the controller's initial x = log T.
            context ([`GenerationContext`], *optional*): the generate() call, when ICP runs inside one.
            generation_id (`int`, *optional*): the model hook's count of generate() calls.
            tracker (*optional*): the critical-region tracker's initial per-row state.
            fixed_target (`tuple` of two `torch.FloatTensor`, *optional*): the target entropy and a NaN
                sensitivity per row, recorded while the tracker does not move the target.
        """
        batch, vocab = scores.shape
        device = scores.device
        self.started = True
        self.generation_id = generation_id
        self.context = context
        self.batch_size, self.vocab_size, self.device = batch, vocab, device
        self.prompt_length = input_ids.shape[1]
        self.step = 0
        self.tokens_seen = self.prompt_length  # input_ids length whose last token was processed
        capacity = _DEFAULT_CAPACITY
        self.final_step: int | None = None  # the step that reaches generate's max_length, when known
        if context is not None and context.max_length is not None:
            capacity = max(1, context.max_length - self.prompt_length)
            self.final_step = capacity - 1
        self.buffers = TraceBuffers(batch, capacity, device)
        self.log_temperature = log_temperature
        self.tracker = tracker
        self.fixed_target = fixed_target
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)
        self.stop_reason = torch.full((batch,), LENGTH, dtype=torch.long, device=device)
        self.stop_step = torch.full((batch,), -1, dtype=torch.long, device=device)
        self.over_bound_steps = torch.zeros(batch, dtype=torch.long, device=device)
        # Each row's sum of F and count of its steps: its trajectory F, for the abstention on answers.
        self.free_energy_sum = torch.zeros(batch, dtype=torch.float32, device=device)
        self.active_steps = torch.zeros(batch, dtype=torch.long, device=device)
        self.loop_progress = torch.zeros(batch, dtype=torch.float32, device=device)
        self.loop_now = torch.zeros(batch, dtype=torch.bool, device=device)
        pad = context.pad_token_id if context is not None else None
        self.pad_id = pad if isinstance(pad, int) else None
        # Repeat lengths of every earlier position of the searched region (the generated text, or the
        # whole context with `derepeat_prompt`) against the last token: what the de-repetition
        # penalises. Updated in O(region) per step by `observe_token`.
        self.repeat_offset = 0 if self.config.derepeat_prompt else self.prompt_length
        self.repeat_lengths = None
        if config_penalises(self.config):
            region = self._repeat_region(input_ids)
            self.repeat_lengths = repeat_lengths(region, self._valid(region), REPEAT_CAP)
        self.coherence_reference: torch.Tensor | None = None
        self.last_step = None  # the processor's latest ControlledStep
        self.forward_calls: int | None = None  # the model hook's forward-call count at the latest step
        self.warned_hooks_blind = False  # whether this generation already warned that the hook saw no call
        eos = list(self.config.eos_token_ids)
        if not eos and context is not None:
            eos = context.eos_token_ids
        self.eos_ids = torch.tensor(sorted(set(eos)), dtype=torch.long, device=device) if eos else None
        self._trace_cache = None

    def is_continuation(self, input_ids: torch.Tensor, generation_id: int | None) -> bool:
        """Whether `input_ids` continues the current generation (shape and cache bookkeeping only)."""
        if not self.started:
            return False
        if generation_id is not None and generation_id != self.generation_id:
            return False
        return input_ids.shape[0] == self.batch_size and input_ids.shape[1] == self.prompt_length + self.step

    # ---------------------------------------------------------------------------------- token side
    def observe_token(self, input_ids: torch.Tensor) -> None:
        """Processes the newest token of `input_ids` once: records it and its surprisal, updates the
        repetition signal, and stops rows that produced an end-of-sequence token.

        Called by the stopping criteria right after sampling, or by the processor at the next step
        when no ICP criterion runs. Idempotent for a given length.
        """
        length = input_ids.shape[1]
        if not self.started or length <= self.tokens_seen or length > self.prompt_length + self.step:
            return
        self.tokens_seen = length
        step = length - 1 - self.prompt_length  # the step that sampled this token
        token = input_ids[:, -1]
        active = ~self.done
        values = {"token": token}
        if self.last_step is not None:
            values["surprisal"] = chosen_surprisal(self.last_step.shifted_logits, self.last_step.log_normalizer, token)
        self.buffers.write(step, values, active)

        loop = self.config.loop
        window = input_ids[:, max(self.prompt_length, length - loop.window) :]
        cycle = trailing_cycle(window, loop.max_period, loop.min_repeats, loop.min_loop_tokens)
        self.loop_progress = torch.where(active, cycle.progress, self.loop_progress)
        self.loop_now = active & (cycle.progress >= 1.0)
        if self.repeat_lengths is not None:
            region = self._repeat_region(input_ids)
            valid = self._valid(region)
            if self.repeat_lengths.shape[1] in (region.shape[1] - 2, region.shape[1] - 1) and region.shape[1] >= 2:
                self.repeat_lengths = extend_repeat_lengths(self.repeat_lengths, region, valid, REPEAT_CAP)
            else:  # the first generated token, or a token that was not observed: compute from scratch
                self.repeat_lengths = repeat_lengths(region, valid, REPEAT_CAP)

        if self.eos_ids is not None:
            self.stop_rows(torch.isin(token, self.eos_ids) & active, EOS, step)

    def repeat_start(self, length: int) -> int:
        """First position of `input_ids` (of that length) the de-repetition searches."""
        window = self.config.derepeat_window
        return max(self.repeat_offset, length - window) if window > 0 else self.repeat_offset

    def _repeat_region(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids[:, self.repeat_start(input_ids.shape[1]) :]

    def _valid(self, region: torch.Tensor) -> torch.Tensor | None:
        """Positions of the searched region the de-repetition may match: not padding (a False position
        never matches, so it ends every repeat)."""
        return region != self.pad_id if self.pad_id is not None else None

    def divergence_now(self) -> torch.Tensor:
        """Rows whose F or U has been beyond its bound for `patience` consecutive steps."""
        return ~self.done & (self.over_bound_steps >= self.config.divergence.patience)

    def uncertain_answers(self, bound: float) -> torch.Tensor:
        """Rows that end with the newest token (an end-of-sequence token, or the step that reaches
        generate's `max_length`) with a trajectory F (mean of their steps' F) above `bound`."""
        step = self.last_sampled_step
        ended = self.done & (self.stop_reason == EOS) & (self.stop_step == step)
        if self.final_step is not None and step >= self.final_step:
            ended = ended | ~self.done
        trajectory_f = self.free_energy_sum / self.active_steps.clamp(min=1)
        return ended & (self.active_steps > 0) & (trajectory_f > bound)

    def stop_rows(self, rows: torch.Tensor, reason: int, step: int, relabel: bool = False) -> None:
        """Marks `rows` (bool, batch) as stopped for `reason` at `step`, unless already stopped; with
        `relabel`, rows already stopped take `reason` too (their stop step is kept)."""
        newly = rows & ~self.done
        self.stop_reason = torch.where(rows if relabel else newly, reason, self.stop_reason)
        self.stop_step = torch.where(newly, step, self.stop_step)
        self.done = self.done | newly

    @property
    def last_sampled_step(self) -> int:
        return self.tokens_seen - 1 - self.prompt_length

    # -------------------------------------------------------------------------------------- trace
    def trace(self, metadata: dict | None = None) -> Trace:
        """The finalised trace: one copy of the buffers to the host, cached until the next step."""
        if self._trace_cache is not None and self._trace_cache.metadata.get("_step") == self.step:
            return self._trace_cache
        steps = self.step
        # The one host copy of the generation (finalisation).
        host = {name: t[:, :steps].cpu().numpy() for name, t in self.buffers.data.items()}
        meta = dict(metadata or {})
        meta["_step"] = steps
        meta["prompt_length"] = self.prompt_length
        if self.context is not None:
            meta["generation_context"] = self.context.to_dict()
        trace = Trace(
            host,
            self.stop_reason.cpu().numpy(),
            self.stop_step.cpu().numpy(),
            meta,
        )
        self._trace_cache = trace
        return trace
