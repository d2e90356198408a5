"""Tests of the configuration (icp/config.py): ICPConfig and its parts reject bad values naming the field
and echoing the value, accept the edge values, refuse unknown keys, round-trip through to_dict/from_dict
and JSON, and check the target against the vocabulary."""

from __future__ import annotations

import json
import math

import pytest

from icp.config import DivergenceConfig, ICPConfig, LoopConfig, RegimeThresholds

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
