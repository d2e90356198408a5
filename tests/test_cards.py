"""Model cards: every shipped card validates; bad cards name the bad field; cards survive a
huggingface_hub load+save; lookup; ICP applies cards."""

from __future__ import annotations

import copy
import uuid
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from helpers import prompt, tiny_llama
from huggingface_hub import ModelCard as HubModelCard
from huggingface_hub import ModelCardData, metadata_load

from icp import ICP, ICPConfig
from icp.calibrate import CalibrationResult
from icp.cards import (
    CARD_FILE,
    CARD_TAGS,
    ENV_VAR,
    PLOT_FILE,
    CardNotFoundError,
    ICPCardWarning,
    ModelCard,
    card_metadata,
    card_model_id,
    default_search_dirs,
    find_card,
    load_card,
    model_slug,
    qualified_slug,
    validate_card,
    write_card,
)

REPO_CARDS = Path(__file__).resolve().parent.parent / "model_cards"
MODEL_ID = "test-org/Tiny-Model"


def synthetic_result(model_id: str = MODEL_ID, target: float = 1.2) -> CalibrationResult:
    """A small, valid calibration result (no model run)."""
    temps = [0.5, 1.0, 1.5, 2.0]
    ht = [[0.6, 0.8], [1.9, 2.2], [3.9, 4.3], [5.5, 6.0]]
    c = [[0.82, 0.81], [0.80, 0.79], [0.70, 0.72], [0.66, 0.65]]
    sweep = [
        {
            "temperature": t,
            "entropy": sum(h) / 2,
            "tempered_entropy": sum(h) / 2,
            "coherence": sum(cc) / 2,
            "coherence_se": 0.01,
            "meta_uncertainty": 0.5 + 0.1 * i,
            "heat_capacity": 2.0,
            "loop_rate": 0.0,
            "divergence_rate": 0.0,
            "eos_rate": 0.0,
            "tokens": 100,
            "seconds": 1.0,
        }
        for i, (t, h, cc) in enumerate(zip(temps, ht, c))
    ]
    return CalibrationResult(
        model_id=model_id,
        target_entropy=target,
        target_entropy_ci=[1.0, 1.5],
        critical_entropy=3.0,
        critical_entropy_ci=[2.7, 3.3],
        regimes={
            "rigid_entropy": 0.4,
            "rigid_repetition": 0.5,
            "exploratory_entropy": 3.0,
            "unstable_entropy": 4.5,
            "unstable_meta_uncertainty": 1.6,
            "coherent": 0.6,
        },
        reference_temperature=1.0,
        fit={
            "method": "logistic",
            "c0": 0.81,
            "a": 0.16,
            "h0": 3.0,
            "w": 0.5,
            "rmse": 0.01,
            "converged": True,
            "slope_fraction": 0.25,
        },
        heat_capacity={
            "probe_temperature": 1.0,
            "n_steps": 4,
            "median": 1.1,
            "q25": 0.9,
            "q75": 1.3,
            "agrees": True,
            "verdict": "synthetic",
            "temperature_at_critical_entropy": 1.2,
            "temperature_at_target_entropy": 0.8,
            "peaks": [0.9, 1.0, 1.2, 1.3],
        },
        sweep=sweep,
        per_prompt={"entropy": ht, "tempered_entropy": ht, "coherence": c, "meta_uncertainty": c},
        bootstrap={"n": 2, "n_ok": 2, "params": [[0.81, 0.16, 3.0, 0.5], [0.8, 0.15, 3.1, 0.45]], "seed": 0},
        n_prompts=2,
        max_new_tokens=8,
        date="2025-01-01T00:00:00+00:00",
        versions={"icp": "0.1.0", "transformers": "5", "torch": "2"},
    )


@pytest.fixture(scope="module")
def cards_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cards")
    write_card(synthetic_result(), folder=folder)
    return folder


@pytest.fixture
def meta() -> dict:
    return card_metadata(synthetic_result(), MODEL_ID)


# ----------------------------------------------------------------------------- shipped cards
def test_every_shipped_card_loads_and_validates():
    paths = sorted(REPO_CARDS.glob(f"*/{CARD_FILE}"))
    assert paths, f"no model cards under {REPO_CARDS}"
    for path in paths:
        card = load_card(path)
        assert card.target_entropy <= card.critical_entropy
        assert (path.parent / PLOT_FILE).is_file(), f"{path.parent} has no {PLOT_FILE}"
        assert f"]({PLOT_FILE})" in card.body
        assert model_slug(card.model_id) == path.parent.name
        ICPConfig.from_dict({**ICPConfig().to_dict(), **card.config_overrides()})  # usable as config


# ----------------------------------------------------------------------------- validation
def test_written_card_round_trips(cards_dir):
    card = load_card(cards_dir / "tiny-model")
    assert isinstance(card, ModelCard)
    assert card.model_id == MODEL_ID and card.target_entropy == 1.2 and card.critical_entropy_ci == (2.7, 3.3)
    assert card.regimes.coherent == 0.6
    assert card.metadata["library_name"] == "transformers" and card.metadata["base_model"] == MODEL_ID
    assert card.metadata["license"] == "apache-2.0" and card.metadata["tags"] == list(CARD_TAGS)
    assert card.metadata["model-index"] == [{"name": MODEL_ID, "results": []}]
    assert card.icp["calibration"]["n_prompts"] == 2 and len(card.icp["sweep"]) == 4
    assert "peaks" not in card.icp["heat_capacity"]  # the summary only, not every step


RESULT = {
    "task": {"type": "text-generation"},
    "dataset": {"type": "icp-loop-suite", "name": "loop suite"},
    "metrics": [{"type": "loop_rate", "value": 0.01}],
}


def _with_model_index(path: Path, model_index) -> None:
    front = metadata_load(path)
    front["model-index"] = model_index
    body = path.read_text().split("\n---\n", 1)[1]
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False) + "---\n" + body)


def test_rewriting_a_card_keeps_its_benchmark_results(tmp_path):
    path = write_card(synthetic_result(), folder=tmp_path)
    _with_model_index(path, [{"name": MODEL_ID, "results": [RESULT]}])
    write_card(synthetic_result(target=1.1), folder=tmp_path)
    card = load_card(path)
    assert card.metadata["model-index"] == [{"name": MODEL_ID, "results": [RESULT]}] and card.target_entropy == 1.1


def test_rewriting_a_card_with_a_model_index_the_hub_cannot_read_raises_and_keeps_the_file(tmp_path):
    path = write_card(synthetic_result(), folder=tmp_path)
    _with_model_index(path, [{"name": MODEL_ID, "results": [{"task": {"type": "text-generation"}}]}])
    before = path.read_text()
    with pytest.raises(ValueError, match=r"`model-index\[0\]\.results\[0\]\.dataset` is missing.*not rewritten"):
        write_card(synthetic_result(target=1.1), folder=tmp_path)
    assert path.read_text() == before


# ----------------------------------------------------------------------------- huggingface_hub round trip
def _hub_round_trip(path: Path, out: Path) -> Path:
    """What anyone editing a card with huggingface_hub does: load it, save it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    HubModelCard.load(path).save(out)
    return out


def _same_card(a: ModelCard, b: ModelCard) -> None:
    assert (a.model_id, a.target_entropy, a.critical_entropy, a.critical_entropy_ci) == (
        b.model_id,
        b.target_entropy,
        b.critical_entropy,
        b.critical_entropy_ci,
    )
    assert a.regimes == b.regimes and a.icp == b.icp and a.metadata == b.metadata and a.body == b.body
    assert a.config_overrides() == b.config_overrides()


SHIPPED = sorted(REPO_CARDS.glob(f"*/{CARD_FILE}"))


@pytest.mark.parametrize("source", [*SHIPPED, "written"], ids=lambda s: s if s == "written" else s.parent.name)
def test_a_card_saved_by_huggingface_hub_loads_and_is_found_with_the_same_values(source, cards_dir, tmp_path):
    path = cards_dir / "tiny-model" / CARD_FILE if source == "written" else source
    original = load_card(path)
    saved = _hub_round_trip(path, tmp_path / "hub" / "renamed-folder" / CARD_FILE)
    assert saved.read_bytes() == path.read_bytes()  # written as huggingface_hub writes: its save changes nothing
    _same_card(load_card(saved), original)
    # Found by the model id in `model-index` (the folder name matches no slug).
    _same_card(find_card(original.model_id, search_dirs=[tmp_path / "hub"], required=True), original)
    hub = HubModelCard.load(saved)
    assert hub.data.model_name == original.model_id and hub.data.base_model == original.model_id
    assert hub.data.library_name == "transformers" and "icp" in hub.data.tags and hub.data.license


def test_what_huggingface_hub_rewrites_on_save_does_not_change_the_card(meta, tmp_path):
    """A hand-written card (flow style, `model_name` next to `model-index`, keys in another order, a
    duplicate tag) is rewritten by huggingface_hub: `model_name` is dropped (the name lives in
    `model-index`), YAML turns to block style, `model-index` goes last, tags lose duplicates. ICP reads
    the same card before and after."""
    front = {"model_name": MODEL_ID, "model-index": meta["model-index"], "icp": meta["icp"]}
    front.update({k: v for k, v in meta.items() if k not in front})
    front["tags"] = [*front["tags"], "icp"]
    path = tmp_path / "cards" / "tiny-model" / CARD_FILE
    path.parent.mkdir(parents=True)
    path.write_text("---\n" + yaml.safe_dump(front, sort_keys=False, default_flow_style=True) + "---\n# body\n")
    before = load_card(path)
    saved = _hub_round_trip(path, tmp_path / "hub" / "tiny-model" / CARD_FILE)
    raw = metadata_load(saved)
    assert "model_name" not in raw and raw["model-index"][0]["name"] == MODEL_ID
    assert list(raw)[-1] == "model-index" and raw["tags"] == list(CARD_TAGS)
    assert saved.read_text() != path.read_text()
    _same_card(load_card(saved), before)
    assert before.model_id == MODEL_ID and before.metadata == meta  # read as huggingface_hub reads it


def test_a_card_without_model_index_takes_its_id_from_model_name(meta, tmp_path):
    front = {**{k: v for k, v in meta.items() if k != "model-index"}, "model_name": MODEL_ID}
    assert card_model_id(front) == MODEL_ID and card_model_id({}) is None
    path = tmp_path / "c" / "x" / CARD_FILE
    path.parent.mkdir(parents=True)
    path.write_text("---\n" + yaml.safe_dump(front) + "---\nbody\n")
    saved = _hub_round_trip(path, tmp_path / "hub" / "x" / CARD_FILE)
    assert metadata_load(saved)["model_name"] == MODEL_ID  # without a model-index, huggingface_hub keeps it
    for p in (path, saved):
        assert load_card(p).model_id == MODEL_ID
        assert find_card(MODEL_ID, search_dirs=[p.parent.parent]).model_id == MODEL_ID


def test_hub_metadata_is_written_and_validated(meta):
    assert list(meta) == ["base_model", "library_name", "license", "tags", "icp", "model-index"]
    assert meta["base_model"] == MODEL_ID and meta["library_name"] == "transformers"
    assert meta["license"] == "apache-2.0" and "icp" in meta["tags"]
    assert ModelCardData(**meta).to_dict() == meta  # already what huggingface_hub writes
    assert validate_card(meta) == meta
    other = card_metadata(synthetic_result(), MODEL_ID, license="other")
    with pytest.raises(ValueError, match="`license_name` \\(=None\\) has to be a lower-case license id"):
        validate_card(other)
    assert validate_card({**other, "license_name": "my-license-1.0"})["license"] == "other"


def test_write_card_takes_a_license_and_refuses_a_bad_one(tmp_path):
    path = write_card(synthetic_result(), folder=tmp_path, license="mit")
    assert load_card(path).metadata["license"] == "mit"
    with pytest.raises(ValueError, match="`license` \\(='MIT License'\\) has to be a Hub license id"):
        write_card(synthetic_result(), folder=tmp_path / "bad", license="MIT License")
    assert not (tmp_path / "bad").exists()


def _set(meta: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(meta)
    *parents, leaf = dotted.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return out


_DELETE = object()


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("icp.target_entropy", _DELETE, "`icp.target_entropy` is missing"),
        ("model-index", _DELETE, "the model id is missing: give `model-index\\[0\\].name`"),
        ("icp.calibration.seed", _DELETE, "`icp.calibration.seed` is missing"),
        ("icp.regimes.coherent", _DELETE, "`icp.regimes.coherent` is missing"),
        ("icp.target_entropy", "high", "`icp.target_entropy` \\(='high'\\) has to be a finite number"),
        ("icp.regimes.unstable_entropy", "4.5x", "`icp.regimes.unstable_entropy`"),
        ("icp.critical_entropy", True, "`icp.critical_entropy`"),
        ("icp.critical_entropy_ci", [3.3, 2.7], "`icp.critical_entropy_ci`"),
        ("icp.critical_entropy_ci", 3.0, "`icp.critical_entropy_ci`"),
        ("icp.regimes.exploratory_entropy", 0.1, "rigid_entropy` <= `exploratory_entropy"),
        ("icp.regimes.coherent", 1.5, "`coherent`"),
        ("icp.target_entropy", 3.5, "`icp.target_entropy` \\(=3.5\\) has to be <= `icp.critical_entropy`"),
        ("library_name", "icp", "`library_name` \\(='icp'\\) has to be one of \\['transformers'\\]"),
        ("library_name", _DELETE, "`library_name` is missing"),
        ("base_model", _DELETE, "`base_model` is missing"),
        ("base_model", "other-org/Other", "`base_model` \\(='other-org/Other'\\) has to be the model the card"),
        ("base_model", ["x", 3], "`base_model` \\(=\\['x', 3\\]\\) has to be the id"),
        ("license", _DELETE, "`license` is missing"),
        ("license", "Apache 2.0", "`license` \\(='Apache 2.0'\\) has to be a Hub license id.*'apache-2.0'"),
        ("tags", _DELETE, "`tags` is missing"),
        ("tags", ["decoding"], "`tags` \\(=\\['decoding'\\]\\) has to be a list of non-empty strings that holds 'icp'"),
        ("model-index", [], "`model-index` \\(=\\[\\]\\) has to be a non-empty list"),
        ("model-index", [{"results": []}], "`model-index\\[0\\].name` is missing"),
        (
            "model-index",
            [{"name": MODEL_ID, "results": []}, {"name": "other/name", "results": []}],
            "`model-index\\[1\\].name` \\(='other/name'\\) differs from `model-index\\[0\\].name`",
        ),
        (
            "model-index",
            [{"name": MODEL_ID, "results": [{"task": {"type": "t"}, "dataset": {"type": "d"}, "metrics": []}]}],
            "`model-index\\[0\\].results\\[0\\].dataset.name` is missing",
        ),
        ("model_name", "other-org/Other", "`model_name` \\(='other-org/Other'\\) and `model-index\\[0\\].name`"),
        ("icp.sweep", [], "`icp.sweep`"),
        ("icp.calibration.n_prompts", 0, "`icp.calibration.n_prompts`"),
        ("model-index", {"results": []}, "`model-index`"),
    ],
)
def test_bad_cards_name_the_bad_field(meta, dotted, value, message):
    with pytest.raises(ValueError, match=message):
        validate_card(_set(meta, dotted, value))


def test_load_card_errors(tmp_path, meta):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_card(tmp_path / "nothing")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / CARD_FILE).write_text("# no front matter\n")
    with pytest.raises(ValueError, match="no YAML front matter"):
        load_card(tmp_path / "a")
    (tmp_path / "b").mkdir()
    bad = _set(meta, "icp.regimes.rigid_entropy", 9.0)
    (tmp_path / "b" / CARD_FILE).write_text("---\n" + yaml.safe_dump(bad) + "---\nbody\n")
    with pytest.raises(ValueError, match=f"{tmp_path / 'b' / CARD_FILE}.*icp.regimes"):
        load_card(tmp_path / "b" / CARD_FILE)


# ----------------------------------------------------------------------------- lookup
def test_slugs():
    assert model_slug("HuggingFaceTB/SmolLM2-135M-Instruct") == "smollm2-135m-instruct"
    assert qualified_slug("HuggingFaceTB/SmolLM2-135M-Instruct") == "huggingfacetb--smollm2-135m-instruct"
    assert model_slug("/models/My Model/") == "my-model"
    assert qualified_slug("/models/My Model") == "my-model"


def test_find_card_hit_and_miss(cards_dir, tmp_path):
    card = find_card(MODEL_ID, search_dirs=[cards_dir])
    assert card is not None and card.model_id == MODEL_ID
    assert find_card("/some/local/folder/tiny-model", search_dirs=[cards_dir]).model_id == MODEL_ID  # by slug
    # A card in an arbitrarily named folder is found by its model_name.
    odd = tmp_path / "odd"
    write_card(synthetic_result("other-org/Renamed"), folder=odd)
    (odd / "renamed").rename(odd / "whatever")
    assert find_card("other-org/Renamed", search_dirs=[odd]).model_id == "other-org/Renamed"
    assert find_card("no-org/absent", search_dirs=[cards_dir]) is None
    with pytest.raises(CardNotFoundError, match=f"no-org/absent.*Available cards: {MODEL_ID} \\(tiny-model\\)"):
        find_card("no-org/absent", search_dirs=[cards_dir], required=True)
    with pytest.raises(CardNotFoundError, match="No model cards in"):
        find_card("no-org/absent", search_dirs=[tmp_path / "empty"], required=True)


def test_env_var_folders_are_searched_first(cards_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(cards_dir))
    assert default_search_dirs()[0] == cards_dir
    assert find_card(MODEL_ID).path == cards_dir / "tiny-model" / CARD_FILE


# ----------------------------------------------------------------------------- ICP applies cards
def _named_model(name: str):
    model = tiny_llama()
    model.name_or_path = name
    return model


def test_icp_picks_up_the_card_and_records_it(cards_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(cards_dir))
    model = _named_model(MODEL_ID)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCardWarning)
        icp = ICP(model)
    assert icp.card is not None and icp.card.model_id == MODEL_ID
    assert icp.config.target_entropy == 1.2
    assert icp.config.regimes.to_dict() == load_card(cards_dir / "tiny-model").regimes.to_dict()
    model.generate(**prompt(batch=2), max_new_tokens=3, **icp.generation_kwargs())
    recorded = icp.trace.metadata["card"]
    assert recorded["model_id"] == MODEL_ID and recorded["target_entropy"] == 1.2
    assert recorded["path"] == str(cards_dir / "tiny-model" / CARD_FILE)


def test_explicit_settings_win_over_the_card(cards_dir, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(cards_dir))
    model = _named_model(MODEL_ID)
    icp = ICP(model, target_entropy=0.9, regimes={"coherent": 0.55})
    assert icp.config.target_entropy == 0.9
    assert icp.config.regimes.coherent == 0.55 and icp.config.regimes.unstable_entropy == 4.5  # rest from the card
    explicit = ICP(model, config=ICPConfig())
    assert explicit.card is None and explicit.config.target_entropy == ICPConfig().target_entropy
    off = ICP(model, card=None)
    assert off.card is None and off.config.regimes == ICPConfig().regimes
    by_path = ICP(_named_model("someone/else"), card=cards_dir / "tiny-model")
    assert by_path.config.target_entropy == 1.2
    with pytest.raises(ValueError, match="`card`.*and `config` were both given"):
        ICP(model, config=ICPConfig(), card=cards_dir / "tiny-model")
    with pytest.raises(TypeError, match="`card`"):
        ICP(model, card=3)


def test_a_model_without_a_card_warns_once_and_uses_the_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    name = f"no-org/no-card-{uuid.uuid4().hex[:8]}"
    with pytest.warns(ICPCardWarning, match=f"No ICP model card for '{name}'.*documented defaults"):
        icp = ICP(_named_model(name))
    assert icp.card is None and icp.config == ICP(card=None).config
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCardWarning)
        ICP(_named_model(name))  # once per model and process
        ICP(tiny_llama())  # a model built from a config has no id: no lookup, no warning
    model = _named_model(name)
    model.generate(**prompt(batch=1), max_new_tokens=2, **icp.generation_kwargs())


def test_icp_without_a_model_uses_no_card():
    icp = ICP()
    icp(torch.zeros(1, 2, dtype=torch.long), torch.randn(1, 64))
    assert icp.trace.metadata["card"] is None


@pytest.mark.slow
def test_the_default_model_finds_its_shipped_card():
    from icp import load_default_model
    from icp.models import DEFAULT_MODEL_NAME

    model, _ = load_default_model()
    card = find_card(DEFAULT_MODEL_NAME, search_dirs=[REPO_CARDS], required=True)
    icp = ICP(model)
    assert icp.card is not None and icp.card.model_id == DEFAULT_MODEL_NAME
    assert icp.config.target_entropy == card.target_entropy


def test_the_card_sets_the_trackers_reference_to_its_local_slope_at_the_target(cards_dir, monkeypatch):
    from icp.calibrate import LogisticFit

    for path in sorted(REPO_CARDS.glob(f"*/{CARD_FILE}")):
        card = load_card(path)
        fit = card.icp["fit"]
        slope = LogisticFit(fit["c0"], fit["a"], fit["h0"], fit["w"]).slope(card.target_entropy)
        assert card.fitted_sensitivity == pytest.approx(abs(float(slope)), rel=1e-6)
        # The tracker's reference is the sweep's local slope at H*, between its neighbours' values.
        rows = sorted(card.icp["sweep"], key=lambda r: r["tempered_entropy"])
        # (an H* outside the sweep, as Gemma's clamped H* = 0, takes the nearest end's value)
        below = ([r for r in rows if r["tempered_entropy"] <= card.target_entropy] or rows[:1])[-1]
        above = ([r for r in rows if r["tempered_entropy"] >= card.target_entropy] or rows[-1:])[0]
        low, high = sorted((below["local_sensitivity"], above["local_sensitivity"]))
        assert low <= card.reference_sensitivity <= high
    monkeypatch.setenv(ENV_VAR, str(REPO_CARDS))
    card = load_card(next(iter(sorted(REPO_CARDS.glob(f"*/{CARD_FILE}")))))
    model = _named_model(card.model_id)
    icp = ICP(model, tracking={"rate": 0.1})
    # The card's reference merges with the caller's other tracking fields; the caller's win.
    assert icp.config.tracking.reference_sensitivity == pytest.approx(card.reference_sensitivity, rel=1e-4)
    assert icp.config.tracking.rate == 0.1
    assert ICP(model, tracking={"reference_sensitivity": 0.5}).config.tracking.reference_sensitivity == 0.5


# ----------------------------------------------------------------------------- lookup by fingerprint
def _card_with_fingerprint(folder: Path, model_id: str, fingerprint) -> Path:
    """A valid card of `model_id` recording `fingerprint` (written as huggingface_hub writes it)."""
    meta = card_metadata(synthetic_result(model_id), model_id, fingerprint=fingerprint)
    path = folder / model_slug(model_id) / CARD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    HubModelCard(f"---\n{ModelCardData(**meta).to_yaml()}\n---\n# card\n").save(path)
    return path


def test_the_shipped_default_card_records_its_fingerprint_and_old_cards_have_none(cards_dir):
    from icp.fingerprint import ModelFingerprint

    shipped = find_card("HuggingFaceTB/SmolLM2-135M-Instruct", search_dirs=[REPO_CARDS], required=True)
    assert shipped.icp["card_version"] == 3
    assert shipped.fingerprints == [ModelFingerprint("llama", 49152, 576, 30, "f1ce6524c8b90121")]
    assert load_card(cards_dir / "tiny-model").fingerprints == []  # a card without the field loads as before
    old = copy.deepcopy(shipped.metadata)
    old["icp"]["card_version"] = 2
    del old["icp"]["fingerprint"]
    assert ModelCard.from_metadata(old).fingerprints == []


def test_a_malformed_fingerprint_is_named(meta):
    from icp.fingerprint import model_fingerprint

    good = model_fingerprint(tiny_llama()).to_dict()
    for value, message in [
        ({**good, "vocab_size": -1}, r"`icp\.fingerprint\.vocab_size` \(=-1\)"),
        ([good, {**good, "embedding_signs": "no"}], r"`icp\.fingerprint\[1\]\.embedding_signs` \(='no'\)"),
        ([], r"`icp\.fingerprint` \(=\[\]\)"),
        ("llama", r"`icp\.fingerprint` \(='llama'\) has to be a mapping"),
    ]:
        bad = copy.deepcopy(meta)
        bad["icp"]["fingerprint"] = value
        with pytest.raises(ValueError, match=message):
            validate_card(bad)
    listed = copy.deepcopy(meta)
    listed["icp"]["fingerprint"] = [good, {**good, "embedding_signs": "0" * 16}]  # several builds of one model
    assert len(ModelCard.from_metadata(listed).fingerprints) == 2


def test_a_model_under_another_path_finds_its_card_by_fingerprint(tmp_path, monkeypatch):
    from icp.cards import find_card_for_model
    from icp.fingerprint import model_fingerprint

    model = tiny_llama(seed=0)
    _card_with_fingerprint(tmp_path / "cards", "test-org/Printed-Model", model_fingerprint(model))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cards"))
    model.name_or_path = str(tmp_path / "some" / "checkpoint-1234")  # a path no slug or model id matches
    assert find_card(model.name_or_path) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ICPCardWarning)
        icp = ICP(model)
        same = tiny_llama(seed=0).to(torch.bfloat16)  # the same weights in another dtype, unnamed path
        same.name_or_path = str(tmp_path / "elsewhere")
        in_bf16 = ICP(same)
    assert icp.card is not None and icp.card.model_id == "test-org/Printed-Model"
    assert in_bf16.card is not None and in_bf16.card.path == icp.card.path
    assert icp.config.target_entropy == 1.2
    assert find_card_for_model(model).model_id == "test-org/Printed-Model"


def test_a_different_model_is_not_matched_and_warns(tmp_path, monkeypatch):
    """Same architecture, other weights (another seed): the fingerprint differs, no card, the warning."""
    from icp.cards import find_card_for_model
    from icp.fingerprint import model_fingerprint

    _card_with_fingerprint(tmp_path / "cards", "test-org/Printed-Model", model_fingerprint(tiny_llama(seed=0)))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "cards"))
    for seed, vocab in ((1, 64), (0, 96)):
        other = tiny_llama(seed=seed, vocab_size=vocab)
        other.name_or_path = str(tmp_path / f"look-alike-{uuid.uuid4().hex[:8]}")
        assert find_card_for_model(other) is None
        with pytest.warns(ICPCardWarning, match="No ICP model card for"):
            icp = ICP(other)
        assert icp.card is None


def test_a_random_model_matches_no_shipped_card_and_the_fingerprint_is_computed_only_for_candidates(monkeypatch):
    import icp.card_lookup as lookup  # where find_card_for_model looks the fingerprint up
    import icp.cards as cards

    calls = []
    real = lookup.model_fingerprint
    monkeypatch.setattr(lookup, "model_fingerprint", lambda m: calls.append(m) or real(m))
    model = tiny_llama()
    model.name_or_path = f"/nowhere/{uuid.uuid4().hex[:8]}"
    assert cards.find_card_for_model(model, search_dirs=[REPO_CARDS]) is None
    assert calls == []  # no shipped card records a 64-token llama: nothing read from the weights
    with pytest.warns(ICPCardWarning):
        ICP(model)


def test_rewriting_a_card_keeps_its_fingerprint(tmp_path):
    from icp.fingerprint import model_fingerprint

    fp = model_fingerprint(tiny_llama())
    result = synthetic_result()
    result.fingerprint = fp  # what a calibration of the model records
    path = write_card(result, folder=tmp_path)
    assert load_card(path).fingerprints == [fp]
    write_card(synthetic_result(target=1.1), folder=tmp_path)  # a result without one: the card keeps it
    card = load_card(path)
    assert card.fingerprints == [fp] and card.target_entropy == 1.1


def test_the_reproduce_command_names_an_embedded_model_by_its_name():
    from icp.models import GEMMA_MODEL_NAME

    meta = card_metadata(synthetic_result(GEMMA_MODEL_NAME), GEMMA_MODEL_NAME)
    assert meta["icp"]["calibration"]["command"].startswith("icp calibrate --model gemma-3-270m ")
    assert card_metadata(synthetic_result(), MODEL_ID)["icp"]["calibration"]["command"].startswith(
        f"icp calibrate --model {MODEL_ID} "
    )
