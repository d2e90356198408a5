"""Optional dependencies: imported where a feature needs them, with an error that names the extra.

The base install (`pip install icp`) steers and traces generation. Calibration, plots, pandas export
and the default model need more; `pyproject.toml` declares each as an extra, and [`require`] turns
a missing one into an `ImportError` that says which extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Imports `module` for `feature`, or raises an `ImportError` that names the extra providing it.

    Args:
        module (`str`): the module to import, e.g. `"scipy.optimize"`.
        extra (`str`): the `icp` extra that installs it, e.g. `"calibrate"`.
        feature (`str`): what needs it, for the message, e.g. `"icp calibrate"`.

    Example:
        >>> from icp.optional import require
        >>> require("json", "none", "this example").__name__
        'json'
        >>> require("not_a_module_xyz", "calibrate", "icp calibrate")
        Traceback (most recent call last):
        ...
        ImportError: icp calibrate needs `not_a_module_xyz`, which is not installed: pip install 'icp[calibrate]'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        raise ImportError(
            f"{feature} needs `{top}`, which is not installed: pip install 'icp[{extra}]'"
        ) from err
