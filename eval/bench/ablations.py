"""ICP with one part removed or pinned: the variants `eval/ablation.py` compares with full ICP.

Each variant is a [`DecoderSpec`] whose plan is ICP built with the model card's settings and the variant's
overrides; `eval/run.py --decoders` accepts their names too (they are not in `all`). A variant's
one setting is its override set, so the generation cache tells variants apart.

| variant | what changes |
| --- | --- |
| `icp_frozen` | entropy feedback, dissipation and leak off: T pinned at `initial_temperature` (pass a value, e.g. ICP's own mean T; default the card's T at H*) |
| `icp_no_derepeat` | no de-repetition penalty (`derepeat_penalty=0`) |
| `icp_no_min_p` | no min-p truncation (`min_p=0`) |
| `icp_no_stops` | no loop or divergence stop (the stopping criteria are not passed; ICP still records) |
| `icp_tracking` | the seeds' law with the critical-region tracker on (`tracking.rate=0.05`; it moves the target the feedback steers to, so it needs `gain` > 0) |
| `icp_no_dissipation` | no heating of rigid rows and no cooling of unstable ones (`heat_rate=cool_rate=0`) |
| `icp_cold` | the cold law: no entropy feedback (`gain=0`), T held at a cold `initial_temperature` (default 0.3), rows heated only while rigid (looping) and cooled while unstable |
| `icp_target` | the seeds' law steering toward a given `target_entropy` (for the critical-region sweep) |
| `icp_seeds_law` | the seeds' entropy-feedback law as the card set it before the cold law (gain 0.3, T0 1.0) |
| `icp_abstain` | ICP abstaining on answers that end with a trajectory F above `answer_free_energy_bound` (default 3.2 nats, chosen on knowledge's dev split: docs/control.md) |

Example:
    >>> from bench.ablations import ABLATIONS
    >>> sorted(ABLATIONS)[:2]
    ['icp_abstain', 'icp_cold']
    >>> ABLATIONS["icp_no_min_p"].grid[0]
    {'min_p': 0.0}
"""

from __future__ import annotations

from typing import Any

from icp.config import SEEDS_LAW  # the seeds' law: gain 0.3 toward H* from T0 = 1

from .decoders import DecoderSpec, GenerationPlan

__all__ = ["ABLATIONS", "ABSTAIN_BOUND", "AT_PARAMETER", "CARD_TEMPERATURE", "SEEDS_LAW"]

#: The default model card's temperature at its target entropy H* (`heat_capacity.temperature_at_target_entropy`).
CARD_TEMPERATURE = 0.891


#: What `<variant>@<value>` sets in `eval/ablation.py` (e.g. `icp_cold@0.5`, `icp_target@3.0`).
AT_PARAMETER = {
    "icp_frozen": "initial_temperature",
    "icp_cold": "initial_temperature",
    "icp_target": "target_entropy",
    "icp_abstain": "answer_free_energy_bound",
}

#: The abstention bound chosen on knowledge's dev split: the highest answered accuracy that costs at most a
#: point of accuracy (docs/control.md, "Abstention").
ABSTAIN_BOUND = 3.2

_FROZEN = {"gain": 0.0, "heat_rate": 0.0, "cool_rate": 0.0, "leak": 0.0}


def _icp_plan(overrides: dict[str, Any], model: Any, stops: bool = True) -> GenerationPlan:
    from .decoders import build_icp_plan

    plan = build_icp_plan(overrides, model)
    if not stops:
        plan.stopping_criteria = []
    return plan


def _on_top_of(base: dict[str, Any], stops: bool = True):
    """A plan builder: ICP with `base`, then the setting's own values, over the card's."""

    def build(params: dict[str, Any], model: Any) -> GenerationPlan:
        return _icp_plan({**base, **params}, model, stops)

    return build


def _variant(name: str, description: str, overrides: dict[str, Any], stops: bool = True) -> DecoderSpec:
    return DecoderSpec(name, description, (dict(overrides),), _on_top_of(overrides, stops), "icp (ablation)")


_frozen, _cold, _target = _on_top_of(_FROZEN), _on_top_of({"gain": 0.0}), _on_top_of(SEEDS_LAW)


def _abstain(params: dict[str, Any], model: Any) -> GenerationPlan:
    """ICP (the card's settings) with the divergence criterion's abstention on finished answers."""
    bound = params["answer_free_energy_bound"]
    return _icp_plan({"divergence": {"answer_free_energy_bound": bound}}, model)


ABLATIONS: dict[str, DecoderSpec] = {
    spec.name: spec
    for spec in [
        DecoderSpec(
            "icp_frozen",
            "ICP with T pinned (no feedback, dissipation or leak) at `initial_temperature`",
            ({"initial_temperature": CARD_TEMPERATURE},),
            _frozen,
            "icp (ablation)",
        ),
        DecoderSpec(
            "icp_cold",
            "ICP with the cold law: no entropy feedback, T0 cold, heat only while rigid",
            ({"initial_temperature": 0.3},),
            _cold,
            "icp (ablation)",
        ),
        DecoderSpec(
            "icp_target",
            "ICP with the seeds' law toward a fixed target entropy",
            ({"target_entropy": 1.9424},),
            _target,
            "icp (ablation)",
        ),
        DecoderSpec(
            "icp_abstain",
            "ICP abstaining on answers that end with a high trajectory F",
            ({"answer_free_energy_bound": ABSTAIN_BOUND},),
            _abstain,
            "icp (ablation)",
        ),
        _variant("icp_no_derepeat", "ICP without its de-repetition penalty", {"derepeat_penalty": 0.0}),
        _variant("icp_no_min_p", "ICP without min-p truncation", {"min_p": 0.0}),
        _variant("icp_no_stops", "ICP without its loop and divergence stops", {}, stops=False),
        _variant(
            "icp_tracking",
            "the seeds' law with the critical-region tracker on (the tracker needs the entropy feedback)",
            {**SEEDS_LAW, "tracking": {"rate": 0.05}},
        ),
        _variant("icp_no_dissipation", "ICP without regime dissipation", {"heat_rate": 0.0, "cool_rate": 0.0}),
        _variant("icp_seeds_law", "ICP with the seeds' entropy-feedback law (gain 0.3, T0 1.0)", dict(SEEDS_LAW)),
    ]
}
