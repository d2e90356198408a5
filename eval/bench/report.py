"""The suite's report: markdown tables (value and 95 % interval) and plots, from a results dict.

One table per task, grouped by suite, from a results dict in the task layout (`bench.results`); a file
in the earlier suite layout is upgraded first. On the hallucination suites each ICP decoder (`icp`,
`icp@...`) also gets a detection table (every signal's AUROC, PRR and paired difference from the best
plain signal) and a selective-prediction table (its own abstention against the best plain signal at the
same coverage), and each task a risk–coverage plot.

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

__all__ = [
    "COLUMNS",
    "SIGNAL_LABELS",
    "detection_tables",
    "format_cell",
    "format_settings",
    "markdown_tables",
    "risk_curves",
    "short_hash",
    "write_report",
]

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
# The main tables keep ICP's two signals and the bar they are measured against; every signal's AUROC,
# PRR and paired difference are in the detection table below them ([`detection_tables`]).
_DETECTION_COLUMNS = [("auroc_icp_F", True), ("auroc_icp_U", True), ("best_plain_auroc", True)]
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


def format_cell(value: float | None, interval: list[float] | None) -> str:
    """A table cell: the value (3 decimals, 1 from 10 up), ± half the interval's width when it has one, `–` for none.

    Example:
        >>> format_cell(0.4519, [0.41, 0.49]), format_cell(54.11, [48.8, 59.4]), format_cell(None, None)
        ('0.452 ± 0.040', '54.1 ± 5.3', '–')
    """
    if value is None or not isinstance(value, (int, float)) or math.isnan(value):
        return "–"
    text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"
    if interval and all(isinstance(x, (int, float)) and math.isfinite(x) for x in interval):
        half = (interval[1] - interval[0]) / 2
        text += f" ± {half:.1f}" if abs(value) >= 10 else f" ± {half:.3f}"
    return text


#: What each detection signal is, for the detection tables and the risk–coverage plots.
SIGNAL_LABELS = {
    "icp_F": "ICP trajectory F",
    "icp_U": "ICP meta-uncertainty U",
    "mean_entropy": "mean token entropy",
    "max_prob": "mean top-token probability",
    "seq_loglik": "sequence log-likelihood",
    "mean_loglik": "mean token log-probability",
    "min_loglik": "least likely token's log-probability",
    "answer_length": "answer length in tokens (longer = less sure)",
}


def _signed(value: Any, interval: list[float] | None) -> str:
    """`+0.012 [-0.030, +0.051]`; `–` when there is no number."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    text = f"{value:+.3f}"
    if interval and all(isinstance(x, (int, float)) and math.isfinite(x) for x in interval):
        text += f" [{interval[0]:+.3f}, {interval[1]:+.3f}]"
    return text


def detection_tables(report: dict[str, Any], task: str) -> list[str]:
    """Markdown lines for `task`'s detection and selective-prediction tables, one pair per ICP decoder (`icp`,
    `icp@...`) that has detection results; `[]` when none has.

    The detection table has one row per signal: AUROC of the signal as a detector of wrong answers (± half
    its 95 % interval), PRR, and AUROC minus the best plain signal's with the paired 95 % interval. The
    selective-prediction table compares the decoder's own abstention (its loop and divergence stops) with
    answering as many questions, the most confident by the best plain signal.

    Args:
        report (`dict`): a results dict in the task layout.
        task (`str`): the task.

    Example:
        >>> report = {"results": {"t": {"icp": {"auroc_icp_F": 0.7, "prr_icp_F": 0.3, "auroc_diff_icp_F": 0.1,
        ...     "auroc_answer_length": 0.6, "prr_answer_length": 0.2, "auroc_diff_answer_length": 0.0,
        ...     "best_plain": "answer_length", "best_plain_auroc": 0.6, "selective_coverage": 0.9,
        ...     "selective_icp_accuracy": 0.5, "selective_threshold_accuracy": 0.45, "selective_diff": 0.05}}},
        ...     "intervals": {"t": {"icp": {"auroc_diff_icp_F": [0.02, 0.18], "selective_diff": [-0.01, 0.1]}}}}
        >>> lines = detection_tables(report, "t")
        >>> print("\\n".join(line for line in lines if "icp_F" in line or "difference" in line))
        | `icp_F`: ICP trajectory F | 0.700 | 0.300 | +0.100 [+0.020, +0.180] |
        | difference (paired 95 %) | +0.050 [-0.010, +0.100] |
    """
    from .scoring import SIGNALS

    lines: list[str] = []
    intervals = report.get("intervals", {}).get(task, {}) or {}
    for decoder, values in report["results"][task].items():
        if not decoder.startswith("icp") or not any(f"auroc_{s}" in values for s in SIGNALS):
            continue
        ci = intervals.get(decoder) or {}
        best = values.get("best_plain")
        if not any(isinstance(values.get(f"auroc_{s}"), (int, float)) and math.isfinite(values[f"auroc_{s}"])
                   for s in SIGNALS):  # fmt: skip
            lines += [f"No detection on {task} for {decoder}: every answer is right, or every answer wrong.", ""]
            continue
        lines += [
            f"Detecting wrong answers among {decoder}'s answers on {task} (best plain signal: "
            f"{f'`{best}`' if best else '–'}):",
            "",
            "| signal | AUROC ↑ | PRR ↑ | AUROC − best plain (paired 95 %) |",
            "|---|---|---|---|",
        ]
        for name in SIGNALS:
            if f"auroc_{name}" not in values:
                continue
            label = f"`{name}`: {SIGNAL_LABELS.get(name, name)}" + (" (best plain)" if name == best else "")
            lines.append(
                f"| {label} | {format_cell(values[f'auroc_{name}'], ci.get(f'auroc_{name}'))} | "
                f"{format_cell(values.get(f'prr_{name}'), None)} | "
                f"{_signed(values.get(f'auroc_diff_{name}'), ci.get(f'auroc_diff_{name}'))} |"
            )
        lines.append("")
        if "selective_diff" in values or "selective_coverage" in values:
            coverage = values.get("selective_coverage")
            lines += [
                f"Selective prediction on {task}: {decoder}'s own abstention against the best plain signal at the "
                f"same coverage ({format_cell(coverage, ci.get('selective_coverage'))} of the questions answered):",
                "",
                "| answering | answered accuracy ↑ |",
                "|---|---|",
                f"| {decoder}: all but its loop and divergence stops | "
                f"{format_cell(values.get('selective_icp_accuracy'), ci.get('selective_icp_accuracy'))} |",
                f"| as many, the most confident by `{best}` | "
                f"{format_cell(values.get('selective_threshold_accuracy'), ci.get('selective_threshold_accuracy'))} |",
                f"| difference (paired 95 %) | {_signed(values.get('selective_diff'), ci.get('selective_diff'))} |",
                "",
            ]
    return lines


def format_settings(params: dict[str, Any] | None) -> str:
    """A decoder's settings as `name=value, ...` (`–` for none).

    Example:
        >>> format_settings({"temperature": 0.9}), format_settings({})
        ('temperature=0.9', '–')
    """
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
                cells = [format_cell(values.get(name), ci.get(name)) for name, _ in columns]
                lines.append(f"| {decoder} | {format_settings(params)} | " + " | ".join(cells) + " |")
            lines.append("")
            if suite in HALLUCINATION_SUITES:
                lines += detection_tables(report, task)
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


def _labels(rows: list[dict]) -> list[bool]:
    """Whether each answer as written is right (`answer_correct`; `correct` in files written before it)."""
    return [bool(r.get("answer_correct", r["correct"])) for r in rows]


def risk_curves(rows: list[dict]) -> dict[str, Any]:
    """What the risk–coverage plot of one task draws, from one decoder's rows.

    Args:
        rows (`list[dict]`): one decoder's generations on one task, with `correct` (and `answer_correct`),
            `stop_reason` and the signals.

    Returns:
        `dict` with `curves` (signal -> (coverage, risk) arrays, answers kept from the most confident, ties
        in expected random order, as the `selective_prediction` metric keeps them), `auroc` (signal ->
        AUROC), `error_rate`, `best_plain` (the plain signal with the highest AUROC, or None), and
        `abstention`: the decoder's own abstention (all but its loop and divergence stops; None when it
        answered nothing): `coverage`, `risk` (its error rate on the rows it answered) and
        `threshold_risk` (the best plain signal's at the same coverage; `1 - selective_threshold_accuracy`
        of `bench.scoring`).

    Example:
        >>> rows = [{"correct": c, "n_tokens": n, "stop_reason": s} for c, n, s in
        ...         [(True, 2, "eos"), (False, 9, "eos"), (True, 3, "divergence"), (False, 5, "eos")]]
        >>> out = risk_curves(rows)
        >>> out["best_plain"], out["auroc"]["answer_length"], out["curves"]["answer_length"][1].tolist()
        ('answer_length', 1.0, [0.0, 0.0, 0.3333333333333333, 0.5])
        >>> {key: round(value, 3) for key, value in out["abstention"].items()}
        {'coverage': 0.75, 'risk': 0.667, 'threshold_risk': 0.333}
    """
    import numpy as np

    from .scoring import ICP_ABSTAIN_STOPS, PLAIN_SIGNALS, SIGNALS, MetricBank, uncertainties

    selective = MetricBank().module("selective_prediction")
    correct = np.asarray(_labels(rows), dtype=int)
    curves, aurocs = {}, {}
    for name in SIGNALS:
        values = uncertainties(rows, name)
        if values is None:
            continue
        curves[name] = selective.risk_coverage(values, correct)
        aurocs[name] = selective.auroc(values, correct)
    plain = [s for s in PLAIN_SIGNALS if s in aurocs and np.isfinite(aurocs[s])]
    best = max(plain, key=aurocs.get) if plain else None
    answered = np.asarray([r.get("stop_reason") not in ICP_ABSTAIN_STOPS for r in rows])
    k = int(answered.sum())
    abstention = None
    if k > 0:
        abstention = {
            "coverage": k / len(rows),
            "risk": float(1 - correct[answered].mean()),
            "threshold_risk": float(curves[best][1][k - 1]) if best else None,
        }
    return {
        "curves": curves,
        "auroc": aurocs,
        "error_rate": float(1 - correct.mean()),
        "best_plain": best,
        "abstention": abstention,
    }


# ICP's signals stand out (crimson F, navy U); no plain signal is drawn in red.
_COLOURS = {
    "icp_F": "crimson",
    "icp_U": "navy",
    "mean_entropy": "tab:orange",
    "max_prob": "tab:green",
    "seq_loglik": "tab:purple",
    "mean_loglik": "tab:brown",
    "min_loglik": "tab:olive",
    "answer_length": "tab:cyan",
}


def _plot_risk(examples: list[dict], out: Path, decoder: str = "icp") -> list[Path]:
    """Risk–coverage curves of each signal on `decoder`'s answers, one PNG per task of a hallucination suite
    (`<out>.risk.<task>.png`), with the point of the decoder's own abstention (all but its loop and
    divergence stops) and the best plain signal at the same coverage.

    Curves keep answers from the most to the least confident, ties in expected random order (the
    `selective_prediction` metric's curve); the labels are whether each answer as written is right.

    Args:
        examples (`list[dict]`): the generations, with `suite`, `task`, `decoder`, `correct` and the signals.
        out (`Path`): the results JSON's path; the plots go beside it.
        decoder (`str`, *optional*, defaults to `"icp"`): whose answers (the first decoder when it has none).

    Returns:
        `list[Path]`: the PNGs written.
    """
    panels = list(
        dict.fromkeys(
            (e.get("suite"), e.get("task"))
            for e in examples
            if e.get("suite") in HALLUCINATION_SUITES and "correct" in e
        )
    )
    if not panels:
        return []
    if not any(e["decoder"] == decoder for e in examples):
        decoder = examples[0]["decoder"]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for suite, task in panels:
        rows = [
            e
            for e in examples
            if e.get("suite") == suite and e.get("task") == task and e["decoder"] == decoder and "correct" in e
        ]
        if not rows:
            continue
        drawn = risk_curves(rows)
        fig, ax = plt.subplots(figsize=(9.5, 5))
        for name, (coverage, risk) in drawn["curves"].items():
            ax.plot(
                coverage,
                risk,
                label=f"{name} (AUROC {drawn['auroc'][name]:.2f})",
                lw=2.2 if name.startswith("icp") else 1.2,
                color=_COLOURS.get(name),
            )
        ax.axhline(drawn["error_rate"], color="grey", ls=":", label="no rejection")
        point = drawn["abstention"]
        if point is not None:
            stops = round(len(rows) * (1 - point["coverage"]))
            ax.plot(point["coverage"], point["risk"], marker="*", markersize=15, color="crimson", linestyle="none",
                    label=f"{decoder}'s own abstention ({stops} loop/divergence stops)")  # fmt: skip
            if point["threshold_risk"] is not None:
                ax.plot(point["coverage"], point["threshold_risk"], marker="o", markersize=9, markerfacecolor="none",
                        color="black", linestyle="none",
                        label=f"best plain ({drawn['best_plain']}) at the same coverage")  # fmt: skip
        ax.set_xlabel("coverage (share of questions answered)")
        ax.set_ylabel("risk (error rate among answered) ↓")
        ax.set_title(f"{suite}: {task}, {decoder}'s answers (n = {len(rows)})", fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: no curve hidden
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = Path(out).with_suffix(f".risk.{task}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def short_hash(value: Any, length: int = 10) -> str:
    """A git hash cut to `length` characters; each part of a merged "a+b" hash likewise.

    Example:
        >>> short_hash("cba085985c9970d0+720f308f2b11", 7)
        'cba0859+720f308'
    """
    return "+".join(part[:length] for part in str(value).split("+"))


def write_report(report: dict[str, Any], out: Path, plots: bool = True, examples: list[dict] | None = None) -> str:
    """Writes `<out>.md` (and the plots unless `plots=False`) and returns the markdown.

    Args:
        report (`dict`): a results dict of `eval/run.py`, either layout (an old one is upgraded).
        out (`Path`): the results JSON's path; the markdown and plots go beside it.
        plots (`bool`, *optional*, defaults to `True`): write `<out>.loops.png` and, per task of a
            hallucination suite, `<out>.risk.<task>.png`.
        examples (`list[dict]`, *optional*): the generations (with `suite`, `task`, `decoder`), for the
            risk–coverage plot.
    """
    report = upgrade(report)
    out = Path(out)
    markdown = markdown_tables(report)
    header = (
        f"Results of `{report.get('command', 'eval/run.py')}` ({report.get('date', '?')}, "
        f"git {short_hash(report.get('git_hash'))}, {report.get('runtime_s', '?')} s).\n\n"
    )
    figures = []
    if plots:
        loops = _plot_loops(report, out.with_suffix(".loops.png"))
        figures = [p for p in (loops, *_plot_risk(examples or [], out)) if p is not None]
    text = header + markdown + "".join(f"\n![{p.stem}]({p.name})\n" for p in figures)
    out.with_suffix(".md").write_text(text)
    return text
