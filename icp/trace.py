"""The per-token trace: preallocated device buffers while generating, one host copy at the end.

[`TraceBuffers`] lives on the logits' device and is written with plain indexed stores (no host
sync). [`Trace`] is the finalised, host-side (NumPy) view a user reads: `summary()`, `to_dict()`,
`to_pandas()`, `plot(path)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .regimes import REGIMES, STOPPED

__all__ = ["TraceBuffers", "Trace", "RowSummary", "TraceSummary", "STOP_REASONS", "FLOAT_SIGNALS"]

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

    def save(self, path: str) -> str:
        """Writes the trace to `path` as a NumPy `.npz` archive (arrays, stop reasons, metadata as
        JSON); [`Trace.load`] reads it back. Returns `path`.

        Args:
            path (`str`): file to write (conventionally `*.npz`).
        """
        import json

        arrays = {f"signal__{name}": value for name, value in self.arrays.items()}
        with open(path, "wb") as f:
            np.savez_compressed(
                f,
                stop_reason=self.stop_reason_codes,
                stop_step=self.stop_step,
                metadata=np.array(json.dumps(self.metadata, default=str)),
                **arrays,
            )
        return str(path)

    @classmethod
    def load(cls, path: str) -> Trace:
        """Reads a trace written by [`Trace.save`].

        Raises:
            ValueError: if the file is not a trace archive (the message names the path and what is missing).

        Example:
            >>> import numpy as np, tempfile, os
            >>> from icp.trace import Trace
            >>> t = Trace({"entropy": np.ones((1, 2))}, np.array([1]), np.array([1]), {"note": "x"})
            >>> path = t.save(os.path.join(tempfile.mkdtemp(), "t.npz"))
            >>> Trace.load(path).stop_reasons, Trace.load(path).metadata["note"]
            (['eos'], 'x')
        """
        import json

        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in ("stop_reason", "stop_step", "metadata") if k not in archive.files]
            if missing:
                raise ValueError(f"`path` (={str(path)!r}) is not an ICP trace archive: it lacks {missing}.")
            arrays = {k[len("signal__") :]: archive[k] for k in archive.files if k.startswith("signal__")}
            return cls(arrays, archive["stop_reason"], archive["stop_step"], json.loads(str(archive["metadata"])))

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
