"""Calibration: the heat-capacity peak, the C(H) fit, the threshold rules, and calibrate() end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import save_tiny_model, tiny_llama, word_tokenizer
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from icp import RegimeThresholds
from icp.calibrate import (
    THRESHOLD_RULES,
    CalibrationResult,
    LogisticFit,
    calibrate,
    fit_coherence_curve,
    heat_capacity_curve,
    heat_capacity_peak,
    regime_thresholds_from_tokens,
)
from icp.cards import load_card, write_card
from icp.cli import EXIT_DATA, EXIT_OK, EXIT_USAGE, main
from icp.signals import varentropy

# Two-level system with gap Δ: C_v = x² eˣ / (1 + eˣ)², x = Δ/T, peaks where x·tanh(x/2) = 2.
X_PEAK = brentq(lambda x: x * math.tanh(x / 2) - 2.0, 1.0, 4.0)


def _word_tokenizer():
    return word_tokenizer(pad_token="w0")  # pad w0, no EOS: test_cli's folder has EOS w2 and no pad


# ----------------------------------------------------------------------------- heat capacity
@pytest.mark.parametrize("gap", [0.5, 1.0, 2.0, 5.0])
def test_two_level_heat_capacity_peaks_where_theory_says(gap):
    t_c, c_max = heat_capacity_peak(torch.tensor([0.0, -gap]))
    assert float(t_c) == pytest.approx(gap / X_PEAK, rel=0.01)
    x = X_PEAK
    assert float(c_max) == pytest.approx(x**2 * math.exp(x) / (1 + math.exp(x)) ** 2, rel=0.01)


def test_heat_capacity_is_batched_ignores_masks_and_matches_varentropy_at_t1():
    logits = torch.tensor([[0.0, -2.0, -math.inf], [0.0, -1.0, float("nan")], [1.0, 1.0, 1.0]])
    t_c, _ = heat_capacity_peak(logits)
    assert t_c.shape == (3,)
    assert float(t_c[0]) == pytest.approx(2.0 / X_PEAK, rel=0.01)
    assert float(t_c[1]) == pytest.approx(1.0 / X_PEAK, rel=0.01)
    assert math.isnan(float(t_c[2]))  # equal energies: no heat capacity at any T
    z = torch.randn(4, 100) * 3
    assert torch.allclose(heat_capacity_curve(z, [1.0])[:, 0], varentropy(z), atol=1e-4)
    # C_v(T) is the varentropy of the tempered logits.
    assert torch.allclose(heat_capacity_curve(z, [0.7])[:, 0], varentropy(z / 0.7), atol=1e-4)


def test_binned_heat_capacity_of_a_large_vocabulary_matches_the_exact_curve():
    z = torch.randn(8, 5000) * 2.5
    z[:, :3] += 10 + torch.randn(8, 3)
    z[0, 100:200] = -math.inf
    grid = torch.logspace(-1.3, 1.3, 48)
    exact, binned = heat_capacity_curve(z, grid, bins=None), heat_capacity_curve(z, grid, bins=1024)
    assert ((exact - binned).abs().amax(-1) / exact.amax(-1)).max() < 1e-3
    t_exact = grid[exact.argmax(-1)]
    assert torch.equal(t_exact, grid[binned.argmax(-1)])


def test_heat_capacity_rejects_bad_grids():
    with pytest.raises(ValueError, match="temperatures"):
        heat_capacity_curve(torch.zeros(3), [0.0, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        heat_capacity_peak(torch.zeros(3), [2.0, 1.0, 0.5])


# ----------------------------------------------------------------------------- the fit
@settings(max_examples=15)
@given(
    h0=st.floats(1.5, 5.0),
    w=st.floats(0.2, 0.8),
    a=st.floats(0.08, 0.3),
    seed=st.integers(0, 2**16),
)
def test_fit_finds_the_critical_point_of_a_noisy_sigmoid(h0, w, a, seed):
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.0, 8.0, 160)
    c = 0.82 - a / (1 + np.exp(-(h - h0) / w)) + rng.normal(0, 0.01, h.size)
    fit = fit_coherence_curve(h, c)
    assert fit.converged
    assert fit.critical_entropy == pytest.approx(h0, abs=0.15)
    assert fit.w == pytest.approx(w, abs=0.25)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_target_sits_on_the_coherent_side_where_the_slope_is_that_fraction_of_its_peak(fraction):
    fit = LogisticFit(c0=0.8, a=0.2, h0=4.0, w=0.5)
    h_star = fit.target_entropy(fraction)
    assert h_star < fit.critical_entropy
    assert float(fit.slope(h_star)) == pytest.approx(fraction * float(fit.slope(fit.h0)), rel=1e-6)
    with pytest.raises(ValueError, match="slope_fraction"):
        fit.target_entropy(1.0)


def test_fit_needs_enough_distinct_points():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_coherence_curve(np.ones(10), np.linspace(0, 1, 10))


def test_threshold_rules_read_the_documented_quantiles_and_are_ordered():
    rng = np.random.default_rng(0)
    h, u, c = rng.gamma(2.0, 1.0, 5000), rng.gamma(2.0, 0.3, 5000), rng.uniform(0.5, 1.0, 5000)
    out = regime_thresholds_from_tokens(h, u, c)
    assert out["exploratory_entropy"] == pytest.approx(np.quantile(h, 0.75), abs=1e-3)
    assert out["unstable_entropy"] == pytest.approx(np.quantile(h, 0.95), abs=1e-3)
    assert out["unstable_meta_uncertainty"] == pytest.approx(np.quantile(u, 0.95), abs=1e-3)
    rule = THRESHOLD_RULES["rigid_entropy"]
    assert out["rigid_entropy"] == pytest.approx(rule["scale"] * np.quantile(h, rule["quantile"]), abs=1e-3)
    RegimeThresholds(**out)  # ordered and valid


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_result() -> CalibrationResult:
    model = tiny_llama(vocab_size=64)
    model.name_or_path = "test-org/tiny-calibrated"
    return calibrate(
        model,
        _word_tokenizer(),
        prompts=["w5 w6 w7", "w9 w3"],
        temperatures=(0.5, 1.0, 2.0),
        max_new_tokens=8,
        n_bootstrap=5,
        progress=False,
    )


def test_calibrate_end_to_end_on_a_tiny_model(tiny_result, tmp_path):
    r = tiny_result
    assert [row["temperature"] for row in r.sweep] == [0.5, 1.0, 2.0]
    assert r.n_prompts == 2 and r.max_new_tokens == 8 and r.prompt_set == "custom"
    assert np.asarray(r.per_prompt["tempered_entropy"]).shape == (3, 2)
    assert 0 <= r.target_entropy <= r.critical_entropy
    assert r.reference_temperature in (0.5, 1.0, 2.0)
    RegimeThresholds(**r.regimes)
    heat = r.heat_capacity
    assert heat["probe_temperature"] == 1.0 and heat["n_steps"] == len(heat["peaks"]) > 0
    assert heat["q25"] <= heat["median"] <= heat["q75"]
    assert isinstance(heat["agrees"], bool) and "T_c" in heat["verdict"]
    # Tempered entropy grows with temperature on any model.
    assert r.sweep[0]["tempered_entropy"] < r.sweep[-1]["tempered_entropy"]
    # Round trip through JSON.
    again = CalibrationResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.to_dict() == json.loads(json.dumps(r.to_dict()))
    with pytest.raises(ValueError, match="Unknown CalibrationResult keys"):
        CalibrationResult.from_dict({**r.to_dict(), "bogus": 1})
    # And into a card that validates.
    path = write_card(r, folder=tmp_path)
    assert path == tmp_path / "tiny-calibrated" / "README.md"
    assert (path.parent / "c_of_h.png").stat().st_size > 10_000
    card = load_card(path)
    assert card.model_id == "test-org/tiny-calibrated"
    assert card.target_entropy == pytest.approx(r.target_entropy, abs=1e-4)


def test_calibrate_rejects_bad_arguments():
    model, tok = tiny_llama(), _word_tokenizer()
    with pytest.raises(ValueError, match="`temperatures`"):
        calibrate(model, tok, prompts=["w1", "w2"], temperatures=(0.5, 1.0), progress=False)
    with pytest.raises(ValueError, match="`prompts`"):
        calibrate(model, tok, prompts=["w1"], progress=False)
    with pytest.raises(ValueError, match="`max_new_tokens`"):
        calibrate(model, tok, prompts=["w1", "w2"], max_new_tokens=1, progress=False)


# ----------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-cal"), pad_token="w0")


def test_cli_calibrate_writes_a_card_and_prints_json(tiny_model_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("w5 w6\nw7 w8 w9\n")
    out_dir = tmp_path / "cards"
    code = main(
        [
            "calibrate",
            "--model",
            str(tiny_model_dir),
            "--model-id",
            "test-org/tiny-cli",
            "--out-dir",
            str(out_dir),
            "--prompts-file",
            str(prompts),
            "--temperatures",
            "0.5,1.0,2.0",
            "--max-new-tokens",
            "6",
            "--bootstrap",
            "3",
            "--json",
            "--quiet",
        ]
    )
    assert code == EXIT_OK
    payload = json.loads(capsys.readouterr().out)
    assert payload["card"] == str(out_dir / "tiny-cli" / "README.md")
    card = load_card(payload["card"])
    assert card.icp["calibration"]["prompt_set"] == str(prompts)  # the path as given: the card's command reruns it
    assert card.icp["calibration"]["n_prompts"] == 2
    assert payload["result"]["max_new_tokens"] == 6


def test_cli_calibrate_exit_codes(tiny_model_dir, tmp_path, capsys):
    base = ["calibrate", "--model", str(tiny_model_dir), "--out-dir", str(tmp_path), "--quiet"]
    assert main([*base, "--temperatures", "0.5,hot"]) == EXIT_USAGE
    assert "--temperatures" in capsys.readouterr().err
    assert main([*base, "--temperatures", "0.5,1.0"]) == EXIT_USAGE
    assert "temperatures" in capsys.readouterr().err
    assert main([*base, "--prompts-file", str(tmp_path / "missing.txt")]) == EXIT_DATA
    assert "--prompts-file" in capsys.readouterr().err
