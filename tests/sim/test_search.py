"""Search sessions in the simulated world (`liverec.sim.search`): the truth, the click model, the
examination estimate, what debiasing corrects, and the three learners end to end (with the real
MiniLM vectors).

What is checked against the truth: relevance grades follow the definition; clicks follow the world's
position bias; the examination curve estimated from randomized slates converges to the world's;
with that estimate, the IPS-weighted click gradient of `SearchLearner` matches the gradient of
full-information clicks (every position examined) while the naive one points elsewhere; both
learners end above the frozen prior. Not asserted: that debiased beats naive in NDCG@10. In the
default 500-item world with a steep position bias it does on every seed measured, but on this small
test world the two are level within noise, and a test that passes by luck is no test.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable

import numpy as np
import pytest
from typer.testing import CliRunner

from liverec.cli import app
from liverec.policy.shuffle import ShuffleTopK
from liverec.search.examination import Examination
from liverec.search.features import F
from liverec.search.ranker import LinearRanker
from liverec.search.searcher import Ranked, Searcher
from liverec.sim.search import (
    CLICK_PROB,
    GRADE_HIGH,
    T0,
    SearchConfig,
    SearchWorld,
    build_searcher,
    ndcg,
    simulate_search,
    summarize,
)
from liverec.sim.simulate import MemoEncoder
from liverec.sim.world import GENRES, World
from liverec.trainer.search import SearchLearner, Shown

ITEMS, USERS = 150, 200


@pytest.fixture(scope="module")
def encoder() -> MemoEncoder:
    os.environ["HF_HUB_OFFLINE"] = "1"
    return MemoEncoder()


class Small:
    """The seed-0 world of ITEMS items and USERS users, indexed with MiniLM vectors; ranks a
    (user, query) with the prior ranker."""

    def __init__(self, encoder: MemoEncoder) -> None:
        self.world = World(ITEMS, USERS, 0)
        self.sw = SearchWorld(self.world, 1.0, 0)
        self.searcher: Searcher = build_searcher(
            self.world, encoder.encode([it.text for it in self.world.items])
        )
        forms = sorted({q for g in GENRES for q in (g.kind, g.name)})
        self.qvec = dict(zip(forms, encoder.encode(forms), strict=True))
        self.allowed = np.ones(self.sw.n, dtype=bool)

    def session(self, rng: np.random.Generator, ranker: LinearRanker) -> tuple[np.ndarray, Ranked]:
        """(grades (N,), the prior's ranking) of a random user's query."""
        q = self.sw.query(int(rng.integers(USERS)), rng)
        sw = self.sw
        sig = self.searcher.signals(
            q.text, self.qvec[q.text], sw.n, sw.popularity, sw.created_at, T0, sw.personal(q.user)
        )
        return sw.relevance(q.user, q.genre), self.searcher.rank(q.text, sig, self.allowed, ranker)


@pytest.fixture(scope="module")
def small(encoder: MemoEncoder) -> Small:
    return Small(encoder)


def randomized_examination(small: Small, slates: int, seed: int) -> Examination:
    """The examination estimated from ``slates`` fully randomized top-10 slates of the prior ranker."""
    ex, rng, prior = Examination(10), np.random.default_rng(seed), LinearRanker()
    policy = ShuffleTopK(1.0, 10, seed=seed)
    for _ in range(slates):
        grades, ranked = small.session(rng, prior)
        slate = policy.select(ranked.rows, ranked.scores, 10)
        for p in range(10):
            ex.observe_shown(p)
        clicked = small.sw.clicks(slate.rows, grades, rng.random(10), rng.random(small.sw.n))
        for c in np.flatnonzero(clicked).tolist():
            ex.observe_click(c)
    return ex


@pytest.fixture(scope="module")
def estimates(small: Small) -> dict[int, Examination]:
    return {n: randomized_examination(small, n, seed=3) for n in (300, 5000)}


def test_relevance_grades_the_query_genre_by_the_in_genre_affinity() -> None:
    world = World(200, 20, 1)
    sw = SearchWorld(world)
    for user in range(20):
        u = world.users[user]
        for g in u.interests:
            grades = sw.relevance(user, g)
            in_genre = sw.genre == g
            assert (grades[~in_genre] == 0).all()  # the query asks for genre g
            assert (grades[in_genre] >= 1).all()
            a = world.affinity(u.user_id)[in_genre] - u.taste[g]
            assert np.array_equal(grades[in_genre], 1 + (a > 0) + (a > GRADE_HIGH))
            # a higher in-genre affinity never gets a lower grade
            order = np.argsort(a)
            assert (np.diff(grades[in_genre][order]) >= 0).all()
    every = np.concatenate([sw.relevance(u, g) for u in range(20) for g in world.users[u].interests])
    assert set(np.unique(every).tolist()) == {0, 1, 2, 3}
    grades = sw.relevance(0, world.users[0].interests[0])
    assert ndcg(np.argsort(-grades, kind="stable"), grades) == pytest.approx(1.0)  # the ideal order
    assert ndcg(np.argsort(grades, kind="stable"), grades) == 0.0  # the worst: no genre item in the top 10


def test_queries_come_from_the_users_interests() -> None:
    world = World(100, 30, 2)
    sw, rng = SearchWorld(world), np.random.default_rng(0)
    for _ in range(300):
        q = sw.query(int(rng.integers(30)), rng)
        assert q.genre in world.users[q.user].interests
        assert q.text in (GENRES[q.genre].kind, GENRES[q.genre].name)


def test_clicks_follow_the_worlds_position_bias() -> None:
    """Ten items of the same grade in every slate: the click rate falls with the position exactly as
    the world's examination curve does."""
    world = World(100, 10, 3)
    sw, rng = SearchWorld(world), np.random.default_rng(0)
    rows = np.arange(10)
    grades = np.full(sw.n, 2)
    n = 40_000
    clicks = np.zeros(10)
    for _ in range(n):
        clicks += sw.clicks(rows, grades, rng.random(10), rng.random(sw.n))
    ctr = clicks / n
    expected = world.examination(np.arange(10)) * CLICK_PROB[2]
    assert ctr[0] > 2 * ctr[9]
    np.testing.assert_allclose(ctr, expected, atol=0.01)


def test_the_examination_estimate_from_randomized_slates_approaches_the_true_curve(
    small: Small, estimates: dict[int, Examination]
) -> None:
    true = small.world.examination(np.arange(10))
    err = {n: float(np.abs(ex.curve() - true).max()) for n, ex in estimates.items()}
    assert err[5000] < 0.03
    assert err[5000] < err[300]


def test_debiased_click_weights_recover_the_full_information_gradient(
    small: Small, estimates: dict[int, Examination]
) -> None:
    """Clicks logged by the frozen prior ranker (greedy, position-biased). At the prior weights, the
    `SearchLearner` examples (features, clicked position, weight) sum to a gradient: weighted by
    1 / examination (estimated from randomized slates), it points where the gradient of clicks
    without position bias (every result examined) points; unweighted (naive) it does not."""
    prior, rng = LinearRanker(), np.random.default_rng(1)
    learners = {  # the greedy log has no randomized slate: the estimate stays the one of 5000 slates
        "debiased": SearchLearner(debias=True, gate_every=10**9, examination=copy.deepcopy(estimates[5000])),
        "naive": SearchLearner(debias=False, gate_every=10**9),
    }
    full = np.zeros(F)
    n = 3000
    for i in range(n):
        grades, ranked = small.session(rng, prior)
        x, rows = ranked.features[:10], ranked.rows[:10]
        for p, r in enumerate(CLICK_PROB[grades[rows]]):
            full += r * prior.loss_and_grad(x, p)[1]
        clicked = np.flatnonzero(small.sw.clicks(rows, grades, rng.random(10), rng.random(small.sw.n)))
        for learner in learners.values():
            learner.shown(str(i), Shown("u", ranked.query_key, rows, x, randomized=False))
            for p in clicked.tolist():
                learner.click(str(i), p, T0)

    def cosine(learner: SearchLearner) -> float:
        g = sum(
            (e.weight * prior.loss_and_grad(e.features, e.clicked)[1] for e in learner.pending), np.zeros(F)
        )
        return float(g @ full / np.linalg.norm(g) / np.linalg.norm(full))

    assert cosine(learners["debiased"]) > 0.8  # 0.86..0.99 over rng seeds 1..5
    assert cosine(learners["naive"]) < 0.0  # -0.21..-0.44: naive learning would move the other way


@pytest.fixture(scope="module")
def run(encoder: MemoEncoder) -> Callable[[], dict]:
    cache: dict[str, dict] = {}

    def go() -> dict:
        if not cache:
            cfg = SearchConfig(sessions=3000, users=USERS, items=ITEMS, holdout=200)
            cache["result"] = simulate_search(cfg, encoder.encode).to_json()
        return cache["result"]

    return go


@pytest.mark.slow
def test_the_three_learners_serve_the_same_sessions_and_learning_beats_the_frozen_prior(
    run: Callable[[], dict],
) -> None:
    result = run()
    arms = result["arms"]
    assert set(arms) == {"debiased", "naive", "frozen"}
    assert arms["frozen"]["clicks"] == 0 and arms["frozen"]["weights"] == LinearRanker().weights()
    for name in ("debiased", "naive"):
        assert arms[name]["clicks"] > 3000
        assert arms[name]["published"] > 0
        assert arms[name]["weights"] != arms["frozen"]["weights"]
        assert arms[name]["ndcg@10_holdout"] > arms["frozen"]["ndcg@10_holdout"] + 0.02
        assert arms[name]["ndcg@10"] > arms["frozen"]["ndcg@10"] + 0.02
    true, est = np.array(result["examination"]["true"]), np.array(result["examination"]["estimated"])
    assert est[0] == 1.0 and np.abs(est - true).max() < 0.1  # ~300 randomized slates, shrunk to a prior


@pytest.mark.slow
def test_a_seed_fixes_a_run_and_the_summary_pairs_the_seeds(
    run: Callable[[], dict], encoder: MemoEncoder
) -> None:
    from liverec.sim.search import SearchResult

    first = run()
    again = simulate_search(
        SearchConfig(sessions=3000, users=USERS, items=ITEMS, holdout=200), encoder.encode
    )
    a, b = dict(first), again.to_json()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    other = SearchResult(**{**first, "seed": 7})
    s = summarize([again, other])
    assert s["seeds"] == [0, 7]
    assert (
        s["debiased_minus_naive"]["ndcg@10"]["per_seed"]
        == [round(first["arms"]["debiased"]["ndcg@10"] - first["arms"]["naive"]["ndcg@10"], 4)] * 2
    )
    assert s["debiased_minus_naive"]["ndcg@10"]["sd"] == 0.0


@pytest.mark.slow
def test_cli_search_prints_one_json_object_and_a_table(
    encoder: MemoEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("liverec.sim.simulate.MemoEncoder", lambda: encoder)  # MiniLM loaded once
    result = CliRunner().invoke(
        app, ["simulate", "--search", "--sessions", "200", "--seeds", "2", "--items", "60", "--users", "30"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["seeds"] == [0, 1]
    for name in ("debiased", "naive", "frozen"):
        assert len(out["search"][name]["ndcg@10_per_seed"]) == 2
        assert 0.0 < out["search"][name]["ndcg@10"] <= 1.0
    assert len(out["examination"]["true"]) == len(out["examination"]["estimated"]) == 10
    assert "debiased - naive" in result.stderr
