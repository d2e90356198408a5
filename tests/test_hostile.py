"""Hostile conditions: batch sizes, lengths, left padding, and long generations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import prompt, tiny_llama

from icp import ICP


@pytest.mark.parametrize("batch", [1, 256])
def test_batch_sizes(model, batch):
    icp = ICP(model)
    out = model.generate(**prompt(batch=batch), max_new_tokens=5, **icp.generation_kwargs())
    assert icp.trace.batch_size == batch == out.shape[0]
    assert np.isfinite(icp.trace["free_energy"]).all()


def test_one_new_token(model):
    icp = ICP(model)
    out = model.generate(**prompt(), max_new_tokens=1, **icp.generation_kwargs())
    assert out.shape[1] == 6 and icp.trace.steps == 1
    np.testing.assert_array_equal(icp.trace["token"][:, 0], out[:, -1].numpy())


def test_one_token_prompt(model):
    icp = ICP(model)
    ids = torch.tensor([[3], [4]])
    model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4, **icp.generation_kwargs())
    assert icp.trace.steps == 4 and np.isfinite(icp.trace["coherence"]).all()


def test_left_padding_does_not_leak_into_a_row(model):
    """A short prompt left-padded inside a batch gets the same signals as when it runs alone."""
    short = torch.tensor([[7, 8, 9]])
    long = torch.tensor([[11, 12, 13, 14, 15, 16, 17, 18]])
    padded = torch.cat([torch.cat([torch.zeros(1, 5, dtype=torch.long), short], 1), long])
    mask = torch.cat(
        [
            torch.cat([torch.zeros(1, 5, dtype=torch.long), torch.ones(1, 3, dtype=torch.long)], 1),
            torch.ones(1, 8, dtype=torch.long),
        ]
    )
    together = ICP(model, control=False)
    model.generate(input_ids=padded, attention_mask=mask, max_new_tokens=1, do_sample=False, logits_processor=together)
    alone = ICP(model, control=False)
    model.generate(
        input_ids=short,
        attention_mask=torch.ones_like(short),
        max_new_tokens=1,
        do_sample=False,
        logits_processor=alone,
    )
    for key in ("entropy", "coherence"):
        np.testing.assert_allclose(together.trace[key][0, 0], alone.trace[key][0, 0], atol=1e-4)


def test_a_4096_token_generation_keeps_its_preallocated_trace(model):
    never_stop = {"loop": {"min_loop_tokens": 10**6}, "divergence": {"free_energy_bound": 1e9}}
    icp = ICP(model, **never_stop)
    model.generate(**prompt(batch=2, length=3), max_new_tokens=4096, min_new_tokens=4096, **icp.generation_kwargs())
    buffers = icp.processor.state.buffers
    assert buffers.capacity == 4096, "the trace was preallocated once and never regrown"
    assert icp.trace.steps == 4096 and icp.trace.stop_reasons == ["length", "length"]
    assert np.isfinite(icp.trace["temperature"]).all() and (icp.trace["token"] >= 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models(dtype):
    half = tiny_llama().to(dtype)
    icp = ICP(half)
    out = half.generate(**prompt(), max_new_tokens=6, **icp.generation_kwargs())
    trace = icp.trace
    assert trace.steps == 6
    np.testing.assert_array_equal(trace["token"], out[:, 5:].numpy())
    for key in ("entropy", "coherence", "kl", "free_energy", "temperature"):
        assert np.isfinite(trace[key]).all(), key


def test_an_empty_prompt_is_refused_with_a_clear_error(model):
    icp = ICP(model)
    empty = torch.empty((1, 0), dtype=torch.long)
    with pytest.raises((ValueError, IndexError)) as caught:
        model.generate(input_ids=empty, attention_mask=empty, max_new_tokens=3, **icp.generation_kwargs())
    if caught.type is IndexError:
        # transformers 5.0's generate() fails in its own input preparation, before the model (and ICP's
        # hook) runs: nothing ICP can intercept. Later releases reach the model, and ICP's message.
        assert icp.processor.hooks.forward_calls == 0
        assert "transformers" in str(caught.traceback[-1].path)
    else:
        assert "The prompt is empty" in str(caught.value)


@pytest.mark.parametrize("how", ["forward", "module"])
def test_torch_compiled_models(how):
    """`model.forward = torch.compile(model.forward)` (transformers' recipe) and `torch.compile(model)`.

    The `aot_eager` backend traces the same graphs as the default inductor backend without compiling C++
    kernels, so the test takes seconds on a CPU; what is under test is ICP around a compiled model.
    """
    eager = tiny_llama(seed=3)
    reference = ICP(eager)
    compiled_model = tiny_llama(seed=3)
    if how == "forward":
        compiled_model.forward = torch.compile(compiled_model.forward, backend="aot_eager", dynamic=True)
        target = compiled_model
    else:
        target = torch.compile(compiled_model, backend="aot_eager", dynamic=True)
    icp = ICP(target)
    for _ in range(2):  # a second generate() starts clean on the compiled model too
        torch.manual_seed(0)
        out = target.generate(**prompt(), max_new_tokens=6, **icp.generation_kwargs())
        assert icp.trace.steps == 6 and icp.trace.batch_size == 4
        for key in ("entropy", "coherence", "free_energy", "temperature"):
            assert np.isfinite(icp.trace[key]).all(), key
    torch.manual_seed(0)
    expected = eager.generate(**prompt(), max_new_tokens=6, **reference.generation_kwargs())
    np.testing.assert_allclose(icp.trace["entropy"], reference.trace["entropy"], atol=1e-4)
    assert torch.equal(out, expected)
