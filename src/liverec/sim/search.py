"""Search sessions in the simulated world: debiased vs naive click learning, checked against the truth.

A session: a user of the `World` types a query about one of their interest genres, either the
genre's ``kind`` as the item texts write it ("noir thriller", "space opera") or its short name
("noir", "scifi": often in no text, so only the semantic index answers). The `Searcher` ranks the
catalog, `ShuffleTopK` shows ``k`` results (greedy; the top ``depth`` shuffled on an ``epsilon``
share of sessions) and the user clicks under the world's position bias.

Truth (`SearchWorld.relevance`), graded 0..3: item i is relevant to (user u, query about genre g)
only if i is of genre g (grade 0 otherwise); then its grade is ``1 + [a > 0] + [a > GRADE_HIGH]``
with ``a = affinity(u, i) - taste_u[g]``: the part of the world's hidden affinity that varies inside
the genre (u's taste for the item's mood, pace and era, plus the item's quality). Clicks
(`SearchWorld.clicks`) follow the world's position-based model: position p is examined with
probability ``World.examination(p) = (1 + p) ** -position_decay``, an examined result of grade r is
clicked with probability ``CLICK_PROB[r]`` (grade 0 draws noise clicks).

The other signals the ranker sees (`liverec.search.features`): ``personal`` stands in for a trained
recommender (there is none here): the true affinity plus N(0, ``personal_noise``) noise, fixed per
(user, item), so it knows the user's genres and, noisily, their taste inside one; ``popularity`` is
a past-sales count only weakly related to quality (log-normal, 0.3 of its sd from quality);
``created_at`` is uniform over the last 180 days and unrelated to relevance (``freshness`` is
noise); nobody has ``seen`` anything.

Three learners serve the same sessions (same users and queries, same shuffle draws, same
examination uniform per position and click uniform per item: where two learners show an item at an
examined position, both users click it or neither does), each with its own `Searcher` and so its
own click memory: ``debiased`` (`SearchLearner`, each click weighted by 1 / the examination it
estimates from the randomized slates), ``naive`` (weight 1) and ``frozen`` (the prior
`LinearRanker`, no click memory: it learns nothing). Reported per learner: NDCG@10 of its greedy
ranking (the order before the shuffle) against the true grades, averaged over the last
``eval_share`` of sessions and, at the end, over ``holdout`` fixed (user, query) pairs; and the
debiased learner's examination estimate next to the world's true curve.

What it shows depends on how steep the position bias is (figures: README and docs/search.md). On a
results page people rarely look far down, so ``position_decay`` defaults to 1.0 here (the world's
recommendation slates use 0.7). Both learners beat the frozen prior by 0.04-0.06 NDCG@10; the
debiased one is ahead of naive when the bias is steep and level with it when it is mild: naive
learning's bias toward what is already on top costs it more the fewer people look past the top.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from liverec.policy.shuffle import RANDOMIZED, ShuffleTopK
from liverec.search.examination import Examination
from liverec.search.ranker import LinearRanker
from liverec.search.searcher import Searcher
from liverec.sim.world import GENRES, World
from liverec.trainer.search import SearchLearner, Shown

T0 = 1_700_000_000.0  # event time of the first session
DAY_S = 86_400.0
GRADE_HIGH = 0.8  # in-genre affinity above which a matching item is grade 3 (about 1 in 5)
CLICK_PROB = np.array([0.05, 0.2, 0.45, 0.8])  # P(click | examined, grade 0..3)
ARMS = ("debiased", "naive", "frozen")
Encode = Callable[[Sequence[str]], np.ndarray]  # texts -> (len, 384) float32 unit vectors
Progress = Callable[[int, int], None]  # (sessions done, total)


@dataclass
class SearchConfig:
    """One seed's run. The world knobs describe the scenario, the rest the system."""

    sessions: int = 5000
    seed: int = 0
    users: int = 300
    items: int = 500
    position_decay: float = (
        1.0  # (1 + p) ** -decay: steeper on a results page than the world's 0.7 for slates
    )
    personal_noise: float = 1.0  # sd of the noise on the personal stand-in (true affinity)
    k: int = 10  # results shown
    epsilon: float = 0.1  # share of sessions whose top ``depth`` is shuffled
    depth: int = 10
    gate_every: int = 20
    eval_share: float = 0.2  # online NDCG over the last share of sessions
    holdout: int = 300  # (user, query) pairs ranked at the end
    dt_s: float = 60.0  # event time between sessions

    def validate(self) -> None:
        if self.sessions < 1 or self.users < 1 or self.k < 1 or self.depth < 1 or self.items < self.k:
            raise ValueError("need sessions >= 1, users >= 1, depth >= 1 and items >= k >= 1")
        if not 0 <= self.epsilon <= 1 or not 0 < self.eval_share <= 1 or self.personal_noise < 0:
            raise ValueError("need epsilon in [0, 1], eval_share in (0, 1] and personal_noise >= 0")
        if self.holdout < 0 or self.gate_every < 1 or self.dt_s <= 0:
            raise ValueError("need holdout >= 0, gate_every >= 1 and dt_s > 0")


@dataclass(frozen=True)
class Query:
    user: int  # index into world.users
    genre: int
    text: str


class SearchWorld:
    """The world's truth for search: queries, graded relevance, clicks, and the item signals."""

    def __init__(self, world: World, personal_noise: float = 1.0, seed: int = 0) -> None:
        self.world = world
        self.n = len(world.items)
        self.genre = np.array([it.genre for it in world.items], dtype=np.int64)  # (N,)
        self.personal_noise = personal_noise
        self.seed = seed
        rng = np.random.default_rng([seed, 101])
        quality = np.array([it.quality for it in world.items])  # (N,)
        z = quality / max(float(quality.std()), 1e-9)
        self.popularity = np.floor(np.exp(1.5 + 0.3 * z + rng.normal(0.0, 1.0, self.n)))  # (N,) sales
        self.created_at = T0 - rng.uniform(0.0, 180.0, self.n) * DAY_S  # (N,) epoch seconds
        self._personal: dict[int, np.ndarray] = {}

    def query(self, user: int, rng: np.random.Generator) -> Query:
        """A query about one of the user's interest genres: its kind or its short name, evenly."""
        interests = self.world.users[user].interests
        g = int(interests[int(rng.integers(len(interests)))])
        return Query(user, g, GENRES[g].kind if rng.random() < 0.5 else GENRES[g].name)

    def relevance(self, user: int, genre: int) -> np.ndarray:
        """(N,) int64 true grades 0..3 of every item for the user's query about ``genre``."""
        u = self.world.users[user]
        a = self.world.affinity(u.user_id) - u.taste[genre]  # (N,) the in-genre part of the affinity
        grade = 1 + (a > 0).astype(np.int64) + (a > GRADE_HIGH)
        return np.where(self.genre == genre, grade, 0)

    def personal(self, user: int) -> np.ndarray:
        """(N,) float32 the recommender stand-in: true affinity + N(0, personal_noise), per user."""
        p = self._personal.get(user)
        if p is None:
            rng = np.random.default_rng([self.seed, 102, user])
            aff = self.world.affinity(self.world.users[user].user_id)
            p = (aff + rng.normal(0.0, self.personal_noise, self.n)).astype(np.float32)
            self._personal[user] = p
        return p

    def clicks(
        self, rows: np.ndarray, grades: np.ndarray, exam_u: np.ndarray, click_u: np.ndarray
    ) -> np.ndarray:
        """(L,) bool clicks on ``rows`` (L,) in display order: position p is examined when
        ``exam_u[p] < examination(p)`` ((>= L,) uniforms), and an examined row clicked when
        ``click_u[row] < CLICK_PROB[grade]`` ((N,) uniforms)."""
        examined = exam_u[: len(rows)] < self.world.examination(np.arange(len(rows)))
        return examined & (click_u[rows] < CLICK_PROB[grades[rows]])


def dcg(grades: np.ndarray, k: int) -> float:
    g = np.asarray(grades, dtype=np.float64)[:k]
    return float(((2.0**g - 1.0) / np.log2(np.arange(2, g.size + 2))).sum())


def ndcg(ranked: np.ndarray, grades: np.ndarray, k: int = 10) -> float:
    """NDCG@k (gain 2^grade - 1) of rows ``ranked`` against ``grades`` (N,); the ideal ranking is
    the best k grades over all rows (every item may be shown)."""
    ideal = dcg(np.sort(grades)[::-1], k)
    return dcg(grades[ranked[:k]], k) / ideal if ideal > 0 else 0.0


def build_searcher(world: World, vectors: np.ndarray) -> Searcher:
    """A `Searcher` over the world's items: their text as the world writes it, and ``vectors``."""
    s = Searcher()
    s.index(list(range(len(world.items))), [it.text for it in world.items], vectors)
    s.lexical.compact()
    return s


@dataclass
class _Arm:
    name: str
    searcher: Searcher
    policy: ShuffleTopK
    learner: SearchLearner | None  # None: frozen
    prior: LinearRanker
    online: list[float] = field(default_factory=list)  # NDCG@10 of the greedy ranking, last sessions
    clicks: int = 0

    def ranker(self) -> LinearRanker:
        return self.learner.live if self.learner is not None else self.prior


@dataclass
class SearchResult:
    seed: int
    arms: dict[str, dict[str, Any]]  # name -> ndcg@10, ndcg@10_holdout, match@10_holdout, clicks, ...
    examination: dict[str, list[float]]  # "true" and "estimated" (the debiased learner's), by position
    config: dict[str, Any]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def simulate_search(cfg: SearchConfig, encode: Encode, progress: Progress | None = None) -> SearchResult:
    """One seed: the three learners on the same sessions (see the module docstring)."""
    cfg.validate()
    t_start = time.perf_counter()
    world = World(cfg.items, cfg.users, cfg.seed, position_decay=cfg.position_decay)
    sw = SearchWorld(world, cfg.personal_noise, cfg.seed)
    vectors = encode([it.text for it in world.items])
    forms = sorted({q for g in GENRES for q in (g.kind, g.name)})
    qvec = dict(zip(forms, encode(forms), strict=True))
    arms = []
    for name in ARMS:
        searcher = build_searcher(world, vectors)
        learner = None
        if name != "frozen":
            learner = SearchLearner(
                LinearRanker(),
                debias=name == "debiased",
                gate_every=cfg.gate_every,
                examination=Examination(cfg.depth),
                memory=searcher.remember_click,
            )
        policy = ShuffleTopK(cfg.epsilon, cfg.depth, seed=cfg.seed)  # the same shuffles for every arm
        arms.append(_Arm(name, searcher, policy, learner, LinearRanker()))
    rng = np.random.default_rng([cfg.seed, 100])  # the sessions: users, queries, click uniforms
    allowed = np.ones(sw.n, dtype=bool)
    eval_from = cfg.sessions - max(1, round(cfg.eval_share * cfg.sessions))
    now = T0
    for i in range(cfg.sessions):
        q = sw.query(int(rng.integers(cfg.users)), rng)
        exam_u, click_u = rng.random(cfg.k), rng.random(sw.n)
        grades = sw.relevance(q.user, q.genre)
        sig = arms[0].searcher.signals(
            q.text, qvec[q.text], sw.n, sw.popularity, sw.created_at, now, sw.personal(q.user)
        )  # the click memory is not in the signals: each arm's rank() adds its own
        for arm in arms:
            ranked = arm.searcher.rank(q.text, sig, allowed, arm.ranker())
            if i >= eval_from:
                arm.online.append(ndcg(ranked.rows, grades))
            slate = arm.policy.select(ranked.rows, ranked.scores, cfg.k)
            if arm.learner is None:
                continue
            assert slate.index is not None
            rid = f"s{i}"
            features = ranked.features[slate.index]
            user_id = world.users[q.user].user_id
            shown = Shown(user_id, ranked.query_key, slate.rows, features, slate.policy == RANDOMIZED)
            arm.learner.shown(rid, shown)
            for p in np.flatnonzero(sw.clicks(slate.rows, grades, exam_u, click_u)).tolist():
                arm.learner.click(rid, p, now)
                arm.clicks += 1
        now += cfg.dt_s
        if progress is not None and ((i + 1) % 100 == 0 or i + 1 == cfg.sessions):
            progress(i + 1, cfg.sessions)
    holdout = _holdout(sw, arms, cfg, qvec, allowed, now)
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        out[arm.name] = {
            "ndcg@10": round(float(np.mean(arm.online)), 4),
            "ndcg@10_holdout": round(holdout[arm.name][0], 4),
            "match@10_holdout": round(holdout[arm.name][1], 4),  # share of the top 10 of the genre
            "clicks": arm.clicks,
            "weights": arm.ranker().weights(),
        }
        if arm.learner is not None:
            out[arm.name] |= {
                "published": arm.learner.stats.published,
                "rejected": arm.learner.stats.rejected,
            }
    debiased = arms[0].learner
    assert debiased is not None
    exam = {
        "true": [round(float(p), 4) for p in world.examination(np.arange(cfg.depth))],
        "estimated": [round(float(p), 4) for p in debiased.examination.curve()],
    }
    return SearchResult(cfg.seed, out, exam, asdict(cfg), round(time.perf_counter() - t_start, 2))


def _holdout(
    sw: SearchWorld,
    arms: list[_Arm],
    cfg: SearchConfig,
    qvec: dict[str, np.ndarray],
    allowed: np.ndarray,
    now: float,
) -> dict[str, tuple[float, float]]:
    """Per arm: mean NDCG@10 and share of the query's genre in the top 10 of its final greedy
    ranking, over ``cfg.holdout`` fixed (user, query) pairs (the same for every arm)."""
    rng = np.random.default_rng([cfg.seed, 200])
    scores: dict[str, list[tuple[float, float]]] = {a.name: [] for a in arms}
    for _ in range(cfg.holdout):
        q = sw.query(int(rng.integers(cfg.users)), rng)
        grades = sw.relevance(q.user, q.genre)
        sig = arms[0].searcher.signals(
            q.text, qvec[q.text], sw.n, sw.popularity, sw.created_at, now, sw.personal(q.user)
        )
        for arm in arms:
            rows = arm.searcher.rank(q.text, sig, allowed, arm.ranker()).rows
            scores[arm.name].append((ndcg(rows, grades), float(np.mean(grades[rows[:10]] > 0))))
    return {k: (float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))) if v else (0.0, 0.0)
            for k, v in scores.items()}  # fmt: skip


def summarize(results: Sequence[SearchResult]) -> dict[str, Any]:
    """Several seeds: per arm the per-seed and mean NDCG@10 (online and holdout), the paired
    debiased - naive difference (mean, sd over seeds), and the examination curves (mean estimate)."""
    out: dict[str, Any] = {"search": {}, "debiased_minus_naive": {}}
    for arm in ARMS:
        entry: dict[str, Any] = {}
        for key in ("ndcg@10", "ndcg@10_holdout"):
            vals = [r.arms[arm][key] for r in results]
            entry[key] = round(float(np.mean(vals)), 4)
            entry[f"{key}_per_seed"] = vals
        out["search"][arm] = entry
    for key in ("ndcg@10", "ndcg@10_holdout"):
        diff = [round(r.arms["debiased"][key] - r.arms["naive"][key], 4) for r in results]
        sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
        out["debiased_minus_naive"][key] = {"mean": round(float(np.mean(diff)), 4), "sd": round(sd, 4),
                                            "per_seed": diff}  # fmt: skip
    est = np.mean([r.examination["estimated"] for r in results], axis=0)
    out["examination"] = {
        "true": results[0].examination["true"],
        "estimated": [round(float(p), 4) for p in est],
        "estimated_per_seed": [r.examination["estimated"] for r in results],
    }
    out["seeds"] = [r.seed for r in results]
    out["runs"] = [r.to_json() for r in results]
    return out


def table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (for stderr)."""
    seeds = summary["seeds"]
    head = (
        f"{'NDCG@10':<22}" + "".join(f"{'seed ' + str(s):>11}" for s in seeds) + f"{'mean':>9}{'holdout':>9}"
    )
    lines = [head]
    for arm in ARMS:
        e = summary["search"][arm]
        cells = "".join(f"{v:>11.4f}" for v in e["ndcg@10_per_seed"])
        lines.append(f"{arm:<22}{cells}{e['ndcg@10']:>9.4f}{e['ndcg@10_holdout']:>9.4f}")
    d, dh = summary["debiased_minus_naive"]["ndcg@10"], summary["debiased_minus_naive"]["ndcg@10_holdout"]
    cells = "".join(f"{v:>+11.4f}" for v in d["per_seed"])
    lines.append(f"{'debiased - naive':<22}{cells}{d['mean']:>+9.4f}{dh['mean']:>+9.4f}")
    lines.append(f"{'  (sd over seeds)':<22}{'':>{11 * len(seeds)}}{d['sd']:>9.4f}{dh['sd']:>9.4f}")
    exam = summary["examination"]
    lines.append("examination  " + " ".join(f"{p:>5}" for p in range(len(exam["true"]))))
    lines.append("  true       " + " ".join(f"{v:5.2f}" for v in exam["true"]))
    lines.append("  estimated  " + " ".join(f"{v:5.2f}" for v in exam["estimated"]))
    return "\n".join(lines)
