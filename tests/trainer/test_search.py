"""`SearchLearner`: the click join, debiased weights, and the guarded publish."""

import numpy as np
import pytest

from liverec.search.examination import Examination
from liverec.search.features import FEATURES
from liverec.search.ranker import LinearRanker
from liverec.trainer.search import SearchLearner, Shown

F = len(FEATURES)
COS = FEATURES.index("cosine")


def shown(rng: np.random.Generator, user: str = "u", randomized: bool = False, n: int = 5) -> Shown:
    return Shown(user, "q", np.arange(n, dtype=np.int64), rng.random((n, F)).astype(np.float32), randomized)


def test_clicks_join_their_list_once_and_unknown_ones_are_counted() -> None:
    learner = SearchLearner(gate_every=100)
    learner.shown("r1", shown(np.random.default_rng(0)))
    assert learner.click("r1", 2, now=0.0)
    assert learner.click("r1", 2, now=1.0, reward=5.0)  # the purchase after the click: one choice
    assert len(learner.pending) == 1
    assert not learner.click("r1", 9, now=0.0) and not learner.click("nope", 0, now=0.0)
    assert not learner.click("r1", 3, now=0.0, reward=-1.0)  # a skip teaches nothing here
    assert learner.stats.unjoined == 2


def test_debiased_weights_are_inverse_examination_and_naive_ones_are_one() -> None:
    ex = Examination(depth=10)
    debiased, naive = (
        SearchLearner(examination=ex, gate_every=100),
        SearchLearner(debias=False, gate_every=100),
    )
    for learner in (debiased, naive):
        learner.shown("r", shown(np.random.default_rng(0), n=10))
        learner.click("r", 7, now=0.0)
    assert debiased.pending[0].weight == ex.weight(7) == pytest.approx(8**0.5)
    assert naive.pending[0].weight == 1.0


def test_randomized_lists_feed_the_examination_estimate() -> None:
    learner = SearchLearner(gate_every=100)
    learner.shown("a", shown(np.random.default_rng(0), randomized=True))
    learner.shown("b", shown(np.random.default_rng(0), randomized=False))
    learner.click("a", 1, now=0.0)
    learner.click("b", 1, now=0.0)
    assert learner.examination.shown.tolist()[:5] == [1, 1, 1, 1, 1] and learner.examination.clicks[1] == 1


def test_a_candidate_that_learned_the_click_pattern_goes_live() -> None:
    rng = np.random.default_rng(1)
    learner = SearchLearner(LinearRanker({f: 0.0 for f in FEATURES} | {"popularity": 1.0}), gate_every=10)
    for i in range(300):
        s = shown(rng)
        learner.shown(f"r{i}", s)
        learner.click(f"r{i}", int(np.argmax(s.features[:, COS])), now=float(i))
    assert learner.stats.published >= 1
    assert learner.live.weights()["cosine"] > learner.live.weights()["popularity"]


def test_the_gate_keeps_live_when_the_candidate_is_worse_on_events_it_has_not_seen() -> None:
    rng = np.random.default_rng(2)
    learner = SearchLearner(LinearRanker({f: 0.0 for f in FEATURES} | {"cosine": 3.0}), gate_every=10)
    learner.candidate = LinearRanker({f: 0.0 for f in FEATURES} | {"cosine": -3.0})  # a broken candidate
    live = learner.live.w.copy()
    for i in range(10):
        s = shown(rng)
        learner.shown(f"r{i}", s)
        learner.click(f"r{i}", int(np.argmax(s.features[:, COS])), now=float(i))
    assert learner.stats.rejected == 1 and learner.stats.published == 0
    np.testing.assert_array_equal(learner.live.w, live)
    assert learner.stats.last["candidate"] < learner.stats.last["live"]


def test_forgetting_a_user_drops_their_open_lists() -> None:
    learner = SearchLearner()
    learner.shown("mine", shown(np.random.default_rng(0), user="gone"))
    learner.shown("theirs", shown(np.random.default_rng(0), user="stays"))
    learner.forget_user("gone")
    assert list(learner.served) == ["theirs"] and not learner.click("mine", 0, now=0.0)
