"""The model fingerprint (icp.fingerprint): the same weights give the same fingerprint in any dtype and
from any path; other weights, even of the same architecture, give another; it reads a few rows only."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_llama, word_tokenizer

from icp.fingerprint import (
    FINGERPRINT_VERSION,
    N_ROWS,
    ModelFingerprint,
    embedding_signs,
    model_architecture,
    model_fingerprint,
)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_the_fingerprint_survives_a_dtype_cast(dtype):
    model = tiny_llama(vocab_size=256, hidden_size=64)
    reference = model_fingerprint(model)
    assert reference is not None
    assert model_fingerprint(model.to(dtype)) == reference
    assert model_fingerprint(model.to(torch.float32)) == reference  # and back


def test_the_fingerprint_does_not_depend_on_the_path(tmp_path):
    from transformers import AutoModelForCausalLM

    model = tiny_llama(vocab_size=256, hidden_size=64)
    for name in ("a", "b/c"):
        model.save_pretrained(tmp_path / name)
    first = AutoModelForCausalLM.from_pretrained(tmp_path / "a", dtype=torch.bfloat16)
    second = AutoModelForCausalLM.from_pretrained(tmp_path / "b" / "c", dtype=torch.float32)
    assert first.name_or_path != second.name_or_path
    assert model_fingerprint(first) == model_fingerprint(second) == model_fingerprint(model)


def test_other_weights_or_another_architecture_give_another_fingerprint():
    base = model_fingerprint(tiny_llama(seed=0))
    other_seed = model_fingerprint(tiny_llama(seed=1))
    assert other_seed.architecture == base.architecture and other_seed != base
    assert model_fingerprint(tiny_llama(vocab_size=65)).architecture != base.architecture
    assert model_fingerprint(tiny_llama(hidden_size=48)).architecture != base.architecture


def test_one_sign_in_a_sampled_row_changes_the_checksum():
    weight = torch.randn(1000, 16, generator=torch.Generator().manual_seed(0))
    row = (2 * 3 + 1) * 1000 // (2 * N_ROWS)  # a sampled row: the midpoint of the 4th block
    flipped = weight.clone()
    flipped[row, 5] = -flipped[row, 5]
    assert embedding_signs(flipped) != embedding_signs(weight)
    unsampled = weight.clone()
    unsampled[row + 1] = -unsampled[row + 1]  # rows between the midpoints are never read
    assert embedding_signs(unsampled) == embedding_signs(weight)


def test_only_a_few_rows_are_read(monkeypatch):
    """Cheap: one index_select of N_ROWS rows, never a pass over the full matrix."""
    weight = torch.randn(4096, 8)
    seen = []
    real = torch.Tensor.index_select

    def spy(self, dim, index):
        seen.append(index.numel())
        return real(self, dim, index)

    monkeypatch.setattr(torch.Tensor, "index_select", spy)
    embedding_signs(weight)
    assert seen == [N_ROWS]
    assert len(embedding_signs(torch.randn(3, 4))) == 16  # fewer rows than N_ROWS: all of them


def test_no_fingerprint_without_readable_embeddings():
    assert model_fingerprint(object()) is None
    assert model_architecture(torch.nn.Linear(2, 2)) is None
    with torch.device("meta"):
        meta = tiny_llama()
    assert model_fingerprint(meta) is None
    with pytest.raises(ValueError, match="2-D"):
        embedding_signs(torch.zeros(4))


def test_fingerprint_dict_round_trip_and_errors():
    fp = model_fingerprint(tiny_llama())
    data = fp.to_dict()
    assert list(data) == ["version", "model_type", "vocab_size", "hidden_size", "num_layers", "embedding_signs"]
    assert data["version"] == FINGERPRINT_VERSION and ModelFingerprint.from_dict(data) == fp
    assert str(fp) == f"llama:64x32x2:{fp.embedding_signs}"
    bad = [
        ("not a mapping", "has to be a mapping"),
        ({**data, "extra": 1}, "unknown fields"),
        ({k: v for k, v in data.items() if k != "vocab_size"}, "misses"),
        ({**data, "vocab_size": "64"}, "vocab_size"),
        ({**data, "num_layers": True}, "num_layers"),
        ({**data, "model_type": ""}, "model_type"),
        ({**data, "embedding_signs": "XYZ"}, "embedding_signs"),
    ]
    for value, message in bad:
        with pytest.raises(ValueError, match=message):
            ModelFingerprint.from_dict(value)
    assert ModelFingerprint.from_dict({**data, "version": 2}) != fp  # another scheme never matches


def test_a_calibrated_card_records_the_fingerprint_and_is_found_under_another_name(tmp_path, monkeypatch):
    from icp.calibrate import calibrate
    from icp.cards import find_card_for_model, load_card, write_card

    tokenizer = word_tokenizer(pad_token="w0")
    model = tiny_llama(seed=3)
    model.name_or_path = "test-org/calibrated-tiny"
    result = calibrate(
        model, tokenizer, prompts=["w5 w6 w7", "w9 w3"], temperatures=(0.5, 1.0, 2.0), max_new_tokens=6,
        n_bootstrap=8, progress=False, chat=False,
    )
    assert result.fingerprint == model_fingerprint(model).to_dict()
    written = load_card(write_card(result, folder=tmp_path))
    assert written.icp["calibration"]["chat"] is False  # continuation prompts: the command says so
    assert "--no-chat" in written.icp["calibration"]["command"].split()
    monkeypatch.setenv("ICP_MODEL_CARDS", str(tmp_path))
    model.name_or_path = "/somewhere/else/tiny"  # the same weights under a name no card has
    assert find_card_for_model(model) is not None
    other = tiny_llama(seed=4)
    other.name_or_path = "/somewhere/else/tiny"
    assert find_card_for_model(other) is None
