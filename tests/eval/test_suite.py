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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))
sys.path.insert(0, str(ROOT / "tests"))

from bench.decoders import DECODERS, TUNING_BUDGET, get_decoder, parse_decoders  # noqa: E402
from bench.generation import batches, generate_batch  # noqa: E402
from bench.scoring import tuning_score  # noqa: E402
from bench.tasks import SUITES, Task, load_tasks, tasks_for_suite  # noqa: E402
from helpers import tiny_llama  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data not found at {DATA}")


# -- decoders --------------------------------------------------------------------------------------


def test_every_decoder_gets_the_same_tuning_budget_and_the_issue_names_exist():
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


# -- tasks -----------------------------------------------------------------------------------------


def test_tasks_load_and_cover_every_suite():
    tasks = load_tasks()
    assert {t.suite for t in tasks.values()} == set(SUITES)
    assert [t.name for t in tasks_for_suite("qa", tasks)] == ["nq_open"]
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


def test_missing_data_names_the_file(tmp_path):
    task = load_tasks()["loops_webtext"]
    with pytest.raises(FileNotFoundError, match="prompts_webtext_1000.jsonl"):
        task.items("test", tmp_path)


@needs_data
@pytest.mark.parametrize("name", sorted(load_tasks()))
def test_splits_are_fixed_disjoint_and_sized(name):
    task = load_tasks()[name]
    dev, test = task.items("dev", DATA), task.items("test", DATA)
    assert len(dev) == task.split["dev"] and len(test) == task.split["test"]
    assert not {d["index"] for d in dev} & {t["index"] for t in test}
    group = task.split.get("group_by")
    if group:  # dev and test never share a group (an article)
        assert not {d[group] for d in dev} & {t[group] for t in test}
    assert [t["index"] for t in task.items("test", DATA)] == [t["index"] for t in test]
    assert [t["index"] for t in task.items("test", DATA, limit=3)] == [t["index"] for t in test[:3]]
    for item in test[:5]:
        assert item["prompt_text"]
        if task.suite in ("qa", "grounded_qa"):
            assert isinstance(item["answers"], list) and item["answers"]
        if task.suite == "truthfulqa":
            assert len(item["correct_answers"]) >= 1 and len(item["incorrect_answers"]) >= 1


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


@pytest.mark.slow
@needs_data
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
            "--data-dir",
            str(DATA),
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
    assert set(report["results"]) == set(SUITES)
    for suite, decoders in report["results"].items():
        assert set(decoders) == {"greedy", "icp"}
        assert report["n"][suite] == 2
    assert "coherence" in report["results"]["loops"]["icp"] and "loop_rate" in report["results"]["loops"]["icp"]
    assert "accuracy" in report["results"]["qa"]["greedy"] and "auroc_icp_F" in report["results"]["qa"]["greedy"]
    assert "truthful_rate" in report["results"]["truthfulqa"]["icp"]
    for key in ("versions", "git_hash", "date", "config", "seeds"):
        assert key in report
    assert report["versions"]["torch"] == torch.__version__.split("+")[0] or report["versions"]["torch"].startswith(
        torch.__version__.split("+")[0]
    )
    assert out.with_suffix(".md").read_text().count("| icp |") == len(SUITES)
    rows = [json.loads(line) for line in out.with_suffix(".examples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * len(SUITES)
    assert out.with_suffix(".loops.png").is_file()


@pytest.mark.slow
@needs_data
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
        "--data-dir",
        str(DATA),
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
