"""Every package `icp` imports is declared, where it is needed; the base install imports every module.

Two checks:
- statically (every run): each third-party import in `icp/` is declared in `pyproject.toml`, in the
  base dependencies when the module imports it at import time, else in the base or an extra;
- in a venv with only the base install (`.ci/run` sets `ICP_BASE_INSTALL=1` there, with pytest as
  the only addition): every public module imports, the extras really are absent, and a feature
  that needs one fails with an error naming it.
"""

from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Import name -> distribution name, where they differ.
DISTRIBUTION = {"yaml": "pyyaml", "sklearn": "scikit-learn", "huggingface_hub": "huggingface-hub"}
BASE_ONLY = os.environ.get("ICP_BASE_INSTALL") == "1"


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {_requirement_name(r) for r in project["dependencies"]}
    extras = {
        name: {_requirement_name(r) for r in reqs} for name, reqs in project["optional-dependencies"].items()
    }
    return base, extras


def _third_party_imports(path: Path) -> tuple[set[str], set[str]]:
    """(imported at module level, imported inside functions) top-level names, stdlib and icp left out."""
    tree = ast.parse(path.read_text())
    top, nested = set(), set()

    def visit(node: ast.AST, inside: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_inside = inside or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                names = [child.module]
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root != "icp":
                    (nested if child_inside else top).add(root)
            visit(child, child_inside)

    visit(tree, False)
    return top, nested


def _calls_require(path: Path) -> set[str]:
    """Modules that `icp.optional.require` imports by name in `path`."""
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]
    return {
        call.args[0].value.split(".")[0]
        for call in calls
        if getattr(call.func, "id", getattr(call.func, "attr", None)) == "require"
        and call.args
        and isinstance(call.args[0], ast.Constant)
    }


@pytest.mark.skipif(BASE_ONLY, reason="the static check runs in the full test venv")
@pytest.mark.parametrize("path", sorted((ROOT / "icp").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_import_is_declared(path):
    base, extras = _declared()
    anywhere = base.union(*extras.values())
    top, nested = _third_party_imports(path)
    nested |= _calls_require(path)
    for name in sorted(top):
        assert DISTRIBUTION.get(name, name).replace("_", "-") in base, (
            f"{path.name} imports {name} at import time, but pyproject.toml's base dependencies lack it"
        )
    for name in sorted(nested):
        assert DISTRIBUTION.get(name, name).replace("_", "-") in anywhere, (
            f"{path.name} imports {name}, declared in neither the base dependencies nor an extra"
        )


@pytest.mark.skipif(BASE_ONLY, reason="the static check runs in the full test venv")
def test_the_static_check_sees_nested_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("import numpy\nimport os\n\ndef f():\n    import scipy.optimize\n    from icp import ICP\n")
    assert _third_party_imports(source) == ({"numpy"}, {"scipy"})


def _public_modules() -> list[str]:
    import icp

    names = ["icp"]
    for info in pkgutil.walk_packages(icp.__path__, prefix="icp."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


@pytest.mark.skipif(not BASE_ONLY, reason="runs in a venv with only the base install (ICP_BASE_INSTALL=1)")
def test_base_install_imports_every_public_module():
    for extra_module in ("scipy", "matplotlib", "pandas", "gguf", "datasets", "evaluate"):
        assert importlib.util.find_spec(extra_module) is None, f"{extra_module} is installed: not a base-only venv"
    modules = _public_modules()
    assert "icp.processors" in modules and "icp.cli" in modules
    for name in modules:
        importlib.import_module(name)


@pytest.mark.skipif(not BASE_ONLY, reason="runs in a venv with only the base install (ICP_BASE_INSTALL=1)")
def test_base_install_names_the_missing_extra():
    import numpy as np

    from icp.calibrate import fit_coherence_curve

    with pytest.raises(ImportError, match=r"pip install 'icp\[calibrate\]'"):
        fit_coherence_curve(np.linspace(0, 8, 20), np.linspace(0.8, 0.6, 20))


@pytest.mark.skipif(not BASE_ONLY, reason="runs in a venv with only the base install (ICP_BASE_INSTALL=1)")
def test_base_install_steers_a_generation():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from icp import ICP

    config = LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    icp = ICP(model)
    model.generate(input_ids=torch.ones(2, 4, dtype=torch.long), max_new_tokens=5, **icp.generation_kwargs())
    assert icp.trace.steps == 5
