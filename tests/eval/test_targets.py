"""eval/targets.py: the issue-4 target checks on synthetic results, each able to pass and to fail."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

import targets  # noqa: E402


def _run(loops: dict, seed: int = 0, qa: dict | None = None) -> dict:
    results = {"loops": {d: {"coherence": c, "rep_4": r, "loop_rate": lr} for d, (c, r, lr) in loops.items()}}
    if qa is not None:
        results["qa"] = qa
    return {"results": results, "seeds": [seed]}


def test_open_ended_target_needs_coherence_and_half_the_repetition_of_every_coherent_baseline():
    win = _run({"icp": (0.43, 0.1, 0.0), "dry": (0.435, 0.4, 0.0), "sampling": (0.30, 0.2, 0.0)})
    assert targets.check_open_ended([win], "loops") is True
    # sampling is less repetitive but far less coherent: it is not a peer, so it does not count.
    too_repetitive = _run({"icp": (0.43, 0.3, 0.0), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([too_repetitive], "loops") is False
    incoherent = _run({"icp": (0.41, 0.0, 0.0), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([incoherent], "loops") is False
    looping = _run({"icp": (0.44, 0.0, 0.02), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([looping], "loops") is False
    # An earlier ICP kept beside the current one is not a baseline to beat.
    earlier = _run({"icp": (0.43, 0.1, 0.0), "icp@old": (0.45, 0.0, 0.0), "dry": (0.435, 0.4, 0.0)})
    assert targets.check_open_ended([earlier], "loops") is True


def test_seed_means_average_each_decoder_over_the_seeds_it_has():
    runs = [
        _run({"icp": (0.40, 0.0, 0.0), "dry": (0.42, 0.4, 0.0), "greedy": (0.3, 50.0, 0.4)}),
        _run({"icp": (0.44, 0.0, 0.0), "dry": (0.42, 0.2, 0.0)}, seed=1),
    ]
    means = targets.seed_means(runs, "loops", "coherence")
    assert abs(means["icp"][0] - 0.42) < 1e-12 and abs(means["icp"][1] - 0.02) < 1e-12 and means["icp"][2] == 2
    assert means["greedy"][2] == 1
    assert targets.check_open_ended(runs, "loops") is True  # 0.42 >= 0.42 - 0.01, rep 0 <= 0.15


def test_qa_target_and_cli(tmp_path, capsys):
    qa = {
        "icp": {"accuracy": 0.30, "answered_accuracy": 0.35, "abstention_rate": 0.1, "n": 10},
        "greedy": {"accuracy": 0.30, "answered_accuracy": 0.30},
    }
    run = _run({"icp": (0.43, 0.1, 0.0), "dry": (0.435, 0.4, 0.0)}, qa=qa)
    assert targets.check_qa(run) is True
    qa["icp"]["answered_accuracy"] = 0.29
    assert targets.check_qa(run) is False
    path = tmp_path / "r.json"
    path.write_text(json.dumps(run))
    assert targets.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "loops MET" in out and "qa NOT MET" in out
