"""Declarative tasks: one YAML file per task under `eval/tasks/`, read into a validated `Task`.

A task names its data (a local file under the data dir, read with `datasets`, or a hub dataset where
the user has one), how fields map to prompt, reference and answers, the prompt template (plain or
through the chat template), a fixed dev/test split, generation settings and its metric list with
`higher_is_better`, as lm-evaluation-harness tasks do.

A chat task may also give a base-model form, `prompt.base: {template, stop}`: a plain-text prompt (a
few-shot "Q: ... A:" continuation) and a stop string that ends the answer (generation stops once the
answer contains it, and the answer is cut there). `Task.for_tokenizer` picks the form a model can run:
the chat form when its tokenizer has a chat template, else the base form (a base model such as Gemma 3
270M has none).

The data travels with the repository: `eval/data/` (`BUNDLED_DATA_DIR`, the default data dir) holds,
for every task, the rows its dev and test splits draw from the task's source file, already split
(`dataset.split_files`); `eval/data/README.md` names each file's source, licence and filtering, and
`eval/data/build.py` rebuilds the split files from the source files.

Example:
    >>> from bench.tasks import load_tasks
    >>> task = load_tasks()["nq_open"]
    >>> task.suite, task.max_new_tokens, task.chat
    ('qa', 24, True)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .scoring import check_metric_list
from .scoring import higher_is_better as metric_directions

__all__ = [
    "BUNDLED_DATA_DIR",
    "HALLUCINATION_SUITES",
    "QA_SUITES",
    "SUITES",
    "TASK_DIR",
    "Task",
    "default_data_dir",
    "load_tasks",
    "tasks_for_suite",
]

TASK_DIR = Path(__file__).resolve().parent.parent / "tasks"
BUNDLED_DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SUITES = ("loops", "instruct", "qa", "knowledge", "reading", "grounded_qa", "truthfulqa")
# The suites scored as short answers against gold aliases (`qa_accuracy` + detection), and those whose
# answers are judged right or wrong (the hallucination suites): what scoring, reports and targets test
# a task's suite against, so that a new suite of a known kind is one entry here.
QA_SUITES = ("qa", "knowledge", "reading", "grounded_qa")
HALLUCINATION_SUITES = (*QA_SUITES, "truthfulqa")
_REQUIRED = ("task", "suite", "dataset", "fields", "prompt", "split", "generation", "metric_list")
_BASE_KEYS = ("template", "stop")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def _base_prompt(path: str | os.PathLike, base: Any, chat: bool, fields: dict[str, Any]) -> dict[str, Any] | None:
    """`prompt.base` of the task file at `path`, validated: None, or `{template, stop}`."""
    if base is None:
        return None
    where = f"Task file {path}: `prompt.base`"
    if not isinstance(base, dict) or not set(base) <= set(_BASE_KEYS) or "template" not in base:
        raise ValueError(f"{where} (={base!r}) must be a mapping {{template: TEXT, stop: TEXT}} (`stop` optional).")
    if not chat:
        raise ValueError(f"{where} is given for a task with `prompt.chat: false`; a base form is for chat tasks only.")
    _check_base_template(where, base["template"], fields)
    stop = base.get("stop")
    if stop is not None and (not isinstance(stop, str) or not stop):
        raise ValueError(f'{where}.stop (={stop!r}) must be a non-empty string (e.g. "\\n") or absent.')
    return {"template": base["template"], "stop": stop}


def _check_base_template(where: str, template: Any, fields: dict[str, Any]) -> None:
    """A base template is a non-empty string naming at least one of the item's fields as `{field}`."""
    allowed = sorted({*fields, "id", "index"})
    try:
        named = [name for _, name, _, _ in string.Formatter().parse(template) if name]
    except (TypeError, ValueError, AttributeError):
        named = None
    if not isinstance(template, str) or not named or not set(named) <= set(allowed):
        raise ValueError(
            f"{where}.template (={template!r}) must be a non-empty string with at least one `{{field}}`, "
            f"fields among {allowed} (write a literal brace as `{{{{` or `}}}}`)."
        )


def default_data_dir() -> Path:
    """`$ICP_DATA_DIR` when set (and not empty), else the data shipped in the repository, `eval/data`.

    Example:
        >>> import os
        >>> override = os.environ.get("ICP_DATA_DIR")
        >>> default_data_dir() == (Path(override) if override else BUNDLED_DATA_DIR)
        True
        >>> BUNDLED_DATA_DIR.relative_to(TASK_DIR.parent.parent).as_posix()
        'eval/data'
    """
    env = os.environ.get("ICP_DATA_DIR")
    return Path(env) if env else BUNDLED_DATA_DIR


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

    The split is a seeded permutation of the rows of the task's source file (`dataset.local.path`, or
    the hub copy), or of its groups with `split.group_by`: dev first, then test, so dev and test never
    share a row (or a group). Only those rows are needed, so the repository ships them already split:
    `dataset.split_files: {dev: PATH, test: PATH}` names two JSONL files under the data dir, each
    holding the split's rows in order with the source file's columns plus `source_row` (the row's index
    in the source file, which becomes the item's `index`, and its `id` when the task maps none). When
    the data dir holds both split files they are read as they are; else the source file is read and
    split by the seed; else the hub copy; `eval/data/build.py` writes the split files from the source
    files and checks that both ways give the same items.

    Args:
        name (`str`): the task's name.
        suite (`str`): one of `SUITES`.
        dataset (`dict`): `local` (`path` under the data dir, `format` json/csv: the source file),
            `split_files` (`{dev, test}` paths under the data dir, JSONL, or absent), `require`
            (`{field: "alnum"}`: drop rows none of whose values has a letter or digit) and `hub` (or null).
        fields (`dict`): item key -> source column, or `{field, split}` / `{field, take}`.
        template (`str`): the prompt, formatted with the item's fields.
        chat (`bool`): wrap the prompt as a user message through the tokenizer's chat template.
        base_prompt (`dict`, *optional*): a chat task's base-model form, `prompt.base` in the YAML:
            `template` (plain text, formatted with the item's fields, e.g. a few-shot "Q: ...\\nA:") and
            `stop` (a string that ends the answer, e.g. a newline, or None). What [`Task.for_tokenizer`]
            runs on a model whose tokenizer has no chat template.
        stop (`str`, *optional*): generation stops once a row's answer contains this string, and the
            answer is cut before it (see `bench.generation.generate_batch`); set by [`Task.for_tokenizer`]
            from the base form, None for the tasks as read.
        split (`dict`): `seed`, `dev`, `test` sizes; optional `group_by` and `per_group`.
        max_new_tokens (`int`): generation length.
        group_by_length (`bool`): batch the examples in order of prompt length (`generation.group_by_length`),
            so that a batch pads to prompts of about its own length; for tasks whose prompts range from a
            few words to pages (reading). Results keep the examples' order.
        metric_list (`list[dict]`): what the task is scored on, in order: each entry's `metric` names a metric
            of the registry ([`bench.scoring.METRICS`]), `keys` the result keys whose direction the task records,
            and the optional `higher_is_better` that direction (else the registry's).
        tuning (`dict`): the dev-split objective (see `bench.scoring.tuning_score`).
        metadata (`dict`): version, licence.

    Example:
        >>> task = Task.from_yaml(TASK_DIR / "nq_open.yaml")
        >>> task.dataset["split_files"]["test"]
        'nq_open/nq_open.test.jsonl'
        >>> test = task.items("test")  # the shipped split file, from eval/data
        >>> len(test) == task.split["test"], test[0]["index"] == test[0]["id"]
        (True, True)
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
    group_by_length: bool = False
    base_prompt: dict[str, Any] | None = None
    stop: str | None = None

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
        split_files = raw["dataset"].get("split_files")
        if split_files is not None and (
            not isinstance(split_files, dict)
            or set(split_files) != {"dev", "test"}
            or not all(isinstance(v, str) and v for v in split_files.values())
        ):
            raise ValueError(
                f"Task file {path}: `dataset.split_files` (={split_files!r}) must be null or "
                "{dev: PATH, test: PATH}, paths under the data dir."
            )
        max_new = raw["generation"].get("max_new_tokens")
        if not isinstance(max_new, int) or max_new < 1:
            raise ValueError(f"Task file {path}: `generation.max_new_tokens` (={max_new!r}) must be an integer >= 1.")
        group = raw["generation"].get("group_by_length", False)
        if not isinstance(group, bool):
            raise ValueError(f"Task file {path}: `generation.group_by_length` (={group!r}) must be true or false.")
        try:
            check_metric_list(raw["task"], raw["metric_list"])
        except ValueError as error:
            raise ValueError(f"Task file {path}: {error}") from error
        chat = bool(raw["prompt"].get("chat", False))
        return cls(
            name=raw["task"],
            suite=raw["suite"],
            dataset=raw["dataset"],
            fields=raw["fields"],
            template=raw["prompt"]["template"],
            chat=chat,
            base_prompt=_base_prompt(path, raw["prompt"].get("base"), chat, raw["fields"]),
            split=split,
            max_new_tokens=max_new,
            metric_list=raw["metric_list"],
            tuning=raw.get("tuning") or {},
            metadata=raw.get("metadata") or {},
            group_by_length=group,
        )

    def for_tokenizer(self, tokenizer: Any) -> Task:
        """The form of this task `tokenizer`'s model can run: the task itself when it is not a chat task or
        the tokenizer has a chat template; else its base form (`prompt.base`): the base template, as plain
        text (`chat=False`), with the base form's `stop`. Call it once the model is loaded and before
        [`Task.items`], which formats the prompts with the returned task's template.

        Args:
            tokenizer: the model's tokenizer (anything with a `chat_template` attribute, which may be None).

        Raises:
            `ValueError`: a chat task without a base form, for a tokenizer without a chat template.

        Example:
            >>> from types import SimpleNamespace
            >>> task = load_tasks()["knowledge_countries"]
            >>> task.for_tokenizer(SimpleNamespace(chat_template="{{ messages }}")) is task  # an instruct model
            True
            >>> base = task.for_tokenizer(SimpleNamespace(chat_template=None))  # a base model: no chat template
            >>> base.chat, base.stop, base.template.endswith("Q: {question}\\nA:")
            (False, '\\n', True)
        """
        if not self.chat or getattr(tokenizer, "chat_template", None):
            return self
        if self.base_prompt is None:
            raise ValueError(
                f"Task {self.name!r} is a chat task, the model's tokenizer has no chat template, and the task has "
                "no `prompt.base` form (a plain-text template and stop string for a base model) to run instead."
            )
        return dataclasses.replace(
            self, template=self.base_prompt["template"], chat=False, stop=self.base_prompt.get("stop")
        )

    @property
    def version(self) -> int:
        return int(self.metadata.get("version", 0))

    def higher_is_better(self) -> dict[str, bool]:
        """Metric key -> whether higher is better, for every key of the metric list: the entry's own
        `higher_is_better`, else the metric registry's ([`bench.scoring.METRICS`]); a descriptive key such as
        `mean_tokens` has neither and is left out. What the results record as `higher_is_better[task]`.

        Example:
            >>> load_tasks()["nq_open"].higher_is_better()["abstention_rate"]
            False
        """
        return metric_directions(self.name, self.metric_list)

    # -- data ---------------------------------------------------------------------------------------

    def _read(self, data_dir: str | os.PathLike | None):
        """The source rows and the field mapping that reads them: the local source file, else the hub copy."""
        import datasets

        local = self.dataset.get("local")
        if data_dir is not None and local is not None:
            path = Path(data_dir) / local["path"]
            if path.is_file():
                builder = {"json": "json", "jsonl": "json", "csv": "csv"}[local.get("format", "json")]
                return datasets.load_dataset(builder, data_files=str(path), split="train"), self.fields
        hub = self.dataset.get("hub")
        if hub is None:
            wanted = [local["path"]] if local else []
            wanted += list((self.dataset.get("split_files") or {}).values())
            where = f"the data dir {data_dir}" if data_dir is not None else "no data dir given"
            raise FileNotFoundError(
                f"Task {self.name!r} reads {' or '.join(wanted) or '?'} from the data dir ({where} has none of "
                f"them) and has no hub copy. Pass `--data-dir` (or set ICP_DATA_DIR) to a folder holding them, "
                f"or leave both unset to use the data shipped in {BUNDLED_DATA_DIR}."
            )
        # The hub copy may name its columns differently: `hub.fields` maps them.
        return datasets.load_dataset(hub["path"], hub.get("name"), split=hub["split"]), hub.get("fields", self.fields)

    def _split_file_rows(self, split: str, data_dir: str | os.PathLike | None) -> list[dict] | None:
        """The rows of `split` from the shipped split files, or None when the data dir lacks either file."""
        files = self.dataset.get("split_files")
        if not files or data_dir is None:
            return None
        paths = {name: Path(data_dir) / rel for name, rel in files.items()}
        if not all(path.is_file() for path in paths.values()):
            return None
        path = paths[split]
        with open(path, encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        want = self.split[split]
        if len(rows) != want:
            raise ValueError(
                f"Task {self.name!r}: the split file {path} has {len(rows)} rows but `split.{split}` is {want}; "
                "rebuild the split files with `python eval/data/build.py --source DIR` after changing the split."
            )
        for i, row in enumerate(rows):
            if not isinstance(row.get("source_row"), int):
                raise ValueError(
                    f"Task {self.name!r}: row {i} of {path} has `source_row` (={row.get('source_row')!r}); "
                    "every row of a split file needs its integer index in the source file."
                )
        return rows

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
        """The examples of `split` ("dev" or "test"), each a dict with `prompt_text`, `index` and the mapped fields.

        The split is fixed by the task's seed: a permutation of the source rows (or of the groups, with
        `group_by`), dev first, then test, so dev and test never share an example (or a group). When
        the data dir holds the task's `split_files`, those are read instead (the same items, in the
        same order: see the class docstring).

        Args:
            split (`str`): `"dev"` or `"test"`.
            data_dir (`str`, *optional*): folder with the data files; defaults to the data shipped in
                the repository (`BUNDLED_DATA_DIR`).
            limit (`int`, *optional*): keep the first `limit` examples of the split.

        Example:
            >>> task = load_tasks()["truthfulqa"]
            >>> [item["index"] for item in task.items("dev", limit=3)] == [
            ...     item["index"] for item in task.items("dev")[:3]
            ... ]
            True
        """
        if split not in ("dev", "test"):
            raise ValueError(f"`split` (={split!r}) must be 'dev' or 'test'.")
        if limit is not None and limit < 1:
            raise ValueError(f"`limit` (={limit!r}) must be a positive integer or None.")
        data_dir = BUNDLED_DATA_DIR if data_dir is None else data_dir
        shipped = self._split_file_rows(split, data_dir)
        if shipped is not None:
            chosen = [self._item(row, row["source_row"], self.fields) for row in shipped]
            chosen = self._require(chosen)
        else:
            chosen = [{k: v for k, v in item.items() if k != "_row"} for item in self.source_items(data_dir)[split]]
        return chosen[:limit] if limit is not None else chosen

    def _require(self, rows: list[dict]) -> list[dict]:
        # `require: {answers: alnum}` drops rows none of whose answers has a letter or digit (NQ-open has
        # an answer ")"), which no answer could match; the split is drawn from what remains.
        for key, rule in (self.dataset.get("require") or {}).items():
            if rule != "alnum":
                raise ValueError(f"Task {self.name!r}: `dataset.require.{key}` (={rule!r}) must be 'alnum'.")
            rows = [r for r in rows if any(any(ch.isalnum() for ch in str(a)) for a in r[key])]
        return rows

    def source_items(self, data_dir: str | os.PathLike | None = None) -> dict[str, list[dict]]:
        """Both splits drawn from the source file (or the hub copy) by the seed, ignoring `split_files`.

        Each item also carries `_row`, the source row it was read from (what `eval/data/build.py` writes).

        Args:
            data_dir (`str`, *optional*): folder with the task's source file (`dataset.local.path`).

        Returns:
            `dict`: `{"dev": [...], "test": [...]}`.
        """
        dataset, fields = self._read(data_dir)
        rows = []
        for i, raw in enumerate(dataset):
            item = self._item(dict(raw), i, fields)
            item["_row"] = dict(raw)
            rows.append(item)
        rows = self._require(rows)
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
        return {"dev": dev, "test": test}


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
