"""The results JSON keyed by task (two tasks of one suite keep separate results): eval/run.py writes it,
every reader reads it, and the committed suite-keyed files convert."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import merge_results  # noqa: E402
import run  # noqa: E402
import targets  # noqa: E402
from bench.report import markdown_tables  # noqa: E402
from bench.results import direction, is_task_layout, load, suites, upgrade  # noqa: E402
from bench.tasks import SUITES, load_tasks  # noqa: E402

RESULTS = ROOT / "eval" / "results"
#: The committed results of eval/run.py and eval/merge_results.py (not best-of-n's, keyed by task already).
RUN_FILES = [p for p in sorted(RESULTS.glob("*.json")) + sorted(RESULTS.glob("head/*.json")) if "best_of" not in p.name]


def _two_qa_tasks():
    """nq_open and a second task of the same suite (`qa`), with its own version and metric directions."""
    first = load_tasks()["nq_open"]
    metric_list = [
        {"metric": "qa_accuracy", "keys": ["accuracy"], "higher_is_better": True},
        {"metric": "qa_accuracy", "keys": ["abstention_rate"], "higher_is_better": True},
    ]
    second = dataclasses.replace(first, name="nq_open_b", metadata={"version": 3}, metric_list=metric_list)
    return first, second


def _report_of_two_tasks(tmp_path=None):
    first, second = _two_qa_tasks()
    args = run.build_parser().parse_args(["--suite", "qa", "--decoders", "greedy,icp"])
    args.tasks, args.decoder_names = [first, second], ["greedy", "icp"]
    evaluation = run.Evaluation()
    for task, base, n in ((first, 0.1, 3), (second, 0.6, 2)):
        items = [{"prompt_text": f"{task.name} {i}?"} for i in range(n)]
        for k, decoder in enumerate(args.decoder_names):
            rows = [{"id": i, "text": "x", "correct": True} for i in range(n)]
            values = {"n": float(n), "accuracy": base + k / 10, "abstention_rate": 0.0, "auroc_icp_F": 0.7}
            ci = {"accuracy": [base, base + 0.2]}
            evaluation.add(task, decoder, items, rows, values, ci, {"k": k})
    return run.build_report(args, evaluation, argv=["--suite", "qa"]), evaluation


def test_two_tasks_of_one_suite_keep_separate_results():
    report, evaluation = _report_of_two_tasks()
    first, second = _two_qa_tasks()
    assert list(report["results"]) == ["nq_open", "nq_open_b"]
    assert report["results"]["nq_open"]["greedy"]["accuracy"] == pytest.approx(0.1)
    assert report["results"]["nq_open_b"]["greedy"]["accuracy"] == pytest.approx(0.6)
    assert report["results"]["nq_open_b"]["icp"]["accuracy"] == pytest.approx(0.7)
    assert report["intervals"]["nq_open_b"]["icp"]["accuracy"] == [0.6, 0.8]
    assert report["n"] == {"nq_open": 3, "nq_open_b": 2}
    assert report["versions"] == {"nq_open": first.version, "nq_open_b": 3}
    assert report["tasks"]["nq_open_b"] == {
        "suite": "qa",
        "version": 3,
        "n": 2,
        "max_new_tokens": second.max_new_tokens,
        "tuned_on": second.tuned_on,
    }
    assert report["group_subtasks"] == {"qa": ["nq_open", "nq_open_b"]}
    assert "torch" in report["packages"] and "tasks" not in report["config"]
    assert [e["task"] for e in evaluation.examples].count("nq_open_b") == 4
    assert is_task_layout(report) and upgrade(report) is report


def test_higher_is_better_is_the_task_yamls():
    report, _ = _report_of_two_tasks()
    first, second = _two_qa_tasks()
    assert report["higher_is_better"]["nq_open"] == first.higher_is_better()
    assert report["higher_is_better"]["nq_open"]["abstention_rate"] is False
    assert report["higher_is_better"]["nq_open_b"] == {"accuracy": True, "abstention_rate": True}
    # The tables take each task's own direction: ↓ for nq_open, ↑ for the second task.
    tables = markdown_tables(report)
    assert "### qa: nq_open (n = 3)" in tables and "### qa: nq_open_b (n = 2)" in tables
    first_table, second_table = tables.split("### qa: nq_open_b")
    assert "abstention_rate ↓" in first_table and "abstention_rate ↑" in second_table
    assert "| greedy | k=0 | 0.600 ± 0.100 |" in second_table
    assert direction(report, "nq_open", "auroc_icp_F") is True  # auroc_<signal> takes auroc's direction


def test_every_metric_key_of_every_task_yaml_has_a_direction_unless_it_only_describes():
    from bench.scoring import METRICS

    for task in load_tasks().values():
        directions = task.higher_is_better()
        assert directions and all(isinstance(v, bool) for v in directions.values()), task.name
        for entry in task.metric_list:
            for key in entry["keys"]:
                described_only = METRICS[entry["metric"]].higher_is_better[key] is None
                assert (key in directions) != described_only, (task.name, key)


def test_written_results_read_back_through_the_readers(tmp_path, capsys):
    report, evaluation = _report_of_two_tasks()
    out = tmp_path / "r.json"
    markdown = run.write_outputs(report, evaluation.examples, out, plots=False)
    assert markdown.count("| icp |") == 2
    back = load(out)
    assert back == json.loads(out.read_text()) and back["results"]["nq_open_b"]["icp"]["accuracy"] == pytest.approx(0.7)
    rows = [json.loads(line) for line in out.with_suffix(".examples.jsonl").read_text().splitlines()]
    assert {(r["suite"], r["task"]) for r in rows} == {("qa", "nq_open"), ("qa", "nq_open_b")}
    # targets: each task of the qa suite is checked on its own numbers.
    assert targets.check_qa(back, "nq_open") is False  # no answered_accuracy above greedy's
    assert targets.main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[nq_open] n = 3.0" in printed and "[nq_open_b] n = 2.0" in printed
    # merge: a later run of one task adds its rows to that task only.
    later = json.loads(json.dumps(report))
    for key in ("results", "intervals", "hyperparameters"):
        later[key] = {"nq_open_b": {"icp": report[key]["nq_open_b"]["icp"]}}
    merged = merge_results.merge(back, later, {"icp": "icp@old"})
    assert set(merged["results"]["nq_open_b"]) == {"greedy", "icp@old", "icp"}
    assert set(merged["results"]["nq_open"]) == {"greedy", "icp@old"}
    later["versions"]["nq_open_b"] = 4
    with pytest.raises(ValueError, match="version 4 in the later run, 3 in the full run"):
        merge_results.merge(back, later, {"icp": "icp@old"})


def _layout_is_task(path) -> bool:
    return is_task_layout(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "path", [p for p in RUN_FILES if _layout_is_task(p)], ids=lambda p: p.relative_to(RESULTS).as_posix()
)
def test_committed_task_layout_files_are_left_as_they_are(path):
    run = json.loads(path.read_text())
    upgraded = upgrade(run)
    assert upgraded["results"] == run["results"] and upgraded["intervals"] == run["intervals"]
    for task in run["results"]:
        assert upgraded["tasks"][task]["suite"] in SUITES and task in upgraded["versions"]


@pytest.mark.parametrize(
    "path", [p for p in RUN_FILES if not _layout_is_task(p)], ids=lambda p: p.relative_to(RESULTS).as_posix()
)
def test_committed_suite_layout_files_convert(path):
    old = json.loads(path.read_text())
    assert not is_task_layout(old)  # written before the change
    new = upgrade(old)
    assert old == json.loads(path.read_text())  # the input is not modified
    recorded = old["config"]["tasks"]
    for suite, decoders in old["results"].items():
        (task,) = [name for name, entry in recorded.items() if entry["suite"] == suite]
        assert new["results"][task] == decoders
        assert new["intervals"][task] == old["intervals"][suite]
        assert new["hyperparameters"][task] == old["hyperparameters"][suite]
        assert new["n"][task] == old["n"][suite] == new["tasks"][task]["n"]
        assert new["tasks"][task]["suite"] == suite and new["versions"][task] == recorded[task]["version"]
        assert new["higher_is_better"][task] == load_tasks()[task].higher_is_better()
    assert new["packages"] == old["versions"] and "torch" in new["packages"]
    assert suites(new) == new["group_subtasks"]
    # Every table of the old file is there, under its task.
    tables = markdown_tables(old)
    assert tables == markdown_tables(new)
    for suite in old["results"]:
        assert f"### {suite}: " in tables


def test_conversion_refuses_a_suite_with_several_tasks_and_falls_back_to_the_task_files():
    old = {
        "results": {"qa": {"greedy": {"accuracy": 0.5}}},
        "n": {"qa": 2},
        "config": {"tasks": {"a": {"suite": "qa", "version": 1}, "b": {"suite": "qa", "version": 1}}},
    }
    with pytest.raises(ValueError, match=r"suite 'qa' must map to exactly one task.*\['a', 'b'\]"):
        upgrade(old)
    del old["config"]
    new = upgrade(old)  # no config.tasks: this checkout's task files name the suite's task
    assert list(new["results"]) == ["nq_open"] and new["versions"] == {"nq_open": load_tasks()["nq_open"].version}
    with pytest.raises(ValueError, match="must be a results dict"):
        upgrade({"seeds": [0]})


def test_committed_targets_read_the_same_numbers_after_conversion(capsys):
    paths = [RESULTS / f"smollm2-135m-instruct{s}.json" for s in ("", ".loops_seed1", ".loops_seed2")]
    assert targets.main([str(p) for p in paths]) == 0
    out = capsys.readouterr().out
    assert "icp                  0.456 (± 0.009, 3)" in out
    assert "summary: loops_webtext MET, instruct_wikitext NOT MET, nq_open MET, halueval_qa NOT MET, detection NOT MET" in out


def test_run_py_loads_as_icp_eval_loads_it():
    """`icp eval` runs eval/run.py through importlib without registering it in sys.modules; everything the
    results are built with must work so (a dataclass there would not)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("icp_eval_run_test", ROOT / "eval" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    evaluation = module.Evaluation()
    task = load_tasks()["nq_open"]
    evaluation.add(task, "greedy", [{"prompt_text": "Q?"}], [{"id": 0, "text": "A"}], {"accuracy": 1.0}, {}, {})
    assert evaluation.results == {"nq_open": {"greedy": {"accuracy": 1.0}}}
    with pytest.raises(ValueError, match="`rows` has 0 generations for 1 `items` of task 'nq_open'"):
        evaluation.add(task, "icp", [{"prompt_text": "Q?"}], [], {}, {}, {})
