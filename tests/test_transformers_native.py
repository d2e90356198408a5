"""Transformers-native configuration: `ICPConfig.save_pretrained`/`from_pretrained`,
`ICP.generation_config`, and ICP as a transformers custom generation method (`icp.custom_generate_path()`).

Tiny random models built from a config; one slow test runs the embedded default model.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from helpers import ForceTokens, needs_default, prompt, tiny_llama
from packaging import version
from transformers import GenerationConfig
from transformers.generation.utils import GenerateDecoderOnlyOutput

import icp as icp_package
from icp import ICP, ICPCompositionWarning, ICPConfig, LoopConfig, RegimeThresholds, TrackingConfig
from icp.config import CONFIG_NAME
from icp.custom_generate_method import ICPGenerateOutput, custom_generate_path
from icp.custom_generate_method import generate as icp_generate

NEW_TOKENS = 6
TRANSFORMERS = version.parse(transformers.__version__)


@pytest.fixture
def inputs():
    return prompt(batch=3, length=4)


def _hook_count(model) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def _custom(model, inputs, seed=0, **kwargs):
    torch.manual_seed(seed)
    return model.generate(
        **inputs,
        max_new_tokens=NEW_TOKENS,
        custom_generate=custom_generate_path(),
        trust_remote_code=True,
        return_dict_in_generate=True,
        **kwargs,
    )


def _with_icp_kwargs(model, inputs, icp, seed=0):
    torch.manual_seed(seed)
    return model.generate(**inputs, max_new_tokens=NEW_TOKENS, **icp.generation_kwargs())


# ------------------------------------------------------------------------ save_pretrained / from_pretrained


def _custom_config() -> ICPConfig:
    return ICPConfig(
        target_entropy=2.25,
        gain=0.4,
        derepeat_prompt=True,
        coherence="logits",
        meta_uncertainty="varentropy",
        eos_token_id=[2, 7],
        regimes=RegimeThresholds(rigid_entropy=0.3, coherent=0.5),
        loop=LoopConfig(max_period=8, min_repeats=4),
        divergence={"patience": 3},
        tracking=TrackingConfig(rate=0.05, candidates=16),
        control=False,
    )


def test_save_and_from_pretrained_round_trip(tmp_path):
    config = _custom_config()
    path = config.save_pretrained(tmp_path / "a" / "b")  # parents are created
    assert path == tmp_path / "a" / "b" / CONFIG_NAME and path.name == "icp_config.json"
    data = json.loads(path.read_text())
    assert data["icp_version"] == icp_package.__version__
    assert data["loop"] == {"max_period": 8, "min_repeats": 4, "min_loop_tokens": 16}  # nested groups as objects
    assert data["divergence"]["patience"] == 3 and data["eos_token_id"] == [2, 7]

    for source in (tmp_path / "a" / "b", str(tmp_path / "a" / "b"), path):  # the folder (Path or str) or the file
        loaded = ICPConfig.from_pretrained(source)
        assert loaded == config
        assert isinstance(loaded.loop, LoopConfig) and isinstance(loaded.tracking, TrackingConfig)
    assert ICPConfig.from_pretrained(ICPConfig().save_pretrained(tmp_path / "default")) == ICPConfig()


def test_save_pretrained_overwrites_and_writes_numpy_scalars(tmp_path):
    ICPConfig(gain=0.9).save_pretrained(tmp_path)
    config = ICPConfig(target_entropy=np.float32(1.75), loop={"max_period": np.int64(8)})
    config.save_pretrained(tmp_path)
    loaded = ICPConfig.from_pretrained(tmp_path)
    assert loaded == config and loaded.gain == ICPConfig().gain  # the second save replaced the first
    assert type(loaded.target_entropy) is float and type(loaded.loop.max_period) is int


def test_from_pretrained_overrides_are_nested_aware(tmp_path):
    _custom_config().save_pretrained(tmp_path)
    config = ICPConfig.from_pretrained(tmp_path, target_entropy=1.8, loop={"min_repeats": 5}, regimes={"coherent": 0.7})
    assert config.target_entropy == 1.8 and config.gain == 0.4  # the rest comes from the file
    assert config.loop == LoopConfig(max_period=8, min_repeats=5)  # the saved max_period is kept
    assert config.regimes == RegimeThresholds(rigid_entropy=0.3, coherent=0.7)
    assert config.tracking == TrackingConfig(rate=0.05, candidates=16)  # a group not overridden is untouched
    # A dataclass instance replaces the whole group.
    replaced = ICPConfig.from_pretrained(tmp_path, loop=LoopConfig(min_repeats=5))
    assert replaced.loop == LoopConfig(min_repeats=5)
    # The file itself is unchanged by overrides.
    assert ICPConfig.from_pretrained(tmp_path) == _custom_config()


def test_from_pretrained_bad_overrides_name_the_key(tmp_path):
    ICPConfig().save_pretrained(tmp_path)
    with pytest.raises(TypeError, match=r"'target_entropie'.*allowed are the ICPConfig fields"):
        ICPConfig.from_pretrained(tmp_path, target_entropie=2.0)
    with pytest.raises(ValueError, match=r"'loop\.max_periods'.*the overrides.*'max_period'"):
        ICPConfig.from_pretrained(tmp_path, loop={"max_periods": 8})
    with pytest.raises(ValueError, match=r"overrides \['gain'\].*`gain` \(=-1\.0\) has to be non-negative"):
        ICPConfig.from_pretrained(tmp_path, gain=-1.0)


def test_from_pretrained_unknown_key_in_the_file_names_the_key_and_file(tmp_path):
    path = ICPConfig().save_pretrained(tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "target_entropie": 2.0}))
    with pytest.raises(ValueError, match=r"\['target_entropie'\] in '.*icp_config\.json'.*allowed keys"):
        ICPConfig.from_pretrained(tmp_path)
    data["regimes"]["coherant"] = 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"\['regimes\.coherant'\].*RegimeThresholds"):
        ICPConfig.from_pretrained(tmp_path)


def test_from_pretrained_missing_or_broken_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=rf"{missing.name}' does not exist"):
        ICPConfig.from_pretrained(missing)
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path.name}' has no icp_config\.json"):
        ICPConfig.from_pretrained(tmp_path)  # an existing folder without the file
    with pytest.raises(FileNotFoundError, match="not Hub ids"):
        ICPConfig.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")

    path = tmp_path / CONFIG_NAME
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"icp_config\.json' is not valid JSON"):
        ICPConfig.from_pretrained(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="has to hold a JSON object of ICPConfig fields, got list"):
        ICPConfig.from_pretrained(tmp_path)
    path.write_text(json.dumps({"gain": -1.0}))
    with pytest.raises(ValueError, match=r"Invalid ICP config from '.*icp_config\.json': `gain` \(=-1\.0\)"):
        ICPConfig.from_pretrained(tmp_path)


def test_save_pretrained_refuses_a_file_and_non_paths(tmp_path):
    file = tmp_path / "config.json"
    file.write_text("{}")
    with pytest.raises(NotADirectoryError, match=r"`save_directory` \(=.*config\.json'\) is a file"):
        ICPConfig().save_pretrained(file)
    assert file.read_text() == "{}"  # untouched
    with pytest.raises(TypeError, match=r"`save_directory` \(=3\) has to be a path"):
        ICPConfig().save_pretrained(3)
    with pytest.raises(TypeError, match=r"`pretrained_path` \(=None\) has to be a path"):
        ICPConfig.from_pretrained(None)


# ----------------------------------------------------------------------------------- ICP.generation_config


def test_generation_kwargs_are_no_generation_config_but_generation_config_is(model):
    icp = ICP(model)
    with pytest.raises(ValueError, match="`logits_processor` is not a valid argument of `GenerationConfig`"):
        GenerationConfig(**icp.generation_kwargs())
    config = icp.generation_config()
    assert isinstance(config, GenerationConfig)
    config.validate()
    assert config.do_sample is True and config.num_beams == 1
    assert (config.temperature, config.top_k, config.top_p, config.typical_p) == (1.0, 0, 1.0, 1.0)
    assert (config.epsilon_cutoff, config.eta_cutoff, config.min_p, config.top_h) == (0.0, 0.0, None, None)
    icp.remove_hooks()


def test_generation_config_copies_base_and_keeps_its_other_settings(model):
    icp = ICP(model)
    base = GenerationConfig(
        max_new_tokens=7, do_sample=True, temperature=0.3, top_k=5, top_p=0.9, min_p=0.1, repetition_penalty=1.3
    )
    before = base.to_dict()
    config = icp.generation_config(base)
    assert config is not base and base.to_dict() == before  # copied, never changed
    assert (config.temperature, config.top_k, config.top_p, config.min_p) == (1.0, 0, 1.0, None)
    assert config.max_new_tokens == 7 and config.repetition_penalty == 1.3
    # From the model's own config: its eos/pad ids stay.
    from_model = icp.generation_config(model.generation_config)
    assert from_model is not model.generation_config and from_model.pad_token_id == model.generation_config.pad_token_id
    icp.remove_hooks()


@pytest.mark.parametrize("bad", [{"max_new_tokens": 4}, "model.generation_config", 3])
def test_generation_config_bad_base_names_base(model, bad):
    icp = ICP(model)
    with pytest.raises(TypeError, match=r"`base` \(=.*\) has to be a transformers\.GenerationConfig"):
        icp.generation_config(bad)
    icp.remove_hooks()


def test_generate_with_generation_config_matches_generation_kwargs(model, inputs):
    by_kwargs = ICP(model)
    expected = _with_icp_kwargs(model, inputs, by_kwargs, seed=3)
    by_config = ICP(model)
    config = by_config.generation_config(model.generation_config)
    config.max_new_tokens = NEW_TOKENS
    torch.manual_seed(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCompositionWarning)  # nothing of generate's applies after ICP
        out = model.generate(
            **inputs,
            generation_config=config,
            logits_processor=by_config,
            stopping_criteria=by_config.stopping_criteria,
        )
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert by_config.trace.steps == NEW_TOKENS
    np.testing.assert_array_equal(by_config.trace["token"], by_kwargs.trace["token"])
    # ... and ICP steered: plain sampling with the warpers off picks other tokens under the same seed.
    torch.manual_seed(3)
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
    assert not torch.equal(plain, expected)
    by_kwargs.remove_hooks()
    by_config.remove_hooks()


# -------------------------------------------------------------------------- custom_generate (the method)


def test_custom_generate_path_is_a_custom_generate_folder():
    path = custom_generate_path()
    assert isinstance(path, str) and Path(path).is_absolute()
    assert icp_package.custom_generate_path is custom_generate_path  # lazy attribute of the package
    assert (Path(path) / "custom_generate" / "generate.py").is_file()
    assert (Path(path) / "custom_generate" / "requirements.txt").is_file()
    assert (Path(path) / "README.md").read_text().startswith("---\nlibrary_name: transformers")


def test_custom_generate_returns_sequences_and_the_trace(model, inputs):
    hooks = _hook_count(model)
    out = _custom(model, inputs)
    assert type(out) is ICPGenerateOutput and isinstance(out, GenerateDecoderOnlyOutput)
    assert out.sequences.shape == (3, 4 + NEW_TOKENS)
    trace = out.icp_trace
    assert trace.to_dict()["entropy"].shape == (3, NEW_TOKENS)
    np.testing.assert_array_equal(trace["token"], out.sequences[:, 4:].numpy())
    assert _hook_count(model) == hooks  # the ICP built for the call took its hooks off the model


def test_custom_generate_without_dict_returns_the_tensor(model, inputs):
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=3, custom_generate=custom_generate_path(), trust_remote_code=True)
    assert isinstance(out, torch.Tensor) and out.shape == (3, 4 + 3)


def test_custom_generate_uses_the_icp_passed(model, inputs):
    icp = ICP(model, target_entropy=2.0)
    out = _custom(model, inputs, icp=icp)
    assert icp.trace.steps == NEW_TOKENS  # its trace is filled
    np.testing.assert_array_equal(icp.trace["token"], out.icp_trace["token"])
    assert out.icp_trace.metadata["config"]["target_entropy"] == 2.0
    assert icp.processor.hooks is not None  # a caller's ICP keeps its hooks
    icp.remove_hooks()


def test_custom_generate_matches_generate_with_icp_kwargs(model, inputs):
    reference = ICP(model)
    expected = _with_icp_kwargs(model, inputs, reference, seed=7)
    reference.remove_hooks()
    out = _custom(model, inputs, seed=7)
    torch.testing.assert_close(out.sequences, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(out.icp_trace["token"], reference.trace["token"])
    np.testing.assert_allclose(out.icp_trace["temperature"], reference.trace["temperature"])
    # Another seed samples other tokens: the equality above is not a constant output.
    assert not torch.equal(_custom(model, inputs, seed=8).sequences, expected)


def test_custom_generate_turns_off_a_min_p_of_the_model_config(inputs):
    model = tiny_llama()
    model.generation_config.min_p = 0.2
    icp = ICP(model)
    config = icp.generation_config(model.generation_config)
    config.max_new_tokens = 2
    with pytest.warns(ICPCompositionWarning, match="min_p=0.2"):  # generate() refills a None min_p ...
        model.generate(**inputs, generation_config=config, logits_processor=icp)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCompositionWarning)  # ... which the custom method turns off
        out = _custom(model, inputs, icp=icp)
    assert out.icp_trace.steps == NEW_TOKENS
    assert model.generation_config.min_p == 0.2  # the model's config is not changed
    icp.remove_hooks()


def test_custom_generate_call_kwargs_and_config_apply_on_top(model, inputs):
    with pytest.warns(ICPCompositionWarning, match="temperature=0.7"):  # a call's kwargs win, and ICP says so
        _custom(model, inputs, temperature=0.7)
    config = GenerationConfig(max_new_tokens=2, do_sample=False, top_k=3, pad_token_id=0)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCompositionWarning)  # the given config's sampling is replaced by ICP's
        out = model.generate(
            **inputs,
            generation_config=config,
            custom_generate=custom_generate_path(),
            trust_remote_code=True,
            return_dict_in_generate=True,
        )
    assert out.sequences.shape == (3, 4 + 2) and out.icp_trace.steps == 2
    assert config.do_sample is False and config.top_k == 3  # not changed


def test_custom_generate_runs_given_processors_before_icp(model, inputs):
    force = ForceTokens({0: [5]}, prompt_length=4)
    out = _custom(model, inputs, logits_processor=[force])
    assert (out.sequences[0, 4:] == 5).all()
    assert out.icp_trace.metadata["generation_context"]["before"][-1] == "ForceTokens"


@pytest.mark.parametrize("kind", ["ICPConfig", "dict", "folder", "file"])
def test_custom_generate_icp_config_forms(model, inputs, tmp_path, kind):
    config = ICPConfig(target_entropy=2.5, loop={"max_period": 8})
    given = {
        "ICPConfig": config,
        "dict": {"target_entropy": 2.5, "loop": {"max_period": 8}},
        "folder": str(tmp_path),
        "file": tmp_path / CONFIG_NAME,
    }[kind]
    config.save_pretrained(tmp_path)
    out = _custom(model, inputs, icp_config=given)
    used = out.icp_trace.metadata["config"]
    assert used["target_entropy"] == 2.5 and used["loop"]["max_period"] == 8
    assert used["loop"]["min_repeats"] == 3 and out.icp_trace.steps == NEW_TOKENS


def test_custom_generate_bad_icp_arguments(model, inputs):
    with pytest.raises(TypeError, match=r"`icp` \(=.*a dict\) has to be an icp\.ICP"):
        _custom(model, inputs, icp={"target_entropy": 2.0})
    with pytest.raises(TypeError, match=r"`icp_config` \(=3, a int\) has to be an ICPConfig"):
        _custom(model, inputs, icp_config=3)
    with pytest.raises(TypeError, match=r"\['card', 'target_entropie'\] that are not ICPConfig fields"):
        _custom(model, inputs, icp_config={"target_entropie": 2.0, "card": None})
    with pytest.raises(ValueError, match="pass either an ICP, or how to build one"):
        _custom(model, inputs, icp=ICP(model), icp_config={"target_entropy": 2.0})
    with pytest.raises(ValueError, match=r"`icp_card` \(=None\) and a complete `icp_config`"):
        _custom(model, inputs, icp_config=ICPConfig(), icp_card=None)
    with pytest.raises(ValueError, match="already is the generation method"):
        icp_generate(model, **inputs, custom_generate="elsewhere")


def test_generate_can_be_called_directly(model, inputs):
    torch.manual_seed(0)
    out = icp_generate(model, inputs["input_ids"], attention_mask=inputs["attention_mask"], max_new_tokens=2)
    assert out.shape == (3, 4 + 2)


@pytest.mark.skipif(TRANSFORMERS < version.parse("5.12.0"), reason="5.0-5.11 run a local folder without asking")
def test_custom_generate_needs_trust_remote_code_from_5_12(model, inputs):
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        model.generate(**inputs, max_new_tokens=2, custom_generate=custom_generate_path(), trust_remote_code=False)


@pytest.mark.skipif(TRANSFORMERS >= version.parse("5.12.0"), reason="5.12 and later require trust_remote_code")
def test_custom_generate_runs_without_trust_remote_code_before_5_12(model, inputs):
    out = model.generate(**inputs, max_new_tokens=2, custom_generate=custom_generate_path(), trust_remote_code=False)
    assert out.shape == (3, 4 + 2)


# --------------------------------------------------------------------------------------- the default model


@pytest.mark.slow
@needs_default
def test_custom_generate_on_the_default_model():
    model, tokenizer = icp_package.load_default_model()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Why is the sky blue?"}], tokenize=False, add_generation_prompt=True
    )
    inputs = tokenizer([text], return_tensors="pt")
    torch.manual_seed(0)
    out = model.generate(
        **inputs,
        max_new_tokens=8,
        pad_token_id=tokenizer.pad_token_id,
        custom_generate=icp_package.custom_generate_path(),
        trust_remote_code=True,
        return_dict_in_generate=True,
    )
    assert isinstance(out, ICPGenerateOutput)
    new = out.sequences.shape[1] - inputs["input_ids"].shape[1]
    trace = out.icp_trace
    assert 1 <= new <= 8 and trace.batch_size == 1 and trace.steps == new
    assert trace.metadata["card"] is not None and trace.metadata["coherence_source"] == "embedding"
    decoded = trace["regime"] >= 0
    for key in ("entropy", "temperature", "coherence"):
        assert np.isfinite(trace[key][decoded]).all(), key
    assert tokenizer.decode(out.sequences[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
