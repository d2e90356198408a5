"""Tests of the log-temperature controller, the regime classifier and the config validation.

The controller is exercised in a synthetic decode loop: per row, logits z_t are drawn each step, the
controller's T = exp(x) is applied (`temper_and_truncate`, min_p = 0), and the entropy/varentropy of
the tempered distribution Q feed the next update, exactly as the processor wires it.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from icp.config import DivergenceConfig, ICPConfig, LoopConfig, RegimeThresholds
from icp.controller import LogTemperatureController
from icp.regimes import EXPLORATORY, REASONING, REGIMES, RIGID, UNSTABLE, classify_regime
from icp.signals import distribution_signals, temper_and_truncate

CPU = torch.device("cpu")
B, V = 16, 200


def make_controller(
    target=2.0, gain=0.3, t_min=0.05, t_max=10.0, t0=1.0, leak=0.0, heat=0.0, cool=0.0, kappa=1.0
) -> LogTemperatureController:
    return LogTemperatureController(target, gain, t_min, t_max, t0, leak, heat, cool, sensitivity_floor=kappa)


def row_scales(batch: int = B) -> torch.Tensor:
    """Per-row logit scales, so that the rows' natural (T = 1) entropies differ widely."""
    return torch.linspace(0.5, 4.0, batch)


def scripted_logits(steps: int, noise: float, batch: int = B, vocab: int = V, seed: int = 0) -> torch.Tensor:
    """(steps, batch, vocab): a fixed random context per row plus fresh per-step noise, row-scaled."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, vocab, generator=g)
    noise_t = torch.randn(steps, batch, vocab, generator=g)
    return (base + noise * noise_t) * row_scales(batch)[None, :, None]


def decode_loop(ctl: LogTemperatureController, logits: torch.Tensor):
    """Runs the fake decode loop; returns (H_Q per step, x before each step, final x)."""
    steps, batch, _ = logits.shape
    x = ctl.initial_state(batch, CPU)
    hs, xs = [], []
    for t in range(steps):
        xs.append(x)
        logq = temper_and_truncate(logits[t], x.exp(), 0.0)
        s = distribution_signals(logq)
        hs.append(s.entropy)
        x = ctl.update(x, sampled_entropy=s.entropy, sampled_varentropy=s.varentropy)
        assert x.shape == (batch,) and x.dtype == torch.float32
    xs.append(x)
    return torch.stack(hs), torch.stack(xs), x


# ----------------------------------------------------------------------------------------------
# LogTemperatureController
# ----------------------------------------------------------------------------------------------


def test_rows_start_with_different_natural_entropies():
    # precondition of the tracking test: the controller has real work to do, row by row
    h_natural = distribution_signals(scripted_logits(1, 0.0)[0]).entropy
    assert h_natural.max() - h_natural.min() > 3.0
    assert ((h_natural - 2.0).abs() > 0.5).sum() >= B // 2


@pytest.mark.parametrize("target", [1.3, 2.0, 3.0, 4.0])
def test_controller_tracks_a_reachable_target_on_every_row(target):
    ctl = make_controller(target=target)
    hs, xs, _ = decode_loop(ctl, scripted_logits(200, noise=0.02))
    err = (hs[-50:] - target).abs().mean(0)  # per row
    assert (err < 0.15).all(), err
    # it had to move: the final temperatures differ across rows and from T0 = 1
    assert xs[-1].max() - xs[-1].min() > 1.0
    assert (xs[-1].abs() > 0.05).sum() >= B // 2
    assert ((xs >= math.log(0.05) - 1e-6) & (xs <= math.log(10.0) + 1e-6)).all()


def test_controller_is_unbiased_under_per_step_noise():
    # fresh noise every step makes each H_Q fluctuate; the controller still centres it on H*
    target = 2.0
    hs, _, _ = decode_loop(make_controller(target=target), scripted_logits(200, noise=0.1, seed=3))
    assert ((hs[-100:].mean(0) - target).abs() < 0.1).all()


def test_controller_moves_in_the_right_direction():
    ctl = make_controller(target=1.0, gain=0.5, t_min=0.25, t_max=4.0)
    x = ctl.initial_state(3, CPU)
    new = ctl.update(x, torch.tensor([2.0, 0.0, 1.0]), torch.ones(3))
    # too hot -> cooler, too cold -> hotter, on target -> unchanged; step = gain * V/(1+V) * error
    torch.testing.assert_close(new, torch.tensor([-0.25, 0.25, 0.0]))


def test_near_deterministic_step_leaves_temperature_alone():
    ctl = make_controller(target=2.0, gain=0.5)
    x = ctl.initial_state(2, CPU)
    new = ctl.update(x, torch.tensor([0.0, 0.0]), torch.tensor([0.0, 1e-6]))
    assert new[0].item() == 0.0
    assert 0 < new[1].item() < 1e-5


@pytest.mark.parametrize("gain", [0.3, 5.0, 100.0])
def test_unreachable_low_target_sits_at_lower_bound(gain):
    t_min, t_max = 0.5, 2.0
    ctl = make_controller(target=0.01, gain=gain, t_min=t_min, t_max=t_max)
    hs, xs, x = decode_loop(ctl, scripted_logits(200, noise=0.05))
    assert torch.isfinite(xs).all()
    assert (xs >= math.log(t_min) - 1e-6).all() and (xs <= math.log(t_max) + 1e-6).all()
    torch.testing.assert_close(xs[-50:], torch.full((50, B), math.log(t_min)), atol=1e-6, rtol=0)
    assert (hs[-1] > 0.01).all()  # truly unreachable within the clamp


def test_too_flat_logits_need_a_temperature_below_the_clamp():
    # logits so flat that even T_min leaves H_Q far above the target: x rests on log T_min
    t_min = 0.5
    logits = 0.5 * torch.randn(200, B, V)
    ctl = make_controller(target=2.0, gain=0.3, t_min=t_min, t_max=2.0)
    hs, xs, x = decode_loop(ctl, logits)
    assert (hs[-50:] > 3.0).all()
    torch.testing.assert_close(x, torch.full((B,), math.log(t_min)), atol=1e-6, rtol=0)
    assert (xs >= math.log(t_min) - 1e-6).all()


def test_unreachable_high_target_sits_at_upper_bound():
    t_max = 1.2
    ctl = make_controller(target=math.log(V) - 0.01, gain=1.0, t_min=0.2, t_max=t_max)
    _, xs, x = decode_loop(ctl, scripted_logits(150, noise=0.05))
    torch.testing.assert_close(x, torch.full((B,), math.log(t_max)), atol=1e-6, rtol=0)
    assert (xs <= math.log(t_max) + 1e-6).all()


def test_update_clips_whatever_the_inputs():
    ctl = make_controller(target=1.0, gain=1e6, t_min=0.2, t_max=1.5)
    x = ctl.initial_state(4, CPU)
    for h in (torch.tensor([1e6, -1e6, 0.0, 50.0]), torch.tensor([-1e6, 1e6, 1e3, -50.0])):
        x = ctl.update(x, h, torch.full((4,), 1e6))
        assert torch.isfinite(x).all()
        assert (x >= math.log(0.2) - 1e-6).all() and (x <= math.log(1.5) + 1e-6).all()


def test_zero_gain_nothing_moves():
    ctl = make_controller(target=0.5, gain=0.0, leak=0.02, t0=0.8, t_min=0.2, t_max=1.5)
    _, xs, _ = decode_loop(ctl, scripted_logits(50, noise=0.3))
    assert torch.equal(xs, torch.full_like(xs, math.log(0.8)))


def test_leak_pulls_back_geometrically_toward_initial_temperature():
    ctl = make_controller(target=1.0, gain=0.3, leak=0.1, t0=1.0, t_min=0.1, t_max=10.0)
    x = torch.tensor([1.0, -1.0])
    for n in range(1, 11):
        # V = 0: no feedback, only the leak acts
        x = ctl.update(x, torch.tensor([5.0, 5.0]), torch.zeros(2))
        torch.testing.assert_close(x, torch.tensor([1.0, -1.0]) * 0.9**n)


def test_rows_evolve_independently():
    logits = scripted_logits(120, noise=0.05)
    ctl = make_controller(target=2.0)
    _, xs_a, _ = decode_loop(ctl, logits)
    changed = logits.clone()
    changed[:, 5] = changed[:, 5] * 3.0 + 1.0
    changed[:, 11] = 0.0  # flat row
    _, xs_b, _ = decode_loop(ctl, changed)
    others = [r for r in range(B) if r not in (5, 11)]
    assert torch.equal(xs_a[:, others], xs_b[:, others])
    assert not torch.equal(xs_a[:, 5], xs_b[:, 5])
    assert not torch.equal(xs_a[:, 11], xs_b[:, 11])
    # and a single-row run reproduces the batched trajectory of that row
    _, xs_single, _ = decode_loop(ctl, logits[:, 7:8])
    torch.testing.assert_close(xs_single[:, 0], xs_a[:, 7], atol=1e-6, rtol=0)


def test_initial_state():
    ctl = make_controller(t0=0.7, t_min=0.2, t_max=1.5)
    x = ctl.initial_state(5, CPU)
    assert x.shape == (5,) and x.dtype == torch.float32 and x.device == CPU
    torch.testing.assert_close(x.exp(), torch.full((5,), 0.7))


def test_dissipate_heats_rigid_cools_unstable_leaves_others_and_clips():
    t_min, t_max = 0.5, 1.2
    ctl = make_controller(t_min=t_min, t_max=t_max, heat=0.15, cool=0.2)
    lo, hi = math.log(t_min), math.log(t_max)
    x = torch.tensor([0.0, 0.0, 0.0, hi - 0.01, lo + 0.01, 0.05])
    rigid = torch.tensor([True, False, False, True, False, False])
    unstable = torch.tensor([False, True, False, False, True, False])
    out = ctl.dissipate(x, rigid, unstable)
    torch.testing.assert_close(out, torch.tensor([0.15, -0.2, 0.0, hi, lo, 0.05]))
    assert torch.equal(x, torch.tensor([0.0, 0.0, 0.0, hi - 0.01, lo + 0.01, 0.05]))  # input untouched
    assert out.dtype == torch.float32
    # an x already outside the bounds is clipped even on a row with no regime
    none = torch.zeros(2, dtype=torch.bool)
    far = ctl.dissipate(torch.tensor([5.0, -5.0]), none, none)
    torch.testing.assert_close(far, torch.tensor([hi, lo]))


def test_dissipate_with_zero_rates_only_clips():
    ctl = make_controller(t_min=0.5, t_max=2.0)
    x = torch.tensor([0.1, -0.1])
    out = ctl.dissipate(x, torch.tensor([True, False]), torch.tensor([False, True]))
    assert torch.equal(out, x)


# ----------------------------------------------------------------------------------------------
# classify_regime
# ----------------------------------------------------------------------------------------------


# Explicit boundaries, so that these tests do not move when the calibrated defaults do.
FIXED_THRESHOLDS = RegimeThresholds(
    rigid_entropy=0.5,
    rigid_repetition=0.5,
    exploratory_entropy=2.0,
    unstable_entropy=4.0,
    unstable_meta_uncertainty=2.0,
    coherent=0.75,
)


def classify(h, c, u, r, thresholds=None):
    n = len(h)
    return classify_regime(
        torch.tensor(h, dtype=torch.float32),
        torch.tensor(c, dtype=torch.float32),
        torch.tensor(u if u is not None else [0.0] * n, dtype=torch.float32),
        torch.tensor(r if r is not None else [0.0] * n, dtype=torch.float32),
        thresholds or FIXED_THRESHOLDS,
    ).tolist()


def ref_regime(h: float, c: float, u: float, r: float, t: RegimeThresholds) -> int:
    """The rules of RegimeThresholds' docstring, in its order of precedence."""
    if (h >= t.unstable_entropy or u >= t.unstable_meta_uncertainty) and c < t.coherent:
        return UNSTABLE
    if h < t.rigid_entropy and r >= t.rigid_repetition:
        return RIGID
    if h >= t.exploratory_entropy and c >= t.coherent:
        return EXPLORATORY
    return REASONING


def test_one_case_per_regime():
    codes = classify(
        h=[0.1, 1.0, 3.0, 5.0, 1.0],
        c=[0.9, 0.9, 0.9, 0.3, 0.3],
        u=[0.0, 0.0, 0.0, 0.0, 3.0],
        r=[0.9, 0.0, 0.0, 0.0, 0.0],
    )
    assert [REGIMES[i] for i in codes] == ["rigid", "reasoning", "exploratory", "unstable", "unstable"]
    assert (RIGID, REASONING, EXPLORATORY, UNSTABLE) == (0, 1, 2, 3)


def test_regime_precedence_and_near_misses():
    codes = classify(
        # rigid+unstable, high-H coherent, low-C calm, low-H no repetition, rigid & low C,
        # exploratory entropy but incoherent (and below the unstable bounds)
        h=[0.1, 5.0, 1.0, 0.1, 0.1, 3.0],
        c=[0.3, 0.9, 0.1, 0.9, 0.1, 0.3],
        u=[3.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        r=[0.9, 0.0, 0.0, 0.1, 1.0, 0.0],
    )
    assert codes == [UNSTABLE, EXPLORATORY, REASONING, REASONING, RIGID, REASONING]


def test_boundaries_follow_documented_inequalities():
    t = FIXED_THRESHOLDS
    codes = classify(
        h=[t.exploratory_entropy, t.rigid_entropy, t.unstable_entropy, 0.0, 1.0],
        c=[t.coherent, 0.9, t.coherent - 1e-3, 0.9, t.coherent - 1e-3],
        u=[0.0, 0.0, 0.0, 0.0, t.unstable_meta_uncertainty],
        r=[0.0, 1.0, 0.0, t.rigid_repetition, 0.0],
    )
    assert codes == [EXPLORATORY, REASONING, UNSTABLE, RIGID, UNSTABLE]


def test_thresholds_from_config_are_used():
    h, c, u, r = [1.0], [0.9], [0.0], [0.0]
    assert classify(h, c, u, r) == [REASONING]
    assert classify(h, c, u, r, RegimeThresholds(exploratory_entropy=0.8)) == [EXPLORATORY]
    strict = RegimeThresholds(coherent=0.95, unstable_entropy=0.9, exploratory_entropy=0.9)
    assert classify(h, c, u, r, strict) == [UNSTABLE]
    assert classify([0.3], [0.9], [0.0], [0.4]) == [REASONING]
    assert classify([0.3], [0.9], [0.0], [0.4], RegimeThresholds(rigid_repetition=0.3)) == [RIGID]
    lower = RegimeThresholds(rigid_repetition=0.3, rigid_entropy=0.2)
    assert classify([0.3], [0.9], [0.0], [0.4], lower) == [REASONING]
    assert classify([1.0], [0.3], [1.0], [0.0]) == [REASONING]
    assert classify([1.0], [0.3], [1.0], [0.0], RegimeThresholds(unstable_meta_uncertainty=0.5)) == [UNSTABLE]


@given(
    st.lists(st.tuples(st.floats(0, 5), st.floats(0, 1), st.floats(0, 4), st.floats(0, 2)), min_size=1, max_size=20),
    st.tuples(st.floats(0, 4), st.floats(0, 4), st.floats(0, 4)).map(sorted),
    st.floats(0.05, 2.0),
    st.floats(0.05, 3.0),
    st.floats(0.0, 1.0),
)
def test_classify_matches_rules_row_by_row(rows, entropies, rep, mu, coherent):
    t = RegimeThresholds(
        rigid_entropy=entropies[0],
        exploratory_entropy=entropies[1],
        unstable_entropy=entropies[2],
        rigid_repetition=rep,
        unstable_meta_uncertainty=mu,
        coherent=coherent,
    )
    h, c, u, r = (list(col) for col in zip(*rows))
    # compare in float32, as the classifier sees them
    f32 = [torch.tensor(col, dtype=torch.float32).tolist() for col in (h, c, u, r)]
    thr = RegimeThresholds(**{k: torch.tensor(v, dtype=torch.float32).item() for k, v in t.to_dict().items()})
    expect = [ref_regime(*vals, thr) for vals in zip(*f32)]
    assert classify(*f32, thr) == expect


def test_output_dtype_and_device():
    h = torch.tensor([0.1, 1.0, 3.0, 5.0], dtype=torch.float64)
    c = torch.tensor([0.9, 0.9, 0.9, 0.3], dtype=torch.float16)
    codes = classify_regime(h, c, torch.zeros(4), torch.tensor([0.9, 0.0, 0.0, 0.0]), FIXED_THRESHOLDS)
    assert codes.dtype == torch.long and codes.shape == (4,)
    assert codes.tolist() == [RIGID, REASONING, EXPLORATORY, UNSTABLE]
    meta = classify_regime(*(torch.zeros(3, device="meta") for _ in range(4)), RegimeThresholds())
    assert meta.device.type == "meta" and meta.dtype == torch.long


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_output_stays_on_cuda():
    dev = torch.device("cuda")
    codes = classify_regime(
        torch.tensor([0.1, 5.0], device=dev),
        torch.tensor([0.9, 0.3], device=dev),
        torch.zeros(2, device=dev),
        torch.tensor([0.9, 0.0], device=dev),
        RegimeThresholds(),
    )
    assert codes.device.type == "cuda" and codes.dtype == torch.long
    assert codes.cpu().tolist() == [RIGID, UNSTABLE]


# ----------------------------------------------------------------------------------------------
# config validation
# ----------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")

ICP_BAD = [
    ({"gain": -1.0}, "gain", -1.0),
    ({"gain": NAN}, "gain", NAN),
    ({"gain": True}, "gain", True),
    ({"gain": "0.3"}, "gain", "0.3"),
    ({"min_temperature": 0.0}, "min_temperature", 0.0),
    ({"min_temperature": -0.1}, "min_temperature", -0.1),
    ({"max_temperature": 0.0}, "max_temperature", 0.0),
    ({"max_temperature": INF}, "max_temperature", INF),
    ({"initial_temperature": -1.0}, "initial_temperature", -1.0),
    ({"min_temperature": 2.0, "max_temperature": 1.0}, "min_temperature", 2.0),
    ({"initial_temperature": 3.0}, "initial_temperature", 3.0),
    ({"initial_temperature": 0.05}, "initial_temperature", 0.05),
    ({"target_entropy": -0.1}, "target_entropy", -0.1),
    ({"target_entropy": INF}, "target_entropy", INF),
    ({"gamma": NAN}, "gamma", NAN),
    ({"gamma": INF}, "gamma", INF),
    ({"gamma": -1.0}, "gamma", -1.0),
    ({"lam": NAN}, "lam", NAN),
    ({"lam": -INF}, "lam", -INF),
    ({"cool_rate": -0.1}, "cool_rate", -0.1),
    ({"heat_rate": NAN}, "heat_rate", NAN),
    ({"derepeat_penalty": -3.0}, "derepeat_penalty", -3.0),
    ({"leak": 1.0}, "leak", 1.0),
    ({"leak": -0.01}, "leak", -0.01),
    ({"min_p": 1.0}, "min_p", 1.0),
    ({"min_p": 1.5}, "min_p", 1.5),
    ({"min_p": -0.05}, "min_p", -0.05),
    ({"coherence": "foo"}, "coherence", "foo"),
    ({"coherence": None}, "coherence", None),
    ({"coherence_decay": 1.0}, "coherence_decay", 1.0),
    ({"logit_floor": 0.0}, "logit_floor", 0.0),
    ({"logit_floor": NAN}, "logit_floor", NAN),
    ({"meta_uncertainty": "entropy"}, "meta_uncertainty", "entropy"),
    ({"volatility_window": 1}, "volatility_window", 1),
    ({"volatility_window": 4.0}, "volatility_window", 4.0),
    ({"control": "yes"}, "control", "yes"),
    ({"eos_token_id": -1}, "eos_token_id", -1),
    ({"eos_token_id": [2, -5]}, "eos_token_id", [2, -5]),
    ({"eos_token_id": "2"}, "eos_token_id", "2"),
    ({"eos_token_id": True}, "eos_token_id", True),
    ({"eos_token_id": [1.0]}, "eos_token_id", [1.0]),
]


def _assert_names_and_echoes(exc: pytest.ExceptionInfo, name: str, value) -> None:
    msg = str(exc.value)
    assert f"`{name}`" in msg, msg
    assert repr(value) in msg or str(value) in msg, msg


@pytest.mark.parametrize("kwargs, name, value", ICP_BAD, ids=[repr(k) for k, _, _ in ICP_BAD])
def test_icp_config_rejects_bad_values(kwargs, name, value):
    with pytest.raises(ValueError) as exc:
        ICPConfig(**kwargs)
    _assert_names_and_echoes(exc, name, value)


def test_min_above_max_temperature_echoes_both():
    with pytest.raises(ValueError) as exc:
        ICPConfig(min_temperature=2.0, max_temperature=1.0)
    assert "`max_temperature`" in str(exc.value) and "1.0" in str(exc.value)


@pytest.mark.parametrize(
    "cls, kwargs, name, value",
    [
        (RegimeThresholds, {"rigid_entropy": -1.0}, "rigid_entropy", -1.0),
        (RegimeThresholds, {"unstable_entropy": NAN}, "unstable_entropy", NAN),
        (RegimeThresholds, {"unstable_meta_uncertainty": -0.5}, "unstable_meta_uncertainty", -0.5),
        (RegimeThresholds, {"rigid_repetition": 0.0}, "rigid_repetition", 0.0),
        (RegimeThresholds, {"coherent": 1.5}, "coherent", 1.5),
        (RegimeThresholds, {"coherent": -0.1}, "coherent", -0.1),
        (RegimeThresholds, {"rigid_entropy": 4.0}, "rigid_entropy", 4.0),
        (RegimeThresholds, {"exploratory_entropy": 5.0}, "exploratory_entropy", 5.0),
        (RegimeThresholds, {"unstable_entropy": 1.0}, "unstable_entropy", 1.0),
        (LoopConfig, {"max_period": 0}, "max_period", 0),
        (LoopConfig, {"max_period": 2.0}, "max_period", 2.0),
        (LoopConfig, {"min_repeats": 1}, "min_repeats", 1),
        (LoopConfig, {"min_repeats": True}, "min_repeats", True),
        (LoopConfig, {"min_loop_tokens": 0}, "min_loop_tokens", 0),
        (DivergenceConfig, {"free_energy_bound": NAN}, "free_energy_bound", NAN),
        (DivergenceConfig, {"meta_uncertainty_bound": 0.0}, "meta_uncertainty_bound", 0.0),
        (DivergenceConfig, {"patience": 0}, "patience", 0),
    ],
)
def test_sub_configs_reject_bad_values(cls, kwargs, name, value):
    with pytest.raises(ValueError) as exc:
        cls(**kwargs)
    _assert_names_and_echoes(exc, name, value)
    # the same error surfaces through ICPConfig's nested dicts
    field = {RegimeThresholds: "regimes", LoopConfig: "loop", DivergenceConfig: "divergence"}[cls]
    with pytest.raises(ValueError) as nested:
        ICPConfig(**{field: kwargs})
    _assert_names_and_echoes(nested, name, value)


def test_good_edge_values_are_accepted():
    ICPConfig(min_p=0.0, leak=0.0, gamma=0.0, lam=0.0, target_entropy=0.0, coherence_decay=0.0)
    ICPConfig(min_temperature=1.0, max_temperature=1.0, initial_temperature=1.0)
    ICPConfig(eos_token_id=0)
    ICPConfig(eos_token_id=[0, 2])
    RegimeThresholds(rigid_entropy=1.0, exploratory_entropy=1.0, unstable_entropy=1.0, coherent=1.0)
    LoopConfig(max_period=1, min_repeats=2, min_loop_tokens=1)
    DivergenceConfig(free_energy_bound=-1.0, patience=1)


@pytest.mark.parametrize(
    "cls, data, key",
    [
        (ICPConfig, {"gain": 0.3, "tempreature": 1.0}, "tempreature"),
        (ICPConfig, {"regimes": {"rigid_entropy": 0.1, "bogus": 1}}, "bogus"),
        (ICPConfig, {"loop": {"period": 4}}, "period"),
        (ICPConfig, {"divergence": {"patient": 4}}, "patient"),
        (RegimeThresholds, {"coherence": 0.5}, "coherence"),
        (LoopConfig, {"max_periods": 4}, "max_periods"),
        (DivergenceConfig, {"bound": 1.0}, "bound"),
    ],
)
def test_from_dict_rejects_unknown_keys(cls, data, key):
    with pytest.raises(ValueError) as exc:
        cls.from_dict(data)
    assert repr(key) in str(exc.value)


def test_from_dict_unknown_key_lists_allowed_ones():
    with pytest.raises(ValueError) as exc:
        ICPConfig.from_dict({"x": 1})
    assert "'target_entropy'" in str(exc.value) and "'eos_token_id'" in str(exc.value)


def test_to_dict_from_dict_round_trip_including_nested():
    cfg = ICPConfig(
        target_entropy=2.2,
        gain=0.4,
        min_temperature=0.3,
        max_temperature=1.9,
        initial_temperature=0.9,
        min_p=0.0,
        coherence="logits",
        meta_uncertainty="varentropy",
        volatility_window=7,
        regimes=RegimeThresholds(rigid_entropy=0.2, exploratory_entropy=2.5, coherent=0.6),
        loop=LoopConfig(max_period=8, min_repeats=4, min_loop_tokens=10),
        divergence=DivergenceConfig(free_energy_bound=6.5, patience=3),
        control=False,
        eos_token_id=[2, 7],
    )
    d = cfg.to_dict()
    assert isinstance(d["regimes"], dict) and d["regimes"]["rigid_entropy"] == 0.2
    assert d["loop"] == {"max_period": 8, "min_repeats": 4, "min_loop_tokens": 10}
    assert d["divergence"]["patience"] == 3
    back = ICPConfig.from_dict(d)
    assert back == cfg
    assert isinstance(back.regimes, RegimeThresholds) and isinstance(back.loop, LoopConfig)
    assert isinstance(back.divergence, DivergenceConfig)
    # JSON-serialisable, and the JSON form round-trips too
    again = ICPConfig.from_dict(json.loads(json.dumps(d)))
    assert again == cfg
    # from_dict leaves its input alone
    assert isinstance(d["regimes"], dict) and d == cfg.to_dict()
    # a different config does not compare equal (the round trip check can fail)
    assert ICPConfig.from_dict({**d, "gain": 0.5}) != cfg
    for sub in (cfg.regimes, cfg.loop, cfg.divergence):
        assert type(sub).from_dict(sub.to_dict()) == sub


def test_default_round_trip_and_eos_list():
    assert ICPConfig.from_dict(ICPConfig().to_dict()) == ICPConfig()
    assert ICPConfig(eos_token_id=5).eos_token_ids == [5]
    assert ICPConfig(eos_token_id=(1, 2)).eos_token_ids == [1, 2]
    assert ICPConfig().eos_token_ids == []


def test_check_vocab():
    cfg = ICPConfig(target_entropy=1.3)
    cfg.check_vocab(4)  # log 4 = 1.386
    ICPConfig(target_entropy=math.log(50)).check_vocab(50)  # exactly reachable (uniform)
    with pytest.raises(ValueError) as exc:
        cfg.check_vocab(3)  # log 3 = 1.099
    assert "`target_entropy`" in str(exc.value) and "1.3" in str(exc.value) and "3" in str(exc.value)
    with pytest.raises(ValueError, match="target_entropy"):
        ICPConfig(target_entropy=0.5).check_vocab(1)


def test_sensitivity_floor_gates_the_step():
    """g = V/(κ+V): half the step at V = κ, almost all of it at V >> κ, almost none at V << κ."""
    ctl = make_controller(target=1.0, gain=1.0, kappa=0.02)
    x = ctl.initial_state(3, CPU)
    new = ctl.update(x, torch.full((3,), 2.0), torch.tensor([0.02, 2.0, 2e-5]))
    torch.testing.assert_close(new, torch.tensor([-0.5, -2.0 / 2.02, -2e-5 / 0.02002]), rtol=1e-5, atol=1e-7)
