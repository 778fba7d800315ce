"""The search ranker's pieces: features, the listwise learner, the click memory, the examination curve."""

import numpy as np
import pytest

from liverec.search.examination import Examination
from liverec.search.features import FEATURES, Signals, feature_matrix, query_key
from liverec.search.ranker import ClickMemory, LinearRanker, reciprocal_rank

F = len(FEATURES)


def signals(n: int = 5, personal: np.ndarray | None = None) -> Signals:
    return Signals(
        bm25=np.array([4.0, 2.0, 0.0, 1.0, 0.0][:n], dtype=np.float32),
        cosine=np.array([0.5, 0.1, 0.3, 0.2, 0.0][:n], dtype=np.float32),
        personal=personal,
        popularity=np.array([0.0, 10.0, 100.0, 1.0, 0.0][:n]),
        created_at=np.array([0.0, 0.0, 0.0, 0.0, 86_400.0 * 30][:n]),
        now=86_400.0 * 30,
        seen=np.array([3], dtype=np.int64),
    )


def test_features_are_scaled_per_request() -> None:
    rows = np.arange(5)
    x = feature_matrix(
        rows, signals(personal=np.array([1.0, 2.0, 3.0, 4.0, 5.0])), np.array([0, 0, 3.0, 0, 0])
    )
    col = {f: x[:, j] for j, f in enumerate(FEATURES)}
    np.testing.assert_allclose(col["bm25"], [1.0, 0.5, 0.0, 0.25, 0.0])
    np.testing.assert_allclose(col["personal"].mean(), 0.0, atol=1e-6)
    np.testing.assert_allclose(col["personal"].std(), 1.0, atol=1e-5)
    assert col["popularity"][2] == pytest.approx(1.0) and col["popularity"][0] == 0.0
    assert col["freshness"][4] == pytest.approx(1.0) and col["freshness"][0] == pytest.approx(0.5)
    assert col["seen"].tolist() == [0, 0, 0, 1, 0]
    assert col["clicks"][2] == pytest.approx(np.log1p(3.0))


def test_anonymous_search_has_no_personal_signal() -> None:
    x = feature_matrix(np.arange(5), signals(personal=None), np.zeros(5))
    assert not x[:, FEATURES.index("personal")].any()


def test_query_key_ignores_case_order_and_repeats() -> None:
    assert query_key("Thriller  ACTION action") == query_key("action thriller") == "action thriller"


def test_learning_from_clicks_moves_the_weight_to_the_feature_that_predicts_them() -> None:
    rng = np.random.default_rng(0)
    ranker = LinearRanker({f: 0.0 for f in FEATURES})
    good = FEATURES.index("cosine")
    for _ in range(400):
        x = rng.random((10, F)).astype(np.float32)
        ranker.learn(x, int(np.argmax(x[:, good])), 1.0)
    w = ranker.weights()
    assert w["cosine"] > 3 * max(abs(v) for f, v in w.items() if f != "cosine")


def test_the_click_weight_scales_the_step() -> None:
    x = np.eye(3, F, dtype=np.float32)
    light, heavy = LinearRanker(), LinearRanker()
    light.learn(x, 2, 0.1)
    heavy.learn(x, 2, 10.0)
    prior = LinearRanker().w
    assert np.abs(heavy.w - prior).sum() > np.abs(light.w - prior).sum() > 0


def test_unknown_feature_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown feature"):
        LinearRanker({"bm26": 1.0})


def test_reciprocal_rank_counts_ties_half() -> None:
    assert reciprocal_rank(np.array([3.0, 2.0, 1.0]), 0) == 1.0
    assert reciprocal_rank(np.array([3.0, 2.0, 1.0]), 2) == pytest.approx(1 / 3)
    assert reciprocal_rank(np.array([1.0, 1.0]), 1) == pytest.approx(1 / 1.5)


def test_click_memory_decays_and_is_per_query() -> None:
    m = ClickMemory(half_life_s=100.0)
    m.add("a", 7, 2.0, now=0.0)
    m.add("a", 9, 1.0, now=0.0)
    np.testing.assert_allclose(m.values("a", np.array([9, 7, 8]), now=100.0), [0.5, 1.0, 0.0])
    assert not m.values("b", np.array([7]), now=0.0).any()


def test_click_memory_is_bounded() -> None:
    m = ClickMemory(max_queries=2)
    for q in "abc":
        m.add(q, 1, 1.0, 0.0)
    assert len(m) == 2 and not m.values("a", np.array([1]), 0.0).any()


def test_examination_starts_at_the_prior_and_learns_the_curve_from_randomized_lists() -> None:
    ex = Examination(depth=5, prior_strength=50)
    np.testing.assert_allclose(ex.curve(), (1 + np.arange(5)) ** -0.5)
    true = np.array([1.0, 0.8, 0.6, 0.4, 0.3])
    rng = np.random.default_rng(1)
    for _ in range(20_000):
        for p in range(5):
            ex.observe_shown(p)
            if rng.random() < 0.3 * true[p]:
                ex.observe_click(p)
    np.testing.assert_allclose(ex.curve(), true, atol=0.05)
    assert ex.weight(4) == pytest.approx(1 / ex.p(4)) and ex.p(50) == ex.p(4)


def test_a_weight_no_click_speaks_to_stays_at_its_prior() -> None:
    """The click memory is 0 for a query nobody clicked yet: learning must not erase its weight."""
    ranker = LinearRanker(l2=1e-3)
    rng = np.random.default_rng(0)
    clicks = FEATURES.index("clicks")
    for _ in range(500):
        x = rng.random((10, F)).astype(np.float32)
        x[:, clicks] = 0.0
        ranker.learn(x, int(rng.integers(10)), 1.0)
    assert ranker.weights()["clicks"] == pytest.approx(LinearRanker().weights()["clicks"])
