"""The ablation harness: ICP's variants are what they say, the law's measures and the paired table are right."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

EVAL = Path(__file__).resolve().parents[2] / "eval"
sys.path.insert(0, str(EVAL))
sys.path.insert(0, str(EVAL.parent / "tests"))

import ablation  # noqa: E402
from bench.ablations import ABLATIONS, CARD_TEMPERATURE  # noqa: E402
from bench.decoders import DECODERS, get_decoder, parse_decoders  # noqa: E402
from bench.generation import temperature_behaviour  # noqa: E402
from helpers import tiny_llama  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model():
    # conftest's `model` with EOS 2 (LlamaConfig's default, which this test's model always had): the same weights.
    return tiny_llama(eos_token_id=2)


def _plan(name, params, model):
    import warnings

    from icp.cards import ICPCardWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ICPCardWarning)
        return get_decoder(name).plan(params, model)


def test_variants_are_found_by_name_but_are_not_in_all():
    assert set(ABLATIONS).isdisjoint(DECODERS)
    assert not set(ABLATIONS) & set(parse_decoders("all"))
    for name in ABLATIONS:
        assert get_decoder(name) is ABLATIONS[name]
    with pytest.raises(KeyError, match="ablation variants"):
        get_decoder("icp_nonsense")


def test_each_variant_changes_exactly_its_part(tiny_model):
    full = _plan("icp", None, tiny_model).icp.config
    changed = {
        "icp_no_derepeat": {"derepeat_penalty": 0.0},
        "icp_no_min_p": {"min_p": 0.0},
        "icp_no_dissipation": {"heat_rate": 0.0, "cool_rate": 0.0},
        "icp_cold": {"gain": 0.0, "initial_temperature": 0.3},
        "icp_frozen": {"gain": 0.0, "heat_rate": 0.0, "cool_rate": 0.0, "leak": 0.0},
    }
    for name, fields in changed.items():
        config = _plan(name, None, tiny_model).icp.config
        for field, value in fields.items():
            assert getattr(config, field) == value, (name, field)
        # every other scalar field is the full ICP's
        for field, value in full.to_dict().items():
            if field not in fields and field != "initial_temperature" and not isinstance(value, dict):
                assert getattr(config, field) == value, (name, field)
    assert _plan("icp_frozen", None, tiny_model).icp.config.initial_temperature == CARD_TEMPERATURE
    assert _plan("icp_frozen", {"initial_temperature": 0.6}, tiny_model).icp.config.initial_temperature == 0.6
    assert _plan("icp_tracking", None, tiny_model).icp.config.tracking.rate == 0.05
    assert _plan("icp", None, tiny_model).stopping_criteria
    assert _plan("icp_no_stops", None, tiny_model).stopping_criteria == []
    abstain = _plan("icp_abstain", {"answer_free_energy_bound": 2.5}, tiny_model).icp.config
    assert abstain.divergence.answer_free_energy_bound == 2.5
    assert abstain.to_dict() == {**full.to_dict(), "divergence": abstain.divergence.to_dict()}
    assert {**abstain.divergence.to_dict(), "answer_free_energy_bound": None} == full.divergence.to_dict()


def test_frozen_variant_holds_t(tiny_model):
    plan = _plan("icp_frozen", {"initial_temperature": 0.6}, tiny_model)
    torch.manual_seed(0)
    tiny_model.generate(
        torch.tensor([[1, 2, 3, 4]]), max_new_tokens=12, logits_processor=plan.processors,
        stopping_criteria=plan.stopping_criteria, pad_token_id=0, **plan.kwargs,
    )  # fmt: skip
    temperature = plan.icp.trace.to_dict()["temperature"]
    assert np.allclose(temperature[np.isfinite(temperature)], 0.6, atol=1e-5)


def test_temperature_behaviour_on_known_paths():
    saw = np.array([[0.5, 1.5] * 4])
    out = temperature_behaviour(saw, 0.5, 1.5)
    assert out["T_lag1_autocorr"][0] == pytest.approx(-1.0)
    assert out["T_at_min"] == [0.5] and out["T_at_max"] == [0.5]
    assert out["T_mean_abs_step"] == [pytest.approx(1.0)]
    ramp = np.array([[0.5, 0.6, 0.7, 0.8, 0.9, np.nan, np.nan]])
    out = temperature_behaviour(ramp, 0.2, 1.5)
    assert out["T_lag1_autocorr"][0] == pytest.approx(1.0)
    assert out["T_at_min"] == [0.0] and out["T_mean_abs_step"] == [pytest.approx(0.1)]
    constant = np.full((1, 6), 0.891, dtype=np.float32)
    assert math.isnan(temperature_behaviour(constant, 0.2, 1.5)["T_lag1_autocorr"][0])
    empty = np.full((1, 3), np.nan)
    assert all(math.isnan(v[0]) for v in temperature_behaviour(empty, 0.2, 1.5).values())


def test_paired_difference_and_summary():
    out = ablation.paired_difference([1.0] * 8, [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], 500, 0)
    assert out["difference"] == pytest.approx(0.75) and out["low"] > 0.0 and out["high"] <= 1.0
    same = ablation.paired_difference([0.3, 0.5, 0.9], [0.3, 0.5, 0.9], 200, 0)
    assert same["difference"] == 0.0 and same["low"] == 0.0 == same["high"]
    measures = {
        "t": {
            "icp": [{"correct": [1.0, 0.0, 1.0, 0.0], "abstained": [0.0, 0.0, 0.0, 1.0]}] * 2,
            "better": [{"correct": [1.0, 1.0, 1.0, 1.0], "abstained": [0.0] * 4}] * 2,
        }
    }
    summary = ablation.summarise(measures, "icp", 200)
    assert summary["t"]["better"]["correct"]["vs_reference"]["difference"] == pytest.approx(0.5)
    assert "vs_reference" not in summary["t"]["icp"]["correct"]
    assert summary["t"]["icp"]["answered_accuracy"]["mean"] == pytest.approx(2 / 3)
    table = ablation.markdown(summary, "icp")
    assert "| better | 1.000 (+0.500" in table and "### t" in table


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--tasks", "nope"], "`--tasks` names 'nope'"),
        (["--variants", "icp,bogus"], "`--variants` names 'bogus'"),
        (["--variants", "icp,icp_cold@-1"], "(its initial_temperature) has to be > 0"),
        (["--variants", "greedy", "--reference", "icp"], "`--reference` (='icp')"),
        (["--seeds", "a,b"], "`--seeds` (='a,b')"),
    ],
)
def test_bad_arguments_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        ablation.check_args(ablation.build_parser(), ablation.build_parser().parse_args(argv))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_ablation_runs_end_to_end_on_the_default_model(tmp_path):
    out = tmp_path / "a.json"
    argv = [
        sys.executable, str(EVAL / "ablation.py"), "--tasks", "loops_webtext,knowledge_countries", "--variants",
        "icp,icp_frozen@mean,icp_no_stops,greedy", "--limit", "2", "--max-new-tokens", "4", "--seeds", "0,1",
        "--bootstrap", "20", "--no-cache", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    loops = report["summary"]["loops_webtext"]
    assert set(loops) == {"icp", "icp_frozen@mean", "icp_no_stops", "greedy"}
    assert len(loops["icp"]["coherence"]["seed_means"]) == 2 and len(loops["greedy"]["coherence"]["seed_means"]) == 1
    # the frozen variant runs at full ICP's own mean T on that task, and holds it
    own = loops["icp"]["icp_T"]["mean"]
    assert report["params"]["loops_webtext"]["icp_frozen@mean"]["initial_temperature"] == pytest.approx(own, abs=1e-3)
    assert loops["icp_frozen@mean"]["icp_T"]["mean"] == pytest.approx(own, abs=2e-3)
    assert "icp_T" not in loops["greedy"]  # an observer's T is not a law's
    assert "correct" in report["summary"]["knowledge_countries"]["icp"]
    assert out.with_suffix(".md").read_text().startswith("`python eval/ablation.py")
