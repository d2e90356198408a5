"""No host-device synchronisation in ICP's per-step path.

On CPU a sync cannot be observed, so the test makes every way of reading a tensor value on the host
(`.item()`, `.tolist()`, `.cpu()`, `.numpy()`, `bool()`, `int()`, `float()`, `__index__`) raise
while ICP's processor and criteria run inside generate(). On a CUDA machine the second test runs the
same generation under `torch.cuda.set_sync_debug_mode("error")`.
"""

from __future__ import annotations

import ast
import contextlib
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
# Where a host read belongs: the one copy of a finished generation to the host, and the host-side
# Trace (NumPy) a user reads. In trace.py only the device-side recorder (TraceBuffers) runs per step.
_FINALISATION = {"state.py": {"DecodingState.trace"}}
_HOT_CLASSES_ONLY = {"trace.py": {"TraceBuffers"}}
_HOST_READS = {"item", "tolist", "cpu", "numpy"}


def _host_reads(path: Path) -> list[tuple[int, str]]:
    """(line, qualified name of the enclosing function or class) of every `.item()/.tolist()/.cpu()/.numpy()`
    call in `path`'s code (docstrings and comments are not code)."""
    found = []

    def visit(node, scope):
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                inner = f"{scope}.{child.name}" if scope else child.name
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, ast.Attribute)
                and child.func.attr in _HOST_READS
                and not child.args
            ):
                found.append((child.lineno, scope))
            visit(child, inner)

    visit(ast.parse(path.read_text()), "")
    return found


def test_hot_path_sources_have_no_host_reads_outside_finalisation():
    root = Path(__file__).resolve().parents[1] / "icp"
    files = [
        p for name in _HOT_PATH for p in ((root / name).rglob("*.py") if (root / name).is_dir() else [root / name])
    ]
    offenders = []
    for path in files:
        for number, scope in _host_reads(path):
            if scope in _FINALISATION.get(path.name, ()):
                continue
            hot = _HOT_CLASSES_ONLY.get(path.name)
            if hot is not None and scope.split(".")[0] not in hot:
                continue
            offenders.append(f"{path.name}:{number} in {scope or '<module>'}")
    assert not offenders, "host reads outside finalisation:\n" + "\n".join(offenders)


def test_the_host_read_scan_finds_reads_in_code_and_not_in_docstrings(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        'def f(x):\n    """x.item() in a docstring"""\n    return x.item()  # a comment: once\n'
        "class C:\n    def g(self, t):\n        return t.cpu().numpy()\n"
    )
    assert _host_reads(source) == [(3, "f"), (6, "C.g"), (6, "C.g")]


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
