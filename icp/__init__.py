"""icp — the Inference Control Plane: closed-loop control of Hugging Face transformers decoding."""

from .cards import ICPCardWarning
from .config import SEEDS_LAW, DivergenceConfig, ICPConfig, LoopConfig, RegimeThresholds, TrackingConfig
from .criteria import DivergenceStoppingCriteria, LoopStoppingCriteria
from .generation_context import ICPCompatibilityWarning, UnsupportedDecodingError
from .processors import ICP, ICPCompositionWarning, ICPLogitsProcessor
from .regimes import REGIMES
from .trace import STOP_REASONS, Trace

__version__ = "0.1.0"

__all__ = [
    "ICP",
    "ICPCardWarning",
    "ICPCompatibilityWarning",
    "ICPCompositionWarning",
    "ICPConfig",
    "ICPLogitsProcessor",
    "DivergenceConfig",
    "DivergenceStoppingCriteria",
    "LoopConfig",
    "LoopStoppingCriteria",
    "REGIMES",
    "RegimeThresholds",
    "SEEDS_LAW",
    "STOP_REASONS",
    "Trace",
    "TrackingConfig",
    "UnsupportedDecodingError",
    "custom_generate_path",
    "load_default_model",
]


def __getattr__(name):
    # Lazy: loading the default model pulls in gguf/accelerate only when asked for.
    if name in ("load_default_model", "DEFAULT_MODEL_NAME"):
        from . import models

        return getattr(models, name)
    if name == "custom_generate_path":  # ICP as a transformers `custom_generate` method (icp.custom_generate_method)
        from .custom_generate_method import custom_generate_path

        return custom_generate_path
    raise AttributeError(f"module 'icp' has no attribute {name!r}")
