"""No host-device synchronisation in ICP's per-step path.

On CPU a sync cannot be observed, so the test makes every way of reading a tensor value on the host
(`.item()`, `.tolist()`, `.cpu()`, `.numpy()`, `bool()`, `int()`, `float()`, `__index__`) raise
while ICP's processor and criteria run inside generate(). On a CUDA machine the second test runs the
same generation under `torch.cuda.set_sync_debug_mode("error")`.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
import torch
from helpers import ForceTokens, prompt, tiny_llama
from transformers import LogitsProcessorList

from icp import ICP
from icp.criteria import DivergenceStoppingCriteria, LoopStoppingCriteria
from icp.processors import ICPLogitsProcessor

_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


class HostSync(AssertionError):
    pass


@contextlib.contextmanager
def forbid_host_reads():
    saved = {name: getattr(torch.Tensor, name) for name in _READS}

    def make(name):
        def refuse(self, *args, **kwargs):
            raise HostSync(f"Tensor.{name}() called in ICP's per-step path")

        return refuse

    try:
        for name in _READS:
            setattr(torch.Tensor, name, make(name))
        yield
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def _guard(cls, monkeypatch, calls):
    original = cls.__call__

    def guarded(self, *args, **kwargs):
        calls[cls.__name__] = calls.get(cls.__name__, 0) + 1
        if getattr(self, "state", None) is not None and getattr(self.state, "started", False):
            with forbid_host_reads():
                return original(self, *args, **kwargs)
        return original(self, *args, **kwargs)  # the first call sets up (once per generation)

    monkeypatch.setattr(cls, "__call__", guarded)


@pytest.mark.parametrize("meta_uncertainty", ["entropy_volatility", "varentropy"])
@pytest.mark.parametrize("coherence", ["embedding", "hidden", "logits"])
def test_no_host_reads_per_step(monkeypatch, coherence, meta_uncertainty):
    calls = {}
    for cls in (ICPLogitsProcessor, LoopStoppingCriteria, DivergenceStoppingCriteria):
        _guard(cls, monkeypatch, calls)
    model = tiny_llama(eos_token_id=9)
    icp = ICP(model, coherence=coherence, meta_uncertainty=meta_uncertainty)
    processors = LogitsProcessorList([ForceTokens({0: [3, 4, 5]}, 5), *icp])
    options = icp.generation_kwargs()
    options.update(logits_processor=processors, max_new_tokens=40, repetition_penalty=1.2)
    model.generate(**prompt(), **options)
    assert calls["ICPLogitsProcessor"] >= 20 and calls["LoopStoppingCriteria"] >= 20
    assert icp.trace.stop_reasons[0] == "loop"  # the loop path ran too


def test_the_guard_catches_a_sync():
    with forbid_host_reads(), pytest.raises(HostSync):
        torch.ones(2).sum().item()


_HOT_PATH = ("signals", "controller.py", "regimes.py", "state.py", "processors.py", "criteria.py", "trace.py")


def test_hot_path_sources_have_no_unmarked_host_reads():
    root = Path(__file__).resolve().parents[1] / "icp"
    files = [
        p for name in _HOT_PATH for p in ((root / name).rglob("*.py") if (root / name).is_dir() else [root / name])
    ]
    offenders = []
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(r"\.(item|tolist|cpu|numpy)\(\)", code) and "once" not in line and ">>>" not in line:
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "host reads outside finalisation:\n" + "\n".join(offenders)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: sync debug mode is CUDA-only")
def test_no_sync_on_cuda():
    model = tiny_llama().cuda()
    icp = ICP(model)
    inputs = {k: v.cuda() for k, v in prompt().items()}
    icp.processor(inputs["input_ids"], torch.randn(4, 64, device="cuda"))  # set-up call (once)
    icp.reset()
    options = icp.generation_kwargs()
    options["max_new_tokens"] = 16
    calls = []
    original = ICPLogitsProcessor.__call__

    def strict(self, input_ids, scores):
        if self.state.started:
            torch.cuda.set_sync_debug_mode("error")
        try:
            return original(self, input_ids, scores)
        finally:
            torch.cuda.set_sync_debug_mode("default")
            calls.append(1)

    ICPLogitsProcessor.__call__ = strict
    try:
        model.generate(**inputs, **options)
    finally:
        ICPLogitsProcessor.__call__ = original
    assert len(calls) == 16
