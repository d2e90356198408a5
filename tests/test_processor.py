"""ICP inside generate(): contract, composition with generate's processors, lifecycle, refusals."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from helpers import VOCAB, prompt, tiny_llama
from transformers import LogitsProcessor, LogitsProcessorList, RepetitionPenaltyLogitsProcessor

from icp import SEEDS_LAW, ICP, ICPCompositionWarning, ICPConfig, UnsupportedDecodingError
from icp.processors import ICPLogitsProcessor


def generate(model, icp, inputs=None, **kwargs):
    inputs = inputs if inputs is not None else prompt()
    options = icp.generation_kwargs()
    options["max_new_tokens"] = 12
    options.update(kwargs)
    return model.generate(**inputs, **options)


def test_icp_is_a_logits_processor_list_usable_as_written(model):
    icp = ICP(model)
    assert isinstance(icp, LogitsProcessorList)
    inputs = prompt(batch=3)
    out = model.generate(
        **inputs,
        max_new_tokens=10,
        do_sample=True,
        top_k=0,
        logits_processor=icp,
        stopping_criteria=icp.stopping_criteria,
    )
    trace = icp.trace
    assert trace.batch_size == 3
    assert trace.steps == out.shape[1] - inputs["input_ids"].shape[1] == 10
    np.testing.assert_array_equal(trace["token"], out[:, inputs["input_ids"].shape[1] :].numpy())
    for key in ("entropy", "varentropy", "coherence", "meta_uncertainty", "kl", "free_energy", "temperature"):
        assert trace[key].shape == (3, 10)
        assert np.isfinite(trace[key]).all(), key


def test_processor_does_not_change_logits_in_place_and_returns_log_probs():
    proc = ICPLogitsProcessor(ICPConfig())
    scores = torch.randn(3, VOCAB) * 3
    before = scores.clone()
    out = proc(torch.ones(3, 4, dtype=torch.long), scores)
    assert torch.equal(scores, before), "processor should not change logits in-place"
    assert out is not scores
    torch.testing.assert_close(torch.logsumexp(out, -1), torch.zeros(3), atol=1e-5, rtol=0)


def test_observer_mode_returns_logits_untouched_with_zero_kl():
    proc = ICPLogitsProcessor(ICPConfig(control=False))
    scores = torch.randn(2, VOCAB)
    out = proc(torch.ones(2, 4, dtype=torch.long), scores)
    assert torch.equal(out, scores)
    assert (proc.state.buffers.data["kl"][:, 0] == 0).all()


def test_temperature_stays_within_bounds_and_differs_between_rows(model):
    icp = ICP(model, **{**SEEDS_LAW, "min_temperature": 0.5, "max_temperature": 1.2})
    generate(model, icp, inputs=prompt(batch=6), max_new_tokens=24)
    temperature = icp.trace["temperature"]
    assert np.nanmin(temperature) >= 0.5 - 1e-6
    assert np.nanmax(temperature) <= 1.2 + 1e-6


def test_rows_are_controlled_independently():
    """Rows with sharper logits get hotter, flatter ones cooler; a row's path ignores its neighbours."""
    scales = torch.tensor([0.5, 2.0, 8.0]).unsqueeze(1)
    base = torch.randn(40, 3, VOCAB)

    def run(logits):
        proc = ICPLogitsProcessor(ICPConfig(**SEEDS_LAW, target_entropy=2.0))  # the entropy feedback
        for t in range(logits.shape[0]):
            proc(torch.ones(3, 2 + t, dtype=torch.long), logits[t])
        return proc.state.buffers.data["temperature"][:, :40]

    temperature = run(base * scales)
    assert temperature[0, -1] < temperature[1, -1] < temperature[2, -1]
    changed = base.clone()
    changed[:, 0] = torch.randn(40, VOCAB) * 10
    other = run(changed * scales)
    torch.testing.assert_close(other[1:], temperature[1:])
    assert not torch.allclose(other[0], temperature[0])


def test_embedding_coherence_is_default_with_model_and_logits_otherwise(model):
    assert ICP(model).coherence_source == "embedding"
    assert ICP(model, coherence="hidden").coherence_source == "hidden"
    assert ICP(model, coherence="logits").coherence_source == "logits"
    assert ICP().coherence_source == "logits"
    for source in ("hidden", "embedding"):
        with pytest.raises(ValueError, match=f"coherence='{source}'"):
            ICP(coherence=source)


def test_embedding_coherence_follows_the_definition(model):
    """C_0 compares the last prompt token's centred embedding with the mean of the prompt's."""
    icp = ICP(model, control=False)
    inputs = prompt(batch=2)
    generate(model, icp, inputs=inputs, max_new_tokens=3)
    weight = model.get_input_embeddings().weight.detach().float()
    centred = weight[inputs["input_ids"]] - weight.mean(0)
    reference = centred.mean(1)
    cos = torch.nn.functional.cosine_similarity(centred[:, -1], reference, dim=-1)
    np.testing.assert_allclose(icp.trace["coherence"][:, 0], ((1 + cos) / 2).numpy(), atol=1e-5)


def test_random_tokens_are_less_coherent_than_a_topical_run():
    """With embeddings clustered by topic, staying on a topic scores higher than random tokens."""
    from icp import ICPConfig

    torch.manual_seed(0)
    topics = torch.randn(4, 16) * 3
    embeddings = topics.repeat_interleave(16, 0) + torch.randn(64, 16)
    proc = ICPLogitsProcessor(ICPConfig(control=False), embeddings=embeddings)
    topical = torch.randint(16, 32, (1, 30))  # all from topic 1
    random_ids = torch.randint(0, 64, (1, 30))
    ids = torch.cat([topical, random_ids])
    for t in range(5, 30):
        proc(ids[:, : t + 1], torch.randn(2, 64))
    c = proc.state.buffers.data["coherence"][:, : proc.state.step]
    assert c[0].mean() > c[1].mean() + 0.1


def test_coherence_sources_differ_on_the_same_run(model):
    traces = []
    for source in ("hidden", "embedding"):
        icp = ICP(model, coherence=source, control=False)
        torch.manual_seed(0)
        generate(model, icp, max_new_tokens=8)
        traces.append(icp.trace["coherence"])
    np.testing.assert_array_equal(np.isfinite(traces[0]), np.isfinite(traces[1]))
    assert not np.allclose(traces[0], traces[1])


def test_model_without_hookable_norm_is_refused_when_hidden_coherence_is_requested():
    class NoNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(4, 4)

    with pytest.raises(ValueError, match="NoNorm.*no final norm"):
        ICP(NoNorm(), coherence="hidden")
    assert ICP(NoNorm()).coherence_source == "logits"  # auto falls back


def test_target_entropy_above_log_vocab_is_refused(model):
    with pytest.raises(ValueError, match="target_entropy"):
        ICP(model, target_entropy=math.log(VOCAB) + 0.1)
    proc = ICPLogitsProcessor(ICPConfig(target_entropy=5.0))
    with pytest.raises(ValueError, match=r"`target_entropy` \(=5.0\) exceeds log\(vocab size\)"):
        proc(torch.ones(1, 2, dtype=torch.long), torch.zeros(1, 10))


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="target_entrpy"):
        ICP(target_entrpy=1.0)


def test_reuse_starts_clean_with_new_shapes(model):
    icp = ICP(model, **SEEDS_LAW)  # the feedback moves T, so a carried state would show at step 0
    generate(model, icp, inputs=prompt(batch=4, length=5), max_new_tokens=12)
    first = icp.trace
    generate(model, icp, inputs=prompt(batch=2, length=7), max_new_tokens=5)
    second = icp.trace
    assert (first.batch_size, first.steps) == (4, 12)
    assert (second.batch_size, second.steps) == (2, 5)
    assert second.metadata["prompt_length"] == 7
    assert np.isfinite(second["temperature"][:, 0]).all()
    np.testing.assert_allclose(second["temperature"][:, 0], 1.0, atol=0.3)


def test_reuse_starts_clean_when_shapes_line_up(model):
    """The second prompt is as long as the first generation's next input would be: only the KV-cache
    identity seen by the model hook tells a new generation from the next step."""
    icp = ICP(model, **SEEDS_LAW)  # the feedback moves T, so a carried state would show at step 0
    generate(model, icp, inputs=prompt(batch=2, length=5), max_new_tokens=6)
    generate(model, icp, inputs=prompt(batch=2, length=11, seed=3), max_new_tokens=4)
    trace = icp.trace
    assert trace.steps == 4
    assert trace.metadata["prompt_length"] == 11
    np.testing.assert_allclose(trace["temperature"][:, 0], 1.0, atol=0.35)


def test_without_model_a_new_generation_is_detected_from_shapes(model):
    icp = ICP()
    generate(model, icp, inputs=prompt(batch=3, length=5), max_new_tokens=6)
    generate(model, icp, inputs=prompt(batch=3, length=4), max_new_tokens=3)
    assert icp.trace.steps == 3
    assert icp.trace.metadata["prompt_length"] == 4


def test_default_top_k_and_generate_temperature_warn(model):
    icp = ICP(model)
    with pytest.warns(ICPCompositionWarning, match="top_k=50"):
        model.generate(**prompt(), max_new_tokens=3, do_sample=True, logits_processor=icp)
    with pytest.warns(ICPCompositionWarning, match=r"temperature=0.7.*effective temperature"):
        model.generate(**prompt(), max_new_tokens=3, do_sample=True, top_k=0, temperature=0.7, logits_processor=icp)
    assert icp.trace.metadata["generation_context"]["downstream"] == {"temperature": 0.7}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCompositionWarning)
        generate(model, icp, max_new_tokens=3)


def test_generate_temperature_multiplies_with_icp_temperature(model):
    """ICP pinned at T=1 with generate's temperature=0.5 samples exactly like ICP pinned at T=0.5."""
    outputs = []
    for icp_t, gen_t in ((1.0, 0.5), (0.5, 1.0)):
        icp = ICP(model, min_temperature=icp_t, max_temperature=icp_t, initial_temperature=icp_t, min_p=0.0)
        torch.manual_seed(123)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ICPCompositionWarning)
            outputs.append(generate(model, icp, max_new_tokens=16, temperature=gen_t))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_greedy_decoding_is_observed_not_steered(model):
    inputs = prompt()
    plain = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    icp = ICP(model)
    with pytest.warns(ICPCompositionWarning, match="greedily"):
        steered = model.generate(**inputs, max_new_tokens=8, do_sample=False, logits_processor=icp)
    torch.testing.assert_close(plain, steered, rtol=0, atol=0)
    assert (icp.trace["kl"] == 0).all()
    assert np.isfinite(icp.trace["entropy"]).all()


def test_beam_search_is_refused(model):
    icp = ICP(model)
    with pytest.raises(UnsupportedDecodingError, match="num_beams"):
        model.generate(**prompt(), max_new_tokens=3, num_beams=2, do_sample=False, logits_processor=icp)


def test_assisted_decoding_is_refused(model):
    icp = ICP(model)
    with pytest.raises(UnsupportedDecodingError, match="assisted"):
        model.generate(
            **prompt(batch=1),
            max_new_tokens=6,
            do_sample=True,
            top_k=0,
            assistant_model=tiny_llama(seed=5),
            logits_processor=icp,
        )


def test_num_return_sequences_gives_one_trace_row_per_sequence(model):
    icp = ICP(model)
    out = generate(model, icp, inputs=prompt(batch=2), max_new_tokens=5, num_return_sequences=3)
    assert out.shape[0] == 6
    assert icp.trace.batch_size == 6
    np.testing.assert_array_equal(icp.trace["token"], out[:, 5:].numpy())


def test_composes_with_generate_processors_and_masks(model):
    icp = ICP(model, eos_token_id=7)
    generate(
        model,
        icp,
        max_new_tokens=10,
        repetition_penalty=1.3,
        bad_words_ids=[[5], [9]],
        min_new_tokens=4,
        eos_token_id=7,
        no_repeat_ngram_size=3,
    )
    trace = icp.trace
    before = trace.metadata["generation_context"]["before"]
    assert "RepetitionPenaltyLogitsProcessor" in before
    assert "MinNewTokensLengthLogitsProcessor" in before
    assert "NoBadWordsLogitsProcessor" in before
    tokens = trace["token"][trace["token"] >= 0]
    assert not np.isin(tokens, [5, 9]).any(), "bad words must stay banned through ICP"
    assert not (trace["token"][:, :4] == 7).any(), "min_new_tokens' EOS mask must survive ICP"
    decoded = trace["regime"] >= 0
    for key in ("entropy", "varentropy", "kl", "free_energy", "coherence"):
        assert np.isfinite(trace[key][decoded]).all(), key


def test_user_processors_before_icp_are_respected(model):
    icp = ICP(model)
    upstream = RepetitionPenaltyLogitsProcessor(1.5)
    out = model.generate(
        **prompt(),
        max_new_tokens=6,
        do_sample=True,
        top_k=0,
        logits_processor=LogitsProcessorList([upstream, *icp]),
        stopping_criteria=icp.stopping_criteria,
    )
    assert icp.trace.steps == out.shape[1] - 5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_logits_are_handled_in_float32(dtype):
    proc = ICPLogitsProcessor(ICPConfig())
    scores = (torch.randn(3, VOCAB) * 4).to(dtype)
    scores[0, :10] = float("-inf")
    out = proc(torch.ones(3, 2, dtype=torch.long), scores)
    assert out.dtype == torch.float32
    assert torch.isfinite(torch.logsumexp(out, -1)).all()
    for name in ("entropy", "kl", "free_energy", "coherence"):
        assert torch.isfinite(proc.state.buffers.data[name][:, 0]).all(), name


def test_hostile_rows_never_produce_nan_signals():
    proc = ICPLogitsProcessor(ICPConfig())
    scores = torch.randn(4, VOCAB)
    scores[0] = float("-inf")  # fully masked
    scores[1, 3] = float("nan")
    scores[2, 5] = float("inf")
    scores[3, :] = float("nan")
    out = proc(torch.ones(4, 2, dtype=torch.long), scores)
    assert out.shape == scores.shape
    data = proc.state.buffers.data
    for name in ("entropy", "varentropy", "kl", "free_energy", "coherence", "meta_uncertainty", "temperature"):
        assert torch.isfinite(data[name][:, 0]).all(), name
    assert out[2].argmax() == 5, "a +inf logit takes the mass"


def test_trace_before_any_generation_raises():
    with pytest.raises(RuntimeError, match="has not run yet"):
        _ = ICP().trace


def test_sharing_one_icp_between_two_concurrent_generations_is_refused(model):
    """Thread B starting while thread A is mid-generation gets a clear error; A's trace stays A's."""
    import threading
    import time

    from transformers import LogitsProcessor

    icp = ICP(model)
    a_running = threading.Event()
    b_done = threading.Event()

    class Slow(LogitsProcessor):
        def __call__(self, input_ids, scores):
            if input_ids.shape[1] == 5 + 3:
                a_running.set()
                b_done.wait(timeout=30)
            time.sleep(0.005)
            return scores

    results = {}

    def run_a():
        options = icp.generation_kwargs()
        options["logits_processor"] = LogitsProcessorList([Slow(), *icp])
        results["a"] = model.generate(**prompt(batch=2, length=5), max_new_tokens=10, **options)

    def run_b():
        a_running.wait(timeout=30)
        try:
            model.generate(**prompt(batch=3, length=7), max_new_tokens=4, **icp.generation_kwargs())
        except RuntimeError as err:
            results["b_error"] = str(err)
        finally:
            b_done.set()

    threads = [threading.Thread(target=run_a), threading.Thread(target=run_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert "another thread" in results.get("b_error", ""), results
    trace = icp.trace
    assert trace.batch_size == 2 and trace.steps == 10
    np.testing.assert_array_equal(trace["token"], results["a"][:, 5:].numpy())


def test_sequential_use_from_another_thread_is_fine(model):
    import threading

    icp = ICP(model)
    generate(model, icp, max_new_tokens=4)
    worker = threading.Thread(target=lambda: generate(model, icp, inputs=prompt(batch=2), max_new_tokens=3))
    worker.start()
    worker.join()
    assert icp.trace.batch_size == 2 and icp.trace.steps == 3


class _RecordScores(LogitsProcessor):
    """Downstream processor that records what ICP handed on at each step (pointer and a copy)."""

    def __init__(self) -> None:
        self.pointers: list[int] = []
        self.copies: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        self.pointers.append(scores.data_ptr())
        self.copies.append(scores.clone())
        return scores


def test_output_buffer_is_reused_only_where_generate_keeps_no_scores(model):
    runs = {}
    for keep in (False, True):
        icp, recorder = ICP(model), _RecordScores()
        torch.manual_seed(0)
        out = generate(
            model,
            icp,
            logits_processor=LogitsProcessorList([*icp, recorder]),
            output_scores=keep,
            return_dict_in_generate=True,
        )
        runs[keep] = (icp, recorder, out)
    reused, fresh = runs[False][1], runs[True][1]
    assert len(set(reused.pointers)) == 1  # one buffer, rewritten each step
    assert len(set(fresh.pointers)) == len(fresh.pointers) == 12
    # Reusing the buffer changes nothing: same scores, same tokens, same trace.
    for a, b in zip(reused.copies, fresh.copies):
        torch.testing.assert_close(a, b)
    assert torch.equal(runs[False][2].sequences, runs[True][2].sequences)
    np.testing.assert_allclose(runs[False][0].trace["free_energy"], runs[True][0].trace["free_energy"])
    # The scores generate returns are each step's own, not one overwritten buffer.
    for kept, copy in zip(runs[True][2].scores, fresh.copies):
        torch.testing.assert_close(kept, copy)


def test_called_by_hand_each_step_returns_a_fresh_tensor():
    proc = ICPLogitsProcessor(ICPConfig())
    ids = torch.zeros(2, 3, dtype=torch.long)
    first = proc(ids, torch.randn(2, 50))
    kept = first.clone()
    second = proc(torch.cat([ids, torch.ones(2, 1, dtype=torch.long)], 1), torch.randn(2, 50))
    assert first.data_ptr() != second.data_ptr() and torch.equal(first, kept)


# ------------------------------------------------------------------- new-generation detection paths
def test_reuse_starts_clean_without_a_cache_when_shapes_line_up(model):
    """use_cache=False and a prompt exactly one longer than the last input: no forward-hook rule can tell,
    but the decoding loop's processor list is another object in another generate() call."""
    icp = ICP(model)
    generate(model, icp, inputs=prompt(batch=2, length=5), max_new_tokens=6, use_cache=False)
    generate(model, icp, inputs=prompt(batch=2, length=11, seed=3), max_new_tokens=4, use_cache=False)
    assert icp.trace.steps == 4
    assert icp.trace.metadata["prompt_length"] == 11


def _cache_argument() -> str:
    """generate()'s argument for a cache object: `cache` where transformers has it (it deprecates
    `past_key_values`, removed in 5.40), else `past_key_values` (the lowest transformers accepted)."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def test_reuse_starts_clean_with_a_reused_cache(model):
    """A prefill of several positions into a cache object already seen is a new generation too."""
    from transformers import DynamicCache

    icp = ICP(model)
    cache = DynamicCache(config=model.config)
    first = prompt(batch=1, length=5)
    out = generate(model, icp, inputs=first, max_new_tokens=6, **{_cache_argument(): cache})
    follow_up = torch.cat([out, prompt(batch=1, length=3, seed=5)["input_ids"]], dim=1)
    generate(
        model, icp, inputs={"input_ids": follow_up, "attention_mask": torch.ones_like(follow_up)},
        max_new_tokens=4, **{_cache_argument(): cache},
    )
    assert icp.trace.steps == 4
    assert icp.trace.metadata["prompt_length"] == follow_up.shape[1]


@pytest.mark.parametrize("name", ["past_key_values", "cache"])
def test_hook_finds_the_cache_by_type_whatever_its_argument_name(name):
    """transformers 5.24 renamed generate's cache argument; the hook must not depend on the name."""
    from transformers import DynamicCache

    from icp.hooks import ModelHooks

    class Echo(torch.nn.Module):
        def forward(self, input_ids=None, **kwargs):
            return input_ids

    module = Echo()
    hooks = ModelHooks(module)
    first, second = DynamicCache(), DynamicCache()
    module(input_ids=torch.ones(2, 11, dtype=torch.long), **{name: first})
    module(input_ids=torch.ones(2, 1, dtype=torch.long), **{name: first})
    assert hooks.generation_id == 1  # the decode step continues
    module(input_ids=torch.ones(2, 1, dtype=torch.long), **{name: second})
    assert hooks.generation_id == 2  # a new cache object
    module(input_ids=torch.ones(2, 4, dtype=torch.long), **{name: second})
    assert hooks.generation_id == 3  # a prefill into a cache already used
    assert hooks.forward_calls == 4


def test_a_hook_that_sees_no_forward_calls_says_so_once(model):
    from icp import ICPCompatibilityWarning

    icp = ICP(tiny_llama(seed=7))  # built with another model than the one generating
    with pytest.warns(ICPCompatibilityWarning, match="saw no forward call between two decoding steps") as caught:
        generate(model, icp, max_new_tokens=4)
    assert sum("saw no forward call" in str(w.message) for w in caught) == 1
    assert icp.trace.steps == 4


def test_generation_context_found_on_this_transformers(model):
    """Each end of the accepted transformers range runs this: a release that renames generate's loop
    locals makes ICP warn (and this test fail) instead of running blind."""
    from icp import ICPCompatibilityWarning

    icp = ICP(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCompatibilityWarning)
        generate(model, icp, max_new_tokens=2)
    context = icp.trace.metadata["generation_context"]
    assert context is not None and context["function"] == "_sample"


def test_generation_context_lost_is_reported(model, monkeypatch):
    from icp import ICPCompatibilityWarning
    from icp import generation_context

    monkeypatch.setattr(generation_context, "_PROCESSORS_LOCAL", "renamed_by_a_new_release")
    icp = ICP(model)
    with pytest.warns(ICPCompatibilityWarning, match="cannot find its `renamed_by_a_new_release` list"):
        generate(model, icp, max_new_tokens=2)


def test_without_model_lined_up_shapes_start_clean(model):
    icp = ICP()
    generate(model, icp, inputs=prompt(batch=2, length=5), max_new_tokens=6)
    generate(model, icp, inputs=prompt(batch=2, length=11, seed=3), max_new_tokens=4)
    assert icp.trace.steps == 4
    assert icp.trace.metadata["prompt_length"] == 11


def test_hook_without_a_cache_expects_one_more_position_per_step():
    from icp.hooks import ModelHooks

    class Echo(torch.nn.Module):
        def forward(self, input_ids=None, **kwargs):
            return input_ids

    module = Echo()
    hooks = ModelHooks(module)
    for length in (5, 6, 7):  # one generation, use_cache=False
        module(input_ids=torch.ones(2, length, dtype=torch.long))
    assert hooks.generation_id == 1
    module(input_ids=torch.ones(2, 4, dtype=torch.long))  # shorter: a new prompt
    module(input_ids=torch.ones(3, 5, dtype=torch.long))  # one longer but another batch size
    assert hooks.generation_id == 3


def test_zero_gain_holds_the_initial_temperature_unless_dissipation_moves_it(model):
    """gain=0 turns the entropy feedback off: T stays at T0; only the regime dissipation (and the leak) move it."""
    icp = ICP(model, gain=0.0, initial_temperature=0.4, heat_rate=0.0, cool_rate=0.0)
    generate(model, icp, max_new_tokens=10)
    np.testing.assert_allclose(icp.trace["temperature"], 0.4, rtol=1e-5)
    icp = ICP(model, gain=0.0, initial_temperature=0.4, heat_rate=0.5, cool_rate=0.5, leak=0.0)
    generate(model, icp, max_new_tokens=10)
    regimes = icp.trace["regime"]
    moved = ~np.isclose(icp.trace["temperature"], 0.4, rtol=1e-5)
    assert moved.any() == ((regimes == 0) | (regimes == 3)).any()


def test_the_default_law_is_cold_and_heats_only_rows_that_turned_rigid(model):
    """The cold law: no step is hotter than T0 until its row has been rigid (looping at low entropy)."""
    icp = ICP(model, card=None)
    assert icp.config.gain == 0.0 and icp.config.initial_temperature < 1.0
    generate(model, icp, inputs=prompt(batch=6, seed=4), max_new_tokens=40)
    temperature, regimes = icp.trace["temperature"], icp.trace["regime"]
    t0 = icp.config.initial_temperature
    been_rigid = np.maximum.accumulate(regimes == 0, axis=1)
    heated = np.nan_to_num(temperature, nan=0.0) > t0 * (1 + 1e-5)
    # T of step t is set after step t's dissipation: a rigid step heats itself and the steps after it.
    assert not (heated & ~been_rigid).any()


def test_seeds_law_restores_the_lagging_feedback(model):
    config = ICPConfig(**SEEDS_LAW)
    assert (config.gain, config.initial_temperature, config.min_temperature) == (0.3, 1.0, 0.2)
    icp = ICP(model, card=None, **SEEDS_LAW)
    generate(model, icp, inputs=prompt(batch=3), max_new_tokens=16)
    temperature = icp.trace["temperature"]
    assert np.nanstd(temperature[:, 1:]) > 0.01  # the feedback moves T every step
