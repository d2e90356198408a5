"""Build the data shipped in `eval/data/`: the source files of the new tasks, and every task's split files.

Each task's dev/test split is a seeded permutation of its source file's rows (see `bench.tasks.Task`);
the repository ships only the rows the two splits use, already split (`dataset.split_files`). Two steps:

1. `prepare` turns upstream files into the source files of the tasks built here (`knowledge_countries`
   from mledoze/countries, `reading_qed` from google-research-datasets/QED), with the filters that
   `eval/data/README.md` describes; none of them depends on any model or decoder.
2. `split` reads each task's source file from `--source`, draws its split by the seed and writes the
   split files under `--out` (default: `eval/data`); with `--check` it writes nothing and fails when the
   shipped split files give other items than the source file does.

Example:
    python eval/data/build.py prepare --countries countries.json --qed qed-dev.jsonlines --out /tmp/src
    cp -r /work/shared/data/. /tmp/src/              # the existing tasks' source files
    python eval/data/build.py split --source /tmp/src
    python eval/data/build.py split --source /tmp/src --check
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.tasks import BUNDLED_DATA_DIR, Task, load_tasks  # noqa: E402

__all__ = ["countries_facts", "detokenize", "main", "qed_items", "write_splits"]

_PUNCT_BEFORE = re.compile(r" ([,.;:!?%)\]])")
_PUNCT_AFTER = re.compile(r"([(\[$]) ")


def _normalise(text: str) -> str:
    # the SQuAD normalisation of the qa_accuracy metric, to tell whether an answer is in the question
    text = text.lower()
    text = "".join(" " if not ch.isalnum() else ch for ch in text)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _in_question(question: str, answers: list[str]) -> bool:
    padded = f" {_normalise(question)} "
    return any(_normalise(a) and f" {_normalise(a)} " in padded for a in answers)


def detokenize(text: str) -> str:
    """Undo Natural Questions' tokenisation (spaces around punctuation, `` '' quotes, -- dashes).

    Example:
        >>> detokenize("awarded in 1901 to Wilhelm Roentgen , of Germany ( see `` X '' ) , who did n't .")
        'awarded in 1901 to Wilhelm Roentgen, of Germany (see "X"), who didn\\'t.'
    """
    text = _PUNCT_BEFORE.sub(r"\1", text)
    text = _PUNCT_AFTER.sub(r"\1", text)
    text = text.replace("`` ", '"').replace(" ''", '"').replace(" 's", "'s").replace(" n't", "n't")
    return text.replace(" -- ", " \u2013 ")


def _continents(country: dict[str, Any]) -> list[str]:
    region, subregion = country.get("region", ""), country.get("subregion", "")
    if region == "Americas":
        return ["South America"] if subregion == "South America" else ["North America"]
    if region == "Oceania":
        return ["Oceania", "Australia"]
    if region == "Antarctic":
        return ["Antarctica"]
    return [region] if region else []


def countries_facts(countries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Closed-book questions about the sovereign states of mledoze/countries: capital, continent,
    official language, currency.

    Kept: states with `independent: true`; questions with at least one answer, none of whose answers
    occurs in the question (the metric counts an alias found anywhere in the answer, so an answer that
    repeats the question would score). Currencies also accept their ISO 4217 code.

    Args:
        countries (`list[dict]`): the records of `countries.json`.

    Returns:
        `list[dict]`: rows `{id, country, relation, question, answers}`, in the file's order.

    Example:
        >>> rows = countries_facts([{"name": {"common": "France"}, "independent": True, "capital": ["Paris"],
        ...     "region": "Europe", "languages": {"fra": "French"}, "currencies": {"EUR": {"name": "Euro"}},
        ...     "cca3": "FRA"}])
        >>> [(r["relation"], r["answers"]) for r in rows]
        [('capital', ['Paris']), ('continent', ['Europe']), ('language', ['French']), ('currency', ['Euro', 'EUR'])]
    """
    rows = []
    for country in countries:
        if country.get("independent") is not True:
            continue
        name = country["name"]["common"]
        currencies = [name_ for code, cur in (country.get("currencies") or {}).items() for name_ in (cur["name"], code)]
        questions = [
            ("capital", f"What is the capital of {name}?", list(country.get("capital") or [])),
            ("continent", f"On which continent is {name}?", _continents(country)),
            ("language", f"What is the official language of {name}?", list((country.get("languages") or {}).values())),
            ("currency", f"What is the currency of {name}?", currencies),
        ]
        for relation, question, answers in questions:
            if answers and not _in_question(question, answers):
                rows.append(
                    {
                        "id": f"{country.get('cca3', name)}:{relation}",
                        "country": name,
                        "relation": relation,
                        "question": question,
                        "answers": answers,
                    }
                )
    return rows


def qed_items(records: list[dict[str, Any]], max_answer_words: int = 4) -> list[dict[str, Any]]:
    """Extractive reading-comprehension items from QED's dev set (Natural Questions questions, each with
    the Wikipedia passage that answers it).

    Kept: the single-span gold answers (an answer made of several spans is dropped), and examples whose
    shortest such answer has at most `max_answer_words` words; passage and answers are detokenised alike.
    Every answer is a span of its passage, so a wrong answer is a hallucination against the text.

    Args:
        records (`list[dict]`): the lines of `qed-dev.jsonlines`.
        max_answer_words (`int`, *optional*, defaults to 4): the longest shortest-answer kept.

    Returns:
        `list[dict]`: rows `{id, title, passage, question, answers}`, in the file's order.
    """
    if max_answer_words < 1:
        raise ValueError(f"`max_answer_words` (={max_answer_words!r}) must be an integer >= 1.")
    rows = []
    for record in records:
        spans = [answer[0]["string"] for answer in record["original_nq_answers"] if len(answer) == 1]
        answers = sorted({detokenize(s) for s in spans})
        if not answers or min(len(a.split()) for a in answers) > max_answer_words:
            continue
        question = record["question_text"].strip()
        question = question[0].upper() + question[1:] + ("" if question.endswith("?") else "?")
        rows.append(
            {
                "id": str(record["example_id"]),
                "title": record["title_text"],
                "passage": detokenize(record["paragraph_text"]),
                "question": question,
                "answers": answers,
            }
        )
    return rows


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def _comparable(items: list[dict[str, Any]]) -> list[tuple]:
    return [(item["index"], str(item["id"]), item["prompt_text"]) for item in items]


def write_splits(task: Task, source: Path, out: Path, check: bool = False) -> list[str]:
    """Write (or, with `check`, compare) `task`'s split files from its source file under `source`.

    Returns:
        `list[str]`: the problems found (empty when the split files match, or were written).
    """
    drawn = task.source_items(source)
    problems = []
    for split, rel in task.dataset["split_files"].items():
        path = out / rel
        if check:
            shipped = task.items(split, out) if path.is_file() else []
            if _comparable(shipped) != _comparable(drawn[split]):
                problems.append(f"{task.name}/{split}: {path} differs from the split drawn from {source}")
        else:
            rows = [{**item["_row"], "source_row": item["index"]} for item in drawn[split]]
            _write_jsonl(path, rows)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the new tasks' source files from the upstream files")
    prep.add_argument("--countries", required=True, help="countries.json of mledoze/countries")
    prep.add_argument("--qed", required=True, help="qed-dev.jsonlines of google-research-datasets/QED")
    prep.add_argument("--out", required=True, help="folder to write knowledge/ and reading/ into")
    split = sub.add_parser("split", help="write every task's split files from its source file")
    split.add_argument("--source", required=True, help="folder with the tasks' source files (dataset.local.path)")
    split.add_argument("--out", default=str(BUNDLED_DATA_DIR), help="where the split files go (default: eval/data)")
    split.add_argument("--task", action="append", help="only this task (repeatable)")
    split.add_argument("--check", action="store_true", help="compare the shipped split files, write nothing")
    args = parser.parse_args(argv)

    if args.command == "prepare":
        out = Path(args.out)
        with open(args.countries, encoding="utf-8") as handle:
            facts = countries_facts(json.load(handle))
        with open(args.qed, encoding="utf-8") as handle:
            qed = qed_items([json.loads(line) for line in handle if line.strip()])
        _write_jsonl(out / "knowledge" / "countries_facts.jsonl", facts)
        _write_jsonl(out / "reading" / "qed_dev_short.jsonl", qed)
        print(f"wrote {len(facts)} knowledge rows and {len(qed)} reading rows under {out}")
        return 0

    tasks = load_tasks()
    names = args.task or sorted(tasks)
    unknown = [n for n in names if n not in tasks]
    if unknown:
        parser.error(f"`--task` (={unknown}) names no task; tasks: {sorted(tasks)}.")
    source, out = Path(args.source), Path(args.out)
    problems = []
    for name in names:
        task = tasks[name]
        if not task.dataset.get("split_files"):
            print(f"{name}: no split_files, skipped")
            continue
        if not (source / task.dataset["local"]["path"]).is_file():
            problems.append(f"{name}: source file {source / task.dataset['local']['path']} is missing")
            continue
        problems += write_splits(task, source, out, check=args.check)
        print(f"{name}: {'checked' if args.check else 'written'}")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
