"""Tests of the log-temperature controller (icp/controller.py's LogTemperatureController).

The controller is exercised in a synthetic decode loop: per row, logits z_t are drawn each step, the
controller's T = exp(x) is applied (`temper_and_truncate`, min_p = 0), and the entropy/varentropy of
the tempered distribution Q feed the next update, exactly as the processor wires it.
"""

from __future__ import annotations

import math

import pytest
import torch

from icp.controller import LogTemperatureController
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


def test_sensitivity_floor_gates_the_step():
    """g = V/(κ+V): half the step at V = κ, almost all of it at V >> κ, almost none at V << κ."""
    ctl = make_controller(target=1.0, gain=1.0, kappa=0.02)
    x = ctl.initial_state(3, CPU)
    new = ctl.update(x, torch.full((3,), 2.0), torch.tensor([0.02, 2.0, 2e-5]))
    torch.testing.assert_close(new, torch.tensor([-0.5, -2.0 / 2.02, -2e-5 / 0.02002]), rtol=1e-5, atol=1e-7)
