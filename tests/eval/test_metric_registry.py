"""The task YAML decides what is scored: every `metric_list` entry is looked up in the metric registry
(`bench.scoring.METRICS`), unknown names fail with the task, the name and the allowed ones, and a metric a
task does not list is not scored."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

from bench.scoring import (  # noqa: E402
    METRICS,
    MetricBank,
    check_metric_list,
    higher_is_better,
    score_task,
)
from bench.tasks import Task, load_tasks  # noqa: E402

NQ_OPEN = ROOT / "eval" / "tasks" / "nq_open.yaml"


def _rows(texts, stops=None):
    stops = stops or ["eos"] * len(texts)
    return [
        {"text": t, "tokens": [1, 2] * len(t.split()), "n_tokens": 2 * len(t.split()), "reached_limit": False,
         "stop_reason": s, "icp_F": float(i), "icp_U": 0.0}
        for i, (t, s) in enumerate(zip(texts, stops))
    ]  # fmt: skip


# -- the registry covers the task files --------------------------------------------------------------


def test_every_task_yaml_names_registered_metrics_and_their_keys():
    tasks = load_tasks()
    assert tasks
    for task in tasks.values():
        for entry in task.metric_list:
            assert entry["metric"] in METRICS, (task.name, entry["metric"])
            assert set(entry["keys"]) <= set(METRICS[entry["metric"]].higher_is_better), (task.name, entry)


def test_every_registered_metric_module_exists_and_every_metric_is_used():
    used = {entry["metric"] for task in load_tasks().values() for entry in task.metric_list}
    assert used == set(METRICS)
    for name, metric in METRICS.items():
        if metric.module is not None:
            assert (ROOT / "eval" / "metrics" / metric.module / f"{metric.module}.py").is_file(), name


def test_directions_come_from_the_entry_else_the_registry():
    metric_list = [
        {"metric": "qa_accuracy", "keys": ["accuracy", "abstention_rate"]},
        {"metric": "qa_accuracy", "keys": ["exact_match"], "higher_is_better": False},
        {"metric": "generation_length", "keys": ["mean_tokens"]},
    ]
    assert higher_is_better("t", metric_list) == {"accuracy": True, "abstention_rate": False, "exact_match": False}
    assert "mean_tokens" not in load_tasks()["loops_webtext"].higher_is_better()


# -- unknown metrics and keys fail, naming the task, the name and the allowed ones --------------------


def test_an_unknown_metric_in_a_task_file_names_the_task_the_metric_and_the_allowed_ones(tmp_path):
    path = tmp_path / "nq.yaml"
    path.write_text(NQ_OPEN.read_text().replace("metric: selective_prediction", "metric: bleu"))
    with pytest.raises(ValueError) as error:
        Task.from_yaml(path)
    message = str(error.value)
    assert "'nq_open'" in message and "'bleu'" in message and str(path) in message
    for name in METRICS:
        assert name in message


def test_an_unknown_key_and_a_bad_direction_are_refused(tmp_path):
    path = tmp_path / "nq.yaml"
    path.write_text(NQ_OPEN.read_text().replace("keys: [auroc, prr]", "keys: [auroc, bleu]"))
    with pytest.raises(ValueError, match=r"'selective_prediction' has no key\(s\) \['bleu'\]; its keys: \['auroc'"):
        Task.from_yaml(path)
    with pytest.raises(ValueError, match="must be true or false"):
        check_metric_list("t", [{"metric": "qa_accuracy", "keys": ["accuracy"], "higher_is_better": "yes"}])
    with pytest.raises(ValueError, match="non-empty list"):
        check_metric_list("t", [{"metric": "qa_accuracy", "keys": []}])


def test_detection_needs_a_correctness_metric_before_it():
    with pytest.raises(ValueError, match=r"Task 't': metric 'selective_prediction' .* list one of"):
        check_metric_list("t", [{"metric": "selective_prediction", "keys": ["auroc"]}])


def test_score_task_refuses_an_unknown_metric_naming_the_task():
    task = SimpleNamespace(name="toy", metric_list=[{"metric": "rouge", "keys": ["rouge_l"]}])
    with pytest.raises(ValueError, match=r"Task 'toy': `metric_list` names metric 'rouge', .* allowed: "):
        score_task(task, _rows(["a"]), [{"answers": ["a"]}], MetricBank(), n_bootstrap=0)


# -- a metric the task does not list is not scored ---------------------------------------------------


def test_a_qa_task_without_selective_prediction_is_not_scored_on_detection():
    full = load_tasks()["nq_open"]
    accuracy_only = dataclasses.replace(full, metric_list=[e for e in full.metric_list if e["metric"] == "qa_accuracy"])
    items = [{"answers": [a]} for a in ("Paris", "Rome", "Oslo", "Bern")]
    texts = ["Paris", "Madrid", "Oslo", "Vienna"]
    with_detection, _ = score_task(full, _rows(texts), items, MetricBank(), n_bootstrap=5)
    without, ci = score_task(accuracy_only, _rows(texts), items, MetricBank(), n_bootstrap=5)
    assert "auroc_icp_F" in with_detection and "selective_diff" in with_detection
    assert not any(k.startswith(("auroc", "prr", "best_plain", "selective")) for k in [*without, *ci])
    assert without["accuracy"] == with_detection["accuracy"] == 0.5
    assert set(without) == {"n", "accuracy", "exact_match", "abstention_rate", "answered_accuracy",
                            "stopped_loop", "stopped_divergence"}  # fmt: skip


def test_an_open_ended_task_is_scored_on_the_metrics_it_lists_only():
    full = load_tasks()["loops_webtext"]
    repetition_only = dataclasses.replace(
        full, metric_list=[e for e in full.metric_list if e["metric"] == "repetition"]
    )
    texts = [f"the cat sat on the mat {i} the cat sat on the mat" for i in range(12)]
    items = [{"prompt_text": "A cat", "reference": "a dog ran"} for _ in texts]  # enough rows for MAUVE if listed
    values, ci = score_task(repetition_only, _rows(texts), items, MetricBank(), n_bootstrap=5)
    assert {"rep_2", "rep_4", "diversity", "distinct_3"} <= set(values)
    for absent in ("loop_rate", "coherence", "mauve", "mean_tokens"):
        assert absent not in values and absent not in ci
