"""eval/targets.py: the "make control win" target checks on synthetic results, each able to pass and to fail."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import targets  # noqa: E402


def _run(loops: dict, seed: int = 0, qa: dict | None = None) -> dict:
    """A results dict keyed by task: loops_webtext (suite loops) and, with `qa`, nq_open (suite qa)."""
    results = {"loops_webtext": {d: {"coherence": c, "rep_4": r, "loop_rate": lr} for d, (c, r, lr) in loops.items()}}
    tasks = {"loops_webtext": {"suite": "loops"}}
    if qa is not None:
        results["nq_open"], tasks["nq_open"] = qa, {"suite": "qa"}
    return {"results": results, "tasks": tasks, "seeds": [seed]}


def test_open_ended_target_needs_coherence_and_half_the_repetition_of_every_coherent_baseline():
    win = _run({"icp": (0.43, 0.1, 0.0), "dry": (0.435, 0.4, 0.0), "sampling": (0.30, 0.2, 0.0)})
    assert targets.check_open_ended([win], "loops_webtext") is True
    # sampling is less repetitive but far less coherent: it is not a peer, so it does not count.
    too_repetitive = _run({"icp": (0.43, 0.3, 0.0), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([too_repetitive], "loops_webtext") is False
    incoherent = _run({"icp": (0.41, 0.0, 0.0), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([incoherent], "loops_webtext") is False
    looping = _run({"icp": (0.44, 0.0, 0.02), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([looping], "loops_webtext") is False
    # An earlier ICP kept beside the current one is not a baseline to beat.
    earlier = _run({"icp": (0.43, 0.1, 0.0), "icp@old": (0.45, 0.0, 0.0), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([earlier], "loops_webtext") is True


def test_seed_means_average_each_decoder_over_the_seeds_it_has():
    runs = [
        _run({"icp": (0.40, 0.0, 0.0), "dry": (0.42, 0.4, 0.0), "greedy": (0.3, 50.0, 0.4)}),
        _run({"icp": (0.44, 0.0, 0.0), "dry": (0.42, 0.2, 0.0)}, seed=1),
    ]
    means = targets.seed_means(runs, "loops_webtext", "coherence")
    assert abs(means["icp"][0] - 0.42) < 1e-12 and abs(means["icp"][1] - 0.02) < 1e-12 and means["icp"][2] == 2
    assert means["greedy"][2] == 1
    assert targets.check_open_ended(runs, "loops_webtext") is True  # 0.42 >= 0.42 - 0.01, rep 0 <= 0.15


def test_qa_target_and_cli(tmp_path, capsys):
    qa = {
        "icp": {"accuracy": 0.30, "answered_accuracy": 0.35, "abstention_rate": 0.1, "n": 10},
        "greedy": {"accuracy": 0.30, "answered_accuracy": 0.30},
    }
    run = _run({"icp": (0.43, 0.1, 0.0), "dry": (0.435, 0.4, 0.0)}, qa=qa)
    assert targets.check_qa(run, "nq_open") is True
    qa["icp"]["answered_accuracy"] = 0.29
    assert targets.check_qa(run, "nq_open") is False
    path = tmp_path / "r.json"
    path.write_text(json.dumps(run))
    assert targets.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "loops_webtext MET" in out and "nq_open NOT MET" in out


def test_two_tasks_of_one_suite_are_checked_apart_and_old_files_still_read(tmp_path, capsys):
    run = _run({"icp": (0.43, 0.1, 0.0), "dry": (0.435, 0.4, 0.0)})
    # A second loops task on which ICP is incoherent: its verdict is its own.
    run["results"]["loops_other"] = {"icp": {"coherence": 0.2, "rep_4": 0.0, "loop_rate": 0.0},
                                     "dry": {"coherence": 0.5, "rep_4": 0.4, "loop_rate": 0.0}}  # fmt: skip
    run["tasks"]["loops_other"] = {"suite": "loops"}
    assert targets.check_open_ended([run], "loops_webtext") is True
    assert targets.check_open_ended([run], "loops_other") is False
    path = tmp_path / "two.json"
    path.write_text(json.dumps(run))
    assert targets.main([str(path)]) == 0
    assert "loops_webtext MET, loops_other NOT MET" in capsys.readouterr().out
    # The suite-keyed layout of the committed files: loops -> its single task, loops_webtext.
    old = {"results": {"loops": run["results"]["loops_webtext"]}, "seeds": [0],
           "config": {"tasks": {"loops_webtext": {"suite": "loops", "version": 1}}}}  # fmt: skip
    assert targets.seed_means([old], "loops_webtext", "coherence")["icp"] == (0.43, 0.0, 1)
    assert targets.check_open_ended([old], "loops_webtext") is True


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SystemExit, match="nope.json does not exist"):
        targets.main([str(tmp_path / "nope.json")])


def test_detection_target_measures_f_against_the_best_plain_signal_with_its_paired_interval(capsys):
    icp = {
        "auroc_icp_F": 0.70, "auroc_icp_U": 0.55, "auroc_mean_entropy": 0.60, "auroc_answer_length": 0.69,
        "auroc_diff_icp_F": 0.01, "auroc_diff_icp_U": -0.14, "best_plain": "answer_length",
        "selective_coverage": 0.9, "selective_icp_accuracy": 0.5, "selective_threshold_accuracy": 0.52,
        "selective_diff": -0.02,
    }  # fmt: skip
    intervals = {"auroc_diff_icp_F": [-0.05, 0.07], "selective_diff": [-0.06, 0.01]}
    run = {"results": {"nq_open": {"icp": icp}}, "intervals": {"nq_open": {"icp": intervals}},
           "tasks": {"nq_open": {"suite": "qa"}}}  # fmt: skip
    # 0.70 would clear mean entropy's 0.60 + 0.03, but not answer length's 0.69 + 0.03
    assert targets.check_detection(run) is False
    out = capsys.readouterr().out
    assert "best plain answer_length 0.690 (+0.03): NOT MET" in out
    assert "F - answer_length +0.010 (paired 95 % [-0.050, +0.070])" in out
    assert "difference -0.020 (paired 95 % [-0.060, +0.010])" in out
    # Files written before `best_plain` existed: the best of the plain AUROCs they have.
    del icp["best_plain"]
    icp["auroc_icp_F"] = 0.73
    assert targets.check_detection(run) is True
    assert "best plain answer_length 0.690" in capsys.readouterr().out
