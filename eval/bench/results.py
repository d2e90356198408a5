"""The results JSON of `eval/run.py`, keyed by task as lm-evaluation-harness keys its results.

Layout (every per-task key is keyed by task name; `tasks` records each task's suite, so tables and
checks can still be grouped by suite):

- `results[task][decoder][metric]`: the number (`n` among them, as a float);
- `intervals[task][decoder][metric]`: `[low, high]`, the 95 % bootstrap interval;
- `hyperparameters[task][decoder]`: the settings the decoder ran with;
- `higher_is_better[task][metric]`: from the task YAML's `metric_list` ([`Task.higher_is_better`]); a
  result key `<metric>_<signal>` (e.g. `auroc_icp_F`) takes the direction of `<metric>` (`auroc`);
- `n[task]`: the number of examples; `versions[task]`: the task YAML's `metadata.version`;
- `tasks[task]`: `suite`, `version`, `n`, `max_new_tokens`, `tuned_on`;
- `group_subtasks[suite]`: the suite's tasks, in run order;
- provenance: `packages` (python and package versions), `config`, `seeds`, `git_hash`, `date`,
  `runtime_s`, `command`.

Files written before this layout (`results[suite][decoder][metric]`, `n[suite]`, package versions
under `versions`, the tasks under `config.tasks`) are read through [`upgrade`], which maps each suite
to its single task; [`load`] reads a file and upgrades it.

Example:
    >>> old = {"results": {"qa": {"greedy": {"n": 2.0, "accuracy": 0.5}}}, "n": {"qa": 2},
    ...        "versions": {"torch": "2.5"}, "config": {"tasks": {"nq_open": {"suite": "qa", "version": 1}}}}
    >>> new = upgrade(old)
    >>> new["results"], new["n"], new["versions"]
    ({'nq_open': {'greedy': {'n': 2.0, 'accuracy': 0.5}}}, {'nq_open': 2}, {'nq_open': 1})
    >>> new["packages"], new["group_subtasks"], new["tasks"]["nq_open"]
    ({'torch': '2.5'}, {'qa': ['nq_open']}, {'suite': 'qa', 'version': 1, 'n': 2})
    >>> new["higher_is_better"]["nq_open"]["abstention_rate"], direction(new, "nq_open", "auroc_icp_F")
    (False, True)
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

__all__ = ["PER_DECODER", "PER_TASK", "direction", "is_task_layout", "load", "suites", "tasks_of_suite", "upgrade"]

#: Keys holding task -> decoder -> value.
PER_DECODER = ("results", "intervals", "hyperparameters")
#: Keys holding task -> value.
PER_TASK = ("higher_is_better", "n", "versions", "tasks")


def is_task_layout(report: dict[str, Any]) -> bool:
    """Whether `report` is in the task layout: it has a `tasks` mapping naming every task of `results`.

    Example:
        >>> is_task_layout({"results": {"nq_open": {}}, "tasks": {"nq_open": {"suite": "qa"}}})
        True
        >>> is_task_layout({"results": {"qa": {}}, "n": {"qa": 2}})
        False
    """
    tasks = report.get("tasks")
    return isinstance(tasks, dict) and set(report.get("results", {})) <= set(tasks)


def _suite_to_task(report: dict[str, Any], known: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Old layout: suite -> (its single task, that task's entry of `config.tasks` or of the task files)."""
    recorded = (report.get("config") or {}).get("tasks") or {}
    by_suite: dict[str, list[str]] = {}
    for name, entry in recorded.items():
        by_suite.setdefault(entry.get("suite"), []).append(name)
    mapping = {}
    for suite in report.get("results", {}):
        names = by_suite.get(suite, [])
        if not names:  # no `config.tasks` (hand-written or very old): the task files of this checkout
            names = [t.name for t in known.values() if t.suite == suite]
            entries = {t.name: {"suite": t.suite, "version": t.version} for t in known.values()}
        else:
            entries = recorded
        if len(names) != 1:
            raise ValueError(
                f"Old-layout results: suite {suite!r} must map to exactly one task to be converted, found {names} "
                f"({'config.tasks' if suite in by_suite else 'the task files'}); allowed: one task per suite."
            )
        mapping[suite] = (names[0], dict(entries[names[0]]))
    return mapping


def upgrade(report: dict[str, Any], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """`report` in the task layout: a copy converted from the suite layout, or `report` itself when it is in
    the task layout already.

    Each suite of an old file maps to its single task, named in the file's `config.tasks` (else in this
    checkout's task files). `higher_is_better` comes from the task files of this checkout (a task they no
    longer define gets `{}`; readers then fall back to their own defaults); the old top-level `versions`
    (package versions) moves to `packages`.

    Args:
        report (`dict`): a results JSON of `eval/run.py` (or `eval/merge_results.py`), either layout.
        known (`dict[str, Task]`, *optional*): the task definitions (default: `load_tasks()`).

    Returns:
        `dict`: the report in the task layout; the input is not modified.

    Raises:
        `ValueError`: when a suite of an old file has no task or several tasks to map to.

    Example:
        >>> old = {"results": {"loops": {"icp": {"coherence": 0.4}}}, "intervals": {"loops": {"icp": {}}},
        ...        "n": {"loops": 64}}
        >>> new = upgrade(old)
        >>> new["results"], new["tasks"]["loops_webtext"]["suite"], new["tasks"]["loops_webtext"]["n"]
        ({'loops_webtext': {'icp': {'coherence': 0.4}}}, 'loops', 64)
        >>> upgrade(new) is new
        True
    """
    if not isinstance(report, dict) or not isinstance(report.get("results"), dict):
        raise ValueError(f"`report` (={str(report)[:80]!r}) must be a results dict with a `results` mapping.")
    if is_task_layout(report):
        return report
    if known is None:
        from .tasks import load_tasks

        try:
            known = load_tasks()
        except (OSError, ValueError):  # pragma: no cover - a broken task folder should not block reading numbers
            known = {}
    old = copy.deepcopy(report)
    mapping = _suite_to_task(old, known)
    new: dict[str, Any] = {}
    for key, value in old.items():
        if key in PER_DECODER or key == "n":
            new[key] = {mapping[s][0] if s in mapping else s: v for s, v in value.items()}
        elif key == "versions":
            new["packages"] = value
        elif key == "config":
            new[key] = {k: v for k, v in value.items() if k != "tasks"}
        else:
            new[key] = value
    n = new.get("n", {})
    tasks, versions, directions, groups = {}, {}, {}, {}
    for suite, (name, entry) in mapping.items():
        definition = known.get(name)
        if "version" not in entry and definition is not None:
            entry["version"] = definition.version
        entry["suite"] = suite
        entry["n"] = n.get(name)
        tasks[name] = entry
        versions[name] = entry.get("version")
        directions[name] = definition.higher_is_better() if definition is not None else {}
        groups.setdefault(suite, []).append(name)
    new.update({"tasks": tasks, "versions": versions, "higher_is_better": directions, "group_subtasks": groups})
    return new


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a results JSON and returns it in the task layout ([`upgrade`]).

    Args:
        path (`str` or `os.PathLike`): the file.

    Raises:
        `FileNotFoundError`: naming `path` when it is not a file.

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> _ = (Path(folder) / "r.json").write_text('{"results": {"qa": {"greedy": {"accuracy": 0.5}}}}')
        >>> list(load(Path(folder) / "r.json")["results"])
        ['nq_open']
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"results file `path` (={str(path)!r}) does not exist or is not a file.")
    return upgrade(json.loads(p.read_text()))


def suites(report: dict[str, Any]) -> dict[str, list[str]]:
    """Suite -> its tasks in `report` (task layout), in the order of `results`.

    Example:
        >>> suites({"results": {"a": {}, "b": {}, "c": {}},
        ...         "tasks": {"a": {"suite": "qa"}, "b": {"suite": "loops"}, "c": {"suite": "qa"}}})
        {'qa': ['a', 'c'], 'loops': ['b']}
    """
    grouped: dict[str, list[str]] = {}
    for task in report.get("results", {}):
        grouped.setdefault(report.get("tasks", {}).get(task, {}).get("suite", task), []).append(task)
    return grouped


def tasks_of_suite(report: dict[str, Any], suite: str) -> list[str]:
    """The tasks of `suite` in `report` (task layout), in the order of `results`.

    Example:
        >>> report = {"results": {"a": {}, "b": {}}, "tasks": {"a": {"suite": "qa"}, "b": {"suite": "loops"}}}
        >>> tasks_of_suite(report, "qa")
        ['a']
    """
    return suites(report).get(suite, [])


def direction(report: dict[str, Any], task: str, metric: str) -> bool | None:
    """Whether higher is better for `metric` of `task`, from `report["higher_is_better"]`: the metric's own
    entry, else that of its prefix (`auroc_icp_F` -> `auroc`); `None` when neither is there.

    Example:
        >>> r = {"higher_is_better": {"t": {"auroc": True, "rep_4": False}}}
        >>> direction(r, "t", "rep_4"), direction(r, "t", "auroc_mean_entropy"), direction(r, "t", "mean_tokens")
        (False, True, None)
    """
    table = report.get("higher_is_better", {}).get(task, {})
    if metric in table:
        return bool(table[metric])
    prefix = metric.split("_", 1)[0]
    return bool(table[prefix]) if prefix != metric and prefix in table else None
