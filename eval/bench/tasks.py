"""Declarative tasks: one YAML file per task under `eval/tasks/`, read into a validated `Task`.

A task names its data (a local file under the data dir, read with `datasets`, or a hub dataset where
the user has one), how fields map to prompt, reference and answers, the prompt template (plain or
through the chat template), a fixed dev/test split, generation settings and its metric list with
`higher_is_better`, as lm-evaluation-harness tasks do.

Example:
    >>> from bench.tasks import load_tasks
    >>> task = load_tasks()["nq_open"]
    >>> task.suite, task.max_new_tokens, task.chat
    ('qa', 24, True)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["SUITES", "TASK_DIR", "Task", "default_data_dir", "load_tasks", "tasks_for_suite"]

TASK_DIR = Path(__file__).resolve().parent.parent / "tasks"
SUITES = ("loops", "instruct", "qa", "grounded_qa", "truthfulqa")
_REQUIRED = ("task", "suite", "dataset", "fields", "prompt", "split", "generation", "metric_list")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def default_data_dir() -> Path | None:
    """`$ICP_DATA_DIR`, else the `shared/data` folder beside the checkout when it exists, else `None` (hub)."""
    env = os.environ.get("ICP_DATA_DIR")
    if env:
        return Path(env)
    for candidate in (
        Path(__file__).resolve().parents[2] / "shared" / "data",
        Path(__file__).resolve().parents[3] / "shared" / "data",
    ):
        if candidate.is_dir():
            return candidate
    return None


def _take(text: str, how: str | None) -> str | list[str]:
    if how is None:
        return text
    if how == "list":
        return [text]
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    if how == "first_sentence":
        return parts[0]
    if how == "after_first_sentence":
        return parts[1] if len(parts) > 1 else ""
    raise ValueError(f"Unknown field transform `take: {how}`; allowed: first_sentence, after_first_sentence, list.")


@dataclass(frozen=True)
class Task:
    """One task of the suite, as read from its YAML file.

    Args:
        name (`str`): the task's name.
        suite (`str`): one of `SUITES`.
        dataset (`dict`): `local` (`path` under the data dir, `format` json/csv) and `hub` (or null).
        fields (`dict`): item key -> source column, or `{field, split}` / `{field, take}`.
        template (`str`): the prompt, formatted with the item's fields.
        chat (`bool`): wrap the prompt as a user message through the tokenizer's chat template.
        split (`dict`): `seed`, `dev`, `test` sizes; optional `group_by` and `per_group`.
        max_new_tokens (`int`): generation length.
        metric_list (`list[dict]`): `metric`, `keys`, `higher_is_better`.
        tuning (`dict`): the dev-split objective (see `bench.scoring.tuning_score`).
        metadata (`dict`): version, licence.
    """

    name: str
    suite: str
    dataset: dict[str, Any]
    fields: dict[str, Any]
    template: str
    chat: bool
    split: dict[str, Any]
    max_new_tokens: int
    metric_list: list[dict[str, Any]]
    tuning: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike) -> Task:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
        missing = [key for key in _REQUIRED if key not in (raw or {})]
        if missing:
            raise ValueError(f"Task file {path} lacks {missing}; a task needs {list(_REQUIRED)}.")
        if raw["suite"] not in SUITES:
            raise ValueError(f"Task file {path}: `suite` (={raw['suite']!r}) must be one of {SUITES}.")
        split = raw["split"]
        for key in ("seed", "dev", "test"):
            if not isinstance(split.get(key), int) or split[key] < 0:
                raise ValueError(f"Task file {path}: `split.{key}` (={split.get(key)!r}) must be an integer >= 0.")
        max_new = raw["generation"].get("max_new_tokens")
        if not isinstance(max_new, int) or max_new < 1:
            raise ValueError(f"Task file {path}: `generation.max_new_tokens` (={max_new!r}) must be an integer >= 1.")
        return cls(
            name=raw["task"],
            suite=raw["suite"],
            dataset=raw["dataset"],
            fields=raw["fields"],
            template=raw["prompt"]["template"],
            chat=bool(raw["prompt"].get("chat", False)),
            split=split,
            max_new_tokens=max_new,
            metric_list=raw["metric_list"],
            tuning=raw.get("tuning") or {},
            metadata=raw.get("metadata") or {},
        )

    @property
    def version(self) -> int:
        return int(self.metadata.get("version", 0))

    def higher_is_better(self) -> dict[str, bool]:
        """Metric key -> whether higher is better, from the metric list."""
        return {key: bool(entry["higher_is_better"]) for entry in self.metric_list for key in entry["keys"]}

    # -- data ---------------------------------------------------------------------------------------

    def _read(self, data_dir: str | os.PathLike | None):
        import datasets

        local = self.dataset.get("local")
        if data_dir is not None and local is not None:
            path = Path(data_dir) / local["path"]
            if path.is_file():
                builder = {"json": "json", "jsonl": "json", "csv": "csv"}[local.get("format", "json")]
                return datasets.load_dataset(builder, data_files=str(path), split="train"), self.fields
        hub = self.dataset.get("hub")
        if hub is None:
            where = f"{Path(data_dir) / local['path']}" if data_dir is not None and local else "no --data-dir given"
            raise FileNotFoundError(
                f"Task {self.name!r} reads {local['path'] if local else '?'} from the data dir ({where} is missing) "
                "and has no hub copy. Pass `--data-dir` (or set ICP_DATA_DIR) to a folder holding it."
            )
        # The hub copy may name its columns differently: `hub.fields` maps them.
        return datasets.load_dataset(hub["path"], hub.get("name"), split=hub["split"]), hub.get("fields", self.fields)

    @property
    def tuned_on(self) -> str:
        """The task whose dev split tunes this task's decoders (`tuning.from`, else the task itself)."""
        return self.tuning.get("from", self.name)

    def _item(self, row: dict[str, Any], index: int, fields: dict[str, Any]) -> dict[str, Any]:
        item: dict[str, Any] = {"index": index}
        for key, spec in fields.items():
            if isinstance(spec, str):
                value = row[spec]
            else:
                value = row[spec["field"]]
                if "split" in spec and isinstance(value, str):
                    value = [part.strip() for part in value.split(spec["split"]) if part.strip()]
                if "take" in spec:
                    value = _take(str(value), spec["take"])
            item[key] = value
        item.setdefault("id", index)
        item["prompt_text"] = self.template.format(**item)
        return item

    def items(self, split: str, data_dir: str | os.PathLike | None = None, limit: int | None = None) -> list[dict]:
        """The examples of `split` ("dev" or "test"), each a dict with `prompt_text` and the mapped fields.

        The split is fixed by the task's seed: a permutation of the rows (or of the groups, with
        `group_by`), dev first, then test, so dev and test never share an example (or a group).

        Args:
            split (`str`): `"dev"` or `"test"`.
            data_dir (`str`, *optional*): folder with the local data files.
            limit (`int`, *optional*): keep the first `limit` examples of the split.
        """
        if split not in ("dev", "test"):
            raise ValueError(f"`split` (={split!r}) must be 'dev' or 'test'.")
        if limit is not None and limit < 1:
            raise ValueError(f"`limit` (={limit!r}) must be a positive integer or None.")
        dataset, fields = self._read(data_dir)
        rows = [self._item(dict(row), i, fields) for i, row in enumerate(dataset)]
        # `require: {answers: alnum}` drops rows none of whose answers has a letter or digit (NQ-open has
        # an answer ")"), which no answer could match; the split is drawn from what remains.
        for key, rule in (self.dataset.get("require") or {}).items():
            if rule != "alnum":
                raise ValueError(f"Task {self.name!r}: `dataset.require.{key}` (={rule!r}) must be 'alnum'.")
            rows = [r for r in rows if any(any(ch.isalnum() for ch in str(a)) for a in r[key])]
        rng = np.random.default_rng(self.split["seed"])
        n_dev, n_test = self.split["dev"], self.split["test"]
        group_key = self.split.get("group_by")
        if group_key:
            groups: dict[Any, list[dict]] = {}
            for row in rows:
                groups.setdefault(row[group_key], []).append(row)
            per_group = self.split.get("per_group")
            names = list(groups)
            order = [names[i] for i in rng.permutation(len(names))]
            chosen_dev, chosen_test = [], []
            for name in order:
                members = groups[name][:per_group] if per_group else groups[name]
                target = chosen_dev if len(chosen_dev) < n_dev else chosen_test
                target.extend(members)
            dev, test = chosen_dev[:n_dev], chosen_test[:n_test]
        else:
            order = rng.permutation(len(rows))
            dev = [rows[i] for i in order[:n_dev]]
            test = [rows[i] for i in order[n_dev : n_dev + n_test]]
        chosen = dev if split == "dev" else test
        return chosen[:limit] if limit is not None else chosen


def load_tasks(task_dir: str | os.PathLike = TASK_DIR) -> dict[str, Task]:
    """Every task under `task_dir`, by name."""
    tasks = {}
    for path in sorted(Path(task_dir).glob("*.yaml")):
        task = Task.from_yaml(path)
        if task.name in tasks:
            raise ValueError(f"Two task files define task {task.name!r} (second: {path}).")
        tasks[task.name] = task
    for task in tasks.values():
        source = tasks.get(task.tuned_on)
        if source is None or "objective" not in source.tuning:
            raise ValueError(
                f"Task {task.name!r} is tuned on {task.tuned_on!r}, which is not a task with a `tuning.objective`; "
                f"tasks with one: {sorted(n for n, t in tasks.items() if 'objective' in t.tuning)}."
            )
    return tasks


def tasks_for_suite(suite: str, tasks: dict[str, Task] | None = None) -> list[Task]:
    """The tasks of `suite` (`"all"` for every suite), in a fixed order.

    Example:
        >>> [t.name for t in tasks_for_suite("loops")]
        ['loops_webtext']
    """
    tasks = load_tasks() if tasks is None else tasks
    allowed = (*SUITES, "all")
    if suite not in allowed:
        raise ValueError(f"`--suite` (={suite!r}) must be one of {', '.join(allowed)}.")
    chosen = [t for t in tasks.values() if suite == "all" or t.suite == suite]
    return sorted(chosen, key=lambda t: (SUITES.index(t.suite), t.name))
