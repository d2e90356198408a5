"""Forward hooks on the model: new-generation detection and, optionally, the final hidden state.

[`ModelHooks`] always puts a pre-hook on the model that tells each new generation from the next step
of the current one, even when shapes happen to line up, from two facts of any decoding loop rather
than from how a given transformers release names its arguments:

- with a KV cache, a new generation brings a cache object not seen before, or feeds more than one
  position into one (a prefill); each later step feeds exactly one position. The cache is found by
  its type (`transformers.Cache`) among the forward call's arguments, whatever their name
  (`past_key_values` up to transformers 5.23, `cache` from 5.24). A first cache fed one position
  right after a cacheless call of the same batch is the one the model made during that prefill
  (transformers 5.0 prefills without one), not a new generation;
- without a cache (`use_cache=False`), each step feeds the whole sequence, one position longer than
  the step before; anything else is a new generation.

The one case these cannot tell apart (no cache, and a second prompt exactly one token longer than the
first generation's last input) the processor catches by another fact: each `generate()` call builds
its own processor list ([`GenerationContext.is_current`]).

With `capture_final_hidden=True` (coherence `"hidden"`) it also hooks the final
normalisation layer (the input of the LM head) and keeps, for the latest forward call, the last
position's hidden state and, on a prefill, the mean hidden state of the prompt (left padding masked
out). Neither needs an extra forward pass.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn
from transformers import Cache

__all__ = ["ModelHooks", "find_final_norm"]


def _fed_shape(args: tuple, kwargs: dict) -> tuple[int, int] | None:
    """(batch, positions) fed to this forward call, from `input_ids` or `inputs_embeds`; None if neither."""
    fed = kwargs.get("input_ids", args[0] if args else None)
    if not isinstance(fed, torch.Tensor):
        fed = kwargs.get("inputs_embeds")
    if isinstance(fed, torch.Tensor) and fed.dim() >= 2:
        return int(fed.shape[0]), int(fed.shape[1])
    return None


def _find_cache(args: tuple, kwargs: dict) -> Cache | None:
    """The KV cache among the call's arguments, found by type rather than by argument name."""
    for value in (*kwargs.values(), *args):
        if isinstance(value, Cache):
            return value
    return None


def _made_by_the_prefill(previous: tuple[int, int] | None, fed: tuple[int, int] | None) -> bool:
    """Whether a first cache, fed one position right after a cacheless call of the same batch, is the one
    the model made during that call (transformers 5.0 prefills without a cache and lets the model make it)."""
    return previous is not None and fed is not None and fed[1] == 1 and fed[0] == previous[0]


def _starts_generation(local, cache: Cache | None, fed: tuple[int, int] | None) -> bool:
    """Whether a forward call that feeds `fed` with `cache` starts a new generation (updates `local.cache_ref`)."""
    previous_cache = local.cache_ref() if local.cache_ref is not None else None
    if cache is not None:
        local.cache_ref = weakref.ref(cache)
        if previous_cache is None and _made_by_the_prefill(local.last_positions, fed):
            return False
        # A cache not seen before, or a prefill (several positions) into one already used.
        return previous_cache is not cache or (fed is not None and fed[1] > 1)
    local.cache_ref = None
    previous = local.last_positions
    if fed is None:  # nothing to count: the processor's own shape check decides
        return False
    # Without a cache every step feeds the whole sequence, one position longer than the step before.
    return previous is None or fed[0] != previous[0] or fed[1] != previous[1] + 1

_FINAL_NORM_NAMES = ("norm", "final_layernorm", "ln_f", "final_layer_norm", "final_norm")


def find_final_norm(model: nn.Module) -> nn.Module | None:
    """Returns the module whose output feeds the LM head (the final norm), or None.

    Looks in the base model (`model.<base_model_prefix>`, then `model.model`, then `model`) for an
    attribute named one of `norm`, `final_layernorm`, `ln_f`, `final_layer_norm`, `final_norm`.

    Args:
        model (`torch.nn.Module`): a causal LM.
    """
    candidates = []
    prefix = getattr(model, "base_model_prefix", None)
    if prefix and isinstance(getattr(model, prefix, None), nn.Module):
        candidates.append(getattr(model, prefix))
    if isinstance(getattr(model, "model", None), nn.Module):
        candidates.append(model.model)
    decoder = getattr(model, "decoder", None)
    if isinstance(decoder, nn.Module):
        candidates.append(decoder)
    candidates.append(model)
    for base in candidates:
        for name in _FINAL_NORM_NAMES:
            module = getattr(base, name, None)
            if isinstance(module, nn.Module):
                return module
    return None


class ModelHooks:
    """Watches `model`'s forward calls: new generations and, optionally, final hidden states.

    Args:
        model (`torch.nn.Module`): a causal LM.
        capture_final_hidden (`bool`, *optional*, defaults to `False`): also hook the final norm.

    Raises:
        ValueError: if `capture_final_hidden` and the model has no final norm ICP can find.

    Attributes (each per calling thread):
        last_hidden (`torch.FloatTensor` of shape `(batch, hidden)` or None): the last position's
            state of the latest forward call.
        prompt_mean (`torch.FloatTensor` of shape `(batch, hidden)` or None): on the latest prefill,
            the mean state over the prompt's real tokens before the last one (zeros if none).
        generation_id (`int`): increases by one each time a forward call starts a new generation (see
            the module docstring for the rule).
        forward_calls (`int`): forward calls seen, so that ICP can tell when its hook stops seeing them.
    """

    def __init__(self, model: nn.Module, capture_final_hidden: bool = False) -> None:
        norm = find_final_norm(model) if capture_final_hidden else None
        if capture_final_hidden and norm is None:
            raise ValueError(
                f"`model` ({type(model).__name__}) has no final norm ICP can hook (looked for "
                f"{', '.join(_FINAL_NORM_NAMES)} on the base model), so hidden-state coherence is unavailable. "
                "Pass `coherence='logits'` for the logits-only coherence."
            )
        # Per thread, so that two threads generating with one model each see their own forward calls.
        self._local = threading.local()
        self.captures_final_hidden = norm is not None
        self._handles = [model.register_forward_pre_hook(self._before_forward, with_kwargs=True)]
        if norm is not None:
            self._handles.append(norm.register_forward_hook(self._after_norm))

    def _thread_state(self):
        local = self._local
        if not hasattr(local, "generation_id"):
            local.generation_id = 0
            local.last_hidden = None
            local.prompt_mean = None
            local.attention_mask = None
            local.cache_ref = None
            local.last_positions = None  # (batch, positions) of the latest forward call
            local.forward_calls = 0
        return local

    @property
    def generation_id(self) -> int:
        return self._thread_state().generation_id

    @property
    def forward_calls(self) -> int:
        return self._thread_state().forward_calls

    @property
    def last_hidden(self) -> torch.Tensor | None:
        return self._thread_state().last_hidden

    @property
    def prompt_mean(self) -> torch.Tensor | None:
        return self._thread_state().prompt_mean

    def _before_forward(self, module, args, kwargs):
        local = self._thread_state()
        local.forward_calls += 1
        local.attention_mask = kwargs.get("attention_mask")
        fed = _fed_shape(args, kwargs)
        if fed is not None and fed[1] == 0:
            # A shape, not a value: no host sync. Without this the model fails deep inside attention.
            raise ValueError(
                f"The prompt is empty: the model was fed shape {fed}, and a causal LM needs at least one token "
                "to predict the next. Start it with the BOS token (`tokenizer.bos_token_id`) or use the chat "
                "template, which adds tokens."
            )
        if _starts_generation(local, _find_cache(args, kwargs), fed):
            local.generation_id += 1
        local.last_positions = fed
        return None

    def _after_norm(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.dim() != 3:
            return None
        hidden = hidden.detach()
        local = self._thread_state()
        local.last_hidden = hidden[:, -1, :].float()
        if hidden.shape[1] > 1:
            prompt = hidden[:, :-1, :].float()
            mask = local.attention_mask
            if mask is not None and mask.dim() == 2 and mask.shape[1] >= hidden.shape[1]:
                weights = mask[:, -hidden.shape[1] : -1].to(prompt.dtype).unsqueeze(-1)
            else:
                weights = torch.ones(prompt.shape[:2] + (1,), dtype=prompt.dtype, device=prompt.device)
            local.prompt_mean = (prompt * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return None

    def remove(self) -> None:
        """Detaches the hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
