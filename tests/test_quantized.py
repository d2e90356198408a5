"""ICP on bitsandbytes-quantized models (8-bit and 4-bit), on whatever device bitsandbytes runs here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed (pip install bitsandbytes)")

from helpers import tiny_llama  # noqa: E402
from transformers import BitsAndBytesConfig, LlamaForCausalLM  # noqa: E402

from icp import ICP  # noqa: E402

CONFIGS = {
    "8bit": lambda: BitsAndBytesConfig(load_in_8bit=True),
    "4bit-fp4": lambda: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32),
    "4bit-nf4-bf16": lambda: BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
    ),
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    # hidden 128: 4-bit blocks need more than the 32-wide toy model of the other tests.
    folder = tmp_path_factory.mktemp("quantizable")
    tiny_llama(vocab_size=128, hidden_size=128).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_icp_on_a_bitsandbytes_model(saved_model, name):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model = LlamaForCausalLM.from_pretrained(saved_model, quantization_config=CONFIGS[name](), device_map=device)
    except (NotImplementedError, RuntimeError, ImportError) as err:
        pytest.skip(f"bitsandbytes {bnb.__version__} cannot quantize {name} on {device}: {err}")
    quantized = [type(m).__name__ for m in model.modules() if "bit" in type(m).__name__.lower()]
    assert quantized, "the model was not quantized"
    icp = ICP(model)
    ids = torch.randint(1, 128, (3, 5), device=device)
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, **icp.generation_kwargs()
    )
    trace = icp.trace
    assert trace.steps == 6 and icp.coherence_source == "embedding"
    np.testing.assert_array_equal(trace["token"], out[:, 5:].cpu().numpy())
    for key in ("entropy", "coherence", "kl", "free_energy", "temperature"):
        assert np.isfinite(trace[key]).all(), key
