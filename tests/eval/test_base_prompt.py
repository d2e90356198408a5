"""A chat task on a base model: the YAML's `prompt.base` form, `Task.for_tokenizer`, and generation that stops
at the base form's stop string (transformers' `stop_strings`), on a tiny random Llama."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))
sys.path.insert(0, str(ROOT / "tests"))

from bench.decoders import get_decoder  # noqa: E402
from bench.generation import generate_batch  # noqa: E402
from bench.tasks import TASK_DIR, Task, load_tasks  # noqa: E402
from helpers import CHAT_TEMPLATE, save_tiny_model, tiny_llama, word_tokenizer  # noqa: E402

KNOWLEDGE = TASK_DIR / "knowledge_countries.yaml"
BASE_LINE = next(line for line in KNOWLEDGE.read_text().splitlines() if line.startswith("  base:"))
MAX_NEW = 12


def _base_tokenizer():
    """`word_tokenizer` without a chat template (a base model's), that transformers' `stop_strings` can read:
    its StopStringCriteria learns how each token reads by decoding it after the probe word "abcdef", which a
    word-level vocabulary lacks, so the probe is added as a token (id 64: beyond the model's vocabulary, never
    generated)."""
    tokenizer = word_tokenizer(eos_token="w2", pad_token="w0")
    tokenizer.add_tokens(["abcdef"])
    return tokenizer


# -- the YAML's base form --------------------------------------------------------------------------


def test_the_chat_qa_tasks_have_a_base_form_and_keep_their_chat_form():
    tasks = load_tasks()
    with_base = sorted(name for name, task in tasks.items() if task.base_prompt is not None)
    assert with_base == ["halueval_qa", "knowledge_countries", "nq_open", "reading_qed", "truthfulqa"]
    knowledge = tasks["knowledge_countries"]
    assert knowledge.base_prompt == {
        "template": "Q: What is the chemical symbol of gold?\nA: Au\n\nQ: Who wrote Hamlet?\nA: William Shakespeare"
        "\n\nQ: {question}\nA:",
        "stop": "\n",
    }
    assert knowledge.chat and knowledge.stop is None  # as read: the chat form, no stop
    assert knowledge.template.startswith("Answer the question with a few words only")
    for task in tasks.values():
        if task.base_prompt is not None:
            assert task.chat and task.base_prompt["stop"] == "\n"
            assert task.base_prompt["template"].endswith("Q: {question}\nA:")


def test_the_knowledge_examples_are_not_about_a_country_of_the_test_split():
    task = load_tasks()["knowledge_countries"]
    examples = task.base_prompt["template"].split("Q: {question}")[0]
    countries = {item["country"] for item in task.items("test")} | {item["country"] for item in task.items("dev")}
    assert not [country for country in countries if country in examples]


@pytest.mark.parametrize(
    "base, wanted",
    [
        ('  base: {template: "", stop: "\\n"}', r"prompt\.base`\.template \(=''\) must be a non-empty string"),
        ('  base: {template: "Q: A:", stop: "\\n"}', r"template \(='Q: A:'\) .*at least one `\{field\}`"),
        ('  base: {template: "Q: {nope}\\nA:"}', r"template \(='Q: \{nope\}\\nA:'\).*fields among \["),
        ("  base: {template: 12}", r"template \(=12\) must be a non-empty string"),
        ('  base: {template: "Q: {question", stop: "\\n"}', r"template \(='Q: \{question'\)"),
        ('  base: {template: "Q: {question}\\nA:", stop: ""}', r"prompt\.base`\.stop \(=''\) must be a non-empty"),
        ('  base: {template: "Q: {question}\\nA:", stop: 5}', r"stop \(=5\) must be a non-empty string .* or absent"),
        ('  base: "Q: {question}\\nA:"', r"prompt\.base` \(='Q: \{question\}\\nA:'\) must be a mapping"),
        ('  base: {template: "Q: {question}", until: "\\n"}', r"prompt\.base` \(=.*'until'.*\) must be a mapping"),
        ("  base: {stop: x}", r"must be a mapping \{template: TEXT, stop: TEXT\}"),
    ],
)
def test_a_bad_base_form_is_refused_naming_the_file_key_and_value(tmp_path, base, wanted):
    path = tmp_path / "knowledge.yaml"
    path.write_text(KNOWLEDGE.read_text().replace(BASE_LINE, base))
    with pytest.raises(ValueError, match=wanted) as error:
        Task.from_yaml(path)
    assert str(path) in str(error.value)


def test_a_base_form_without_stop_and_on_a_plain_task(tmp_path):
    path = tmp_path / "knowledge.yaml"
    path.write_text(KNOWLEDGE.read_text().replace(BASE_LINE, '  base: {template: "Q: {question}\\nA:"}'))
    task = Task.from_yaml(path)
    assert task.base_prompt == {"template": "Q: {question}\nA:", "stop": None}
    assert task.for_tokenizer(word_tokenizer()).stop is None
    path.write_text(KNOWLEDGE.read_text().replace("chat: true", "chat: false"))
    with pytest.raises(ValueError, match=r"`prompt.base` is given for a task with `prompt.chat: false`"):
        Task.from_yaml(path)


# -- for_tokenizer ---------------------------------------------------------------------------------


def test_for_tokenizer_picks_the_form_the_model_can_run():
    tasks = load_tasks()
    task = tasks["knowledge_countries"]
    assert task.for_tokenizer(word_tokenizer(chat_template=CHAT_TEMPLATE)) is task  # an instruct model: chat
    base = task.for_tokenizer(word_tokenizer())  # a base model: no chat template
    assert (base.template, base.chat, base.stop) == (task.base_prompt["template"], False, "\n")
    assert (base.name, base.version, base.metric_list) == (task.name, task.version, task.metric_list)
    loops = tasks["loops_webtext"]
    assert loops.for_tokenizer(word_tokenizer()) is loops  # not a chat task: as it is
    bare = dataclasses.replace(task, base_prompt=None)
    with pytest.raises(ValueError, match=r"'knowledge_countries' .* no chat template.* no `prompt.base` form"):
        bare.for_tokenizer(word_tokenizer())
    with pytest.raises(ValueError, match="'instruct_wikitext'"):
        tasks["instruct_wikitext"].for_tokenizer(word_tokenizer())


def test_items_built_after_for_tokenizer_carry_the_base_prompt():
    task = load_tasks()["knowledge_countries"]
    chat_items = task.items("test", limit=3)
    base_items = task.for_tokenizer(word_tokenizer()).items("test", limit=3)
    assert [i["id"] for i in base_items] == [i["id"] for i in chat_items]
    for chat, base in zip(chat_items, base_items):
        assert chat["prompt_text"].startswith("Answer the question with a few words only")
        assert base["prompt_text"].startswith("Q: What is the chemical symbol of gold?\nA: Au\n\n")
        assert base["prompt_text"].endswith(f"\n\nQ: {base['question']}\nA:")


def test_run_py_runs_the_base_form_on_a_model_without_a_chat_template(tmp_path, monkeypatch, capsys):
    """eval/run.py swaps in the base forms once the model is loaded, and refuses a chat task without one."""
    import run

    folder = save_tiny_model(tmp_path / "tiny", eos_token_id=2, eos_token="w2", pad_token="w0")
    seen = {}

    def stop_after_loading(args, runner, bank):  # what _tune would tune: record the tasks, generate nothing
        seen["tasks"] = list(args.tasks)
        runner.observer.remove_hooks()

    monkeypatch.setattr(run, "_tune", stop_after_loading)
    common = ["--model", str(folder), "--decoders", "greedy", "--no-cache", "--tuned", str(tmp_path / "none.json")]
    assert run.main(["--suite", "knowledge", *common]) == 0
    [task] = seen["tasks"]
    assert (task.name, task.chat, task.stop) == ("knowledge_countries", False, "\n")
    assert task.template.startswith("Q: What is the chemical symbol of gold?")
    with pytest.raises(SystemExit) as exit_:
        run.main(["--suite", "instruct", *common])
    assert exit_.value.code == 2
    assert "'instruct_wikitext'" in capsys.readouterr().err


def test_the_cache_key_follows_the_prompt_form(tmp_path):
    import argparse

    from accelerate import PartialState
    from run import Runner

    args = argparse.Namespace(batch_size=2, seed=0, model=None, no_cache=False, cache_dir=str(tmp_path),
                              max_new_tokens=3, no_progress=True)  # fmt: skip
    runner = Runner(args, PartialState(cpu=True), tiny_llama(eos_token_id=2), word_tokenizer())
    task = load_tasks()["knowledge_countries"]
    base = task.for_tokenizer(word_tokenizer())
    items = [{"id": "a"}, {"id": "b"}]
    paths = {
        runner._cache_path(t, items, "greedy", None, 3)
        for t in (task, base, dataclasses.replace(base, stop="."), dataclasses.replace(base, chat=True))
    }
    runner.observer.remove_hooks()
    assert len(paths) == 4


# -- generation stops at the stop string -----------------------------------------------------------


@pytest.fixture(scope="module")
def greedy_run():
    """The tiny model, its base tokenizer, three prompts, and what greedy decoding generates from them with no
    stop string (every row runs to the limit: the model never samples its EOS in 12 steps)."""
    from icp import ICP

    model = tiny_llama(eos_token_id=2)
    tokenizer = _base_tokenizer()
    items = [{"id": i, "prompt_text": " ".join(f"w{3 + (7 * i + 5 * j) % 60}" for j in range(4))} for i in range(3)]
    observer = ICP(model, control=False)
    rows = _generate(model, tokenizer, items, None, observer)
    assert all(row["n_tokens"] == MAX_NEW and row["stop_reason"] == "length" for row in rows)
    yield model, tokenizer, items, observer, rows
    observer.remove_hooks()


def _generate(model, tokenizer, items, stop, observer):
    plan = get_decoder("greedy").plan(None, model)
    return generate_batch(
        model, tokenizer, items, chat=False, stop=stop, plan=plan, observer=observer, max_new_tokens=MAX_NEW,
        seed=0, want_logit_signals=True,
    )  # fmt: skip


@pytest.mark.parametrize("position", [3, 0])
def test_generation_stops_at_a_word_the_model_generates(greedy_run, position):
    """The stop word is the word greedy decoding put at `position` of the first row where that word is new (and
    is no substring of another word): that row's answer is the words before it (none at position 0), and every
    row that generated the word stops there."""
    model, tokenizer, items, observer, free = greedy_run
    words = [row["text"].split() for row in free]
    row_index = next(i for i, w in enumerate(words) if len(w[position]) == 3 and w[position] not in w[:position])
    stop = words[row_index][position]
    rows = _generate(model, tokenizer, items, stop, observer)
    trace = observer.trace
    assert rows[row_index]["tokens"] == free[row_index]["tokens"][:position]
    assert rows[row_index]["text"] == " ".join(words[row_index][:position])
    for i, (row, before) in enumerate(zip(rows, words)):
        assert stop not in row["text"].split()
        assert row["n_tokens"] == len(row["tokens"]) and row["tokens"] == free[i]["tokens"][: row["n_tokens"]]
        if stop not in before:  # never generated the word: as without a stop string
            assert (row["text"], row["n_tokens"], row["stop_reason"]) == (free[i]["text"], MAX_NEW, "length")
            continue
        cut = before.index(stop)
        assert row["n_tokens"] == cut < MAX_NEW
        assert row["text"] == " ".join(before[:cut])
        assert (row["stop_reason"], row["reached_limit"]) == ("eos", False)
        # the observer's signals cover the answer and the stop word's step, as they cover an EOS's
        assert row["icp_F"] == pytest.approx(float(np.nanmean(trace["free_energy"][i, : cut + 1])), rel=1e-5)
        assert math.isfinite(row["mean_loglik"])
    assert sum(row["n_tokens"] < MAX_NEW for row in rows) >= 1


def test_generate_stops_once_every_row_has_its_stop_string(greedy_run):
    """A batch whose rows all reach the stop word ends there: generate() itself stopped (`stop_strings`)."""
    model, tokenizer, items, observer, free = greedy_run
    words = free[0]["text"].split()
    stop = words[3]
    assert len(stop) == 3 and stop not in words[:3]
    [row] = _generate(model, tokenizer, items[:1], stop, observer)
    assert observer.trace.steps == 4 < MAX_NEW  # three words and the stop word's step: generation ended there
    assert (row["text"], row["n_tokens"], row["stop_reason"]) == (" ".join(words[:3]), 3, "eos")


def test_runner_passes_the_tasks_stop_string(greedy_run):
    """eval/run.py's Runner generates a base-form task with its stop string, as generate_batch does."""
    import argparse

    from accelerate import PartialState
    from run import Runner

    model, tokenizer, items, observer, free = greedy_run
    stop = free[0]["text"].split()[3]
    task = dataclasses.replace(load_tasks()["knowledge_countries"].for_tokenizer(tokenizer), stop=stop)
    args = argparse.Namespace(batch_size=2, seed=0, model=None, no_cache=True, cache_dir=None,
                              max_new_tokens=MAX_NEW, no_progress=True)  # fmt: skip
    runner = Runner(args, PartialState(cpu=True), model, tokenizer)
    rows = runner.generate(task, items, "greedy", None, "base")
    runner.observer.remove_hooks()
    direct = _generate(model, tokenizer, items, stop, observer)
    assert [(r["text"], r["tokens"]) for r in rows] == [(r["text"], r["tokens"]) for r in direct]
    assert rows[0]["n_tokens"] == 3


def test_a_stop_string_inside_the_last_token_keeps_that_token_and_is_no_length_stop(greedy_run):
    """A stop string that ends inside a word ("9" of "w49") keeps the word's start ("w4") in the answer, and
    the word's token with it; a row that stopped so on its very last step did not reach the limit."""
    model, tokenizer, items, observer, free = greedy_run
    i, position, stop = next(
        (i, p, word[-k:])
        for i, row in enumerate(free)
        for p, word in enumerate(row["text"].split())
        for k in (1, 2)
        if " ".join(row["text"].split()[: p + 1]).find(word[-k:]) == len(" ".join(row["text"].split()[: p + 1])) - k
    )
    plan = get_decoder("greedy").plan(None, model)
    row = generate_batch(
        model, tokenizer, items, chat=False, stop=stop, plan=plan, observer=observer, max_new_tokens=position + 1,
        seed=0, want_logit_signals=True,
    )[i]  # fmt: skip
    text = " ".join(free[i]["text"].split()[: position + 1])
    assert (row["text"], row["tokens"]) == (text[: -len(stop)].strip(), free[i]["tokens"][: position + 1])
    assert (row["n_tokens"], row["reached_limit"], row["stop_reason"]) == (position + 1, False, "eos")


def test_best_of_n_candidates_stop_at_the_stop_string(greedy_run, monkeypatch):
    """eval/best_of_n.py's candidates (ICP sampling, n per prompt) stop at the task's stop string too, and a
    candidate the stop string ended stopped on "eos" in ICP's trace (not on what ICP saw after it)."""
    import best_of_n

    model, tokenizer, items, _, _ = greedy_run
    calls = []
    generate = model.generate

    def spy(*args, **kwargs):
        calls.append({k: kwargs.get(k) for k in ("stop_strings", "tokenizer")})
        return generate(*args, **kwargs)

    monkeypatch.setattr(model, "generate", spy)
    base = load_tasks()["knowledge_countries"].for_tokenizer(tokenizer)
    free, _ = best_of_n.candidates(
        model, tokenizer, dataclasses.replace(base, stop=None), items, None, 2, 0, 3, MAX_NEW
    )
    words = [row["text"].split() for rows in free for row in rows]
    stop = next(w[2] for w in words if len(w) > 2 and len(w[2]) == 3 and w[2] not in w[:2])
    stopped, choice = best_of_n.candidates(
        model, tokenizer, dataclasses.replace(base, stop=stop), items, None, 2, 0, 3, MAX_NEW
    )
    assert all(0 <= c < 2 for c in choice)
    assert calls[0] == {"stop_strings": None, "tokenizer": None}
    assert calls[-1] == {"stop_strings": [stop], "tokenizer": tokenizer}
    rows = [row for rows in stopped for row in rows]
    for row, before in zip(rows, words):
        assert stop not in row["text"].split()
        if stop in before:
            cut = before.index(stop)
            assert (row["text"], row["n_tokens"]) == (" ".join(before[:cut]), cut)
            assert row["stop_reason"] == "eos" and not row["reached_limit"] and math.isfinite(row["icp_F"])
    assert any(stop in before for before in words)
