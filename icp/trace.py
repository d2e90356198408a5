"""The per-token trace: preallocated device buffers while generating, one host copy at the end.

[`TraceBuffers`] lives on the logits' device and is written with plain indexed stores (no host
sync). [`Trace`] is the finalised, host-side (NumPy) view a user reads: `summary()`, `to_dict()`,
`to_pandas()`, `plot(path)`, and the exports `save(path)` (`.npz`, what `Trace.load` and `icp trace`
read), `to_json()`, `to_csv()` and `to_parquet(path)`.

Files carry a format version ([`TRACE_FORMAT_VERSION`]): a reader accepts its own version and older
ones, and refuses a newer one with an error that says to upgrade icp. `.npz` files written before the
field existed are version 1.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .regimes import REGIMES, STOPPED

__all__ = [
    "TraceBuffers",
    "Trace",
    "RowSummary",
    "TraceSummary",
    "STOP_REASONS",
    "FLOAT_SIGNALS",
    "TRACE_FORMAT_VERSION",
]

#: Version of the trace file layouts (`.npz` of [`Trace.save`], JSON of [`Trace.to_json`]). Raise it
#: when a reader of the current version would misread the new layout; [`Trace.load`] and
#: [`Trace.from_json`] read every version up to this one. `.npz` files without the field are version 1.
TRACE_FORMAT_VERSION = 1
#: The `format` field of [`Trace.to_json`]'s document.
_JSON_FORMAT = "icp.trace"

#: Float signals recorded per row and step (NaN after the row stopped).
FLOAT_SIGNALS: tuple[str, ...] = (
    "entropy",
    "varentropy",
    "coherence",
    "meta_uncertainty",
    "kl",
    "free_energy",
    "temperature",
    "tempered_entropy",
    "sampled_entropy",
    "target",
    "coherence_sensitivity",
    "surprisal",
)
#: Stop reasons by code; "length" means the row decoded until generate() ended (max_new_tokens or
#: every other row finished).
STOP_REASONS: tuple[str, ...] = ("length", "eos", "loop", "divergence")
_FLOAT_INDEX = {name: i for i, name in enumerate(FLOAT_SIGNALS)}
TOKEN_SENTINEL = -1


class TraceBuffers:
    """Preallocated `(batch, capacity)` device tensors, one per signal, grown by doubling if needed.

    Args:
        batch_size (`int`): rows.
        capacity (`int`): steps to preallocate (generate's max_new_tokens when known).
        device (`torch.device`): where the logits live.

    Example:
        >>> import torch
        >>> from icp.trace import TraceBuffers
        >>> buf = TraceBuffers(2, 4, torch.device("cpu"))
        >>> buf.write(0, {"entropy": torch.ones(2)}, active=torch.tensor([True, False]))
        >>> buf.data["entropy"][:, 0]
        tensor([1., nan])
    """

    def __init__(self, batch_size: int, capacity: int, device: torch.device) -> None:
        self.batch_size = batch_size
        self.device = device
        self.capacity = max(1, capacity)
        # One (signals, batch, capacity) tensor for the float signals, so that a step's values are
        # stored with one stacked write instead of one masked write per signal.
        self.floats = torch.full(
            (len(FLOAT_SIGNALS), batch_size, self.capacity), math.nan, dtype=torch.float32, device=device
        )
        self.regime = torch.full((batch_size, self.capacity), STOPPED, dtype=torch.int8, device=device)
        self.token = torch.full((batch_size, self.capacity), TOKEN_SENTINEL, dtype=torch.long, device=device)
        self._views()

    def _views(self) -> None:
        self.data: dict[str, torch.Tensor] = {name: self.floats[i] for i, name in enumerate(FLOAT_SIGNALS)}
        self.data["regime"] = self.regime
        self.data["token"] = self.token

    def nbytes(self) -> int:
        """Bytes held on the device by the buffers."""
        return sum(t.numel() * t.element_size() for t in (self.floats, self.regime, self.token))

    def ensure(self, step: int) -> None:
        """Makes room for index `step`, doubling the capacity (a rare, amortised copy)."""
        if step < self.capacity:
            return
        new_capacity = max(2 * self.capacity, step + 1)

        def grow(old: torch.Tensor, fill: float) -> torch.Tensor:
            grown = torch.full(old.shape[:-1] + (new_capacity,), fill, dtype=old.dtype, device=self.device)
            grown[..., : self.capacity] = old
            return grown

        self.floats = grow(self.floats, math.nan)
        self.regime = grow(self.regime, STOPPED)
        self.token = grow(self.token, TOKEN_SENTINEL)
        self.capacity = new_capacity
        self._views()

    def write(self, step: int, values: dict[str, torch.Tensor], active: torch.Tensor) -> None:
        """Stores each value at column `step` where `active`, the sentinel elsewhere.

        Float signals given in `FLOAT_SIGNALS` order (any contiguous run of it) are stored with one
        stacked write.
        """
        self.ensure(step)
        names = [n for n in values if n in _FLOAT_INDEX]
        if names:
            stacked = torch.stack([values[n].to(torch.float32) for n in names])
            stacked = torch.where(active, stacked, math.nan)
            first = _FLOAT_INDEX[names[0]]
            if [_FLOAT_INDEX[n] for n in names] == list(range(first, first + len(names))):
                self.floats[first : first + len(names), :, step] = stacked
            else:
                for row, name in zip(stacked, names):
                    self.floats[_FLOAT_INDEX[name], :, step] = row
        if "regime" in values:
            self.regime[:, step] = torch.where(active, values["regime"].to(torch.int8), STOPPED)
        if "token" in values:
            self.token[:, step] = torch.where(active, values["token"].to(torch.long), TOKEN_SENTINEL)

    def window(self, name: str, end: int, width: int) -> torch.Tensor:
        """The last `width` columns of `name` up to and including `end` (a view, no copy)."""
        return self.data[name][:, max(0, end - width + 1) : end + 1]


@dataclass
class RowSummary:
    """What one row's trajectory came to.

    Attributes:
        row (`int`): batch row.
        tokens (`int`): tokens generated before the row stopped.
        free_energy (`float`): the trajectory's F, the mean of its steps' F.
        entropy (`float`): mean H.
        coherence (`float`): mean C.
        meta_uncertainty (`float`): mean U.
        temperature (`float`): mean ICP temperature.
        regime_shares (`dict[str, float]`): share of the row's tokens in each regime.
        stop_reason (`str`): one of "length", "eos", "loop", "divergence".
        stop_step (`int`): step at which the row stopped (-1 for "length").
    """

    row: int
    tokens: int
    free_energy: float
    entropy: float
    coherence: float
    meta_uncertainty: float
    temperature: float
    regime_shares: dict[str, float]
    stop_reason: str
    stop_step: int

    def to_dict(self) -> dict[str, Any]:
        flat = {k: v for k, v in self.__dict__.items() if k != "regime_shares"}
        flat.update({f"share_{k}": v for k, v in self.regime_shares.items()})
        return flat


@dataclass
class TraceSummary:
    """Per-row summaries; prints as a table.

    Attributes:
        rows (`list[RowSummary]`): one per batch row.
    """

    rows: list[RowSummary] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> RowSummary:
        return self.rows[i]

    def to_pandas(self):
        """The summary as a `pandas.DataFrame`, one row per batch row (needs pandas)."""
        import pandas as pd

        return pd.DataFrame([r.to_dict() for r in self.rows])

    def __str__(self) -> str:
        head = (
            f"{'row':>3} {'tokens':>6} {'F':>7} {'H':>6} {'C':>6} {'U':>6} {'T':>5}  "
            + " ".join(f"{name[:5]:>5}" for name in REGIMES)
            + "  stop"
        )
        lines = [head]
        for r in self.rows:
            shares = " ".join(f"{r.regime_shares[name]:5.2f}" for name in REGIMES)
            stop = r.stop_reason if r.stop_step < 0 else f"{r.stop_reason}@{r.stop_step}"
            lines.append(
                f"{r.row:>3} {r.tokens:>6} {r.free_energy:7.3f} {r.entropy:6.3f} {r.coherence:6.3f} "
                f"{r.meta_uncertainty:6.3f} {r.temperature:5.2f}  {shares}  {stop}"
            )
        return "\n".join(lines)

    __repr__ = __str__


def _running_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Mean of the last `width` finite values at each step (NaN where the row has stopped)."""
    finite = np.isfinite(x)
    values = np.where(finite, x, 0.0)
    sums = np.cumsum(values)
    counts = np.cumsum(finite)
    sums[width:] = sums[width:] - sums[:-width]
    counts[width:] = counts[width:] - counts[:-width]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = sums / counts
    return np.where(finite, out, np.nan)


def _nanmean(x: np.ndarray) -> float:
    finite = x[np.isfinite(x)]
    return float(finite.mean()) if finite.size else math.nan


def _float_text(value: Any) -> str:
    """Shortest decimal that reads back to the same value at the value's own precision (float32 stays
    short: `0.3`, not `0.30000001192092896`); "nan", "inf" or "-inf" when not finite."""
    if isinstance(value, np.floating):
        return str(value)  # NumPy prints the shortest round-tripping repr of its precision
    return repr(float(value))


def _json_float(value: Any) -> float | str | None:
    """A float for strict JSON: NaN becomes `null`, +/-infinity the strings "Infinity"/"-Infinity"."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return float(_float_text(value))


def _from_json_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, str):
        if value not in ("Infinity", "-Infinity"):
            raise ValueError(f"a float signal holds the string {value!r}; only 'Infinity' and '-Infinity' are allowed.")
        return math.inf if value == "Infinity" else -math.inf
    return float(value)


def _json_safe(value: Any) -> Any:
    """`value` (metadata) with every non-finite float made strict-JSON (see [`_json_float`]), tuples as
    lists and anything JSON cannot hold as its `str`."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _json_float(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    return str(value)


def _flatten(metadata: dict[str, Any], prefix: str = "meta.") -> dict[str, Any]:
    """Nested metadata as dotted columns (`meta.config.target_entropy`); lists as JSON text."""
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, (dict, list, tuple)):
            out[name] = json.dumps(_json_safe(value), allow_nan=False)
        else:
            out[name] = _json_safe(value)
    return out


def _check_version(version: Any, source: str) -> int:
    if isinstance(version, np.ndarray):
        version = version.item()
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)) or version < 1:
        raise ValueError(f"{source} has an invalid trace format version {version!r}; it has to be an integer >= 1.")
    if version > TRACE_FORMAT_VERSION:
        from . import __version__

        raise ValueError(
            f"{source} is a trace of format version {int(version)}, written by a newer icp; this icp ({__version__}) "
            f"reads versions up to {TRACE_FORMAT_VERSION}. Upgrade icp (pip install -U icp) to read it."
        )
    return int(version)


def _write_text(text: str, path: str | Path | None) -> str:
    if path is None:
        return text
    Path(path).write_text(text, encoding="utf-8")
    return str(path)


class Trace:
    """A finished (or paused) generation's trace on the host: NumPy arrays shaped (batch, steps).

    Float signals are NaN and `regime`/`token` are -1 at steps after a row stopped. Regime codes
    index [`icp.regimes.REGIMES`]: 0 rigid, 1 reasoning, 2 exploratory, 3 unstable.

    Args:
        arrays (`dict[str, np.ndarray]`): signal name to (batch, steps) array.
        stop_reason (`np.ndarray` of shape `(batch,)`): codes into [`STOP_REASONS`].
        stop_step (`np.ndarray` of shape `(batch,)`): step each row stopped at, -1 if it did not.
        metadata (`dict`, *optional*): config and generation context.

    Example:
        >>> import numpy as np
        >>> from icp.trace import Trace
        >>> t = Trace({"entropy": np.ones((1, 3))}, np.array([0]), np.array([-1]))
        >>> t.steps
        3
    """

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        stop_reason: np.ndarray,
        stop_step: np.ndarray,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.arrays = arrays
        self.stop_reason_codes = stop_reason
        self.stop_step = stop_step
        self.metadata = metadata or {}

    @property
    def batch_size(self) -> int:
        return int(self.stop_reason_codes.shape[0])

    @property
    def steps(self) -> int:
        first = next(iter(self.arrays.values()))
        return int(first.shape[1])

    @property
    def stop_reasons(self) -> list[str]:
        """Stop reason of each row: "length", "eos", "loop" or "divergence"."""
        return [STOP_REASONS[int(c)] for c in self.stop_reason_codes]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def to_dict(self) -> dict[str, np.ndarray]:
        """Signal name to a (batch, steps) array: `entropy`, `varentropy`, `coherence`,
        `meta_uncertainty`, `kl`, `free_energy`, `temperature`, `regime`, `token`, and also
        `tempered_entropy` (H of softmax(z/T), what the controller steers), `sampled_entropy` (H of
        the distribution sampled from, after ICP's min-p truncation) and `surprisal` (of the chosen
        token)."""
        return dict(self.arrays)

    def to_pandas(self):
        """A long `pandas.DataFrame`: one line per (row, step) the row decoded, regime as a name."""
        import pandas as pd

        rows, steps = np.nonzero(self.arrays["regime"] != STOPPED) if "regime" in self.arrays else (None, None)
        frame = {"row": rows, "step": steps}
        for name, arr in self.arrays.items():
            frame[name] = arr[rows, steps]
        df = pd.DataFrame(frame)
        if "regime" in df:
            df["regime"] = pd.Categorical.from_codes(df["regime"].astype(int), categories=list(REGIMES))
        return df

    def trajectory_free_energy(self) -> np.ndarray:
        """Each row's trajectory F: the mean of its steps' F (NaN for a row with no step)."""
        return np.array([_nanmean(r) for r in self.arrays["free_energy"]])

    def best_of(self, num_return_sequences: int, exclude: tuple[str, ...] = ("loop", "divergence")) -> np.ndarray:
        """Index of the best candidate of each prompt when generate() ran with `num_return_sequences`.

        Rows come in groups of `num_return_sequences` per prompt (generate's order). Within a group the
        candidate with the lowest trajectory F wins; candidates whose stop reason is in `exclude` only
        win when every candidate of the group was excluded (then the lowest F among them).

        Args:
            num_return_sequences (`int`): candidates per prompt (>= 1, dividing the batch).
            exclude (`tuple[str, ...]`, *optional*, defaults to `("loop", "divergence")`): stop reasons
                that disqualify a candidate.

        Returns:
            `np.ndarray` of shape `(batch // num_return_sequences,)`: row indices into the batch.

        Example:
            >>> import numpy as np
            >>> from icp.trace import Trace
            >>> f = np.array([[1.0, 1.0], [0.5, 0.5], [2.0, 2.0], [3.0, 3.0]])
            >>> t = Trace({"free_energy": f}, np.array([0, 2, 0, 0]), np.array([-1, 1, -1, -1]))
            >>> print(t.best_of(2))  # row 1 has the lower F but looped
            [0 2]
        """
        if (
            isinstance(num_return_sequences, bool)
            or not isinstance(num_return_sequences, int)
            or num_return_sequences < 1
        ):
            raise ValueError(f"`num_return_sequences` (={num_return_sequences!r}) has to be an integer >= 1.")
        if self.batch_size % num_return_sequences:
            raise ValueError(
                f"`num_return_sequences` (={num_return_sequences}) does not divide the batch ({self.batch_size} rows)."
            )
        unknown = sorted(set(exclude) - set(STOP_REASONS))
        if unknown:
            raise ValueError(f"`exclude` has unknown stop reasons {unknown}; allowed are {list(STOP_REASONS)}.")
        energy = self.trajectory_free_energy()
        energy = np.where(np.isnan(energy), np.inf, energy)
        penalty = np.array([reason in exclude for reason in self.stop_reasons], dtype=float) * 1e12
        scores = (energy + penalty).reshape(-1, num_return_sequences)
        return scores.argmin(axis=1) + np.arange(scores.shape[0]) * num_return_sequences

    def summary(self) -> TraceSummary:
        """Per row: trajectory F, means of H, C, U, T, regime shares, stop reason, tokens."""
        regime = self.arrays["regime"]
        out = []
        for b in range(self.batch_size):
            decoded = regime[b] != STOPPED
            n = int(decoded.sum())
            shares = {name: (float((regime[b] == code).sum()) / n if n else 0.0) for code, name in enumerate(REGIMES)}
            out.append(
                RowSummary(
                    row=b,
                    tokens=n,
                    free_energy=_nanmean(self.arrays["free_energy"][b]),
                    entropy=_nanmean(self.arrays["entropy"][b]),
                    coherence=_nanmean(self.arrays["coherence"][b]),
                    meta_uncertainty=_nanmean(self.arrays["meta_uncertainty"][b]),
                    temperature=_nanmean(self.arrays["temperature"][b]),
                    regime_shares=shares,
                    stop_reason=STOP_REASONS[int(self.stop_reason_codes[b])],
                    stop_step=int(self.stop_step[b]),
                )
            )
        return TraceSummary(out)

    def save(self, path: str | Path) -> str:
        """Writes the trace to `path` as a NumPy `.npz` archive; [`Trace.load`] reads it back. Returns `path`.

        The archive holds `format_version` ([`TRACE_FORMAT_VERSION`]), `stop_reason` and `stop_step`
        (one code / step per row), `metadata` (JSON text) and one `signal__<name>` array per signal.

        Args:
            path (`str` or `Path`): file to write (conventionally `*.npz`).

        Example:
            >>> import numpy as np, tempfile, os
            >>> from icp.trace import Trace
            >>> t = Trace({"entropy": np.ones((1, 2))}, np.array([0]), np.array([-1]))
            >>> path = t.save(os.path.join(tempfile.mkdtemp(), "t.npz"))
            >>> int(np.load(path)["format_version"])
            1
        """
        arrays = {f"signal__{name}": value for name, value in self.arrays.items()}
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                format_version=np.array(TRACE_FORMAT_VERSION),
                stop_reason=self.stop_reason_codes,
                stop_step=self.stop_step,
                metadata=np.array(json.dumps(self.metadata, default=str)),
                **arrays,
            )
        return str(path)

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Reads a trace written by [`Trace.save`], of this icp's format version or an older one.

        Args:
            path (`str` or `Path`): the `.npz` file.

        Raises:
            ValueError: if the file is not a trace archive (the message names the path and what is
                missing), or was written in a newer format version than this icp reads.

        Example:
            >>> import numpy as np, tempfile, os
            >>> from icp.trace import Trace
            >>> t = Trace({"entropy": np.ones((1, 2))}, np.array([1]), np.array([1]), {"note": "x"})
            >>> path = t.save(os.path.join(tempfile.mkdtemp(), "t.npz"))
            >>> Trace.load(path).stop_reasons, Trace.load(path).metadata["note"]
            (['eos'], 'x')
        """
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("stop_reason", "stop_step", "metadata") if k not in archive.files]
            if missing:
                raise ValueError(f"`path` (={str(path)!r}) is not an ICP trace archive: it lacks {missing}.")
            # Files written before the field existed are version 1 (the same layout, without the field).
            version = archive["format_version"] if "format_version" in archive.files else 1
            _check_version(version, f"`path` (={str(path)!r})")
            arrays = {k[len("signal__") :]: archive[k] for k in archive.files if k.startswith("signal__")}
            return cls(arrays, archive["stop_reason"], archive["stop_step"], json.loads(str(archive["metadata"])))

    def to_json(self, path: str | Path | None = None, indent: int | None = None) -> str:
        """The whole trace as one strict JSON document (what [`Trace.from_json`] reads back).

        The document (an object):

        - `format`: `"icp.trace"`; `format_version`: [`TRACE_FORMAT_VERSION`].
        - `batch_size`, `steps`: the arrays' shape.
        - `stop_reason` (names, e.g. `"loop"`) and `stop_step` (-1 when the row did not stop): one per row.
        - `regimes`: the names of the regime codes (`signals.regime` holds codes, -1 after a row stopped).
        - `signals`: name to a list of `batch_size` lists of `steps` values; `dtypes`: name to its NumPy
          dtype (`"float32"`, `"int8"`, `"int64"`), so that the arrays come back as they were.
        - `metadata`: the trace's metadata (config, generation context, ...).

        NaN and infinity are not JSON, so they are written explicitly: NaN (a step after the row
        stopped, or a signal that is undefined there) as `null`, +/-infinity as the strings
        `"Infinity"` / `"-Infinity"`; the same holds inside `metadata`, whose values JSON cannot hold
        otherwise are written as their `str`. Floats are written with the shortest decimal that reads
        back to the same float32, so a round trip is exact.

        Args:
            path (`str` or `Path`, *optional*): write the document there (UTF-8) instead of returning it.
            indent (`int`, *optional*): indentation of the JSON (default: one line).

        Returns:
            `str`: the JSON document, or `path` when one was given.

        Example:
            >>> import json
            >>> import numpy as np
            >>> from icp.trace import Trace
            >>> t = Trace({"entropy": np.array([[0.5, np.nan]], dtype=np.float32)}, np.array([1]), np.array([0]))
            >>> doc = json.loads(t.to_json())
            >>> doc["signals"]["entropy"], doc["stop_reason"], doc["format_version"]
            ([[0.5, None]], ['eos'], 1)
            >>> Trace.from_json(t.to_json()).stop_reasons
            ['eos']
        """
        signals: dict[str, list] = {}
        for name, arr in self.arrays.items():
            arr = np.asarray(arr)
            if arr.dtype.kind == "f":
                # iterating a NumPy row yields NumPy scalars, written at their own precision
                signals[name] = [[_json_float(v) for v in row] for row in arr]
            else:
                signals[name] = arr.tolist()
        doc = {
            "format": _JSON_FORMAT,
            "format_version": TRACE_FORMAT_VERSION,
            "batch_size": self.batch_size,
            "steps": self.steps if self.arrays else 0,
            "stop_reason": self.stop_reasons,
            "stop_step": [int(s) for s in self.stop_step],
            "regimes": list(REGIMES),
            "signals": signals,
            "dtypes": {name: np.asarray(arr).dtype.name for name, arr in self.arrays.items()},
            "metadata": _json_safe(self.metadata),
        }
        return _write_text(json.dumps(doc, indent=indent, allow_nan=False) + "\n", path)

    @classmethod
    def from_json(cls, text: str) -> Trace:
        """Reads a document written by [`Trace.to_json`] (this format version or an older one).

        Args:
            text (`str`): the JSON document (for a file: `Trace.from_json(Path(p).read_text())`).

        Raises:
            ValueError: if `text` is not an ICP trace document, or is of a newer format version.

        Example:
            >>> import numpy as np
            >>> from icp.trace import Trace
            >>> t = Trace({"entropy": np.array([[np.inf, np.nan]], dtype=np.float32)}, np.array([0]), np.array([-1]))
            >>> back = Trace.from_json(t.to_json())
            >>> back["entropy"], back["entropy"].dtype
            (array([[inf, nan]], dtype=float32), dtype('float32'))
        """
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"`text` is not JSON: {err}") from err
        if not isinstance(doc, dict) or doc.get("format") != _JSON_FORMAT:
            raise ValueError(f"`text` is not an ICP trace document: it lacks `\"format\": \"{_JSON_FORMAT}\"`.")
        _check_version(doc.get("format_version"), "`text`")
        missing = [k for k in ("stop_reason", "stop_step", "signals") if k not in doc]
        if missing:
            raise ValueError(f"`text` is not a complete ICP trace document: it lacks {missing}.")
        unknown = sorted(set(doc["stop_reason"]) - set(STOP_REASONS))
        if unknown:
            raise ValueError(f"`text` has unknown stop reasons {unknown}; allowed are {list(STOP_REASONS)}.")
        dtypes = doc.get("dtypes", {})
        arrays = {}
        for name, values in doc["signals"].items():
            dtype = np.dtype(dtypes.get(name, "float32" if name in _FLOAT_INDEX else "int64"))
            if dtype.kind == "f":
                values = [[_from_json_float(v) for v in row] for row in values]
            arrays[name] = np.array(values, dtype=dtype).reshape(len(values), -1 if values else 0)
        reasons = np.array([STOP_REASONS.index(r) for r in doc["stop_reason"]], dtype=np.int64)
        return cls(arrays, reasons, np.array(doc["stop_step"], dtype=np.int64), doc.get("metadata") or {})

    def _long_table(self) -> dict[str, list]:
        """The long table of [`Trace.to_csv`] / [`Trace.to_parquet`]: column name to one value per line."""
        if "regime" in self.arrays:
            decoded = self.arrays["regime"] != STOPPED
        elif "token" in self.arrays:
            decoded = self.arrays["token"] != TOKEN_SENTINEL
        else:
            decoded = np.ones((self.batch_size, self.steps if self.arrays else 0), dtype=bool)
        rows, steps = np.nonzero(decoded)
        reasons = self.stop_reasons
        table: dict[str, list] = {
            "row": rows.tolist(),
            "step": steps.tolist(),
            "stop_reason": [reasons[r] for r in rows],
            "stop_step": self.stop_step[rows].tolist(),
        }
        if "token" in self.arrays:
            table["token"] = self.arrays["token"][rows, steps].tolist()
        if "regime" in self.arrays:
            table["regime"] = [REGIMES[c] for c in self.arrays["regime"][rows, steps]]
        known = [n for n in FLOAT_SIGNALS if n in self.arrays]
        others = sorted(n for n in self.arrays if n not in _FLOAT_INDEX and n not in ("token", "regime"))
        for name in known + others:
            table[name] = list(self.arrays[name][rows, steps])  # NumPy scalars: their own precision
        for name, value in _flatten(self.metadata).items():
            table[name] = [value] * len(rows)
        return table

    def to_csv(self, path: str | Path | None = None) -> str:
        """The trace as CSV: a header, then one line per (row, step) the row decoded.

        Columns, in order: `row`, `step`, `stop_reason` and `stop_step` (the row's, repeated on each of
        its lines), `token`, `regime` (its name), the float signals in [`FLOAT_SIGNALS`] order, any
        other array of the trace, then the metadata flattened into `meta.<dotted key>` columns
        (`meta.config.target_entropy`, `meta.generation_context.function`, ...), the same on every line;
        list values there are JSON text. Steps after a row stopped (all NaN / -1) are left out.

        NaN is an empty field (what `pandas.read_csv` and spreadsheets read as missing), infinity
        `inf` / `-inf`, `None` in the metadata an empty field, booleans `true` / `false`. Floats are
        written with the shortest decimal that reads back to the same float32.

        Args:
            path (`str` or `Path`, *optional*): write the CSV there (UTF-8) instead of returning it.

        Returns:
            `str`: the CSV text, or `path` when one was given.

        Example:
            >>> import numpy as np
            >>> from icp.trace import Trace
            >>> arrays = {
            ...     "entropy": np.array([[0.5, np.nan]], dtype=np.float32),
            ...     "regime": np.array([[1, -1]], dtype=np.int8),
            ... }
            >>> t = Trace(arrays, np.array([1]), np.array([0]), {"model": "tiny"})
            >>> print(t.to_csv(), end="")
            row,step,stop_reason,stop_step,regime,entropy,meta.model
            0,0,eos,0,reasoning,0.5,tiny
        """
        table = self._long_table()

        def cell(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, (bool, np.bool_)):
                return "true" if value else "false"
            if isinstance(value, (float, np.floating)):
                return "" if math.isnan(value) else _float_text(value)
            return str(value)

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table)
        columns = list(table.values())
        for i in range(len(columns[0])):
            writer.writerow([cell(column[i]) for column in columns])
        return _write_text(buffer.getvalue(), path)

    def to_parquet(self, path: str | Path) -> str:
        """Writes the table of [`Trace.to_csv`] as Parquet (needs pandas and pyarrow: `icp[pandas]`).

        Same lines and columns as the CSV, with native types: float signals float32 (NaN stays NaN),
        `token` and `row`/`step` integers, `regime` and `stop_reason` strings, metadata columns as
        their JSON types (`None` a null). The whole metadata is also kept, as JSON text, in the file's
        key-value metadata under `icp.trace` (with the format version).

        Args:
            path (`str` or `Path`): the Parquet file to write.

        Returns:
            `str`: `path`.

        Raises:
            ImportError: when pandas or pyarrow is missing (the message says what to install).

        Example:
            >>> import numpy as np, os, tempfile
            >>> from icp.trace import Trace
            >>> t = Trace({"entropy": np.array([[0.5, 1.0]], dtype=np.float32)}, np.array([0]), np.array([-1]))
            >>> path = t.to_parquet(os.path.join(tempfile.mkdtemp(), "t.parquet"))  # doctest: +SKIP
            >>> import pandas as pd; pd.read_parquet(path)["entropy"].tolist()  # doctest: +SKIP
            [0.5, 1.0]
        """
        from .optional import require

        pd = require("pandas", "pandas", "Trace.to_parquet (icp trace --format parquet)")
        pa = require("pyarrow", "pandas", "Trace.to_parquet (icp trace --format parquet)")
        pq = require("pyarrow.parquet", "pandas", "Trace.to_parquet (icp trace --format parquet)")
        table = self._long_table()
        frame = {}
        for name, values in table.items():
            if name in self.arrays and name not in ("regime",):
                frame[name] = np.array(values, dtype=self.arrays[name].dtype)
            else:
                frame[name] = values
        arrow = pa.Table.from_pandas(pd.DataFrame(frame), preserve_index=False)
        extra = {
            b"icp.trace": json.dumps(
                {"format": _JSON_FORMAT, "format_version": TRACE_FORMAT_VERSION, "metadata": _json_safe(self.metadata)},
                allow_nan=False,
            ).encode()
        }
        arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), **extra})
        pq.write_table(arrow, str(path))
        return str(path)

    def plot(self, path: str, max_rows: int = 8) -> str:
        """Writes a PNG: the phase portrait (H against C, coloured by regime) and time series, for up to
        `max_rows` rows, of the tempered entropy H_T with the row's target (dashed: it moves where
        the target tracks the critical region), C, U and T. Needs matplotlib. Returns `path`.

        Args:
            path (`str`): where to write the PNG.
            max_rows (`int`, *optional*, defaults to 8): rows drawn in the time series.
        """
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError as err:  # pragma: no cover - exercised only without matplotlib
            raise ImportError("`Trace.plot` needs matplotlib: `pip install matplotlib` (or `icp[plot]`).") from err

        colours = {0: "tab:blue", 1: "tab:green", 2: "tab:orange", 3: "tab:red"}
        fig = plt.figure(figsize=(13, 8), constrained_layout=True)
        grid = fig.add_gridspec(4, 2, width_ratios=[1.1, 1.4])
        ax = fig.add_subplot(grid[:, 0])
        h, c, reg = self.arrays["entropy"], self.arrays["coherence"], self.arrays["regime"]
        for code, name in enumerate(REGIMES):
            mask = reg == code
            ax.scatter(h[mask], c[mask], s=9, alpha=0.6, color=colours[code], label=f"{name} ({int(mask.sum())})")
        ax.set_xlabel("entropy H (nats)")
        ax.set_ylabel("coherence C")
        ax.set_title("phase portrait (one dot per token)")
        ax.legend(loc="lower left", fontsize=8)
        series = (
            ("tempered_entropy", "H_T (16-step mean)\nand target (nats)"),
            ("coherence", "C"),
            ("meta_uncertainty", "U"),
            ("temperature", "ICP temperature T"),
        )
        rows = range(min(self.batch_size, max_rows))
        for i, (name, label) in enumerate(series):
            axi = fig.add_subplot(grid[i, 1])
            for b in rows:
                values = self.arrays[name][b]
                if name == "tempered_entropy":
                    values = _running_mean(values, 16)  # per-token H_T is too jagged to read against the target
                (line,) = axi.plot(values, lw=0.9, label=f"row {b}")
                if name == "tempered_entropy" and "target" in self.arrays:
                    axi.plot(self.arrays["target"][b], lw=0.9, ls="--", color=line.get_color())
            axi.set_ylabel(label)
            if i == len(series) - 1:
                axi.set_xlabel("step")
            if i == 0:
                axi.legend(ncol=4, fontsize=7, loc="upper right")
        reasons = ", ".join(f"{r}: {self.stop_reasons.count(r)}" for r in STOP_REASONS if r in self.stop_reasons)
        fig.suptitle(f"ICP trace: {self.batch_size} rows, {self.steps} steps; stops {reasons}")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return str(path)
