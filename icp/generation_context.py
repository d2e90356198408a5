"""What `generate()` does around ICP: decoding mode, processors before and after it, max length.

A `LogitsProcessor` only sees `(input_ids, scores)`. To handle generate's own processors honestly
(MISSION: "ICP must see the raw logits, or know exactly what was applied before it"), ICP looks up,
once per generation (never per step), the calling `generate()` frame and reads its merged
`logits_processor` list and `generation_config`. Outside `generate()` nothing is found and ICP
simply runs on what it is given.
"""

from __future__ import annotations

import sys
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GenerationContext", "ICPCompatibilityWarning", "find_generation_context", "UnsupportedDecodingError"]

_MAX_FRAMES = 25
# Locals of generate's decoding loop that ICP reads (once per generation). Tested on both ends of the
# transformers range that pyproject.toml accepts; a release that renames them triggers the warning below.
_PROCESSORS_LOCAL = "logits_processor"
_GENERATION_CONFIG_LOCAL = "generation_config"
# Processors that change the distribution after ICP (generate's "warpers").
_DOWNSTREAM_WARPERS = {  # class name -> (generate kwarg, attribute holding its value)
    "TemperatureLogitsWarper": ("temperature", "temperature"),
    "TopKLogitsWarper": ("top_k", "top_k"),
    "TopPLogitsWarper": ("top_p", "top_p"),
    "MinPLogitsWarper": ("min_p", "min_p"),
    "TypicalLogitsWarper": ("typical_p", "mass"),
    "EpsilonLogitsWarper": ("epsilon_cutoff", "epsilon"),
    "EtaLogitsWarper": ("eta_cutoff", "epsilon"),
    "TopHLogitsWarper": ("top_h", "top_h"),
}


class ICPCompatibilityWarning(UserWarning):
    """The installed transformers does not lay out `generate()` as ICP expects; ICP says what it loses."""


class UnsupportedDecodingError(ValueError):
    """Raised when ICP is used in a decoding mode it refuses (beam search, assisted decoding)."""


@dataclass
class GenerationContext:
    """The generate() call ICP runs in.

    Attributes:
        function (`str`): the decoding loop's name (`"_sample"`, `"_beam_search"`, ...).
        do_sample (`bool`): whether generate samples (False: greedy, ICP only observes).
        max_length (`int` or None): generate's max_length (prompt + max_new_tokens).
        before (`list[str]`): class names of processors applied before ICP.
        after (`list[str]`): class names of processors applied after ICP.
        downstream (`dict[str, Any]`): generate kwargs of the warpers after ICP with their values.
        eos_token_ids (`list[int]`): end-of-sequence ids generate uses.
        pad_token_id (`int` or None): the padding id generate uses.
        keeps_scores (`bool`): whether generate returns each step's processed scores
            (`output_scores=True` with `return_dict_in_generate=True`).
        thread_id (`int`): the thread running this generate() call.
        frame_id (`int`): `id()` of its decoding-loop frame (to tell whether it is still running).
    """

    function: str
    do_sample: bool
    max_length: int | None = None
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    downstream: dict[str, Any] = field(default_factory=dict)
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    keeps_scores: bool = False
    thread_id: int = 0
    frame_id: int = 0
    loop_depth: int = 0
    _processors: Any = field(default=None, repr=False, compare=False)

    def is_current(self, frame: Any) -> bool:
        """Whether `frame`, the processor's own, is called from this context's decoding loop.

        Every generate() call builds its own processor list, so another list in the loop frame
        `loop_depth` levels up means another generate() call, even when every shape lines up.
        Python attribute reads only: no host-device sync.
        """
        for _ in range(self.loop_depth):
            frame = frame.f_back if frame is not None else None
        if frame is None:
            return False
        loop_list = self._processors() if self._processors is not None else None
        return loop_list is not None and frame.f_locals.get(_PROCESSORS_LOCAL) is loop_list

    def is_running(self) -> bool:
        """Whether this generate() call's decoding loop is still on its thread's stack."""
        frame = sys._current_frames().get(self.thread_id)
        for _ in range(200):
            if frame is None:
                return False
            if id(frame) == self.frame_id and frame.f_code.co_name == self.function:
                return True
            frame = frame.f_back
        return False

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}


def _warper_value(processor: Any, attribute: str) -> Any:
    value = getattr(processor, attribute, None)
    # EtaLogitsWarper keeps its epsilon as a tensor: read once per generation, not per step.
    return value.tolist() if hasattr(value, "tolist") else value  # once per generation


def _eos_ids(generation_config: Any) -> list[int]:
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        return []
    if isinstance(eos, int):
        return [eos]
    try:
        return [int(e) for e in eos]
    except TypeError:
        return []


def find_generation_context(processor: Any, frame: Any = None) -> GenerationContext | None:
    """Finds the generate() frame whose processor list holds `processor`; None outside generate().

    The decoding loop's processor list and generation config are locals of generate's private loop
    functions, which a transformers release may rename. When ICP runs inside a `generate()` call but
    cannot find them, it says so ([`ICPCompatibilityWarning`]) instead of silently running without
    them, and then behaves as when called by hand.

    Args:
        processor (`LogitsProcessor`): the processor to look for (ICP's).
        frame (`frame`, *optional*): the processor's own `__call__` frame, from which the loop's depth
            is counted (for [`GenerationContext.is_current`]); defaults to the caller's frame.

    Raises:
        UnsupportedDecodingError: for beam search and assisted (speculative) decoding.
    """
    frame = frame if frame is not None else sys._getframe(1)
    inside_generate = False
    for depth in range(_MAX_FRAMES):
        if frame is None:
            break
        local_vars = frame.f_locals
        processors = local_vars.get(_PROCESSORS_LOCAL)
        if isinstance(processors, list) and any(p is processor for p in processors):
            context = _build_context(
                frame.f_code.co_name, processors, processor, local_vars.get(_GENERATION_CONFIG_LOCAL)
            )
            context.thread_id, context.frame_id, context.loop_depth = threading.get_ident(), id(frame), depth
            context._processors = _reference(processors)
            return context
        inside_generate = inside_generate or _is_generate_frame(frame)
        frame = frame.f_back
    if inside_generate:
        warnings.warn(
            f"ICP runs inside `generate()` but cannot find its `{_PROCESSORS_LOCAL}` list: this transformers release "
            f"({_transformers_version()}) lays out its decoding loop differently from the releases ICP is tested on "
            "(see pyproject.toml). ICP steers as when called by hand: it cannot refuse beam search or assisted "
            "decoding, nor warn about generate's warpers after it. Please report it.",
            ICPCompatibilityWarning,
            stacklevel=3,
        )
    return None


def _reference(processors: list) -> Any:
    """A weak reference to generate's processor list (a `LogitsProcessorList`), strong for a plain list."""
    try:
        return weakref.ref(processors)
    except TypeError:
        return lambda: processors


def _is_generate_frame(frame: Any) -> bool:
    if frame.f_code.co_name != "generate":
        return False
    from transformers import GenerationMixin

    return isinstance(frame.f_locals.get("self"), GenerationMixin)


def _transformers_version() -> str:
    import transformers

    return f"transformers {transformers.__version__}"


def _build_context(function: str, processors: list, processor: Any, generation_config: Any) -> GenerationContext:
    num_beams = getattr(generation_config, "num_beams", 1) or 1
    if "beam" in function or num_beams > 1:
        raise UnsupportedDecodingError(
            f"ICP does not support beam search (`num_beams`={num_beams}): beams are re-ranked and re-ordered "
            "every step, so ICP's per-row state (temperature, coherence, trace) would follow the wrong "
            "hypothesis. Use `do_sample=True, num_beams=1`, with `num_return_sequences` for several candidates."
        )
    if "assisted" in function:
        raise UnsupportedDecodingError(
            "ICP does not support assisted (speculative) decoding (`assistant_model` / `prompt_lookup_num_tokens`): "
            "the processor would run on draft positions that may be rejected, corrupting its per-row state. "
            "Generate without an assistant."
        )
    index = next(i for i, p in enumerate(processors) if p is processor)
    after = processors[index + 1 :]
    downstream = {}
    for p in after:
        known = _DOWNSTREAM_WARPERS.get(type(p).__name__)
        if known is not None:
            downstream[known[0]] = _warper_value(p, known[1])
    return GenerationContext(
        function=function,
        do_sample=bool(getattr(generation_config, "do_sample", True)),
        max_length=getattr(generation_config, "max_length", None),
        before=[type(p).__name__ for p in processors[:index]],
        after=[type(p).__name__ for p in after],
        downstream=downstream,
        eos_token_ids=_eos_ids(generation_config),
        pad_token_id=getattr(generation_config, "pad_token_id", None),
        keeps_scores=bool(getattr(generation_config, "output_scores", False))
        and bool(getattr(generation_config, "return_dict_in_generate", False)),
    )
