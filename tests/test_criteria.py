"""ICP's stopping criteria: loops, divergence and EOS, per row, frozen in the trace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import ForceTokens, prompt, tiny_llama
from transformers import LogitsProcessorList, StoppingCriteriaList

from icp import ICP, LoopStoppingCriteria


def run(model, icp, script, batch=4, max_new_tokens=40, **kwargs):
    inputs = prompt(batch=batch)
    processors = LogitsProcessorList([ForceTokens(script, inputs["input_ids"].shape[1]), *icp])
    options = icp.generation_kwargs()
    options.update(logits_processor=processors, max_new_tokens=max_new_tokens, **kwargs)
    return model.generate(**inputs, **options), inputs["input_ids"].shape[1]


def test_stopping_criteria_is_a_list_returning_per_row_bools():
    icp = ICP()
    assert isinstance(icp.stopping_criteria, StoppingCriteriaList)
    ids = torch.ones(3, 4, dtype=torch.long)
    icp.processor(ids, torch.randn(3, 10))
    for criterion in icp.stopping_criteria:
        result = criterion(torch.cat([ids, torch.ones(3, 1, dtype=torch.long)], 1), None)
        assert result.dtype == torch.bool and result.shape == (3,)
        assert result.device == ids.device


def test_loop_in_one_row_stops_only_that_row_and_is_recorded():
    model = tiny_llama()
    icp = ICP(model)
    cycle = [11, 12, 13, 14]
    out, plen = run(model, icp, {1: cycle}, max_new_tokens=40)
    trace = icp.trace
    assert trace.stop_reasons[1] == "loop"
    assert [r for i, r in enumerate(trace.stop_reasons) if i != 1] == ["length"] * 3
    # 4-token cycle, min_repeats=3 -> r_p >= max(8, 16) = 16 repeated tokens -> loop after 20 tokens.
    stop = trace.stop_step[1]
    assert stop == 19
    assert np.isnan(trace["entropy"][1, stop + 1 :]).all(), "a stopped row is frozen in the trace"
    assert (trace["regime"][1, stop + 1 :] == -1).all()
    assert (trace["token"][1, stop + 1 :] == -1).all()
    assert np.isfinite(trace["entropy"][0]).all(), "other rows keep decoding"
    generated = out[1, plen : plen + stop + 1].tolist()
    assert generated == [cycle[i % 4] for i in range(stop + 1)]


def test_rigid_regime_precedes_the_loop_stop():
    model = tiny_llama()
    icp = ICP(model)
    run(model, icp, {0: [21, 22, 23]}, max_new_tokens=30)
    trace = icp.trace
    stop = trace.stop_step[0]
    regimes = trace["regime"][0, : stop + 1]
    assert (regimes == 0).any(), "a forming loop must be classified rigid before it is stopped"
    first_rigid = int(np.argmax(regimes == 0))
    assert first_rigid < stop


def test_loop_is_not_stopped_when_the_criterion_is_not_passed():
    model = tiny_llama()
    icp = ICP(model)
    inputs = prompt()
    processors = LogitsProcessorList([ForceTokens({0: [3, 4]}, 5), *icp])
    out = model.generate(**inputs, max_new_tokens=30, do_sample=True, top_k=0, logits_processor=processors)
    assert out.shape[1] == 35
    assert icp.trace.stop_reasons[0] == "length"
    assert np.isfinite(icp.trace["entropy"][0]).all()


def test_divergence_stops_after_patience_steps():
    model = tiny_llama()
    icp = ICP(model, divergence={"free_energy_bound": -100.0, "patience": 3})
    generate_kwargs = icp.generation_kwargs()
    model.generate(**prompt(batch=2), max_new_tokens=10, **generate_kwargs)
    trace = icp.trace
    assert trace.stop_reasons == ["divergence", "divergence"]
    assert list(trace.stop_step) == [2, 2]
    assert trace.steps == 3


def test_divergence_with_a_loose_bound_never_fires():
    model = tiny_llama()
    icp = ICP(model, divergence={"free_energy_bound": 1e6, "meta_uncertainty_bound": 1e6})
    model.generate(**prompt(batch=2), max_new_tokens=10, **icp.generation_kwargs())
    assert icp.trace.stop_reasons == ["length", "length"]


def test_eos_stops_and_freezes_the_row():
    model = tiny_llama(eos_token_id=9)
    icp = ICP(model)
    assert icp.config.eos_token_ids == [9]
    out, plen = run(model, icp, {2: [30, 31, 9]}, max_new_tokens=8)
    trace = icp.trace
    assert trace.stop_reasons[2] == "eos"
    assert trace.stop_step[2] == 2
    assert np.isnan(trace["free_energy"][2, 3:]).all()


def test_loop_criterion_alone_can_be_used():
    model = tiny_llama()
    icp = ICP(model)
    loop_only = StoppingCriteriaList([c for c in icp.stopping_criteria if isinstance(c, LoopStoppingCriteria)])
    inputs = prompt()
    processors = LogitsProcessorList([ForceTokens({3: [7]}, 5), *icp])
    model.generate(
        **inputs, max_new_tokens=30, do_sample=True, top_k=0, logits_processor=processors, stopping_criteria=loop_only
    )
    assert icp.trace.stop_reasons[3] == "loop"
    assert icp.trace.stop_step[3] == 16  # one token repeated: 16 trailing matches after 17 tokens


def _answer_run(bound, seed=0):
    model = tiny_llama(eos_token_id=9)
    icp = ICP(
        model,
        divergence={"free_energy_bound": 1e6, "meta_uncertainty_bound": 1e6, "answer_free_energy_bound": bound},
    )
    torch.manual_seed(seed)
    run(model, icp, {2: [30, 31, 9]}, max_new_tokens=8)
    return icp.trace


def test_answer_bound_relabels_rows_that_end_uncertain_and_keeps_the_others():
    plain = _answer_run(None)
    assert plain.stop_reasons[2] == "eos" and plain.stop_reasons.count("length") == 3
    f = plain.trajectory_free_energy()
    bound = float(np.median(f))
    marked = _answer_run(bound)
    for row in range(4):
        expected = "divergence" if f[row] > bound else plain.stop_reasons[row]
        assert marked.stop_reasons[row] == expected, (row, f[row], bound)
    for row in range(4):  # an EOS row keeps its step; a row cut by max_length stops at the last step
        ended = plain.stop_step[row] if plain.stop_reasons[row] == "eos" else 7
        expected_step = ended if marked.stop_reasons[row] == "divergence" else plain.stop_step[row]
        assert marked.stop_step[row] == expected_step
    np.testing.assert_allclose(marked.trajectory_free_energy(), f, rtol=1e-6)


def test_answer_bound_below_every_f_marks_every_finished_row_and_above_none():
    assert _answer_run(-1e6).stop_reasons == ["divergence"] * 4
    assert _answer_run(1e6).stop_reasons == ["length", "length", "eos", "length"]


def test_answer_bound_is_checked():
    with pytest.raises(ValueError, match="answer_free_energy_bound"):
        ICP(divergence={"answer_free_energy_bound": float("nan")})
