"""The benchmark suite's machinery: decoders, tasks and splits, generation rows, scoring, and eval/run.py end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))
sys.path.insert(0, str(ROOT / "tests"))

from bench.decoders import DECODERS, TUNING_BUDGET, get_decoder, parse_decoders  # noqa: E402
from bench.generation import batch_order, batches, generate_batch  # noqa: E402
from bench.scoring import tuning_score  # noqa: E402
from bench.tasks import BUNDLED_DATA_DIR, SUITES, Task, default_data_dir, load_tasks, tasks_for_suite  # noqa: E402
from helpers import CHAT_TEMPLATE, tiny_llama, word_tokenizer  # noqa: E402

# The source files the shipped split files were drawn from, where this checkout has them (optional:
# every suite runs on the data in eval/data; this folder only lets the tests re-derive the splits).
SHARED = ROOT.parent / "shared" / "data"


# -- decoders --------------------------------------------------------------------------------------


def test_every_decoder_gets_the_same_tuning_budget_and_the_compared_decoders_exist():
    for name in (
        "greedy",
        "sampling",
        "temperature",
        "top_p",
        "min_p",
        "typical",
        "top_h",
        "eta",
        "repetition_penalty",
        "mirostat",
        "edt",
        "adaptive_p",
        "entropix",
        "dry",
        "icp",
    ):
        assert name in DECODERS
    for spec in DECODERS.values():
        assert 1 <= len(spec.grid) <= TUNING_BUDGET
        # a grid never repeats a setting (a repeat would spend budget on nothing)
        assert len({json.dumps(g, sort_keys=True) for g in spec.grid}) == len(spec.grid)


def test_parse_decoders_validates():
    assert parse_decoders("all") == list(DECODERS)
    with pytest.raises(KeyError, match="Unknown decoder 'nope'"):
        parse_decoders("greedy,nope")
    with pytest.raises(ValueError, match="twice"):
        parse_decoders("icp,icp")
    with pytest.raises(ValueError, match="names no decoder"):
        parse_decoders(" , ")


def test_plan_rejects_unknown_hyperparameters():
    with pytest.raises(ValueError, match="Unknown hyperparameter"):
        get_decoder("min_p").plan({"top_p": 0.9}, None)


class _Tokenizer:
    """Enough of a tokenizer for generate_batch on a tiny model: ids are characters mod the vocab."""

    pad_token_id = 0
    padding_side = "left"

    def __call__(self, texts, return_tensors, padding, add_special_tokens):
        ids = [[1 + (ord(c) % 60) for c in t] for t in texts]
        width = max(map(len, ids))
        input_ids = torch.tensor([[0] * (width - len(x)) + x for x in ids])
        return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}

    def decode(self, tokens, skip_special_tokens=True):
        return " ".join(str(t) for t in tokens)


@pytest.mark.parametrize("name", list(DECODERS))
def test_every_decoder_generates_on_a_tiny_model(name):
    model = tiny_llama(eos_token_id=None)
    from icp import ICP

    observer = ICP(model, control=False)
    items = [{"id": i, "prompt_text": f"prompt number {i}"} for i in range(3)]
    spec = get_decoder(name)
    for params in (spec.grid[0], spec.grid[-1]):
        plan = spec.plan(params, model)
        rows = generate_batch(
            model,
            _Tokenizer(),
            items,
            chat=False,
            plan=plan,
            observer=None if plan.icp else observer,
            max_new_tokens=6,
            seed=0,
            want_logit_signals=True,
        )
        assert [r["id"] for r in rows] == [0, 1, 2]
        for row in rows:
            assert row["n_tokens"] == len(row["tokens"]) <= 6
            assert row["stop_reason"] in ("eos", "length", "loop", "divergence")
            for key in ("mean_entropy", "mean_max_prob", "seq_loglik", "mean_loglik", "icp_F", "icp_U"):
                assert key in row and math.isfinite(row[key]), (name, key, row.get(key))
            assert 0.0 < row["mean_max_prob"] <= 1.0
            assert row["seq_loglik"] <= 0.0
        if plan.icp is not None:
            plan.icp.remove_hooks()
    observer.remove_hooks()


def test_same_seed_same_tokens_whatever_the_decoder_object():
    model = tiny_llama(eos_token_id=None)
    items = [{"id": i, "prompt_text": f"p{i}"} for i in range(2)]
    plan = get_decoder("sampling").plan(None, model)

    def tokens(seed):
        rows = generate_batch(
            model, _Tokenizer(), items, chat=False, plan=plan, observer=None, max_new_tokens=8, seed=seed,
            want_logit_signals=False,
        )  # fmt: skip
        return [r["tokens"] for r in rows]

    assert tokens(5) == tokens(5)
    assert tokens(5) != tokens(6)


def test_greedy_plain_signals_match_a_direct_computation():
    model = tiny_llama(eos_token_id=None)
    items = [{"id": 0, "prompt_text": "abc"}]
    plan = get_decoder("greedy").plan(None, model)
    row = generate_batch(
        model,
        _Tokenizer(),
        items,
        chat=False,
        plan=plan,
        observer=None,
        max_new_tokens=5,
        seed=0,
        want_logit_signals=True,
    )[0]
    ids = _Tokenizer()(["abc"], "pt", True, False)["input_ids"]
    full = torch.cat([ids, torch.tensor([row["tokens"]])], 1)
    with torch.no_grad():
        logp = torch.log_softmax(model(full).logits[0, ids.shape[1] - 1 : -1].float(), -1)
    chosen = logp.gather(1, torch.tensor(row["tokens"]).unsqueeze(1)).squeeze(1)
    assert row["seq_loglik"] == pytest.approx(chosen.sum().item(), abs=1e-3)
    assert row["mean_max_prob"] == pytest.approx(logp.exp().amax(-1).mean().item(), abs=1e-4)
    assert row["mean_entropy"] == pytest.approx((-(logp.exp() * logp).sum(-1)).mean().item(), abs=1e-3)


def test_batches():
    assert batches([], 4) == []
    with pytest.raises(ValueError, match="batch_size"):
        batches([1], 0)


@given(st.lists(st.text(max_size=12), max_size=30))
def test_batch_order_is_a_stable_permutation_by_prompt_length(prompts):
    items = [{"prompt_text": p} for p in prompts]
    order = batch_order(items, by_length=True)
    assert sorted(order) == list(range(len(items)))
    keys = [(len(prompts[i]), i) for i in order]
    assert keys == sorted(keys)  # shortest first, ties in the given order
    assert batch_order(items, by_length=False) == list(range(len(items)))


def test_grouped_batches_return_rows_in_the_examples_order():
    """A task batched by prompt length (reading) gives the rows back in its examples' order, with the same
    greedy tokens as batching in the given order."""
    import argparse

    from accelerate import PartialState
    from run import Runner

    model = tiny_llama(eos_token_id=2)
    tokenizer = word_tokenizer(eos_token="w2", pad_token="w0", chat_template=CHAT_TEMPLATE)
    task = load_tasks()["reading_qed"]
    assert task.group_by_length
    lengths = [7, 2, 11, 3, 5, 1]  # prompts of different lengths, not in order
    items = [{"id": f"q{k}", "prompt_text": " ".join(f"w{3 + (j * 7 + k) % 50}" for j in range(n))}
             for k, n in enumerate(lengths)]  # fmt: skip
    args = argparse.Namespace(batch_size=2, seed=0, model=None, no_cache=True, cache_dir=None,
                              max_new_tokens=3, no_progress=True)  # fmt: skip
    runner = Runner(args, PartialState(cpu=True), model, tokenizer)
    grouped = runner.generate(task, items, "greedy", None, "grouped")
    assert [row["id"] for row in grouped] == [item["id"] for item in items]
    import dataclasses

    plain = runner.generate(dataclasses.replace(task, group_by_length=False), items, "greedy", None, "plain")
    assert [row["tokens"] for row in grouped] == [row["tokens"] for row in plain]


# -- tasks -----------------------------------------------------------------------------------------


def test_tasks_load_and_cover_every_suite():
    tasks = load_tasks()
    assert {t.suite for t in tasks.values()} == set(SUITES)
    assert [t.name for t in tasks_for_suite("qa", tasks)] == ["nq_open"]
    assert [t.name for t in tasks_for_suite("knowledge", tasks)] == ["knowledge_countries"]
    assert [t.name for t in tasks_for_suite("reading", tasks)] == ["reading_qed"]
    with pytest.raises(ValueError, match="--suite"):
        tasks_for_suite("nope", tasks)


def test_bad_task_file_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task: x\nsuite: loops\n")
    with pytest.raises(ValueError, match="lacks"):
        Task.from_yaml(path)
    good = (ROOT / "eval" / "tasks" / "nq_open.yaml").read_text()
    path.write_text(good.replace("suite: qa", "suite: poetry"))
    with pytest.raises(ValueError, match="`suite`"):
        Task.from_yaml(path)
    path.write_text(good.replace("max_new_tokens: 24", "max_new_tokens: 0"))
    with pytest.raises(ValueError, match="max_new_tokens"):
        Task.from_yaml(path)
    path.write_text(good.replace("max_new_tokens: 24", "max_new_tokens: 24, group_by_length: 1"))
    with pytest.raises(ValueError, match="group_by_length"):
        Task.from_yaml(path)


def test_missing_data_names_the_file(tmp_path):
    task = load_tasks()["loops_webtext"]
    with pytest.raises(FileNotFoundError, match="prompts_webtext_1000.jsonl"):
        task.items("test", tmp_path)


@pytest.mark.parametrize("name", sorted(load_tasks()))
def test_splits_are_fixed_disjoint_and_sized(name):
    """Every task runs on the data shipped in eval/data (no data dir needed)."""
    task = load_tasks()[name]
    dev, test = task.items("dev"), task.items("test")
    assert len(dev) == task.split["dev"] and len(test) == task.split["test"]
    assert not {d["index"] for d in dev} & {t["index"] for t in test}
    assert len({t["index"] for t in test}) == len(test)
    group = task.split.get("group_by")
    if group:  # dev and test never share a group (an article, a country)
        assert not {d[group] for d in dev} & {t[group] for t in test}
    assert [t["index"] for t in task.items("test", BUNDLED_DATA_DIR)] == [t["index"] for t in test]
    assert [t["index"] for t in task.items("test", limit=3)] == [t["index"] for t in test[:3]]
    for item in test:
        assert item["prompt_text"]
        if task.suite in ("qa", "knowledge", "reading", "grounded_qa"):
            assert isinstance(item["answers"], list) and item["answers"]
        if task.suite == "truthfulqa":
            assert len(item["correct_answers"]) >= 1 and len(item["incorrect_answers"]) >= 1
    if task.suite == "reading":  # extractive: some gold answer is in the passage the prompt shows
        assert all(any(a in item["passage"] for a in item["answers"]) for item in test)


def test_every_task_ships_its_split_files_with_licence_and_provenance():
    readme = (BUNDLED_DATA_DIR / "README.md").read_text()
    for task in load_tasks().values():
        files = task.dataset["split_files"]
        assert set(files) == {"dev", "test"}, task.name
        for rel in files.values():
            path = BUNDLED_DATA_DIR / rel
            assert path.is_file(), path
            assert path.name in readme or f"{task.name}.{{dev,test}}.jsonl" in readme, path.name
            assert list(path.parent.glob("LICENSE*")), f"no licence file beside {path}"
        assert task.metadata.get("licence"), task.name


def test_shipped_splits_equal_the_splits_drawn_from_the_source_files():
    """The split files hold exactly the items the seed draws from each full source file that this
    checkout has beside it (`../shared/data`; a bare clone has none and needs none: the mechanism is
    checked on a toy task below either way)."""
    checked = []
    for name, task in sorted(load_tasks().items()):
        if not (SHARED / task.dataset["local"]["path"]).is_file():
            continue
        drawn = task.source_items(SHARED)
        for split in ("dev", "test"):
            assert [{k: v for k, v in d.items() if k != "_row"} for d in drawn[split]] == task.items(split), name
        checked.append(name)
    if SHARED.is_dir():  # the shared folder holds the source files of the five original tasks
        assert {"halueval_qa", "instruct_wikitext", "loops_webtext", "nq_open", "truthfulqa"} <= set(checked)


def test_new_sources_are_filtered_by_properties_of_the_data_only():
    sys.path.insert(0, str(ROOT / "eval" / "data"))
    from build import countries_facts, qed_items

    countries = [
        {"name": {"common": "Luxembourg"}, "cca3": "LUX", "independent": True, "capital": ["Luxembourg"],
         "region": "Europe", "languages": {"ltz": "Luxembourgish"}, "currencies": {"EUR": {"name": "Euro"}}},
        {"name": {"common": "Guam"}, "cca3": "GUM", "independent": False, "capital": ["Hag\u00e5t\u00f1a"],
         "region": "Oceania", "languages": {"eng": "English"}, "currencies": {"USD": {"name": "US dollar"}}},
        {"name": {"common": "Peru"}, "cca3": "PER", "independent": True, "capital": ["Lima"], "region": "Americas",
         "subregion": "South America", "languages": {}, "currencies": {}},
    ]  # fmt: skip
    rows = countries_facts(countries)
    # Luxembourg's capital repeats the question and is dropped; Guam is not a sovereign state; Peru has
    # no language or currency listed; Peru is in South America (not "Americas")
    assert [(r["id"], r["answers"]) for r in rows] == [
        ("LUX:continent", ["Europe"]),
        ("LUX:language", ["Luxembourgish"]),
        ("LUX:currency", ["Euro", "EUR"]),
        ("PER:capital", ["Lima"]),
        ("PER:continent", ["South America"]),
    ]

    def record(i, answers):
        return {"example_id": i, "title_text": "T", "question_text": "who won it", "paragraph_text": "P ,",
                "original_nq_answers": [[{"string": s} for s in spans] for spans in answers]}  # fmt: skip

    records = [
        record(1, [["Ada , Countess"]]),
        record(2, [["Ada", "Bob"]]),  # one answer of two spans: dropped
        record(3, [["one two three four five"], ["a b c d e f"]]),  # no answer of <= 4 words
        record(4, [["one two three four five"], ["Bob"]]),
    ]
    items = qed_items(records)
    assert [(i["id"], i["answers"], i["question"], i["passage"]) for i in items] == [
        ("1", ["Ada, Countess"], "Who won it?", "P,"),
        ("4", ["Bob", "one two three four five"], "Who won it?", "P,"),
    ]
    with pytest.raises(ValueError, match=r"`max_answer_words` \(=0\) must be an integer >= 1"):
        qed_items(records, max_answer_words=0)


def test_default_data_dir_is_the_shipped_data_unless_overridden(monkeypatch, tmp_path):
    monkeypatch.delenv("ICP_DATA_DIR", raising=False)
    assert default_data_dir() == BUNDLED_DATA_DIR == ROOT / "eval" / "data"
    monkeypatch.setenv("ICP_DATA_DIR", "")
    assert default_data_dir() == BUNDLED_DATA_DIR
    monkeypatch.setenv("ICP_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path


def _toy_task(tmp_path, split="{seed: 3, dev: 2, test: 3}", extra=""):
    data = tmp_path / "data"
    (data / "toy").mkdir(parents=True)
    rows = [{"q": f"question {i}", "answers": [f"a{i}"], "topic": f"t{i // 2}"} for i in range(12)]
    (data / "toy" / "source.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "toy.yaml"
    path.write_text(
        "task: toy\nsuite: qa\n"
        "dataset:\n  local: {path: toy/source.jsonl, format: json}\n"
        "  split_files: {dev: toy/toy.dev.jsonl, test: toy/toy.test.jsonl}\n  hub: null\n"
        "fields: {question: q, answers: answers, topic: topic}\n"
        'prompt: {chat: true, template: "Q: {question}"}\n'
        f"split: {split}\ngeneration: {{max_new_tokens: 4}}\n{extra}"
        "metric_list:\n  - {metric: qa_accuracy, keys: [accuracy], higher_is_better: true}\n"
        "tuning: {objective: accuracy}\n"
    )
    return Task.from_yaml(path), data


@pytest.mark.parametrize("split", ["{seed: 3, dev: 2, test: 3}", "{seed: 3, dev: 2, test: 3, group_by: topic}"])
def test_split_files_round_trip_through_build(tmp_path, split):
    sys.path.insert(0, str(ROOT / "eval" / "data"))
    from build import write_splits

    task, data = _toy_task(tmp_path, split)
    from_source = {s: task.items(s, data) for s in ("dev", "test")}  # no split files yet: drawn by the seed
    out = tmp_path / "shipped"
    assert write_splits(task, data, out) == []
    lines = [json.loads(x) for x in (out / "toy" / "toy.test.jsonl").read_text().splitlines()]
    assert [x["source_row"] for x in lines] == [item["index"] for item in from_source["test"]]
    assert set(lines[0]) == {"q", "answers", "topic", "source_row"}  # the source columns, unchanged
    for s in ("dev", "test"):
        assert task.items(s, out) == from_source[s]  # read from the split files: the same items
    assert write_splits(task, data, out, check=True) == []
    # a split file that no longer matches the source is caught by --check
    (out / "toy" / "toy.test.jsonl").write_text("".join(json.dumps(x) + "\n" for x in reversed(lines)))
    assert write_splits(task, data, out, check=True) == [
        f"toy/test: {out / 'toy' / 'toy.test.jsonl'} differs from the split drawn from {data}"
    ]


def test_split_files_that_disagree_with_the_yaml_are_refused(tmp_path):
    sys.path.insert(0, str(ROOT / "eval" / "data"))
    from build import write_splits

    task, data = _toy_task(tmp_path)
    write_splits(task, data, data)
    test_file = data / "toy" / "toy.test.jsonl"
    lines = test_file.read_text().splitlines()
    test_file.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(ValueError, match=r"has 2 rows but `split.test` is 3"):
        task.items("test", data)
    rows = [json.loads(x) for x in lines]
    del rows[1]["source_row"]
    test_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ValueError, match=r"row 1 of .*toy.test.jsonl has `source_row` \(=None\)"):
        task.items("test", data)
    # only one of the two split files there: the source file is split by the seed instead
    (data / "toy" / "toy.dev.jsonl").unlink()
    assert [i["index"] for i in task.items("test", data)] == [r["source_row"] for r in [json.loads(x) for x in lines]]


def test_bad_split_files_entry_is_refused(tmp_path):
    good = (ROOT / "eval" / "tasks" / "nq_open.yaml").read_text()
    path = tmp_path / "bad.yaml"
    for bad in ("{dev: a.jsonl}", "{dev: a.jsonl, test: 3}", "[a.jsonl, b.jsonl]"):
        lines = [
            f"  split_files: {bad}" if line.startswith("  split_files:") else line for line in good.splitlines()
        ]
        path.write_text("\n".join(lines) + "\n")
        refusal = r"`dataset.split_files` \(=.*\) must be null or \{dev: PATH, test: PATH\}"
        with pytest.raises(ValueError, match=refusal):
            Task.from_yaml(path)


def test_tuning_score_prefers_coherence_under_the_diversity_floor():
    task = load_tasks()["loops_webtext"]
    human = {"diversity": 0.9}
    feasible_low = tuning_score(task, {"coherence": 0.5, "diversity": 0.85}, human)
    feasible_high = tuning_score(task, {"coherence": 0.6, "diversity": 0.82}, human)
    infeasible = tuning_score(task, {"coherence": 0.9, "diversity": 0.3}, human)
    assert feasible_high > feasible_low > infeasible
    qa = load_tasks()["truthfulqa"]
    assert tuning_score(qa, {"truthful_rate": 0.2}) > tuning_score(qa, {"truthful_rate": 0.1})


# -- eval/run.py end to end (the default model) ----------------------------------------------------


def _run(args, env_extra=None, launcher=None, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(env_extra or {})}
    cmd = (launcher or [sys.executable]) + [str(ROOT / "eval" / "run.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_list_decoders_and_bad_arguments():
    done = _run(["--list-decoders"])
    assert done.returncode == 0, done.stderr
    for name in DECODERS:
        assert name in done.stdout
    bad = _run(["--decoders", "greedy,nope"])
    assert bad.returncode == 2 and "Unknown decoder 'nope'" in bad.stderr
    bad = _run(["--limit", "0"])
    assert bad.returncode == 2 and "--limit" in bad.stderr
    bad = _run(["--data-dir", "/no/such/folder"])
    assert bad.returncode == 2 and "--data-dir" in bad.stderr
    bad = _run(["--device", "nonsense"])
    assert bad.returncode == 2 and "`--device` (='nonsense') is not a torch device" in bad.stderr
    bad = _run(["--dtype", "int8"])
    assert bad.returncode == 2 and "--dtype" in bad.stderr and "bfloat16" in bad.stderr


@pytest.mark.slow
def test_run_smoke_writes_results_with_provenance(tmp_path):
    out = tmp_path / "r.json"
    done = _run(
        [
            "--suite",
            "all",
            "--decoders",
            "greedy,icp",
            "--limit",
            "2",
            "--max-new-tokens",
            "6",
            "--bootstrap",
            "5",
            "--no-progress",
            "--out",
            str(out),
            "--tuned",
            str(tmp_path / "none.json"),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    tasks = {t.name: t for t in tasks_for_suite("all")}
    # Results keyed by task (two tasks of one suite never overwrite each other), each task's suite, version, n
    # and directions beside them.
    assert set(report["results"]) == set(tasks)
    assert {entry["suite"] for entry in report["tasks"].values()} == set(SUITES)
    for name, decoders in report["results"].items():
        assert set(decoders) == {"greedy", "icp"}
        assert report["n"][name] == report["tasks"][name]["n"] == 2
        assert report["tasks"][name]["suite"] == tasks[name].suite
        assert report["versions"][name] == tasks[name].version
        assert report["higher_is_better"][name] == tasks[name].higher_is_better()
        assert name in report["group_subtasks"][tasks[name].suite]
    assert "coherence" in report["results"]["loops_webtext"]["icp"]
    assert "loop_rate" in report["results"]["loops_webtext"]["icp"]
    assert "accuracy" in report["results"]["nq_open"]["greedy"]
    assert "auroc_icp_F" in report["results"]["nq_open"]["greedy"]
    assert "truthful_rate" in report["results"]["truthfulqa"]["icp"]
    for key in ("packages", "git_hash", "date", "config", "seeds"):
        assert key in report
    assert report["packages"]["torch"] == torch.__version__.split("+")[0] or report["packages"]["torch"].startswith(
        torch.__version__.split("+")[0]
    )
    assert out.with_suffix(".md").read_text().count("| icp |") == len(tasks)
    rows = [json.loads(line) for line in out.with_suffix(".examples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * len(tasks)
    assert out.with_suffix(".loops.png").is_file()


@pytest.mark.slow
def test_two_processes_give_the_same_generations_as_one(tmp_path):
    """accelerate launch --multi_gpu --num_processes 2 (torchrun; gloo on CPU): batches split between
    processes, gathered, identical to one process."""
    common = [
        "--suite",
        "qa",
        "--decoders",
        "sampling,icp",
        "--limit",
        "4",
        "--batch-size",
        "1",
        "--max-new-tokens",
        "5",
        "--bootstrap",
        "0",
        "--no-progress",
        "--no-plots",
        "--tuned",
        str(tmp_path / "none.json"),
        "--no-cache",
    ]
    threads = {"OMP_NUM_THREADS": "1"}  # the same kernels in both runs, so only the split differs
    one = _run([*common, "--out", str(tmp_path / "one.json")], env_extra=threads)
    assert one.returncode == 0, one.stderr[-3000:]
    launcher = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    two = _run([*common, "--out", str(tmp_path / "two.json")], env_extra=threads, launcher=launcher)
    assert two.returncode == 0, two.stderr[-3000:]

    def generations(name):
        lines = (tmp_path / name).with_suffix(".examples.jsonl").read_text().splitlines()
        return [(r["decoder"], r["id"], r["tokens"]) for r in map(json.loads, lines)]

    assert generations("one.json") == generations("two.json")
    assert json.loads((tmp_path / "two.json").read_text())["config"]["processes"] == 2
