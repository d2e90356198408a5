"""The decoders the suite compares, each a name, a hyperparameter grid and a builder of generate() kwargs.

Every decoder gets the same tuning budget: a grid of at most `TUNING_BUDGET` (3) settings tried on the
dev split (`eval/run.py --tune`); decoders without hyperparameters (greedy, pure sampling) have one.
The first setting of each grid is the decoder's untuned default (its authors' or transformers'
recommended value where one exists).

All sampling decoders turn off what generate() would otherwise add on its own (`top_k=50` with
`do_sample=True`, any temperature or top-p in the model's generation config): each decoder is exactly
what its name says, and nothing else.

Example:
    >>> from bench.decoders import DECODERS, get_decoder
    >>> sorted(DECODERS)[:3]
    ['adaptive_p', 'dry', 'edt']
    >>> get_decoder("min_p").grid[0]
    {'min_p': 0.1}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DECODERS",
    "TUNING_BUDGET",
    "DecoderSpec",
    "GenerationPlan",
    "build_icp_plan",
    "get_decoder",
    "parse_decoders",
]

#: Settings each decoder may try on the dev split (the same for every decoder).
TUNING_BUDGET = 3

# What generate() must not add behind a decoder's back.
_NEUTRAL = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None, "typical_p": 1.0, "repetition_penalty": 1.0}


@dataclass
class GenerationPlan:
    """What one decoder setting hands to generate(): kwargs, extra processors and stopping criteria.

    Args:
        kwargs (`dict`): generate() keyword arguments (sampling switches and warpers).
        processors (`list`): LogitsProcessors appended after the suite's observer, in order.
        stopping_criteria (`list`): StoppingCriteria to pass.
        icp (`ICP`, *optional*): the ICP object when the decoder is ICP (its trace carries F, U, stop reasons).
    """

    kwargs: dict[str, Any]
    processors: list[Any] = field(default_factory=list)
    stopping_criteria: list[Any] = field(default_factory=list)
    icp: Any = None


@dataclass(frozen=True)
class DecoderSpec:
    """A decoder of the suite.

    Args:
        name (`str`): the name used on the command line and in results.
        description (`str`): one line for `--list-decoders` and the report.
        grid (`tuple[dict, ...]`): hyperparameter settings tried when tuning; the first is the default.
        build (`Callable[[dict, Any], GenerationPlan]`): turns a setting (and the model) into a plan.
        source (`str`): where the decoder comes from.
    """

    name: str
    description: str
    grid: tuple[dict[str, Any], ...]
    build: Callable[[dict[str, Any], Any], GenerationPlan]
    source: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.grid) <= TUNING_BUDGET:
            raise ValueError(
                f"Decoder {self.name!r} has {len(self.grid)} settings; every decoder gets 1 to {TUNING_BUDGET}."
            )

    def plan(self, params: dict[str, Any] | None, model: Any) -> GenerationPlan:
        """The generation plan for `params` (the default setting when `None`)."""
        params = dict(self.grid[0] if params is None else params)
        allowed = {key for setting in self.grid for key in setting}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise ValueError(
                f"Unknown hyperparameter(s) {unknown} for decoder {self.name!r}; it takes {sorted(allowed)}."
            )
        return self.build(params, model)


def _sampling(**overrides: Any) -> dict[str, Any]:
    kwargs = {"do_sample": True, **_NEUTRAL}
    kwargs.update(overrides)
    return kwargs


def _greedy(**overrides: Any) -> dict[str, Any]:
    # Warpers do not apply to greedy search (generate would warn that they are ignored).
    kwargs = {"do_sample": False, "repetition_penalty": 1.0}
    kwargs.update(overrides)
    return kwargs


def _warper(key: str) -> Callable[[dict[str, Any], Any], GenerationPlan]:
    """A decoder that is pure sampling plus one of generate()'s own warpers."""

    def build(params: dict[str, Any], model: Any) -> GenerationPlan:
        return GenerationPlan(_sampling(**{key: params[key]}))

    return build


def _with_processor(factory: Callable[..., Any], **sampling: Any) -> Callable[[dict[str, Any], Any], GenerationPlan]:
    def build(params: dict[str, Any], model: Any) -> GenerationPlan:
        made = factory(**params)
        return GenerationPlan(_sampling(**sampling), processors=made if isinstance(made, list) else [made])

    return build


def _mirostat(**params: Any):
    from icp.baselines import MirostatV2LogitsProcessor

    return MirostatV2LogitsProcessor(**params)


def _edt(**params: Any):
    from icp.baselines import EDTLogitsProcessor

    return EDTLogitsProcessor(**params)


def _entropix(**params: Any):
    from icp.baselines import EntropixLogitsProcessor

    return EntropixLogitsProcessor(**params)


def _adaptive_p(**params: Any):
    from transformers import MinPLogitsWarper

    from icp.baselines import AdaptivePLogitsProcessor

    # llama.cpp's recommended chain: min-p 0.05, then adaptive-p (generate's own warpers run after us).
    return [MinPLogitsWarper(min_p=0.05), AdaptivePLogitsProcessor(**params)]


def _dry(**params: Any):
    from icp.baselines import DRYLogitsProcessor

    return DRYLogitsProcessor(**params)


def build_icp_plan(params: dict[str, Any], model: Any) -> GenerationPlan:
    """The plan of ICP built on `model` with the model card's settings overridden by `params`."""
    from icp import ICP

    icp = ICP(model, **params)
    kwargs = icp.generation_kwargs()
    kwargs.pop("logits_processor")
    criteria = list(kwargs.pop("stopping_criteria"))
    kwargs.update({k: v for k, v in _NEUTRAL.items() if k not in kwargs})
    return GenerationPlan(kwargs, processors=list(icp), stopping_criteria=criteria, icp=icp)


DECODERS: dict[str, DecoderSpec] = {
    spec.name: spec
    for spec in [
        DecoderSpec("greedy", "argmax at every step", ({},), lambda p, m: GenerationPlan(_greedy()), "transformers"),
        DecoderSpec(
            "sampling",
            "pure ancestral sampling, T = 1, no truncation",
            ({},),
            lambda p, m: GenerationPlan(_sampling()),
            "transformers",
        ),
        DecoderSpec(
            "temperature",
            "sampling at a fixed temperature",
            ({"temperature": 0.7}, {"temperature": 0.5}, {"temperature": 0.9}),
            _warper("temperature"),
            "transformers",
        ),
        DecoderSpec(
            "top_p",
            "nucleus sampling (Holtzman et al. 2020)",
            ({"top_p": 0.95}, {"top_p": 0.8}, {"top_p": 0.6}),
            _warper("top_p"),
            "transformers",
        ),
        DecoderSpec(
            "min_p",
            "min-p sampling (Nguyen et al. 2024)",
            ({"min_p": 0.1}, {"min_p": 0.05}, {"min_p": 0.2}),
            _warper("min_p"),
            "transformers",
        ),
        DecoderSpec(
            "typical",
            "locally typical sampling (Meister et al. 2023)",
            ({"typical_p": 0.95}, {"typical_p": 0.5}, {"typical_p": 0.2}),
            _warper("typical_p"),
            "transformers",
        ),
        DecoderSpec(
            "top_h",
            "top-H: entropy-bounded truncation (transformers' TopHLogitsWarper)",
            ({"top_h": 0.4}, {"top_h": 0.2}, {"top_h": 0.6}),
            _warper("top_h"),
            "transformers",
        ),
        DecoderSpec(
            "eta",
            "eta sampling (Hewitt et al. 2022)",
            ({"eta_cutoff": 6e-4}, {"eta_cutoff": 2e-4}, {"eta_cutoff": 2e-3}),
            _warper("eta_cutoff"),
            "transformers",
        ),
        DecoderSpec(
            "repetition_penalty",
            "greedy with transformers' repetition penalty (Keskar et al. 2019)",
            (
                {"repetition_penalty": 1.2},
                {"repetition_penalty": 1.1},
                {"repetition_penalty": 1.3},
            ),
            lambda p, m: GenerationPlan(_greedy(repetition_penalty=p["repetition_penalty"])),
            "transformers",
        ),
        DecoderSpec(
            "mirostat",
            "Mirostat v2, target surprise tau bits (Basu et al. 2021)",
            ({"tau": 5.0}, {"tau": 3.0}, {"tau": 2.0}),
            _with_processor(_mirostat),
            "icp.baselines",
        ),
        DecoderSpec(
            "edt",
            "entropy-based dynamic temperature (Zhang et al. 2024)",
            ({"t0": 1.0}, {"t0": 0.8}, {"t0": 0.6}),
            _with_processor(_edt),
            "icp.baselines",
        ),
        DecoderSpec(
            "entropix",
            "entropix-style entropy/varentropy quadrant sampler, per row",
            (
                {"base_temperature": 0.666},
                {"base_temperature": 0.4},
                {"base_temperature": 0.9},
            ),
            _with_processor(_entropix),
            "icp.baselines",
        ),
        DecoderSpec(
            "adaptive_p",
            "adaptive-p after min-p 0.05: sampling toward a target token probability (llama.cpp)",
            ({"target": 0.5}, {"target": 0.4}, {"target": 0.6}),
            _with_processor(_adaptive_p),
            "icp.baselines",
        ),
        DecoderSpec(
            "dry",
            "DRY repetition penalty on min-p 0.05 sampling (p-e-w 2024)",
            ({"multiplier": 0.8}, {"multiplier": 0.4}, {"multiplier": 1.5}),
            _with_processor(_dry, min_p=0.05),
            "icp.baselines",
        ),
        DecoderSpec(
            "icp",
            "the Inference Control Plane: closed-loop temperature, loop and divergence stops",
            ({}, {"initial_temperature": 0.3}, {"initial_temperature": 0.2}),
            build_icp_plan,
            "icp",
        ),
    ]
}


def get_decoder(name: str) -> DecoderSpec:
    """The decoder called `name`: one of the suite's, or an ablation variant of ICP (`bench.ablations`).

    Raises:
        KeyError: listing the known decoders and variants.

    Example:
        >>> get_decoder("icp_no_min_p").source
        'icp (ablation)'
    """
    from .ablations import ABLATIONS

    if name in DECODERS:
        return DECODERS[name]
    if name in ABLATIONS:
        return ABLATIONS[name]
    raise KeyError(
        f"Unknown decoder {name!r}; known decoders: {', '.join(DECODERS)}; ICP's ablation variants: "
        f"{', '.join(ABLATIONS)}."
    )


def parse_decoders(text: str) -> list[str]:
    """Decoder names from a comma-separated list (`"all"` for every decoder), validated, order kept.

    Example:
        >>> parse_decoders("greedy, icp")
        ['greedy', 'icp']
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(DECODERS)
    if not names:
        raise ValueError(f"`--decoders` (={text!r}) names no decoder; known: {', '.join(DECODERS)} or 'all'.")
    for name in names:
        get_decoder(name)
    if len(set(names)) != len(names):
        raise ValueError(f"`--decoders` (={text!r}) names a decoder twice.")
    return names
