"""ICP's logits processor and `ICP` itself, a `LogitsProcessorList` you pass to `generate()`.

Where ICP sits in `generate()` (transformers 5): generate's own processors (repetition penalty,
`no_repeat_ngram_size`, bad words, `min_new_tokens` masks, ...) run *before* user processors, so ICP
sees their output and records which ran (`trace.metadata["generation_context"]["before"]`). generate's
sampling warpers (temperature, top-k, top-p, min-p, typical, epsilon, eta, top-h) run *after* user
processors. ICP is a whole sampling policy (its own temperature and min-p truncation), so:

- it works best with the warpers off: `temperature=1.0, top_k=0, top_p=1.0` (what
  [`ICP.generation_kwargs`] returns). Note that `do_sample=True` alone switches on top-k=50;
- when warpers are on, they compose with ICP: the effective temperature is ICP's T times generate's
  `temperature`, and their truncation intersects ICP's. ICP warns once per generation
  ([`ICPCompositionWarning`]) naming each such kwarg and its value, and records them in the trace's
  metadata. Its KL(Q||P) and H_Q then describe ICP's own distribution, not the final one;
- with `do_sample=False` (greedy) ICP cannot steer (temperature and truncation keep the argmax): it
  warns, returns the logits untouched and records the signals; its stopping criteria still act;
- beam search and assisted decoding are refused with [`UnsupportedDecodingError`].
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import warnings
from typing import Any, NamedTuple

import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList, StoppingCriteriaList

from .cards import ICPCardWarning, ModelCard, describe_available_cards, find_card_for_model, load_card
from .config import ICPConfig
from .controller import CriticalRegionTracker, LogTemperatureController
from .generation_context import (
    GenerationContext,
    ICPCompatibilityWarning,
    UnsupportedDecodingError,
    find_generation_context,
)
from .hooks import ModelHooks
from .regimes import RIGID, UNSTABLE, classify_regime
from .signals import context_recall, cosine_continuity, ema_update, entropy_volatility, free_energy, repeat_penalty
from .signals.criticality import candidate_coherence, coherence_sensitivity_moments
from .signals.fused import ControlledStep, control_side, observed_step
from .state import DecodingState
from .trace import Trace

__all__ = ["ICP", "ICPLogitsProcessor", "ICPCompositionWarning", "ICPCardWarning", "UnsupportedDecodingError"]

logger = logging.getLogger(__name__)
_WARNED_NO_CARD: set[str] = set()  # model ids already warned about (once per process)


def _calibrate_name(name: str) -> str:
    """What `icp calibrate --model` takes for a model called `name`: its embedded name when it is one."""
    from .models import EMBEDDED_MODELS

    embedded = [e.name for e in EMBEDDED_MODELS.values() if e.model_id == name]
    return embedded[0] if embedded else name


class _Measured(NamedTuple):
    """What `_measure` read from the model's distribution at one step (all `(batch,)` but `dist`)."""

    dist: ControlledStep
    coherence: torch.Tensor
    meta: torch.Tensor
    regime: torch.Tensor


class _Steered(NamedTuple):
    """What `_steer` decided at one step: Q's step, T, the returned scores and the target it steered to."""

    dist: ControlledStep
    temperature: torch.Tensor
    output: torch.Tensor
    target: torch.Tensor
    sensitivity: torch.Tensor


class ICPCompositionWarning(UserWarning):
    """generate() applies warpers after ICP (or decodes greedily), so ICP does not alone decide Q."""


class ICPLogitsProcessor(LogitsProcessor):
    """Measures H, V, C, U, KL, F and the regime of every row at every step, steers each row's
    temperature toward the target entropy, truncates (min-p), and records it all in the trace.

    Most users want [`ICP`], which wraps this processor with its stopping criteria.

    Its (batch, vocab) intermediates live in buffers reused from step to step and across
    generations of the same shape (`state.workspace`, a [`FusedWorkspace`]: 5 float32 buffers, 30 MiB
    at batch 32 for a 49,152-token vocabulary), held until `reset()`. Inside a generate() call that does not return its
    scores, the processed scores it returns are such a buffer too, overwritten at the next step;
    called by hand, or under `output_scores=True, return_dict_in_generate=True`, every step returns a
    fresh tensor.

    Args:
        config ([`ICPConfig`]): the configuration.
        hooks ([`ModelHooks`], *optional*): forward hooks on the model (new-generation detection,
            and final hidden states for `"hidden"` coherence).
        embeddings (`torch.Tensor` of shape `(vocab, hidden)`, *optional*): the model's input
            embedding matrix, for `"embedding"` coherence.

    Example:
        >>> import torch
        >>> from icp import ICPConfig
        >>> from icp.processors import ICPLogitsProcessor
        >>> proc = ICPLogitsProcessor(ICPConfig())
        >>> scores = torch.randn(2, 50)
        >>> out = proc(torch.zeros(2, 3, dtype=torch.long), scores)
        >>> out.shape, out is scores, proc.coherence_source
        (torch.Size([2, 50]), False, 'logits')
    """

    def __init__(
        self, config: ICPConfig, hooks: ModelHooks | None = None, embeddings: torch.Tensor | None = None
    ) -> None:
        self.config = config
        self.hooks = hooks
        if embeddings is not None:
            self.embeddings = embeddings.detach()
            # The direction every token shares: removed so that cosines measure topical continuity.
            self.embedding_center = self.embeddings.float().mean(dim=0)
            self.coherence_source = "embedding"
        else:
            self.embeddings = None
            has_hidden = hooks is not None and hooks.captures_final_hidden
            self.coherence_source = "hidden" if has_hidden else "logits"
        self.state = DecodingState(config)
        self.controller = LogTemperatureController(
            target_entropy=config.target_entropy,
            gain=config.gain,
            min_temperature=config.min_temperature,
            max_temperature=config.max_temperature,
            initial_temperature=config.initial_temperature,
            leak=config.leak,
            heat_rate=config.heat_rate,
            cool_rate=config.cool_rate,
            sensitivity_floor=config.sensitivity_floor,
        )
        self.tracker = CriticalRegionTracker(
            target_entropy=config.target_entropy,
            rate=config.tracking.rate,
            bound=config.tracking.bound,
            reference_sensitivity=config.tracking.reference_sensitivity,
            decay=config.tracking.decay,
            prior=config.tracking.prior,
        )
        # The target follows the critical region only where candidate tokens' coherence can be read.
        self.tracks_target = config.tracking.enabled and self.coherence_source == "embedding"
        self.embedding_norms = (
            (self.embeddings.float() - self.embedding_center).norm(dim=-1) if self.tracks_target else None
        )
        self.observe_only = not config.control

    def reset(self) -> None:
        """Forgets the current generation; the next call starts clean."""
        self.state.reset()

    # ------------------------------------------------------------------------------ set-up (once)
    def _start(
        self, input_ids: torch.Tensor, scores: torch.Tensor, generation_id: int | None, caller: Any = None
    ) -> None:
        if scores.dim() != 2:
            raise ValueError(f"`scores` must have shape (batch, vocab), got {tuple(scores.shape)}.")
        if input_ids.shape[0] != scores.shape[0]:
            raise ValueError(
                f"`input_ids` has {input_ids.shape[0]} rows but `scores` has {scores.shape[0]}: they must match."
            )
        self.config.check_vocab(scores.shape[-1])
        previous = self.state.context if self.state.started else None
        if previous is not None and previous.thread_id != threading.get_ident() and previous.is_running():
            raise RuntimeError(
                "This ICP object is already steering a generate() call in another thread; one ICP object keeps "
                "one generation's state, so sharing it would mix two generations. Create one ICP per thread "
                "(`ICP(model)` is cheap)."
            )
        context = find_generation_context(self, caller)
        self.observe_only = not self.config.control
        if context is not None:
            self._warn_about_composition(context)
            if not context.do_sample:
                self.observe_only = True
        batch, device = scores.shape[0], scores.device
        fixed_target = (
            torch.full((batch,), self.config.target_entropy, dtype=torch.float32, device=device),
            torch.full((batch,), math.nan, dtype=torch.float32, device=device),
        )
        self.state.start(
            input_ids,
            scores,
            log_temperature=self.controller.initial_state(batch, device),
            context=context,
            generation_id=generation_id,
            tracker=self.tracker.initial_state(batch, device),
            fixed_target=fixed_target,
        )
        # Inside a generate() call that does not return its scores, nothing keeps a step's output
        # past sampling, so the processor writes it into the same buffer every step (no fresh
        # (batch, vocab) allocation). Called by hand, or with output_scores, each step's is fresh.
        self.state.workspace.reuse_output = context is not None and not context.keeps_scores

    def _warn_about_composition(self, context: GenerationContext) -> None:
        if not context.do_sample and self.config.control:
            warnings.warn(
                "generate() decodes greedily (`do_sample=False`): temperature and truncation keep the argmax, so ICP "
                "cannot steer. It records the signals and its stopping criteria still act. Pass `do_sample=True` "
                "for control.",
                ICPCompositionWarning,
                stacklevel=4,
            )
            return
        active = {
            k: v
            for k, v in context.downstream.items()
            if not (k == "temperature" and v == 1.0) and not (k == "top_k" and v in (0, None))
        }
        if active and self.config.control:
            listed = ", ".join(f"{k}={v}" for k, v in active.items())
            hint = "temperature=1.0, top_k=0, top_p=1.0"
            note = ""
            if "temperature" in active:
                note = f" The effective temperature is ICP's T x {active['temperature']}."
            warnings.warn(
                f"generate() applies {listed} after ICP, on top of ICP's own temperature and min-p truncation.{note} "
                f"ICP's trace (KL, sampled entropy) describes its own distribution, not the final one. Pass {hint} "
                "(or `**icp.generation_kwargs()`) to let ICP alone decide the sampling distribution.",
                ICPCompositionWarning,
                stacklevel=4,
            )

    # --------------------------------------------------------------------------- the step (hot)
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._enter_step(input_ids, scores)
        active = ~self.state.done
        measured = self._measure(input_ids, scores, active)
        steered = self._steer(input_ids, scores, measured, active)
        self._record(measured, steered, active)
        return steered.output

    def _enter_step(self, input_ids: torch.Tensor, scores: torch.Tensor) -> None:
        """Starts a new generation when this call does not continue the current one, then lets the
        state see the token sampled after the previous step (a no-op when a criterion already did)."""
        state = self.state
        generation_id = self.hooks.generation_id if self.hooks is not None else None
        caller = sys._getframe(1)
        if not state.is_continuation(input_ids, generation_id) or (
            state.context is not None and not state.context.is_current(caller)
        ):
            self._start(input_ids, scores, generation_id, caller)
        elif self.hooks is not None and state.context is not None:
            self._check_hooks_see_forward_calls()
        if self.hooks is not None:
            state.forward_calls = self.hooks.forward_calls
        state.observe_token(input_ids)

    def _measure(self, input_ids: torch.Tensor, scores: torch.Tensor, active: torch.Tensor) -> _Measured:
        """The model's own distribution this step: H, V, C, U and the regime of every row."""
        state, config = self.state, self.config
        dist = observed_step(scores, state.workspace)
        coherence = self._coherence(input_ids, dist, active)
        if config.meta_uncertainty == "varentropy":
            meta = dist.varentropy
        else:
            state.buffers.write(state.step, {"entropy": dist.entropy}, active)
            meta = entropy_volatility(state.buffers.window("entropy", state.step, config.volatility_window))
        regime = classify_regime(dist.entropy, coherence, meta, state.loop_progress, config.regimes)
        return _Measured(dist, coherence, meta, regime)

    def _steer(
        self, input_ids: torch.Tensor, scores: torch.Tensor, measured: _Measured, active: torch.Tensor
    ) -> _Steered:
        """This step's temperature, de-repetition and min-p (Q), and the controller's update of x = log T.

        The one place T is set: `temperature = x.exp()`, x after the regime's dissipation; the feedback
        then moves x for the next step (see docs/control.md)."""
        state, config = self.state, self.config
        if self.observe_only:
            target, sensitivity = state.fixed_target
            return _Steered(measured.dist, torch.ones_like(measured.dist.entropy), scores, target, sensitivity)
        rigid, unstable = measured.regime == RIGID, measured.regime == UNSTABLE
        dissipated = self.controller.dissipate(state.log_temperature, rigid, unstable)
        x = torch.where(active, dissipated, state.log_temperature)
        temperature = x.exp()
        penalty_tokens, penalty = self._derepetition(input_ids)
        dist = control_side(measured.dist, temperature, config.min_p, penalty_tokens, penalty, state.workspace)
        if self.tracks_target:
            target, sensitivity = self._track(dist, active)
            steered_to = target
        else:  # a fixed target: the same two constant rows every step
            (target, sensitivity), steered_to = state.fixed_target, None
        # The controller steers the tempered distribution's entropy; min-p then only trims its tail.
        updated = self.controller.update(x, dist.tempered_entropy, dist.tempered_varentropy, steered_to)
        state.log_temperature = torch.where(active, updated, state.log_temperature)
        return _Steered(dist, temperature, dist.logq, target, sensitivity)

    def _derepetition(self, input_ids: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Tokens that would extend a repeat of the searched region (the generated text, or the whole
        context with `derepeat_prompt`), and DRY's penalty for each; `(None, None)` when off."""
        state, config = self.state, self.config
        if state.repeat_lengths is None or state.repeat_lengths.shape[1] == 0:
            return None, None
        tokens = input_ids[:, state.repeat_start(input_ids.shape[1]) + 1 :]
        penalty = repeat_penalty(
            state.repeat_lengths, config.derepeat_penalty, config.derepeat_base, config.derepeat_allowed_length
        )
        return tokens, penalty

    def _record(self, measured: _Measured, steered: _Steered, active: torch.Tensor) -> None:
        """F, the divergence counters and the trace row of this step; advances the step."""
        state, config = self.state, self.config
        dist = steered.dist
        energy = free_energy(dist.entropy, dist.kl, measured.coherence, measured.meta, config.gamma, config.lam)
        bounds = config.divergence
        over = (energy > bounds.free_energy_bound) | (measured.meta > bounds.meta_uncertainty_bound)
        state.over_bound_steps = torch.where(
            active & over, state.over_bound_steps + 1, torch.zeros_like(state.over_bound_steps)
        )
        state.free_energy_sum = state.free_energy_sum + torch.where(active, energy, torch.zeros_like(energy))
        state.active_steps = state.active_steps + active.long()
        state.buffers.write(
            state.step,
            {
                "entropy": dist.entropy,
                "varentropy": dist.varentropy,
                "coherence": measured.coherence,
                "meta_uncertainty": measured.meta,
                "kl": dist.kl,
                "free_energy": energy,
                "temperature": steered.temperature,
                "tempered_entropy": dist.tempered_entropy,
                "sampled_entropy": dist.sampled_entropy,
                "target": steered.target,
                "coherence_sensitivity": steered.sensitivity,
                "regime": measured.regime,
            },
            active,
        )
        state.last_step = dist  # its shifted logits give the chosen token's surprisal next step
        state.step += 1

    def _check_hooks_see_forward_calls(self) -> None:
        """Inside generate(), every step follows a forward call; says so, once per generation, when the hook saw none."""
        if self.hooks.forward_calls == self.state.forward_calls and not self.state.warned_hooks_blind:
            self.state.warned_hooks_blind = True
            warnings.warn(
                "ICP's forward hook saw no forward call between two decoding steps of this generate() call: the "
                "model generating is not the one ICP was built with (`ICP(model)`), or this transformers release "
                "runs the model without calling its hooked `forward`. ICP still tells generate() calls apart by "
                "their decoding loop, but its hook-based checks are blind. Build ICP with the model that generates.",
                ICPCompatibilityWarning,
                stacklevel=3,
            )

    def _track(self, dist: ControlledStep, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Local slope of coherence against entropy on Q's top candidates -> each row's target."""
        state = self.state
        k = min(self.config.tracking.candidates, dist.logq.shape[-1])
        logq, ids = dist.logq.topk(k, dim=-1)
        coherence = candidate_coherence(
            ids, self.embeddings, self.embedding_center, self.embedding_norms, state.coherence_reference
        )
        # logq = y - c_q, so its moments are those of y: Var_q[y] = dH/dlog T and Cov_q[c, y].
        moments = coherence_sensitivity_moments(logq, coherence, torch.ones_like(dist.entropy))
        state.tracker, target = self.tracker.update(state.tracker, moments.covariance, moments.variance, active)
        return target, self.tracker.sensitivity(state.tracker)

    def _coherence(self, input_ids: torch.Tensor, dist: ControlledStep, active: torch.Tensor) -> torch.Tensor:
        state, config = self.state, self.config
        pad = state.context.pad_token_id if state.context is not None else None
        if self.coherence_source == "logits":
            context = input_ids[:, -config.recall_window :]
            valid = context != pad if pad is not None else torch.ones_like(context, dtype=torch.bool)
            logp = dist.shifted_logits - dist.log_normalizer.unsqueeze(-1)
            return context_recall(logp, context, valid, config.logit_floor)
        if self.coherence_source == "embedding":
            current = self.embeddings[input_ids[:, -1]].float() - self.embedding_center
            if state.coherence_reference is None:
                prompt = self.embeddings[input_ids].float() - self.embedding_center
                weights = (
                    (input_ids != pad).to(prompt.dtype)
                    if pad is not None
                    else torch.ones_like(input_ids, dtype=prompt.dtype)
                )
                weights = weights.unsqueeze(-1)
                state.coherence_reference = (prompt * weights).sum(1) / weights.sum(1).clamp_min(1.0)
        else:
            current = self.hooks.last_hidden
            if current is None or current.shape[0] != state.batch_size:
                raise RuntimeError(
                    "ICP's final-hidden-state hook saw no forward pass matching these logits "
                    f"({state.batch_size} rows): was ICP built with the model that is generating?"
                )
            if state.coherence_reference is None:
                prompt = self.hooks.prompt_mean
                state.coherence_reference = prompt if prompt is not None else torch.zeros_like(current)
        coherence = cosine_continuity(current, state.coherence_reference)
        state.coherence_reference = ema_update(state.coherence_reference, current, config.coherence_decay, active)
        return coherence


class ICP(LogitsProcessorList):
    """The Inference Control Plane: pass it as `logits_processor` and its `stopping_criteria` to
    `generate()`, then read `icp.trace`.

    Args:
        model (`PreTrainedModel`, *optional*): the model that will generate. Enables embedding (or
            hidden-state) coherence and new-generation detection by forward hooks (no extra forward
            pass), and supplies the end-of-sequence ids and the vocabulary size check.
        config ([`ICPConfig`], *optional*): the configuration. Without it, ICP starts from `ICPConfig()`
            with the model card's calibrated `target_entropy` and regime thresholds; with it, the
            config is used as given and no card is looked up.
        card (`str`, `os.PathLike`, [`ModelCard`] or `None`, *optional*, defaults to `"auto"`): `"auto"`
            looks up the card of `model.name_or_path`, else of the model's fingerprint
            ([`icp.cards.find_card_for_model`]: `$ICP_MODEL_CARDS`, then the checkout's `model_cards/`); when
            there is none, ICP emits one [`ICPCardWarning`] per model and process and uses the documented
            defaults. A path (a card's folder or README.md) or a [`ModelCard`] uses that card; `None` uses
            no card. The card used is recorded in `trace.metadata["card"]`.
        **overrides: fields of [`ICPConfig`] to change, e.g. `target_entropy=1.5`; they win over the
            card. A dict for `regimes`, `loop` or `divergence` changes only the fields it names.

    Example:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> from icp import ICP
        >>> _ = torch.manual_seed(0)
        >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, eos_token_id=None))
        >>> icp = ICP(model)
        >>> out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=6, **icp.generation_kwargs())
        >>> icp.trace.to_dict()["entropy"].shape
        (1, 6)
    """

    def __init__(
        self, model: Any = None, config: ICPConfig | None = None, card: Any = "auto", **overrides: Any
    ) -> None:
        base = config if config is not None else ICPConfig()
        if not isinstance(base, ICPConfig):
            raise TypeError(f"`config` must be an ICPConfig, got {type(base).__name__}.")
        self.card = self._resolve_card(card, model, explicit_config=config is not None)
        if self.card is not None:
            base = base.with_overrides(**self.card.config_overrides())
        base = base.with_overrides(**overrides)
        hooks, embeddings = None, None
        if model is not None:
            base = self._complete_from_model(base, model)
            hooks, embeddings = self._attach(model, base)
        elif base.coherence in ("hidden", "embedding"):
            raise ValueError(
                f"`coherence={base.coherence!r}` needs the model: pass it as `ICP(model, ...)`, or use "
                "`coherence='logits'`."
            )
        self.config = base
        self.model_name = getattr(model, "name_or_path", None) if model is not None else None
        self.processor = ICPLogitsProcessor(base, hooks, embeddings)
        from .criteria import DivergenceStoppingCriteria, LoopStoppingCriteria

        self.stopping_criteria = StoppingCriteriaList(
            [LoopStoppingCriteria(self.processor.state), DivergenceStoppingCriteria(self.processor.state)]
        )
        super().__init__([self.processor])

    @staticmethod
    def _resolve_card(card: Any, model: Any, explicit_config: bool) -> ModelCard | None:
        """The model card to apply: looked up (`"auto"`), loaded (a path), given, or none."""
        if card is None:
            return None
        if isinstance(card, str) and card == "auto":
            if explicit_config:
                return None  # an explicit config is used as given
            name = getattr(model, "name_or_path", None) if model is not None else None
            if not isinstance(name, str) or not name:
                return None  # a model built from a config (or no model) has no id to look up
            found = find_card_for_model(model)  # by name, else by fingerprint (icp.fingerprint)
            if found is None and name not in _WARNED_NO_CARD:
                _WARNED_NO_CARD.add(name)
                warnings.warn(
                    f"No ICP model card for {name!r}: ICP uses its documented defaults (calibrated on "
                    f"SmolLM2-135M-Instruct). {describe_available_cards()} Run `icp calibrate --model "
                    f"{_calibrate_name(name)}` to write one, point $ICP_MODEL_CARDS at a folder of cards, or pass "
                    "`card=None` to silence this.",
                    ICPCardWarning,
                    stacklevel=3,  # points at the caller's ICP(...)
                )
            return found
        if explicit_config:
            raise ValueError(
                f"`card` (={card!r}) and `config` were both given: pass one. `config` is used as given; to combine "
                "them, pass `config=ICPConfig.from_dict({**config.to_dict(), **card.config_overrides()})`."
            )
        if isinstance(card, ModelCard):
            return card
        if isinstance(card, (str, os.PathLike)):
            return load_card(card)
        raise TypeError(f"`card` (={card!r}) has to be 'auto', None, a path to a model card or a ModelCard.")

    @classmethod
    def _attach(cls, model: Any, config: ICPConfig) -> tuple[ModelHooks | None, torch.Tensor | None]:
        """The forward hooks on `model` and, for embedding coherence, its input embeddings."""
        source = "embedding" if config.coherence == "auto" else config.coherence
        embeddings = None
        if source == "embedding":
            embeddings = cls._input_embeddings(model)
            if embeddings is None and config.coherence == "embedding":
                raise ValueError(
                    f"`coherence='embedding'` needs the model's input embeddings, but `model` "
                    f"({type(model).__name__}) has no `get_input_embeddings()` returning an nn.Embedding. "
                    "Use `coherence='logits'`."
                )
        # `torch.compile(model)` returns a wrapper whose `generate` runs the original module, so the
        # hooks go on that module (`_orig_mod`); they would never fire on the wrapper.
        hooked = getattr(model, "_orig_mod", model)
        if not hasattr(hooked, "register_forward_pre_hook"):
            return None, embeddings
        return ModelHooks(hooked, capture_final_hidden=source == "hidden"), embeddings

    @staticmethod
    def _complete_from_model(config: ICPConfig, model: Any) -> ICPConfig:
        model_config = getattr(model, "config", None)
        vocab = getattr(model_config, "vocab_size", None) if model_config is not None else None
        if hasattr(model_config, "get_text_config"):
            vocab = getattr(model_config.get_text_config(), "vocab_size", vocab)
        if isinstance(vocab, int) and vocab > 1:
            config.check_vocab(vocab)
        if config.eos_token_id is None:
            eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
            if eos is None and model_config is not None:
                eos = getattr(model_config, "eos_token_id", None)
            if eos is not None:
                config = config.with_overrides(eos_token_id=eos if isinstance(eos, int) else [int(e) for e in eos])
        return config

    @staticmethod
    def _input_embeddings(model: Any) -> torch.Tensor | None:
        getter = getattr(model, "get_input_embeddings", None)
        try:
            module = getter() if callable(getter) else None
        except (NotImplementedError, AttributeError):
            module = None
        weight = getattr(module, "weight", None)
        return weight if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None

    @property
    def coherence_source(self) -> str:
        """Where coherence comes from: `"embedding"`, `"hidden"` or `"logits"`."""
        return self.processor.coherence_source

    @property
    def trace(self) -> Trace:
        """The trace of the latest generation, finalised on first access (one host copy)."""
        if not self.processor.state.started:
            raise RuntimeError("ICP has not run yet: call generate(..., logits_processor=icp) first.")
        return self.processor.state.trace(
            {
                "config": self.config.to_dict(),
                "coherence_source": self.coherence_source,
                "model": self.model_name,
                "card": self.card.summary() if self.card is not None else None,
            }
        )

    def reset(self) -> None:
        """Forgets the latest generation; the next step starts a new one.

        Not needed between generate() calls when ICP has the model: its forward hook tells a new
        generation by its KV cache (a new cache object, or a prefill of several positions), or, with
        `use_cache=False`, by the fed length not growing by one. Call it yourself in the one case that
        rule cannot see, `use_cache=False` with a second prompt exactly one token longer than the first
        generation's last input, and after `remove_hooks()`, when only shapes are left to go by."""
        self.processor.reset()

    def remove_hooks(self) -> None:
        """Detaches ICP's forward hooks from the model. New generations are then recognised by shape
        only, and `"hidden"` coherence is unavailable (ICP falls back to `"logits"`)."""
        if self.processor.hooks is not None:
            self.processor.hooks.remove()
            self.processor.hooks = None
            if self.processor.coherence_source == "hidden":
                self.processor.coherence_source = "logits"

    def pipeline(self, generator: Any, inputs: Any, **generate_kwargs: Any) -> list:
        """Runs a `text-generation` pipeline with ICP and attaches, to every answer, its row of the
        trace summary (trajectory F, regime shares, stop reason, ...) under the key `"icp"`.

        Each input runs as its own generate() call, so every answer's summary comes from its own trace
        (`icp.trace` holds the last one). Generate's own warpers are turned off (see
        [`ICP.generation_kwargs`]); `generate_kwargs` go to the pipeline and may override them.

        Args:
            generator (`TextGenerationPipeline`): a `pipeline("text-generation", model=...)` whose model
                is the one ICP was built with (or any model, with `coherence="logits"`).
            inputs (`str`, `list[dict]` (a chat), or a list of either): what to generate from.
            **generate_kwargs: e.g. `max_new_tokens=64`, `num_return_sequences=2`.

        Returns:
            `list`: the pipeline's output for each input (a list of answer dicts), each answer with an
            `"icp"` entry.
        """
        single = isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], dict))
        items = [inputs] if single else list(inputs)
        if not items:
            raise ValueError("`inputs` is empty: pass a prompt, a chat, or a list of them.")
        kwargs = self.generation_kwargs()
        kwargs.update(generate_kwargs)
        results = []
        for item in items:
            answers = generator(item, **kwargs)
            rows = self.trace.summary().rows
            if len(rows) != len(answers):
                raise RuntimeError(
                    f"The pipeline returned {len(answers)} answers for one input but ICP traced {len(rows)} rows; "
                    "was ICP passed to another generate() in between?"
                )
            for answer, row in zip(answers, rows):
                answer["icp"] = row.to_dict()
            results.append(answers)
        return results[0] if single else results

    def select(self, sequences: torch.Tensor, num_return_sequences: int) -> torch.Tensor:
        """Keeps, per prompt, the candidate with the lowest trajectory F among those that neither looped
        nor diverged (see [`Trace.best_of`]): best-of-n by free energy.

        Args:
            sequences (`torch.LongTensor` of shape `(batch * num_return_sequences, length)`): what
                generate() returned for the latest generation.
            num_return_sequences (`int`): candidates per prompt.

        Returns:
            `torch.LongTensor` of shape `(batch, length)`: one sequence per prompt.
        """
        trace = self.trace
        if sequences.shape[0] != trace.batch_size:
            raise ValueError(
                f"`sequences` has {sequences.shape[0]} rows but the latest generation had {trace.batch_size}: "
                "pass the output of the generate() call ICP just ran."
            )
        best = torch.as_tensor(trace.best_of(num_return_sequences), device=sequences.device)
        return sequences.index_select(0, best)

    def generation_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that make ICP the whole sampling policy of `generate()`:
        sampling on, generate's own warpers off, ICP's processor and criteria in."""
        return {
            "do_sample": True,
            "temperature": 1.0,
            "top_k": 0,
            "top_p": 1.0,
            "logits_processor": self,
            "stopping_criteria": self.stopping_criteria,
        }

    def generation_config(self, base: GenerationConfig | None = None) -> GenerationConfig:
        """A `transformers.GenerationConfig` that makes ICP the whole sampling policy of `generate()`.

        Sets `do_sample=True`, `num_beams=1` and every sampling warper that generate() would apply after
        ICP to its "off" value: `temperature=1.0`, `top_k=0`, `top_p=1.0`, `typical_p=1.0`,
        `epsilon_cutoff=0.0`, `eta_cutoff=0.0`, `min_p=None`, `top_h=None`. `top_k` is 0, not `None`:
        generate() fills a `None` from `model.generation_config` and then from its global default,
        top-k=50. Everything else (`eos_token_id`, `pad_token_id`, `max_new_tokens`, repetition
        penalties and other processors that run before ICP, ...) comes from `base`.

        The sampling fields are those of [`ICP.generation_kwargs`]; its `logits_processor` and
        `stopping_criteria` are not generation settings (`GenerationConfig(**icp.generation_kwargs())`
        raises "Argument `logits_processor` is not a valid argument of `GenerationConfig`"), so pass them to
        generate() next to the config: `generate(..., generation_config=icp.generation_config(),
        logits_processor=icp, stopping_criteria=icp.stopping_criteria)`.

        `min_p` and `top_h` are off only as `None`, which generate() refills from `model.generation_config`:
        if the model's own config sets them, clear them there (`model.generation_config.min_p = None`)
        or ICP warns ([`ICPCompositionWarning`]) that they apply after it. With `control=False` ICP only
        observes, so this config samples the model's untempered distribution.

        Args:
            base (`transformers.GenerationConfig`, *optional*): the config to start from, e.g.
                `model.generation_config`; it is copied, never changed. Defaults to an empty
                `GenerationConfig()` (generate() then fills the unset fields from the model's).

        Returns:
            `transformers.GenerationConfig`: a new, validated config.

        Example:
            >>> import torch
            >>> from transformers import LlamaConfig, LlamaForCausalLM
            >>> from icp import ICP
            >>> _ = torch.manual_seed(0)
            >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
            ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, eos_token_id=None))
            >>> icp = ICP(model)
            >>> config = icp.generation_config(model.generation_config)
            >>> config.do_sample, config.temperature, config.top_k, config.top_p
            (True, 1.0, 0, 1.0)
            >>> config.max_new_tokens = 4
            >>> out = model.generate(torch.tensor([[1, 2, 3]]), generation_config=config, logits_processor=icp,
            ...     stopping_criteria=icp.stopping_criteria)
            >>> icp.trace.to_dict()["entropy"].shape
            (1, 4)
        """
        import copy

        if base is None:
            config = GenerationConfig()
        elif isinstance(base, GenerationConfig):
            config = copy.deepcopy(base)
        else:
            raise TypeError(
                f"`base` (={base!r}, a {type(base).__name__}) has to be a transformers.GenerationConfig (e.g. "
                "`model.generation_config`) or None; for keyword arguments, start from "
                "`GenerationConfig(**settings)`."
            )
        not_settings = ("logits_processor", "stopping_criteria")
        sampling = {k: v for k, v in self.generation_kwargs().items() if k not in not_settings}
        config.update(
            **sampling,
            num_beams=1,
            typical_p=1.0,
            epsilon_cutoff=0.0,
            eta_cutoff=0.0,
            min_p=None,
            top_h=None,
        )
        config.validate()
        return config
