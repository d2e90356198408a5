"""Writing a model card from a calibration: its front matter ([`card_metadata`]), its Markdown body (one
function per section) and the files ([`write_card`]).

The front matter is written by `huggingface_hub` (`ModelCardData.to_yaml`, `ModelCard.save`), so a card
ICP writes is byte for byte what `huggingface_hub` would write on a load and save. [`icp.cards`]
documents the format.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard as HubModelCard
from huggingface_hub import ModelCardData
from huggingface_hub.repocard_data import model_index_to_eval_results

from .calibration.plot import plot_calibration
from .calibration.result import CalibrationResult
from .card_lookup import model_slug
from .card_reader import (
    CARD_FILE,
    PLOT_FILE,
    fitted_slope_at,
    load_card,
    local_sensitivity_at,
    read_front_matter,
    validate_card,
)
from .card_results import results_section, with_results_section
from .card_validation import CARD_TAGS, CARD_VERSION, DEFAULT_LICENSE, LIBRARY_NAMES, check_model_index
from .fingerprint import ModelFingerprint
from .models import DEFAULT_MODEL_NAME, EMBEDDED_MODELS

__all__ = ["FingerprintLike", "card_metadata", "write_card"]

#: What a card records as `icp.fingerprint`: one fingerprint, or one per build of the model (as objects or dicts).
FingerprintLike = ModelFingerprint | dict[str, Any] | list[ModelFingerprint | dict[str, Any]]


# ----------------------------------------------------------------------------- the front matter
def _plain(value: Any) -> Any:
    """Plain YAML-safe values: floats rounded, NaN as null, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)  # a str subclass (torch's TorchVersion) is not safe YAML
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return None if not math.isfinite(value) else round(float(value), 4)
    return str(value)


def card_metadata(
    result: CalibrationResult,
    model_id: str,
    model_index: list | None = None,
    *,
    license: str = DEFAULT_LICENSE,
    fingerprint: FingerprintLike | None = None,
) -> dict[str, Any]:
    """The front matter of the card for a [`icp.calibrate.CalibrationResult`], as `huggingface_hub`
    writes it (`ModelCardData(...).to_dict()`: `base_model`, `library_name`, `license`, `tags`, `icp`,
    `model-index`, in that order).

    Args:
        result ([`icp.calibrate.CalibrationResult`]): what `calibrate()` returned.
        model_id (`str`): the model the card calibrates (`base_model` and `model-index[0].name`).
        model_index (`list`, *optional*): benchmark results to keep (a previous card's `model-index`; its
            results are kept, renamed to `model_id`).
        license (`str`, *optional*, defaults to `"apache-2.0"`): the card's Hub license id.
        fingerprint ([`icp.fingerprint.ModelFingerprint`], `dict` or `list`, *optional*): the calibrated
            model's fingerprint (`icp.fingerprint`); defaults to `result.fingerprint` when the result has one.

    Returns:
        `dict`: the front matter.

    Example:
        >>> from icp.calibrate import CalibrationResult
        >>> from icp.cards import card_metadata
        >>> result = CalibrationResult(  # what `calibrate(model, tokenizer)` returns, cut down
        ...     model_id="org/model", target_entropy=1.5, target_entropy_ci=[1.2, 1.8], critical_entropy=2.2,
        ...     critical_entropy_ci=[2.0, 2.5], regimes={}, reference_temperature=1.0,
        ...     fit={"c0": 0.8, "a": 0.3, "h0": 2.2, "w": 0.4}, heat_capacity={},
        ...     sweep=[{"temperature": 1.0}], per_prompt={}, bootstrap={})
        >>> meta = card_metadata(result, "org/model")
        >>> list(meta), meta["icp"]["target_entropy"]
        (['base_model', 'library_name', 'license', 'tags', 'icp', 'model-index'], 1.5)
    """
    block = _icp_block(result, model_id, fingerprint)
    eval_results = []
    if model_index:
        check_model_index(model_index, None)
        eval_results = model_index_to_eval_results(model_index)[1]
    data = ModelCardData(
        base_model=model_id,
        library_name=LIBRARY_NAMES[0],
        license=license,
        tags=list(CARD_TAGS),
        model_name=model_id,  # written as `model-index[0].name`
        eval_results=eval_results,
        icp=_plain(block),
    )
    return data.to_dict()


def _icp_block(result: CalibrationResult, model_id: str, fingerprint: FingerprintLike | None) -> dict[str, Any]:
    """The card's `icp:` block: the calibrated values, the sweep, the provenance and the model's fingerprint."""
    heat = {k: v for k, v in result.heat_capacity.items() if k != "peaks"}
    sweep = [{k: v for k, v in row.items() if k != "seconds"} for row in result.sweep]
    if fingerprint is None:
        fingerprint = getattr(result, "fingerprint", None)
    block = {
        "card_version": CARD_VERSION,
        "entropy": "tempered: H of softmax(z/T) in nats, what the controller steers",
        "target_entropy": result.target_entropy,
        "target_entropy_ci": list(result.target_entropy_ci),
        "critical_entropy": result.critical_entropy,
        "critical_entropy_ci": list(result.critical_entropy_ci),
        "ci_level": result.ci_level,
        "fit": {k: v for k, v in result.fit.items()},
        "regimes": dict(result.regimes),
        "reference_temperature": result.reference_temperature,
        "threshold_rules": result.threshold_rules,
        "heat_capacity": heat,
        "sweep": sweep,
        "calibration": _provenance(result, model_id),
    }
    if fingerprint is not None:
        entries = fingerprint if isinstance(fingerprint, list) else [fingerprint]
        recorded = [e.to_dict() if isinstance(e, ModelFingerprint) else dict(e) for e in entries]
        block["fingerprint"] = recorded[0] if len(recorded) == 1 else recorded
    return block


def _provenance(result: CalibrationResult, model_id: str) -> dict[str, Any]:
    """`icp.calibration`: how the calibration was run, and the command that runs it again."""
    return {
        "prompt_set": result.prompt_set,
        "chat": result.chat,
        "n_prompts": result.n_prompts,
        "max_new_tokens": result.max_new_tokens,
        "temperatures": [row["temperature"] for row in result.sweep],
        "seed": result.seed,
        "n_bootstrap": result.bootstrap.get("n"),
        "n_bootstrap_ok": result.bootstrap.get("n_ok"),
        "date": result.date,
        "seconds": result.seconds,
        "versions": dict(result.versions),
        "command": _command(result, model_id),
    }


def _command(result: CalibrationResult, model_id: str) -> str:
    """The `icp calibrate` command line that reproduces a calibration (prompt files by name)."""
    # The sweep is the one calibration module that runs ICP (it imports the processors, which import the
    # cards); the cards take only its default temperatures, when a card is written.
    from .calibration.sweep import DEFAULT_TEMPERATURES

    parts = ["icp calibrate"]
    embedded = {spec.model_id: spec.name for spec in EMBEDDED_MODELS.values()}
    if model_id != DEFAULT_MODEL_NAME:
        parts.append(f"--model {embedded.get(model_id, model_id)}")  # an embedded model by its name (offline)
    if not result.chat:
        parts.append("--no-chat")
    if result.prompt_set != "icp.prompts.CALIBRATION_PROMPTS":
        parts.append(f"--prompts-file {result.prompt_set}")
    temperatures = [row["temperature"] for row in result.sweep]
    if temperatures != list(DEFAULT_TEMPERATURES):
        parts.append("--temperatures " + ",".join(f"{t:g}" for t in temperatures))
    parts.append(f"--max-new-tokens {result.max_new_tokens} --seed {result.seed}")
    if result.bootstrap.get("n", 200) != 200:
        parts.append(f"--bootstrap {result.bootstrap.get('n')}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- the Markdown body
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _card_body(result: CalibrationResult, model_id: str) -> str:
    """The Markdown after the front matter: the summary table, how it was measured, the sweep, the command."""
    sections = [
        _summary_section(result, model_id),
        _method_section(result),
        _sweep_section(result),
        _reproduce_section(result, model_id),
    ]
    return "\n" + "\n".join(sections)


def _summary_section(r: CalibrationResult, model_id: str) -> str:
    """The title, what the card is for, and the table of the calibrated values."""
    heat = r.heat_capacity
    lo, hi = r.critical_entropy_ci
    tlo, thi = r.target_entropy_ci
    level = f"{r.ci_level:.0%}"
    rg = r.regimes
    versions = ", ".join(f"{k} {v}" for k, v in r.versions.items())
    thresholds = (
        f"rigid H < {rg['rigid_entropy']:g}, exploratory H >= {rg['exploratory_entropy']:g}, unstable H >= "
        f"{rg['unstable_entropy']:g} or U >= {rg['unstable_meta_uncertainty']:g} with C < {rg['coherent']:g}"
    )
    peaks = (
        f"median {_fmt(heat.get('median'), 2)} (IQR {_fmt(heat.get('q25'), 2)}-{_fmt(heat.get('q75'), 2)}, "
        f"{heat.get('n_steps', 0)} steps)"
    )
    reference = _fmt(local_sensitivity_at(r.sweep, r.target_entropy), 4)
    fitted = _fmt(fitted_slope_at(r.fit, r.target_entropy), 4)
    return f"""# ICP calibration: {model_id}

This card holds the settings ICP uses for `{model_id}`: `ICP(model)` finds it by
`model.name_or_path` (or, under another name, by the model's fingerprint, `icp.fingerprint`) and takes
the target entropy and the regime thresholds from it.
ICP's default law is cold (gain 0, T held at 0.1) and does not decode at H*: H* is the entropy the
seeds' law (`icp.SEEDS_LAW`) steers toward, and the regime thresholds are read at the sweep temperature
nearest it. Steering toward fixed targets of 0.5-6 nats on SmolLM2-135M-Instruct's dev splits gave the
best quality at the lowest target, near neither H* nor H_c (`eval/target_sweep.py`, docs/control.md).
Calibrated on {r.date[:10]} in {r.seconds:.0f} s ({versions}).

| quantity | value |
|---|---|
| target entropy H* | **{r.target_entropy:.3f}** nats ({level} CI {_fmt(tlo)}-{_fmt(thi)}) |
| critical entropy H_c | {r.critical_entropy:.3f} nats ({level} CI {_fmt(lo)}-{_fmt(hi)}) |
| regime thresholds (read at T = {r.reference_temperature:g}) | {thresholds} |
| per-step heat-capacity peak T_c | {peaks} |
| tracker's reference σ* (local slope at H*) | {reference} coherence per nat (fitted curve at H*: {fitted}) |
"""


def _method_section(r: CalibrationResult) -> str:
    """How the numbers were measured: the sweep, the C(H) fit, the thresholds, heat capacity, the local slope."""
    fit = r.fit
    heat = r.heat_capacity
    w = fit["w"]
    margin = (r.critical_entropy - r.target_entropy) / w if w > 0 else math.nan
    verdict = heat.get("verdict", "")
    return f"""## How the numbers were measured

For each of {len(r.sweep)} temperatures T, the model sampled {r.max_new_tokens} tokens for each of the
{r.n_prompts} prompts of `{r.prompt_set}` (seed {r.seed}) with ICP pinned at T (no min-p, no
dissipation, no de-repetition; loop and divergence stops on, so a row's means cover the tokens
before it stopped: at temperatures where most rows diverge, the means describe the early tokens and
the incoherent end of the curve is flattened). Per prompt and temperature, ICP
recorded the mean raw entropy H, the mean tempered entropy H_T (entropy of softmax(z/T), the quantity
the controller steers), the mean coherence C, the mean meta-uncertainty U and the mean per-step heat
capacity C_v(1) = varentropy.

**C(H).** The mean coherence against the mean tempered entropy, one point per temperature, is fitted
by a logistic C = c0 - a·σ((H_T - h0)/w) (c0 = {fit["c0"]:.3f}, a = {fit["a"]:.3f}, h0 = {fit["h0"]:.3f},
w = {w:.3f} nats, RMSE {fit["rmse"]:.3f}): coherence is an order parameter that falls from one plateau
to another, and the logistic's slope peaks exactly once, at h0. **H_c** = h0 is where |dC/dH| peaks.
**H\\*** sits on the coherent side, where the fitted |dC/dH| has fallen to {fit["slope_fraction"]:g} of its
peak: {margin:.2f} widths below H_c. The intervals come from {r.bootstrap.get("n_ok", 0)} refits on
prompts resampled with replacement.

**Regime thresholds** are per-token quantiles at T = {r.reference_temperature:g}, the sweep temperature
whose mean H_T is nearest H*: rigid entropy = half the lower quartile of H, exploratory = the upper
quartile of H, unstable = the 95th percentile of H and of U, coherent = the 10th percentile of C
(`icp.calibrate.THRESHOLD_RULES`). `rigid_repetition` (loop progress) is not calibrated.

**Heat capacity** (`004_*`: softmax is the Gibbs distribution of energies E = -z at temperature T, and
Var(E)/T² is its heat capacity). For every step of the T = {heat.get("probe_temperature", float("nan")):g} run
the curve C_v(T) was evaluated on a log grid of T and its peak T_c located. Read-out: {verdict.rstrip(".")}.

**Local slope** (`icp.signals.criticality`): at every step ICP also measures, per row, the causal
slope -dE[C]/dH_T = Cov_q[c, y] / Var_q[y] of the step's own distribution (its top 32 tokens) and
averages it over the row. The sweep's `local_sensitivity` column is the median over prompts of each
row's average. {_local_slope_sentence(r)} Online, ICP moves each row's target toward where its own
local slope equals σ* (`icp.TrackingConfig`).

![C(H) and the heat-capacity peaks]({PLOT_FILE})
"""


def _local_slope_sentence(result: CalibrationResult) -> str:
    at_target = local_sensitivity_at(result.sweep, result.target_entropy)
    if at_target is None:
        return "This calibration did not record it."
    rows = sorted(
        (r for r in result.sweep if math.isfinite(r.get("local_sensitivity", math.nan))),
        key=lambda r: r["tempered_entropy"],
    )
    fitted = fitted_slope_at(result.fit, result.target_entropy)
    return (
        f"Interpolated at H* it is {at_target:.4f} coherence per nat (the tracker's reference σ*), against "
        f"{_fmt(fitted, 4)} for the fitted curve's slope there (a per-step causal slope and a slope across "
        f"temperatures: the same order, not the same number); it rises from {rows[0]['local_sensitivity']:.4f} "
        f"at H_T {rows[0]['tempered_entropy']:.2f} to {rows[-1]['local_sensitivity']:.4f} at H_T "
        f"{rows[-1]['tempered_entropy']:.2f}."
    )


def _sweep_section(r: CalibrationResult) -> str:
    """The sweep: one table row per temperature."""
    rows = "\n".join(
        f"| {s['temperature']:g} | {s['entropy']:.3f} | {s['tempered_entropy']:.3f} | {s['coherence']:.3f} | "
        f"{s['meta_uncertainty']:.3f} | {s['heat_capacity']:.3f} | {s['loop_rate']:.2f} | {s['divergence_rate']:.2f} | "
        f"{s['tokens']} |"
        for s in r.sweep
    )
    return f"""## The sweep

| T | H | H_T | C | U | C_v(1) | loop rate | divergence rate | tokens |
|---|---|---|---|---|---|---|---|---|
{rows}
"""


def _reproduce_section(r: CalibrationResult, model_id: str) -> str:
    """The command that runs the calibration again and rewrites the card."""
    return f"""## Reproduce

```bash
{card_metadata(r, model_id)["icp"]["calibration"]["command"]} --out-dir model_cards
```
"""


# ----------------------------------------------------------------------------- the files
def write_card(
    result: CalibrationResult,
    model_id: str | None = None,
    folder: str | os.PathLike = "model_cards",
    *,
    license: str = DEFAULT_LICENSE,
) -> Path:
    """Writes `<folder>/<slug>/README.md` and the plot `<folder>/<slug>/c_of_h.png` for a calibration.

    The card is written by `huggingface_hub` (`ModelCardData.to_yaml`, `ModelCard.save`), so loading it
    with `huggingface_hub.ModelCard.load(path)` and saving it again gives the same file. An existing
    card's `model-index` (benchmark results) and its results section (`icp.card_results`) are kept; a
    `model-index` that `huggingface_hub` cannot parse raises before anything is written. An existing
    card's `icp.fingerprint` is kept when `result` has none.

    Args:
        result ([`icp.calibrate.CalibrationResult`]): what `calibrate()` returned.
        model_id (`str`, *optional*): the model id (defaults to `result.model_id`).
        folder (`str` or `os.PathLike`, *optional*, defaults to `"model_cards"`): the folder of cards.
        license (`str`, *optional*, defaults to `"apache-2.0"`): the card's Hub license id.

    Returns:
        `Path`: the card's README.md (validated by reading it back).

    Example:
        >>> import tempfile
        >>> from icp.calibrate import calibrate
        >>> from icp.cards import load_card, write_card
        >>> result = calibrate(model, tokenizer)  # doctest: +SKIP
        >>> path = write_card(result, folder=tempfile.mkdtemp())  # doctest: +SKIP
        >>> load_card(path).target_entropy == result.target_entropy  # doctest: +SKIP
        True
    """
    model_id = model_id or result.model_id
    if not model_id:
        raise ValueError("`model_id` is empty: pass the model's id (the calibrated model had no `name_or_path`).")
    target = Path(folder) / model_slug(model_id)
    path = target / CARD_FILE
    model_index, fingerprint = _kept_from_previous(path, getattr(result, "fingerprint", None))
    meta = card_metadata(result, model_id, model_index, license=license, fingerprint=fingerprint)
    validate_card(meta, path=path)  # nothing is written for a bad card (a bad `license`, say)
    target.mkdir(parents=True, exist_ok=True)
    front = ModelCardData(**meta).to_yaml()
    body = with_results_section(_card_body(result, model_id), _previous_results_section(path))
    HubModelCard(f"---\n{front}\n---\n{body}").save(path)
    plot_calibration(result, str(target / PLOT_FILE))
    load_card(path)  # what we wrote must read back
    return path


def _previous_results_section(path: Path) -> str | None:
    """The results section of the card at `path` (`icp.card_results`), or `None` when there is no card or
    no section. A card whose markers are broken raises: the card is not rewritten."""
    if not path.is_file():
        return None
    try:
        _, body = read_front_matter(path)
    except (OSError, ValueError):
        return None
    try:
        return results_section(body)
    except ValueError as err:
        raise ValueError(f"Model card {path}: {err} The card is not rewritten: fix the markers first.") from err


def _kept_from_previous(path: Path, fingerprint: FingerprintLike | None) -> tuple[list | None, FingerprintLike | None]:
    """What a rewritten card keeps of the card at `path`: its `model-index`, and its fingerprint when the new
    calibration has none (the same model id: what identifies the model). A `model-index` the Hub cannot
    parse raises: the card is not rewritten."""
    model_index = None
    if not path.is_file():
        return model_index, fingerprint
    try:
        previous, _ = read_front_matter(path)
    except (OSError, ValueError):
        previous = {}
    if fingerprint is None:
        previous_icp = previous.get("icp") if isinstance(previous.get("icp"), dict) else {}
        fingerprint = previous_icp.get("fingerprint")
    if "model-index" in previous:
        model_index = previous["model-index"]
        try:
            check_model_index(model_index, path)
        except ValueError as err:
            raise ValueError(
                f"{err} The card is not rewritten: fix or remove its `model-index` (benchmark results it "
                "keeps), then write it again."
            ) from err
    return model_index, fingerprint
