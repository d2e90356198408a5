"""Tests of the benchmark metrics in `eval/metrics/<slug>/`: through `evaluate.load` (offline, by path) and
through each module's plain functions, against hand-computed values, brute force and reference libraries.

The plain functions are taken from the very module `evaluate.load` imported, so both paths share one
MiniLM cache.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")

import evaluate  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from icp import LoopConfig  # noqa: E402
from icp.signals import trailing_cycle  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SLUGS = (
    "repetition",
    "loop_rate",
    "prompt_coherence",
    "mauve",
    "qa_accuracy",
    "truthfulqa_similarity",
    "selective_prediction",
)


@functools.cache
def _load(slug: str):
    """(metric, module) for `eval/metrics/<slug>`: the metric from `evaluate.load`, the module it runs from."""
    metric = evaluate.load(str(ROOT / "eval" / "metrics" / slug))
    return metric, sys.modules[type(metric).__module__]


def metric(slug: str):
    return _load(slug)[0]


def module(slug: str):
    return _load(slug)[1]


# ----------------------------------------------------------------------------------------------
# layout: every metric is a loadable evaluate module with a card
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", SLUGS)
def test_module_layout_and_card(slug):
    folder = ROOT / "eval" / "metrics" / slug
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "\ntitle:" in card and "\ntags:" in card and "\ndescription:" in card
    for section in ("Metric description", "How to use", "Inputs", "Output values", "Limitations", "Citation"):
        assert f"## {section}" in card, (slug, section)
    m, mod = _load(slug)
    assert isinstance(m, evaluate.Metric)
    for name in ("_DESCRIPTION", "_KWARGS_DESCRIPTION", "_CITATION"):
        assert getattr(mod, name).strip()
    assert f'evaluate.load("eval/metrics/{slug}")' in mod._KWARGS_DESCRIPTION
    assert m.info.features is not None


# ----------------------------------------------------------------------------------------------
# repetition
# ----------------------------------------------------------------------------------------------


def test_repetition_hand_computed():
    out = metric("repetition").compute(predictions=["a b a b a b", "the cat sat on the mat"])
    # bigrams: 5 with 2 unique + 5 with 5 unique -> 1 - 7/10; trigrams 1 - 6/8; 4-grams 1 - 5/6
    assert out["rep_2"] == pytest.approx(30.0)
    assert out["rep_3"] == pytest.approx(25.0)
    assert out["rep_4"] == pytest.approx(100 / 6)
    assert out["diversity"] == pytest.approx(0.7 * 0.75 * (5 / 6))
    # corpus unigrams: 12 tokens, 7 distinct; bigrams ab, ba, the cat, cat sat, sat on, on the, the mat
    assert out["distinct_1"] == pytest.approx(7 / 12)
    assert out["distinct_2"] == pytest.approx(7 / 10)
    assert set(out) == {"rep_2", "rep_3", "rep_4", "diversity", "distinct_1", "distinct_2", "distinct_3", "distinct_4"}
    assert all(isinstance(v, float) for v in out.values())


def test_repetition_counts_within_generations_and_short_texts_contribute_nothing():
    mod = module("repetition")
    # the same text twice: no repetition within either, full repetition across them (distinct only)
    assert mod.rep_n([["x", "y", "z"], ["x", "y", "z"]], 2) == 0.0
    assert mod.distinct_n([["x", "y", "z"], ["x", "y", "z"]], 2) == 0.5
    base = [["a", "b", "a", "b", "c"]]
    assert mod.rep_n(base + [["q"], []], 2) == mod.rep_n(base, 2)
    out = metric("repetition").compute(predictions=["", "one"])
    assert out["rep_2"] == 0.0 and out["distinct_2"] == 0.0 and out["diversity"] == 1.0
    assert out["distinct_1"] == 1.0


def test_repetition_options_and_per_example():
    out = metric("repetition").compute(
        predictions=["abab", "xyz"], ngram_sizes=(2,), distinct_sizes=(1,), tokenizer=list, per_example=True
    )
    assert set(out) == {"rep_2", "diversity", "distinct_1", "per_example"}
    assert out["per_example"] == {"unique_2": [2, 2], "total_2": [3, 2]}
    assert out["rep_2"] == pytest.approx(100 * (1 - 4 / 5))
    assert out["diversity"] == pytest.approx(0.8)
    assert out["distinct_1"] == pytest.approx(5 / 7)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"predictions": []}, "predictions"),
        ({"predictions": ["a"], "ngram_sizes": (0, 2)}, "ngram_sizes"),
        ({"predictions": ["a"], "ngram_sizes": ()}, "ngram_sizes"),
        ({"predictions": ["a"], "distinct_sizes": (1, 1)}, "distinct_sizes"),
        ({"predictions": ["a"], "tokenizer": "split"}, "tokenizer"),
        ({"predictions": ["a"], "tokenizer": str.upper}, "tokenizer"),
        ({"predictions": ["a", None]}, r"predictions\[1\]"),
    ],
)
def test_repetition_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        module("repetition").repetition_scores(**kwargs)


def test_repetition_empty_predictions_through_evaluate():
    with pytest.raises(ValueError, match="predictions"):
        metric("repetition").compute(predictions=[])


_words = st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=3), min_size=0, max_size=30)


@given(st.lists(_words, min_size=1, max_size=5), st.integers(1, 4))
def test_repetition_properties(texts, n):
    mod = module("repetition")
    rep = mod.rep_n(texts, n)
    dist = mod.distinct_n(texts, n)
    assert 0.0 <= rep <= 100.0 and 0.0 <= dist <= 1.0
    # order of the corpus does not matter
    assert mod.rep_n(texts[::-1], n) == pytest.approx(rep)
    # the corpus can only repeat more than its generations do on their own
    unique, total = mod.ngram_counts(texts, n)
    if sum(total):
        assert dist <= sum(unique) / sum(total) + 1e-12
    out = mod.repetition_scores([" ".join(t) for t in texts])
    assert out["diversity"] == pytest.approx(math.prod(1 - out[f"rep_{k}"] / 100 for k in (2, 3, 4)))


@given(st.integers(1, 12), st.integers(1, 4))
def test_repetition_all_unique_tokens_is_zero(m, n):
    text = " ".join(f"w{i}" for i in range(m))
    out = module("repetition").repetition_scores([text], ngram_sizes=(n,), distinct_sizes=(n,))
    assert out[f"rep_{n}"] == 0.0 and out["diversity"] == 1.0
    assert out[f"distinct_{n}"] == (1.0 if m >= n else 0.0)


@given(st.integers(1, 8), st.integers(2, 6), st.integers(1, 4))
def test_repetition_distinct_block_repeated_k_times(m, k, n):
    # m distinct tokens repeated k times: km - n + 1 n-grams, of which exactly m are distinct when n <= m
    n = min(n, m)
    tokens = [f"w{i}" for i in range(m)] * k
    assert module("repetition").rep_n([tokens], n) == pytest.approx(100 * (1 - m / (k * m - n + 1)))


@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=12), st.integers(2, 5), st.integers(1, 4))
def test_repetition_text_repeated_k_times(tokens, k, n):
    # every n-gram of T^k already starts within the first copy: at most L distinct among kL - n + 1
    length = len(tokens)
    n = min(n, length)
    rep = module("repetition").rep_n([tokens * k], n)
    assert rep >= 100 * (1 - length / (k * length - n + 1)) - 1e-9
    assert rep >= module("repetition").rep_n([tokens], n) - 1e-9


# ----------------------------------------------------------------------------------------------
# loop_rate
# ----------------------------------------------------------------------------------------------


def test_loop_rate_hand_cases():
    rows = [[1, 2, 3] * 10, list(range(40)), [9, 9] + [4, 5] * 12, [7] * 10]
    out = metric("loop_rate").compute(predictions=rows, reached_limit=[True, True, False, True], per_example=True)
    assert out["per_example"]["looped"] == [True, False, True, False]
    assert out["loop_rate"] == 0.5 and out["loop_at_limit_rate"] == 0.25
    assert set(metric("loop_rate").compute(predictions=rows)) == {"loop_rate"}


def test_loop_rate_thresholds_mirror_loop_config():
    mod = module("loop_rate")
    # period 1: a loop from 16 repeated tokens on, i.e. 17 equal tokens
    assert not mod.ends_in_loop([5] * 16) and mod.ends_in_loop([5] * 17)
    # period 10: needs (3 - 1) * 10 = 20 repeated tokens = 30 tokens in all
    block = list(range(10))
    assert mod.ends_in_loop(block * 3) and mod.ends_in_loop([99] + block * 3)
    assert not mod.ends_in_loop([99] + block[1:] + block * 2)  # 19 repeated tokens
    # a loop earlier in the text does not count: only the tail
    assert not mod.ends_in_loop([1, 2, 3] * 10 + [4, 5, 6, 7])
    # the empty generation and single tokens
    assert not mod.ends_in_loop([]) and not mod.ends_in_loop([3])
    for cfg in (LoopConfig(), LoopConfig(max_period=4, min_repeats=2, min_loop_tokens=3)):
        assert mod.loop_window(cfg.max_period, cfg.min_repeats, cfg.min_loop_tokens) == cfg.window


def _icp_loop(seq, max_period, min_repeats, min_tokens, window=None):
    tail = seq if window is None else seq[-window:]
    if not tail:
        return False
    cycle = trailing_cycle(torch.tensor([tail], dtype=torch.long), max_period, min_repeats, min_tokens)
    return bool(cycle.progress[0].item() >= 1.0)


@st.composite
def cyclic_sequences(draw):
    alphabet = draw(st.integers(1, 5))
    prefix = draw(st.lists(st.integers(0, alphabet - 1), max_size=12))
    block = draw(st.lists(st.integers(0, alphabet - 1), min_size=1, max_size=6))
    repeats = draw(st.integers(0, 8))
    cut = draw(st.integers(0, len(block)))
    return prefix + block * repeats + block[:cut]


@given(
    st.one_of(cyclic_sequences(), st.lists(st.integers(0, 3), max_size=60)),
    st.integers(1, 8),
    st.integers(2, 4),
    st.integers(1, 12),
)
def test_loop_detection_matches_icp_trailing_cycle(seq, max_period, min_repeats, min_tokens):
    mod = module("loop_rate")
    got = mod.ends_in_loop(seq, max_period, min_repeats, min_tokens)
    assert got == _icp_loop(seq, max_period, min_repeats, min_tokens)
    # what icp's LoopStoppingCriteria sees: only the last LoopConfig.window tokens
    window = LoopConfig(max_period=max_period, min_repeats=min_repeats, min_loop_tokens=min_tokens).window
    assert got == _icp_loop(seq, max_period, min_repeats, min_tokens, window)
    # the definition: the last max(p * min_repeats, min_tokens + p) tokens are p-periodic for some p
    brute = any(
        len(seq) >= (k := max(p * min_repeats, min_tokens + p))
        and all(seq[i] == seq[i - p] for i in range(len(seq) - k + p, len(seq)))
        for p in range(1, max_period + 1)
    )
    assert got == brute


@given(st.lists(st.integers(0, 50), min_size=1, max_size=6), st.integers(2, 12))
def test_loop_true_on_long_repeats_false_on_fresh_tokens(block, repeats):
    mod = module("loop_rate")
    p = len(block)
    seq = block * repeats
    # a true cycle of period <= p that makes up the sequence: enough sightings and tokens means a loop
    if repeats >= 3 and p * (repeats - 1) >= 16:
        assert mod.ends_in_loop(seq, max_period=8)
    assert not mod.ends_in_loop(list(range(1000, 1000 + p * repeats)), max_period=8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"predictions": []}, "predictions"),
        ({"predictions": [[1, -2]]}, r"predictions\[0\]"),
        ({"predictions": [[1, 2]], "reached_limit": [True, False]}, "reached_limit"),
        ({"predictions": [[1, 2]], "reached_limit": [1]}, "reached_limit"),
        ({"predictions": [[1, 2]], "min_repeats": 1}, "min_repeats"),
        ({"predictions": [[1, 2]], "max_period": 0}, "max_period"),
        ({"predictions": [[1, 2]], "min_tokens": 2.5}, "min_tokens"),
    ],
)
def test_loop_rate_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        module("loop_rate").loop_scores(**kwargs)


# ----------------------------------------------------------------------------------------------
# selective_prediction
# ----------------------------------------------------------------------------------------------


def test_selective_prediction_hand_cases():
    out = metric("selective_prediction").compute(uncertainty=[0.1, 0.2, 0.8, 0.9], correct=[1, 1, 0, 0])
    assert set(out) == {"auroc", "prr", "aurc"}
    assert out["auroc"] == 1.0 and out["prr"] == pytest.approx(1.0)
    assert out["aurc"] == pytest.approx((0 + 0 + 1 / 3 + 1 / 2) / 4)
    worst = metric("selective_prediction").compute(uncertainty=[0.9, 0.8, 0.2, 0.1], correct=[1, 1, 0, 0])
    assert worst["auroc"] == 0.0 and worst["prr"] == pytest.approx(-1.0)  # risks 1, 1, 2/3, 1/2 vs 1/2 random
    curve = metric("selective_prediction").compute(uncertainty=[0.3, 0.1, 0.2], correct=[0, 1, 0], return_curve=True)
    assert curve["risk_coverage"]["coverage"] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert curve["risk_coverage"]["risk"] == pytest.approx([0.0, 0.5, 2 / 3])


def test_selective_prediction_single_class_is_nan():
    mod = module("selective_prediction")
    for correct in ([1, 1, 1], [0, 0, 0]):
        out = mod.selective_scores([0.1, 0.5, 0.2], correct)
        assert math.isnan(out["auroc"]) and math.isnan(out["prr"])
        assert out["aurc"] == pytest.approx(1.0 - correct[0])


@given(
    st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, -1.0]), st.integers(0, 1)), min_size=2, max_size=40)
)
def test_auroc_matches_sklearn_with_ties(pairs):
    u = [p[0] for p in pairs]
    c = [p[1] for p in pairs]
    got = module("selective_prediction").auroc(u, c)
    if len(set(c)) < 2:
        assert math.isnan(got)
    else:
        assert got == pytest.approx(roc_auc_score([1 - x for x in c], u))


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=40), st.randoms(use_true_random=False))
def test_auroc_matches_sklearn_continuous(u, rnd):
    c = [rnd.randint(0, 1) for _ in u]
    c[0], c[1] = 0, 1
    assert module("selective_prediction").auroc(u, c) == pytest.approx(roc_auc_score([1 - x for x in c], u))


@given(st.lists(st.integers(0, 1), min_size=2, max_size=40).filter(lambda c: 0 < sum(c) < len(c)), st.data())
def test_perfect_detector_and_oracle_ordering(correct, data):
    noise = data.draw(st.lists(st.floats(0, 0.49), min_size=len(correct), max_size=len(correct)))
    u = [1 - c + e for c, e in zip(correct, noise)]  # every wrong answer above every correct one
    out = module("selective_prediction").selective_scores(u, correct)
    assert out["auroc"] == 1.0
    assert out["prr"] == pytest.approx(1.0)
    assert out["aurc"] == pytest.approx(module("selective_prediction").oracle_aurc(correct))


@given(st.lists(st.integers(0, 1), min_size=2, max_size=40).filter(lambda c: 0 < sum(c) < len(c)))
def test_uninformative_uncertainty_has_zero_prr(correct):
    out = module("selective_prediction").selective_scores([0.7] * len(correct), correct)
    assert out["auroc"] == 0.5
    assert out["prr"] == pytest.approx(0.0, abs=1e-12)
    assert out["aurc"] == pytest.approx(1 - np.mean(correct))


def test_random_uncertainty_has_prr_near_zero(rng):
    correct = rng.integers(0, 2, size=4000)
    out = module("selective_prediction").selective_scores(rng.random(4000).tolist(), correct.tolist())
    assert abs(out["prr"]) < 0.1 and abs(out["auroc"] - 0.5) < 0.05


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1)), min_size=1, max_size=6))
def test_risk_coverage_is_the_average_over_tie_breaks(pairs):
    u = [float(p[0]) for p in pairs]
    c = [p[1] for p in pairs]
    n = len(u)
    curves = []
    for perm in itertools.permutations(range(n)):
        order = sorted(perm, key=lambda i: u[i])  # stable: perm breaks the ties
        errors = np.cumsum([1 - c[i] for i in order])
        curves.append(errors / np.arange(1, n + 1))
    cov, risk = module("selective_prediction").risk_coverage(u, c)
    assert cov.tolist() == pytest.approx([k / n for k in range(1, n + 1)])
    assert risk.tolist() == pytest.approx(np.mean(curves, axis=0).tolist())


@pytest.mark.parametrize(
    "uncertainty, correct, match",
    [
        ([], [], "uncertainty"),
        ([0.1, 0.2], [1], "correct"),
        ([0.1, float("nan")], [1, 0], "uncertainty"),
        ([0.1, 0.2], [1, 2], "correct"),
    ],
)
def test_selective_prediction_rejects_bad_inputs(uncertainty, correct, match):
    with pytest.raises(ValueError, match=match):
        module("selective_prediction").selective_scores(uncertainty, correct)


def test_selective_prediction_through_evaluate_rejects_nan():
    with pytest.raises(ValueError, match="uncertainty"):
        metric("selective_prediction").compute(uncertainty=[0.1, float("nan")], correct=[1, 0])


# ----------------------------------------------------------------------------------------------
# qa_accuracy
# ----------------------------------------------------------------------------------------------


def test_qa_normalisation_matches_squad():
    mod = module("qa_accuracy")
    assert mod.normalize_answer("The  Beatles!") == "beatles"
    assert mod.normalize_answer("an apple, a pear") == "apple pear"
    assert mod.normalize_answer("Theory of an Art") == "theory of art"
    assert mod.normalize_answer("“Quoted”") == "quoted"


def test_qa_accuracy_hand_cases():
    preds = [
        "The answer is Barack Obama.",  # contains the alias
        "Obama",  # exact match of another alias
        "Obamacare",  # not on a word boundary
        "Paris.\nBecause it is the capital.",  # first line is exact
        "I don’t know.",  # curly apostrophe: abstention
        "I don't know, maybe Paris",  # abstention: never correct
        "London",  # wrong
    ]
    refs = [["Barack Obama"], ["Barack Obama", "Obama"], ["Obama"], ["Paris"], ["Paris"], ["Paris"], ["Paris"]]
    out = metric("qa_accuracy").compute(predictions=preds, references=refs, per_example=True)
    assert out["per_example"]["correct"] == [True, True, False, True, False, False, False]
    assert out["per_example"]["abstained"] == [False, False, False, False, True, True, False]
    assert out["accuracy"] == pytest.approx(3 / 7)
    assert out["exact_match"] == pytest.approx(2 / 7)
    assert out["abstention_rate"] == pytest.approx(2 / 7)
    assert out["answered_accuracy"] == pytest.approx(3 / 5)


def test_qa_abstained_flag_and_nan():
    m = metric("qa_accuracy")
    out = m.compute(predictions=["Paris", "Paris"], references=[["Paris"], ["Paris"]], abstained=[True, False])
    assert out == {"accuracy": 0.5, "exact_match": 0.5, "abstention_rate": 0.5, "answered_accuracy": 1.0}
    out = m.compute(predictions=["no comment"], references=[["Paris"]])
    assert out["abstention_rate"] == 1.0 and math.isnan(out["answered_accuracy"])
    out = m.compute(predictions=["Nope"], references=[["Paris"]], abstention_phrases=["nope"])
    assert out["abstention_rate"] == 1.0


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I have no comment.", True),
        ("I'M NOT SURE", True),
        ("I am not sure, it could be 1912.", True),
        ("I cannot answer that.", True),
        ("unknown.", True),
        ("The Unknown Soldier", False),
        ("He declined, saying he had no comment", True),
        ("Paris. I'm not sure though.", False),
        ("Paris", False),
    ],
)
def test_qa_abstention_phrases(text, expected):
    assert module("qa_accuracy").is_abstention(text) is expected


_qa_token = st.sampled_from(["Paris", "the", "A", "capital", "of", "France", ".", ",", "!", "\n", "is", "paris."])


@given(st.lists(_qa_token, max_size=12).map(" ".join), st.lists(_qa_token, min_size=1, max_size=3).map(" ".join))
def test_qa_exact_match_implies_correct(pred, alias):
    mod = module("qa_accuracy")
    if not mod.normalize_answer(alias):
        return
    if mod.exact_match(pred, [alias]):
        assert mod.contains_alias(pred, [alias])
    out = mod.qa_scores([pred], [[alias]])
    assert out["exact_match"] <= out["accuracy"]
    assert mod.normalize_answer(mod.normalize_answer(pred)) == mod.normalize_answer(pred)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"predictions": [], "references": []}, "predictions"),
        ({"predictions": ["a"], "references": [[]]}, r"references\[0\]"),
        ({"predictions": ["a"], "references": [["the"]]}, r"references\[0\]"),
        ({"predictions": ["a"], "references": [["b"]], "abstained": [True, False]}, "abstained"),
        ({"predictions": ["a"], "references": [["b"]], "abstained": ["yes"]}, r"abstained\[0\]"),
        ({"predictions": ["a"], "references": [["b"]], "abstention_phrases": "nope"}, "abstention_phrases"),
        ({"predictions": [None], "references": [["b"]]}, r"predictions\[0\]"),
    ],
)
def test_qa_rejects_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        module("qa_accuracy").qa_scores(**kwargs)


# ----------------------------------------------------------------------------------------------
# mauve: the maths on histograms and synthetic features, then end to end on MiniLM
# ----------------------------------------------------------------------------------------------


def test_mauve_histogram_cases():
    mod = module("mauve")
    p = np.array([0.25, 0.25, 0.5])
    assert mod.mauve_from_histograms(p, p) == pytest.approx(1.0)
    assert mod.mauve_from_histograms(np.array([1.0, 0.0]), np.array([0.0, 1.0])) < 0.01
    near = mod.mauve_from_histograms(p, np.array([0.3, 0.2, 0.5]))
    far = mod.mauve_from_histograms(p, np.array([0.7, 0.2, 0.1]))
    assert 1.0 > near > far > 0.0
    assert mod.kl_multinomial(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == math.inf
    curve = mod.divergence_curve(p, p)
    assert curve.shape == (27, 2)
    assert curve[0].tolist() == [1.0, 0.0] and curve[-1].tolist() == [0.0, 1.0]
    assert mod.auto_buckets(5000, 5000) == 500 and mod.auto_buckets(3, 100) == 2


def test_mauve_area_ignores_tie_order():
    mod = module("mauve")
    pts = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 1.0]])
    assert mod.area_under_curve(pts) == 1.0
    assert mod.area_under_curve(pts[::-1]) == 1.0


_histograms = st.lists(st.integers(0, 20), min_size=2, max_size=8).filter(lambda c: sum(c) > 0)


@given(_histograms, st.data())
def test_mauve_is_symmetric_and_bounded(pc, data):
    qc = data.draw(st.lists(st.integers(0, 20), min_size=len(pc), max_size=len(pc)).filter(lambda c: sum(c) > 0))
    p, q = np.array(pc) / sum(pc), np.array(qc) / sum(qc)
    mod = module("mauve")
    m = mod.mauve_from_histograms(p, q)
    assert 0.0 <= m <= 1.0 + 1e-12
    assert m == pytest.approx(mod.mauve_from_histograms(q, p), abs=1e-9)
    if np.allclose(p, q):
        assert m == pytest.approx(1.0)


def test_mauve_on_synthetic_features(rng):
    mod = module("mauve")
    a = rng.normal(size=(100, 8))
    b = rng.normal(size=(100, 8))
    shifted = rng.normal(size=(100, 8)) + 3.0
    same = mod.mauve_from_features(a, b)
    different = mod.mauve_from_features(a, shifted)
    assert same > 0.8 and different < 0.2
    assert mod.mauve_from_features(a, a) == pytest.approx(1.0)
    assert mod.mauve_from_features(a, b, seed=3) == pytest.approx(mod.mauve_from_features(a, b, seed=3))
    p, q = mod.quantize(a, shifted, num_buckets=12)
    assert p.shape == q.shape == (12,) and p.sum() == pytest.approx(1.0) and q.sum() == pytest.approx(1.0)


_SUBJECTS = ("The old farmer", "My younger sister", "A tired doctor", "The quiet student", "Our new neighbour")
_ACTIONS = ("walked to the market", "read a long book", "cooked dinner for friends", "fixed the broken fence")
ENGLISH = [f"{s} {a} on a sunny afternoon." for s in _SUBJECTS for a in _ACTIONS] * 2  # 40


def test_mauve_end_to_end():
    m = metric("mauve")
    assert m.compute(predictions=ENGLISH, references=ENGLISH)["mauve"] > 0.99
    gen = np.random.default_rng(0)
    noise = ["".join(gen.choice(list("qxzjkvw0123456789#%&"), size=30)) for _ in range(len(ENGLISH))]
    different = m.compute(predictions=noise, references=ENGLISH)["mauve"]
    assert different < 0.2
    out = m.compute(predictions=ENGLISH, references=ENGLISH, num_buckets=4, per_example=True)
    assert out["per_example"] == {} and set(out) == {"mauve", "per_example"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_buckets": 1}, "num_buckets"),
        ({"num_buckets": "many"}, "num_buckets"),
        ({"explained_variance": 1.0}, "explained_variance"),
        ({"scaling": 0}, "scaling"),
        ({"seed": -1}, "seed"),
        ({"batch_size": 0}, "batch_size"),
        ({"device": 3}, "device"),
        ({"references": []}, "references"),
    ],
)
def test_mauve_rejects_bad_inputs(kwargs, match):
    args = {"predictions": ["a b"], "references": ["c d"], **kwargs}
    with pytest.raises(ValueError, match=match):
        module("mauve").mauve_scores(**args)


# ----------------------------------------------------------------------------------------------
# prompt_coherence and truthfulqa_similarity (MiniLM)
# ----------------------------------------------------------------------------------------------


def test_rowwise_cosine():
    mod = module("prompt_coherence")
    a = np.array([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0], [1.0, 1.0]])
    b = np.array([[5.0, 0.0], [-3.0, -4.0], [1.0, 0.0], [0.0, 2.0]])
    assert mod.rowwise_cosine(a, b).tolist() == pytest.approx([1.0, -1.0, 0.0, math.sqrt(0.5)])


def test_prompt_coherence_end_to_end():
    m = metric("prompt_coherence")
    prompts = ["The recipe for a chocolate cake", "The recipe for a chocolate cake", "Hello", "   "]
    conts = ["needs flour, cocoa, sugar, butter and eggs.", "interest rates rose at the central bank.", "", "hi"]
    out = m.compute(predictions=conts, references=prompts, per_example=True, device="cpu", batch_size=2)
    on_topic, off_topic, empty, blank_prompt = out["per_example"]["coherence"]
    assert on_topic > off_topic + 0.1 and empty == 0.0 and blank_prompt == 0.0
    assert out["coherence"] == pytest.approx(np.mean(out["per_example"]["coherence"]))
    same = m.compute(predictions=["A dog runs in the park."], references=["A dog runs in the park."])
    assert same["coherence"] == pytest.approx(1.0, abs=1e-5)


def test_prompt_coherence_rejects_bad_inputs():
    mod = module("prompt_coherence")
    with pytest.raises(ValueError, match="references"):
        mod.coherence_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="predictions"):
        mod.coherence_scores([], [])
    with pytest.raises(ValueError, match="batch_size"):
        mod.coherence_scores(["a"], ["b"], batch_size=0)


@pytest.mark.parametrize("slug", ["prompt_coherence", "mauve", "truthfulqa_similarity"])
def test_the_minilm_metrics_share_one_helper_file(slug):
    shared = ROOT / "eval" / "metrics" / "_minilm" / "minilm.py"
    assert (ROOT / "eval" / "metrics" / slug / "minilm.py").resolve() == shared.resolve()  # a link, not a copy
    assert module(slug).embed.__module__.rsplit(".", 1)[-1] == "minilm"


def test_minilm_is_loaded_once_per_process_and_device():
    mod = module("prompt_coherence")
    assert mod.load_minilm("cpu") is mod.load_minilm("cpu")
    vectors = mod.embed(["one", "two", "one"])
    assert vectors.shape == (3, 384) and np.allclose(vectors[0], vectors[2])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_truthfulqa_similarity_end_to_end():
    m = metric("truthfulqa_similarity")
    out = m.compute(
        predictions=[
            "Nothing in particular happens if you crack your knuckles.",
            "You will get arthritis.",
            "I have no comment.",
        ],
        correct_answers=[["Nothing in particular happens if you crack your knuckles"], [], ["Paris"]],
        incorrect_answers=[["You will get arthritis if you crack your knuckles"]] * 2 + [["London"]],
        per_example=True,
    )
    diffs = out["per_example"]["diff"]
    assert diffs[0] > 0 and diffs[1] < 0 and diffs[2] > 0.5  # "I have no comment." is a true reference
    assert out["truthful_diff"] == pytest.approx(np.mean(diffs))
    assert out["truthful_rate"] == pytest.approx(2 / 3)
    assert all(-2.0 <= d <= 2.0 for d in diffs)


def test_truthfulqa_pure_functions():
    mod = module("truthfulqa_similarity")
    assert mod.true_references([]) == ["I have no comment."]
    assert mod.true_references(["I have no comment.", "x"]) == ["I have no comment.", "x"]
    answer = np.array([1.0, 0.0])
    assert mod.similarity_diff(answer, np.array([[2.0, 0.0]]), np.array([[0.0, 1.0], [-1.0, 0.0]])) == 1.0
    with pytest.raises(ValueError, match=r"incorrect_answers\[0\]"):
        mod.truthfulqa_scores(["a"], [["b"]], [[]])
    with pytest.raises(ValueError, match="correct_answers"):
        mod.truthfulqa_scores(["a"], [], [["b"]])
