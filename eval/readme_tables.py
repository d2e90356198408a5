"""The README's results tables, rendered from the suite's results at HEAD (`eval/results/head/`).

Each table is one task of one results file, with the decoders and columns the README shows, and a line
naming the file, its commit and its runtime. `--check README.md` exits non-zero when the README does
not hold every table exactly as rendered (the tests run it), so the README cannot drift from the results.

Run:
    python eval/readme_tables.py                         # print the tables
    python eval/readme_tables.py --check README.md       # are they all in the README, verbatim?
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.report import format_cell, short_hash  # noqa: E402
from bench.results import load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "eval" / "results" / "head"

TEXT_COLUMNS = [
    ("coherence", "coherence ↑"),
    ("rep_4", "rep_4 ↓"),
    ("diversity", "diversity ↑"),
    ("loop_rate", "loop_rate ↓"),
    ("mauve", "mauve ↑"),
]
QA_COLUMNS = [
    ("accuracy", "accuracy ↑"),
    ("abstention_rate", "abstained"),
    ("answered_accuracy", "accuracy when answered ↑"),
    ("auroc_icp_F", "auroc_icp_F ↑"),
]
#: (results file stem, task, columns, decoders; `None` = greedy, the two most coherent other baselines,
#: then ICP's rows).
TABLES: list[tuple[str, str, list[tuple[str, str]], list[str] | None]] = [
    ("loops", "loops_webtext", TEXT_COLUMNS, None),
    ("instruct", "instruct_wikitext", TEXT_COLUMNS, None),
    ("knowledge", "knowledge_countries", QA_COLUMNS, ["greedy", "temperature", "icp", "icp_abstain"]),
    ("reading", "reading_qed", QA_COLUMNS, ["greedy", "temperature", "icp", "icp_abstain"]),
]
ICP_ROWS = ("icp_seeds_law", "icp")
LABELS = {"icp": "icp (cold law)", "icp_seeds_law": "icp_seeds_law (the seeds' law)"}
NO_INTERVAL = ("abstention_rate", "answered_accuracy", "loop_rate", "mauve")


def open_ended_rows(results: dict[str, dict[str, float]]) -> list[str]:
    """Greedy, the two most coherent other baselines, then ICP's rows that the results hold.

    Example:
        >>> open_ended_rows({"greedy": {"coherence": 0.4}, "dry": {"coherence": 0.43}, "min_p": {"coherence": 0.44},
        ...                  "eta": {"coherence": 0.3}, "icp": {"coherence": 0.45}})
        ['greedy', 'min_p', 'dry', 'icp']
    """
    baselines = [d for d in results if d != "greedy" and not d.startswith("icp")]
    best = sorted(baselines, key=lambda d: -results[d]["coherence"])[:2]
    return ["greedy", *best, *(d for d in ICP_ROWS if d in results)]


def _label(run: dict[str, Any], task: str, decoder: str) -> str:
    if decoder in LABELS:
        return LABELS[decoder]
    params = run.get("hyperparameters", {}).get(task, {}).get(decoder) or {}
    values = ", ".join(f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in params.values())
    return f"{decoder} ({values})" if values else decoder


def render(
    run: dict[str, Any], name: str, task: str, columns: list[tuple[str, str]], decoders: list[str] | None
) -> str:
    """One README table (Markdown) and the line naming where it comes from.

    Raises:
        KeyError: the results have no such task, or lack one of the decoders (named).
    """
    if task not in run["results"]:
        raise KeyError(f"{name} has no task {task!r}; it has {sorted(run['results'])}.")
    results, intervals = run["results"][task], run.get("intervals", {}).get(task, {})
    rows = decoders or open_ended_rows(results)
    missing = [d for d in rows if d not in results]
    if missing:
        raise KeyError(f"{name}: task {task!r} has no results for {missing}; it has {sorted(results)}.")
    lines = ["| decoder | " + " | ".join(label for _, label in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for d in rows:
        cells = [
            format_cell(results[d].get(m), None if m in NO_INTERVAL else intervals.get(d, {}).get(m))
            for m, _ in columns
        ]
        lines.append(f"| {_label(run, task, d)} | " + " | ".join(cells) + " |")
    git = short_hash(run.get("git_hash", "unknown"), 7)
    lines += ["", f"*`{name}`, git {git}, {run.get('runtime_s', 0):,.0f} s*"]
    return "\n".join(lines)


def tables(results_dir: Path = RESULTS) -> list[str]:
    """Every README table, rendered from the results files in `results_dir`."""
    out = []
    for stem, task, columns, decoders in TABLES:
        path = results_dir / f"{stem}.json"
        name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        out.append(render(load(path), name, task, columns, decoders))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="folder of results JSONs (default: head)")
    parser.add_argument("--check", type=Path, default=None, help="a README that has to hold every table verbatim")
    args = parser.parse_args(argv)
    if not args.results_dir.is_dir():
        raise SystemExit(f"readme_tables.py: --results-dir {args.results_dir} is not a folder.")
    rendered = tables(args.results_dir.resolve())
    if args.check is None:
        print("\n\n".join(rendered))
        return 0
    text = args.check.read_text(encoding="utf-8")
    stale = [table.splitlines()[-1] for table in rendered if table not in text]
    for line in stale:
        print(
            f"{args.check}: the table from {line.strip('*')} is missing or differs; paste it from "
            "`python eval/readme_tables.py`."
        )
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
