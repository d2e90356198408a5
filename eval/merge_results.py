"""Adds the rows of a later suite run (e.g. ICP after a change) to a full run's results.

A full run of every decoder takes about an hour here; after a change to one decoder only, its rows are
rerun (same prompts, same seeds, `--decoders NAME`) and added to the full run's tables. The full run's
own rows of that decoder are kept under a new name (`--rename icp=icp@5e4efc5`), so that both stay
visible. The baselines' generations do not depend on that decoder's code and are deterministic, so the
comparison holds; the merged JSON records both runs' commands and git hashes under `merged_from`, and
the tables and plots are written as `eval/run.py` writes them. Results are keyed by task (`bench/results.py`);
a run in the earlier suite layout is upgraded first, so the merged JSON is in the task layout.

Run:
    python eval/merge_results.py outputs/results.json outputs/results_icp_v2.json \\
        --rename icp=icp@5e4efc5 --out eval/results/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench.report import write_report  # noqa: E402
from bench.results import PER_DECODER, upgrade  # noqa: E402


def merge(full: dict, later: dict, rename: dict[str, str]) -> dict:
    """`full` (its decoders renamed by `rename`) with every decoder of `later` added per task.

    Args:
        full (`dict`): the full run's results (either layout).
        later (`dict`): the later run's results (either layout); its tasks must be `full`'s, with the same
            number of examples and the same task version.
        rename (`dict[str, str]`): old -> new name of `full`'s decoders.

    Returns:
        `dict`: the merged results, in the task layout; neither input is modified.

    Example:
        >>> def run(decoders, git):
        ...     return {"results": {"t": {d: {"coherence": c} for d, c in decoders.items()}}, "n": {"t": 4},
        ...             "versions": {"t": 1}, "tasks": {"t": {"suite": "loops", "version": 1, "n": 4}}, "git_hash": git}
        >>> merged = merge(run({"dry": 0.43, "icp": 0.40}, "aaa"), run({"icp": 0.46}, "bbb"), {"icp": "icp@aaa"})
        >>> merged["results"]["t"]
        {'dry': {'coherence': 0.43}, 'icp@aaa': {'coherence': 0.4}, 'icp': {'coherence': 0.46}}
    """
    full, later = upgrade(full), upgrade(later)
    merged = json.loads(json.dumps(full))
    for key in PER_DECODER:
        for task, rows in merged.get(key, {}).items():
            merged[key][task] = {rename.get(name, name): value for name, value in rows.items()}
    for task, decoders in later["results"].items():
        if task not in full["results"]:
            raise ValueError(f"task {task!r} of the later run is not in the full run ({sorted(full['results'])}).")
        if later.get("n", {}).get(task) != full.get("n", {}).get(task):
            raise ValueError(
                f"task {task!r}: n = {later.get('n', {}).get(task)} in the later run, "
                f"{full.get('n', {}).get(task)} in the full run; a merge needs the same examples."
            )
        if later.get("versions", {}).get(task) != full.get("versions", {}).get(task):
            raise ValueError(
                f"task {task!r}: version {later.get('versions', {}).get(task)} in the later run, "
                f"{full.get('versions', {}).get(task)} in the full run; a merge needs the same task version."
            )
        for decoder in decoders:
            if decoder in merged["results"][task]:
                raise ValueError(
                    f"{task}/{decoder} is in both runs: pass --rename {decoder}=NEW_NAME for the full run's rows."
                )
            for key in PER_DECODER:
                merged.setdefault(key, {}).setdefault(task, {})[decoder] = later.get(key, {}).get(task, {}).get(decoder)
    merged["merged_from"] = [
        {k: run.get(k) for k in ("command", "git_hash", "date", "runtime_s", "seeds")} for run in (full, later)
    ]
    merged["command"] = f"{full.get('command')} + {later.get('command')}"
    merged["git_hash"] = f"{str(full.get('git_hash'))[:10]}+{str(later.get('git_hash'))[:10]}"
    return merged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eval/merge_results.py", description=__doc__.splitlines()[0])
    parser.add_argument("full", help="results JSON of the full run")
    parser.add_argument("later", help="results JSON of the later run (some decoders)")
    parser.add_argument(
        "--rename", action="append", default=[], metavar="OLD=NEW", help="rename a decoder of the full run"
    )
    parser.add_argument("--out", required=True, help="output stem: writes STEM.json, STEM.md and the plots")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    rename = {}
    for pair in args.rename:
        if "=" not in pair:
            parser.error(f"`--rename` (={pair!r}) has to look like OLD=NEW.")
        old, new = pair.split("=", 1)
        rename[old] = new
    full, later = (json.loads(Path(p).read_text()) for p in (args.full, args.later))
    merged = merge(full, later, rename)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(merged, indent=1))
    examples = []
    for path, names in ((args.full, rename), (args.later, {})):
        side = Path(path).with_suffix(".examples.jsonl")
        if side.is_file():
            for line in side.read_text().splitlines():
                row = json.loads(line)
                row["decoder"] = names.get(row["decoder"], row["decoder"])
                examples.append(row)
    write_report(merged, out, plots=not args.no_plots, examples=examples)
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
