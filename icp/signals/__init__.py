"""Pure tensor functions for ICP's per-step signals. They import only torch.

See docs/signals.md ("The quantities") for the formulas.
"""

from .coherence import context_recall, cosine_continuity, ema_update
from .distribution import (
    DistributionSignals,
    distribution_signals,
    entropy,
    kl_divergence,
    log_prob_moments,
    sanitize_logits,
    temper_and_truncate,
    tempered_signals,
    token_surprisal,
    truncate_min_p,
    varentropy,
)
from .fusion import free_energy
from .repetition import (
    RepeatedCycle,
    extend_repeat_lengths,
    loop_progress,
    repeat_lengths,
    repeat_penalty,
    trailing_cycle,
)
from .uncertainty import entropy_volatility

__all__ = [
    "DistributionSignals",
    "RepeatedCycle",
    "context_recall",
    "cosine_continuity",
    "distribution_signals",
    "ema_update",
    "entropy",
    "entropy_volatility",
    "extend_repeat_lengths",
    "free_energy",
    "kl_divergence",
    "log_prob_moments",
    "repeat_lengths",
    "repeat_penalty",
    "loop_progress",
    "sanitize_logits",
    "temper_and_truncate",
    "tempered_signals",
    "token_surprisal",
    "trailing_cycle",
    "truncate_min_p",
    "varentropy",
]
