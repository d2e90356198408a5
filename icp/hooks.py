"""Forward hooks on the model: new-generation detection and, optionally, the final hidden state.

[`ModelHooks`] always puts a pre-hook on the model that notes each new KV-cache object: every
`generate()` call makes a new one, which is how ICP knows a new generation started even when shapes
happen to line up. With `capture_final_hidden=True` (coherence `"hidden"`) it also hooks the final
normalisation layer (the input of the LM head) and keeps, for the latest forward call, the last
position's hidden state and, on a prefill, the mean hidden state of the prompt (left padding masked
out). Neither needs an extra forward pass.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import nn

__all__ = ["ModelHooks", "find_final_norm"]

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
        generation_id (`int`): increases by one each time a forward call arrives with a KV cache not
            seen before, or with no cache and more than one position (a new generation).
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
        return local

    @property
    def generation_id(self) -> int:
        return self._thread_state().generation_id

    @property
    def last_hidden(self) -> torch.Tensor | None:
        return self._thread_state().last_hidden

    @property
    def prompt_mean(self) -> torch.Tensor | None:
        return self._thread_state().prompt_mean

    def _before_forward(self, module, args, kwargs):
        local = self._thread_state()
        local.attention_mask = kwargs.get("attention_mask")
        cache = kwargs.get("past_key_values")
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 and input_ids.shape[1] == 0:
            # A shape, not a value: no host sync. Without this the model fails deep inside attention.
            raise ValueError(
                "The prompt is empty: `input_ids` has shape "
                f"{tuple(input_ids.shape)}, and a causal LM needs at least one token to predict the next. "
                "Start it with the BOS token (`tokenizer.bos_token_id`) or use the chat template, which adds tokens."
            )
        if cache is not None:
            seen = local.cache_ref() if local.cache_ref is not None else None
            if seen is not cache:
                local.generation_id += 1
                try:
                    local.cache_ref = weakref.ref(cache)
                except TypeError:  # pragma: no cover - caches are plain objects
                    local.cache_ref = None
        elif input_ids is not None and input_ids.dim() == 2 and input_ids.shape[1] > 1:
            local.cache_ref = None
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
