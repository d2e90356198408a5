"""The suite's report: markdown tables (value and 95 % interval) and plots, from a results dict.

One table per task, grouped by suite, from a results dict in the task layout (`bench.results`); a file
in the earlier suite layout is upgraded first.

Example:
    >>> report = {"results": {"nq_open": {"greedy": {"n": 2.0, "accuracy": 0.5}}},
    ...           "intervals": {"nq_open": {"greedy": {}}}, "n": {"nq_open": 2},
    ...           "hyperparameters": {"nq_open": {"greedy": {}}}, "tasks": {"nq_open": {"suite": "qa"}},
    ...           "higher_is_better": {"nq_open": {"accuracy": True}}}
    >>> print("\\n".join(markdown_tables(report).splitlines()[:3]))
    ### qa: nq_open (n = 2)
    <BLANKLINE>
    | decoder | settings | accuracy ↑ |
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .results import direction, suites, upgrade
from .tasks import HALLUCINATION_SUITES

__all__ = ["COLUMNS", "markdown_tables", "write_report"]

#: Columns of each suite's table: (metric, higher is better where the results do not say). A suite not
#: listed gets the metrics of its tasks' `higher_is_better` that its decoders have.
_TEXT_COLUMNS = [
    ("coherence", True),
    ("rep_2", False),
    ("rep_4", False),
    ("diversity", True),
    ("distinct_2", True),
    ("loop_rate", False),
    ("loop_at_limit_rate", False),
    ("mauve", True),
    ("mean_tokens", True),
]
_DETECTION_COLUMNS = [
    (f"auroc_{signal}", True)
    for signal in ("icp_F", "icp_U", "mean_entropy", "max_prob", "seq_loglik", "mean_loglik", "min_loglik", "answer_length")
] + [("auroc_diff_icp_F", True), ("auroc_diff_icp_U", True)]
_QA_COLUMNS = [
    ("accuracy", True),
    ("exact_match", True),
    ("abstention_rate", False),
    ("answered_accuracy", True),
    *_DETECTION_COLUMNS,
]
COLUMNS: dict[str, list[tuple[str, bool]]] = {
    "loops": _TEXT_COLUMNS,
    "instruct": _TEXT_COLUMNS,
    "qa": _QA_COLUMNS,
    "knowledge": _QA_COLUMNS,
    "reading": _QA_COLUMNS,
    "grounded_qa": _QA_COLUMNS,
    "truthfulqa": [("truthful_rate", True), ("truthful_diff", True), *_DETECTION_COLUMNS],
}


def _cell(value: float | None, interval: list[float] | None) -> str:
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return "–"
    text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    if interval and all(isinstance(x, (int, float)) and math.isfinite(x) for x in interval):
        half = (interval[1] - interval[0]) / 2
        text += f" ± {half:.1f}" if abs(value) >= 10 else f" ± {half:.3f}"
    return text


def _settings(params: dict[str, Any] | None) -> str:
    if not params:
        return "–"
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _columns(report: dict[str, Any], suite: str, task: str) -> list[tuple[str, bool]]:
    """The columns of `task`'s table: its suite's (else its `higher_is_better` metrics) that some decoder has,
    each with its direction from the results (else the suite's default)."""
    decoders = report["results"][task]
    listed = COLUMNS.get(suite) or [(m, bool(up)) for m, up in report.get("higher_is_better", {}).get(task, {}).items()]
    columns = []
    for name, up in listed:
        if any(name in values for values in decoders.values()):
            said = direction(report, task, name)
            columns.append((name, up if said is None else said))
    return columns


def markdown_tables(report: dict[str, Any]) -> str:
    """One markdown table per task, grouped by suite: decoders as rows, the task's metrics as columns (↑ higher
    is better, ↓ lower).

    Args:
        report (`dict`): a results dict of `eval/run.py`, either layout.
    """
    report = upgrade(report)
    lines = []
    for suite, tasks in suites(report).items():
        for task in tasks:
            decoders = report["results"][task]
            columns = _columns(report, suite, task)
            lines.append(f"### {suite}: {task} (n = {report.get('n', {}).get(task, '?')})")
            lines.append("")
            lines.append(
                "| decoder | settings | " + " | ".join(f"{name} {'↑' if up else '↓'}" for name, up in columns) + " |"
            )
            lines.append("|---|---|" + "---|" * len(columns))
            for decoder, values in decoders.items():
                ci = (report.get("intervals", {}).get(task, {}) or {}).get(decoder) or {}
                params = report.get("hyperparameters", {}).get(task, {}).get(decoder)
                cells = [_cell(values.get(name), ci.get(name)) for name, _ in columns]
                lines.append(f"| {decoder} | {_settings(params)} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def _plot_loops(report: dict[str, Any], path: Path) -> Path | None:
    grouped = suites(report)
    tasks = [(s, t) for s in ("loops", "instruct") for t in grouped.get(s, [])]
    if not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 5), squeeze=False)
    for ax, (suite, task) in zip(axes[0], tasks):
        for decoder, values in report["results"][task].items():
            ci = (report.get("intervals", {}).get(task, {}) or {}).get(decoder) or {}
            x, y = values.get("loop_rate", float("nan")), values.get("coherence", float("nan"))
            xerr = [[x - ci["loop_rate"][0]], [ci["loop_rate"][1] - x]] if "loop_rate" in ci else None
            yerr = [[y - ci["coherence"][0]], [ci["coherence"][1] - y]] if "coherence" in ci else None
            style = {"color": "crimson", "marker": "*", "markersize": 14} if decoder == "icp" else {"marker": "o"}
            ax.errorbar(x, y, xerr=xerr, yerr=yerr, capsize=2, linestyle="none", **style)
            ax.annotate(decoder, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xlabel("loop rate (share of generations ending in a cycle) ↓")
        ax.set_ylabel("coherence with the prompt (MiniLM cosine) ↑")
        ax.set_title(f"{suite}: {task}, n = {report.get('n', {}).get(task, '?')}, 95 % bootstrap intervals")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_risk(examples: list[dict], path: Path, decoder: str = "icp") -> Path | None:
    """Risk–coverage curves of each signal on `decoder`'s answers, one panel per task of a hallucination suite."""
    panels = list(
        dict.fromkeys(
            (e.get("suite"), e.get("task"))
            for e in examples
            if e.get("suite") in HALLUCINATION_SUITES and "correct" in e
        )
    )
    if not panels:
        return None
    if not any(e["decoder"] == decoder for e in examples):
        decoder = examples[0]["decoder"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .scoring import SIGNALS, uncertainties

    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.8), squeeze=False)
    for ax, (suite, task) in zip(axes[0], panels):
        rows = [
            e
            for e in examples
            if e.get("suite") == suite and e.get("task") == task and e["decoder"] == decoder and "correct" in e
        ]
        wrong = np.array([0.0 if r["correct"] else 1.0 for r in rows])
        steps = np.arange(1, len(rows) + 1)
        for name in SIGNALS:
            values = uncertainties(rows, name) if rows else None
            if values is None:
                continue
            u = np.asarray(values, dtype=float)
            order = np.argsort(u, kind="stable")  # most confident first
            ax.plot(
                steps / len(rows),
                np.cumsum(wrong[order]) / steps,
                label=name,
                lw=2.2 if name.startswith("icp") else 1.2,
            )
        if rows:
            ax.axhline(wrong.mean(), color="grey", ls=":", label="no rejection")
        ax.set_xlabel("coverage (share of questions answered)")
        ax.set_ylabel("risk (error rate among answered) ↓")
        ax.set_title(f"{suite}: {task}, {decoder}: risk–coverage by signal (n = {len(rows)})")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short_hash(value: Any) -> str:
    """A git hash to 10 characters; each part of a merged "a+b" hash likewise."""
    return "+".join(part[:10] for part in str(value).split("+"))


def write_report(report: dict[str, Any], out: Path, plots: bool = True, examples: list[dict] | None = None) -> str:
    """Writes `<out>.md` (and the plots unless `plots=False`) and returns the markdown.

    Args:
        report (`dict`): a results dict of `eval/run.py`, either layout (an old one is upgraded).
        out (`Path`): the results JSON's path; the markdown and plots go beside it.
        plots (`bool`, *optional*, defaults to `True`): write `<out>.loops.png` and `<out>.risk.png`.
        examples (`list[dict]`, *optional*): the generations (with `suite`, `task`, `decoder`), for the
            risk–coverage plot.
    """
    report = upgrade(report)
    out = Path(out)
    markdown = markdown_tables(report)
    header = (
        f"Results of `{report.get('command', 'eval/run.py')}` ({report.get('date', '?')}, "
        f"git {_short_hash(report.get('git_hash'))}, {report.get('runtime_s', '?')} s).\n\n"
    )
    figures = []
    if plots:
        loops = _plot_loops(report, out.with_suffix(".loops.png"))
        risk = _plot_risk(examples or [], out.with_suffix(".risk.png"))
        figures = [p for p in (loops, risk) if p is not None]
    text = header + markdown + "".join(f"\n![{p.stem}]({p.name})\n" for p in figures)
    out.with_suffix(".md").write_text(text)
    return text
