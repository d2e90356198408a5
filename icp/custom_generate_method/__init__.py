"""ICP as a transformers custom generation method (`model.generate(..., custom_generate=...)`).

This folder is laid out as transformers expects of a custom generation method: `custom_generate/generate.py`
(a `generate(model, *args, **kwargs)` function), `custom_generate/requirements.txt` and a `README.md`. Pass
it, as [`custom_generate_path`] returns it, with `trust_remote_code=True`:

    model.generate(**inputs, custom_generate=icp.custom_generate_path(), trust_remote_code=True)

`custom_generate/generate.py` only forwards to [`generate`] here, so what runs is the installed `icp`
package (the file transformers copies and executes stays a few lines long).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
from transformers.generation.utils import GenerateDecoderOnlyOutput
from transformers.utils import ModelOutput

if TYPE_CHECKING:
    from ..cards import ModelCard
    from ..config import ICPConfig
    from ..processors import ICP
    from ..trace import Trace

__all__ = ["ICPGenerateOutput", "custom_generate_path", "generate"]

# generate() refills these from `model.generation_config` when the config passed leaves them `None`, and
# `None` is their only "off" value (see `ICP.generation_config`).
_OFF_ONLY_AS_NONE = ("min_p", "top_h")


def custom_generate_path() -> str:
    """The folder to pass as `custom_generate` to run ICP as a transformers custom generation method.

    It holds `custom_generate/generate.py`, which runs [`icp.custom_generate_method.generate`]. It is a `str`
    because transformers treats only a `str` as a repository or folder (anything else callable is taken
    as a decoding loop).

    Returns:
        `str`: the absolute path of the folder.

    Example:
        >>> import os
        >>> import icp
        >>> os.path.isfile(os.path.join(icp.custom_generate_path(), "custom_generate", "generate.py"))
        True
    """
    return str(Path(__file__).resolve().parent)


@dataclass
class ICPGenerateOutput(GenerateDecoderOnlyOutput):
    """What ICP's custom generation method returns with `return_dict_in_generate=True`: generate's
    [`~generation.GenerateDecoderOnlyOutput`] plus the trace of the generation.

    Args:
        icp_trace ([`icp.Trace`], *optional*): ICP's trace of this generation (`None` only if generate()
            never called ICP's processor).
    """

    icp_trace: Trace | None = None


def generate(
    model: Any,
    *args: Any,
    icp: ICP | None = None,
    icp_config: ICPConfig | dict[str, Any] | str | os.PathLike | None = None,
    icp_card: str | os.PathLike | ModelCard | None = "auto",
    **kwargs: Any,
) -> torch.LongTensor | ModelOutput:
    """Runs `generate()` with ICP as the whole sampling policy: its processor, stopping criteria and
    generation config (sampling on, generate's own warpers off).

    transformers calls it for `model.generate(..., custom_generate=icp.custom_generate_path(),
    trust_remote_code=True)`, with every argument of that call; it can also be called directly. Without
    `icp`, a fresh `ICP(model)` is built for the call (its forward hooks are removed afterwards).

    Generation settings: the `generation_config` given (default `model.generation_config`) goes through
    [`ICP.generation_config`], so its `do_sample`, `temperature`, `top_k`, `top_p`, ... are replaced by ICP's;
    generation kwargs of the call (`max_new_tokens=64`, `temperature=0.7`, ...) are applied on top and win
    (a warper set that way composes with ICP, which then warns). A `logits_processor` or `stopping_criteria`
    given runs too: ICP's processor is placed after the given processors, its criteria after the given ones.

    Output: as `generate()` would return it. With `return_dict_in_generate=True` it is an
    [`ICPGenerateOutput`], whose `icp_trace` is ICP's trace; otherwise the sequences tensor, and the trace
    is read from the `icp` passed (`icp.trace`); without either, it is not kept.

    Args:
        model (`PreTrainedModel`): the model generating.
        *args: passed to `model.generate` (e.g. the input ids).
        icp ([`icp.ICP`], *optional*): the ICP to use, e.g. one built with `ICP(model, target_entropy=2.0)`;
            its trace stays readable afterwards. Not with `icp_config`.
        icp_config ([`icp.ICPConfig`], `dict`, `str` or `os.PathLike`, *optional*): how to build the ICP
            when `icp` is not given: an [`icp.ICPConfig`] (used as given, no model card), a folder or file
            written by [`icp.ICPConfig.save_pretrained`] (likewise), or a dict of [`icp.ICPConfig`] fields
            overriding the model card's values. Defaults to the model card's config (see [`icp.ICP`]).
        icp_card (`str`, `os.PathLike`, [`icp.cards.ModelCard`] or `None`, *optional*, defaults to `"auto"`):
            the model card, as `ICP(model, card=...)` takes it; only with no `icp_config` or a dict.
        **kwargs: passed to `model.generate` (`input_ids`, `attention_mask`, `max_new_tokens`,
            `generation_config`, `logits_processor`, `stopping_criteria`, `return_dict_in_generate`, ...).

    Returns:
        `torch.LongTensor` or [`ICPGenerateOutput`]: what `generate()` returns, with the trace in the
        dict form.

    Example:
        >>> import torch
        >>> from transformers import LlamaConfig, LlamaForCausalLM
        >>> import icp
        >>> _ = torch.manual_seed(0)
        >>> model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
        ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, eos_token_id=None))
        >>> out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=5, return_dict_in_generate=True,
        ...     custom_generate=icp.custom_generate_path(), trust_remote_code=True)
        >>> type(out).__name__, out.sequences.shape, out.icp_trace.to_dict()["entropy"].shape
        ('ICPGenerateOutput', torch.Size([1, 8]), (1, 5))
    """
    from .. import ICP, ICPConfig

    if "custom_generate" in kwargs:
        raise ValueError(
            f"`custom_generate` (={kwargs['custom_generate']!r}) cannot be passed to ICP's custom generation "
            "method: it already is the generation method."
        )
    created = icp is None
    if created:
        icp = _build_icp(model, icp_config, icp_card, ICP, ICPConfig)
    elif not isinstance(icp, ICP):
        raise TypeError(
            f"`icp` (={icp!r}, a {type(icp).__name__}) has to be an icp.ICP (e.g. `ICP(model)`), or None to build "
            "one (from `icp_config` and `icp_card`)."
        )
    elif icp_config is not None or not (isinstance(icp_card, str) and icp_card == "auto"):
        raise ValueError(
            "`icp` was given together with `icp_config` or `icp_card`: pass either an ICP, or how to build one."
        )
    try:
        base = kwargs.pop("generation_config", None)
        if base is None:
            base = model.generation_config
        if not isinstance(base, GenerationConfig):
            raise TypeError(f"`generation_config` (={base!r}) has to be a transformers.GenerationConfig or None.")
        config = icp.generation_config(base)
        # Generation settings passed as kwargs go into the config (passing both is deprecated in
        # transformers 5); a `None` stays a kwarg, since generate() applies kwargs last and in the config
        # it would be refilled from `model.generation_config`.
        settings = {k: v for k, v in kwargs.items() if v is not None and _is_setting(config, k)}
        for key in settings:
            del kwargs[key]
        if settings:
            config.update(**settings)
        for key in _OFF_ONLY_AS_NONE:
            if getattr(model.generation_config, key, None) is not None and key not in settings:
                # The model's own value would be refilled after ICP. As a kwarg next to a
                # `generation_config`, transformers logs its deprecation notice for that (once).
                kwargs.setdefault(key, None)
        kwargs["logits_processor"] = _merged(LogitsProcessorList, kwargs.get("logits_processor"), icp, icp.processor)
        kwargs["stopping_criteria"] = _merged(
            StoppingCriteriaList, kwargs.get("stopping_criteria"), icp.stopping_criteria, None
        )
        # type(model).generate: the class's generate, not a `custom_generate` bound to this instance by
        # `from_pretrained(..., trust_remote_code=True)` (which would call this function again).
        output = type(model).generate(model, *args, generation_config=config, **kwargs)
        if isinstance(output, GenerateDecoderOnlyOutput):
            trace = icp.trace if icp.processor.state.started else None
            output = ICPGenerateOutput(**output, icp_trace=trace)
        elif isinstance(output, dict):  # another ModelOutput (encoder-decoder): the trace as an attribute
            output.icp_trace = icp.trace if icp.processor.state.started else None
        return output
    finally:
        if created:
            icp.remove_hooks()


def _build_icp(model: Any, icp_config: Any, icp_card: Any, icp_class: type, config_class: type) -> Any:
    if icp_config is None:
        return icp_class(model, card=icp_card)
    if isinstance(icp_config, dict):
        allowed = sorted(f.name for f in fields(config_class))
        unknown = sorted(set(icp_config) - set(allowed))
        if unknown:  # also catches `model`, `config` and `card`, which ICP(...) would take as its own arguments
            raise TypeError(f"`icp_config` has key(s) {unknown} that are not ICPConfig fields; allowed are {allowed}.")
        return icp_class(model, card=icp_card, **icp_config)
    if isinstance(icp_config, (str, os.PathLike)):
        icp_config = config_class.from_pretrained(icp_config)
    if not isinstance(icp_config, config_class):
        raise TypeError(
            f"`icp_config` (={icp_config!r}, a {type(icp_config).__name__}) has to be an ICPConfig, a dict of its "
            "fields, a path written by `ICPConfig.save_pretrained`, or None."
        )
    if not (isinstance(icp_card, str) and icp_card == "auto"):
        raise ValueError(
            f"`icp_card` (={icp_card!r}) and a complete `icp_config` were both given: pass one (a dict "
            "`icp_config` overrides the card's values instead)."
        )
    return icp_class(model, config=icp_config)


def _is_setting(config: GenerationConfig, key: str) -> bool:
    """Whether `key` is a generation setting (an attribute of the GenerationConfig), not a model input."""
    return not key.startswith("_") and key in vars(config)


def _merged(list_class: type, given: Any, ours: Any, processor: Any) -> Any:
    """`given` (None, one object or a list) followed by `ours`, without repeating any of `ours`."""
    items = [] if given is None else list(given) if isinstance(given, list) else [given]
    own = list(ours)
    skip = {id(ours), id(processor), *(id(o) for o in own)}
    return list_class([*(p for p in items if id(p) not in skip), *own])
