"""`liverec evaluate search`: liverec's search against its parts, on the same cases, full catalog.

A case is (user, time, query, target item) with the user's history before it (`search_cases`). Every
model ranks the whole catalog; HR@10, NDCG@10 and MRR, NDCG@10 with a 95% bootstrap interval over
the cases. Ties count against the target. The models:

- ``bm25``: the query's BM25 score alone (`LexicalIndex` over each item's title, text and tags);
- ``semantic``: the query-item cosine of the MiniLM vectors alone;
- ``recommender``: the personal model (the Transformer, trained as `liverec evaluate offline` trains
  it: train sequences, early stopping on the validation targets) on the user's history, ignoring the
  query, with the user's history items excluded as the recommender excludes them when it serves; a
  user without history gets popularity. bm25 and semantic exclude nothing (a search engine doesn't);
  the report's "diagnostics" have them with the history excluded too (``bm25_unseen``, ...);
- ``search``: `Searcher.rank` over every item with a `LinearRanker` on all its features, trained on
  the training cases only (never a test case): listwise cross-entropy of the target among the whole
  catalog, the learning rate and epochs chosen on the newest 20% of the training cases.

The click memory (the ``clicks`` feature) holds the training cases as clicks, each from its time on:
a case sees only clicks strictly before it. With ``online``, the test cases are also replayed in time
order for two rankers from the same start: ``search_frozen`` (the trained ranker, a memory that
learns nothing from test cases: ``search`` itself) and ``search_online`` (a `SearchLearner`, naive
weights since nothing here is position-biased, its memory fed by its clicks). Each case is scored
before anything learns from it; then the online ranker's top 50 are "shown" and, if the target is
among them, clicked. Whether the online ranker keeps the offline AdaGrad state or starts a fresh one
(and at which learning rate) is chosen by the same replay of the newest 20% of the training cases.

Leave-one-out, like the offline evaluator, lets aggregates cross time: popularity counts every
training sequence and the personal model trains on other users' later events; only the click memory
is kept strictly in time. Its personal scores for the ranker's training cases come from a model
early-stopped on those same targets, a slight optimism in the ``personal`` weight, never in a test
figure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liverec.core.metrics import Scorer, bootstrap_interval, ndcg_per_user, ranking_metrics
from liverec.core.split import LeaveOneOut
from liverec.evaluate.search_cases import (
    Case,
    Encode,
    QueryRow,
    World,
    build_world,
    personal_scores,
    timeline,
)
from liverec.events.datasets import Dataset
from liverec.search.features import query_key
from liverec.search.ranker import LinearRanker
from liverec.search.searcher import Ranked, Searcher
from liverec.settings import ModelSettings, RewardWeights, TrainConfig
from liverec.trainer.search import SearchLearner, Shown

Log = Callable[[str], None]
# (split, item vectors, seed) -> the personal model's scorer and what to report about its training
FitPersonal = Callable[[LeaveOneOut, np.ndarray | None, int], tuple[Scorer, dict[str, Any]]]

BASELINES = ("bm25", "semantic", "recommender")
UNSEEN = ("bm25_unseen", "semantic_unseen")  # diagnostics: the same with the history excluded
HOLDOUT = 0.2  # newest share of the training cases the ranker's learning rate and epochs are chosen on
LEARNING_RATES = (0.03, 0.1, 0.3)
MAX_EPOCHS = 20
SHOWN = 50  # results "shown" per case in the online replay
GATE_EVERY = 20  # the server's `SearchLearner` default
ONLINE_LRS: tuple[float | None, ...] = (None, 0.03, 0.1, 0.3)  # `choose_online`'s candidates
MAX_TRAIN_CELLS = 10_000_000  # training cases x items whose features are kept (newest cases first)


def _quiet(_: str) -> None:
    pass


def transformer_personal(model: ModelSettings, train: TrainConfig, log: Log = _quiet) -> FitPersonal:
    """The personal model: `fit_transformer` with these settings and the run's seed."""
    from liverec.trainer.offline import EpochLog, fit_transformer, scorer

    def on_epoch(e: EpochLog) -> None:
        if e.epoch % 5 == 0 and e.val:
            log(f"  epoch {e.epoch}: loss {e.loss:.3f}, val ndcg@10 {e.val['ndcg@10']:.4f}")

    def fit(split: LeaveOneOut, vectors: np.ndarray | None, seed: int) -> tuple[Scorer, dict[str, Any]]:
        cfg = train.model_copy(update={"seed": seed})
        net, res = fit_transformer(split, vectors, model, cfg, on_epoch)
        val = res.best_val.get("ndcg@10", 0.0)
        epochs = f"epoch {res.best_epoch}/{len(res.history)}"
        log(f"  transformer: val ndcg@10 {val:.4f}, {epochs}, {res.seconds:.0f}s")
        info = {"val_ndcg@10": val, "best_epoch": res.best_epoch, "epochs": len(res.history)}
        return scorer(net), {**info, "seconds": round(res.seconds, 1)}

    return fit


def rank_of(scores: np.ndarray, target: int, exclude: np.ndarray | None = None) -> int:
    """0-based rank of ``target`` under ``scores`` (N,), ties counted ahead of it."""
    s = np.asarray(scores, dtype=np.float64)
    if exclude is not None and len(exclude):
        s = s.copy()
        s[exclude[exclude != target]] = -np.inf
    return int((s >= s[target]).sum()) - 1


def ranked_rank(r: Ranked, target: int) -> int:
    hit = np.flatnonzero(r.rows == target)
    return int((r.scores >= r.scores[hit[0]]).sum()) - 1 if hit.size else len(r.rows)


def rank_case(
    w: World, searcher: Searcher, c: Case, personal: np.ndarray | None, pop: np.ndarray, ranker: LinearRanker
) -> tuple[Ranked, Any]:
    sig = searcher.signals(
        c.query, w.queries[c.query], w.n, pop, w.created_at, c.time, personal, np.asarray(c.history)
    )
    return searcher.rank(c.query, sig, np.ones(w.n, bool), ranker, depth=w.n), sig


def training_examples(w: World, personal: list[np.ndarray | None], log: Log) -> list[tuple[np.ndarray, int]]:
    """(features (N, F), target index) of the training cases in time order, each with the click
    memory of the training cases strictly before it. Only the newest ``MAX_TRAIN_CELLS`` are kept."""
    searcher, prior = w.searcher(), LinearRanker()
    keep_from = len(w.train) - max(1, MAX_TRAIN_CELLS // max(w.n, 1))
    if keep_from > 0:
        log(f"  ranker: learning from the newest {len(w.train) - keep_from:,} training cases")
    order = sorted(range(len(w.train)), key=lambda i: w.train[i].time)
    newest = set(order[max(keep_from, 0) :])
    out = []
    for i, c, is_click in timeline(w.train, w.train):
        if is_click:
            searcher.remember_click(query_key(c.query), c.target, 1.0, c.time)
        elif i in newest:
            r, _ = rank_case(w, searcher, c, personal[i], w.pop_train, prior)
            out.append((r.features, int(np.flatnonzero(r.rows == c.target)[0])))
    return out


def _ndcg(ranker: LinearRanker, examples: Sequence[tuple[np.ndarray, int]]) -> float:
    ranks = np.array([rank_of(ranker.score(x), t) for x, t in examples])
    return float(ndcg_per_user(ranks).mean()) if len(ranks) else 0.0


def _epoch(
    ranker: LinearRanker, examples: Sequence[tuple[np.ndarray, int]], rng: np.random.Generator
) -> None:
    for k in rng.permutation(len(examples)):
        x, t = examples[k]
        ranker.learn(x, t, 1.0)


def fit_ranker(
    examples: Sequence[tuple[np.ndarray, int]], seed: int
) -> tuple[LinearRanker, dict[str, Any], LinearRanker]:
    """The ranker over ``examples`` (time order): learning rate and epochs (0 = the prior weights)
    chosen by NDCG@10 on the newest ``HOLDOUT`` of them, then refit on all of them. Also the chosen
    ranker as trained on the rest (what `choose_online` replays the held-out cases with)."""
    n_hold = round(HOLDOUT * len(examples)) if len(examples) >= 5 else 0
    fit, hold = examples[: len(examples) - n_hold], examples[len(examples) - n_hold :]
    held = LinearRanker()
    best = (_ndcg(held, hold), 0.1, 0)
    prior = best[0]
    for k, lr in enumerate(LEARNING_RATES if n_hold else ()):
        ranker, rng = LinearRanker(lr=lr), np.random.default_rng([seed, k])
        for epoch in range(1, MAX_EPOCHS + 1):
            _epoch(ranker, fit, rng)
            score = _ndcg(ranker, hold)
            if score > best[0]:
                best, held = (score, lr, epoch), ranker.copy()
    if not n_hold:
        best = (0.0, 0.1, 3)
    ranker, rng = LinearRanker(lr=best[1]), np.random.default_rng([seed, len(LEARNING_RATES)])
    for _ in range(best[2]):
        _epoch(ranker, examples, rng)
    info = {"lr": best[1], "epochs": best[2], "holdout_cases": n_hold}
    info |= {"holdout_ndcg@10": round(best[0], 6), "prior_holdout_ndcg@10": round(prior, 6)}
    return ranker, info, held


def choose_online(
    w: World, personal: list[np.ndarray | None], held: LinearRanker, n_hold: int
) -> tuple[float | None, dict[str, Any]]:
    """The online learner's learning rate (None: it carries on with the offline AdaGrad state), by
    the online NDCG@10 of a replay of the newest ``n_hold`` training cases, learned from the rest."""
    if not n_hold:
        return None, {}
    order = sorted(range(len(w.train)), key=lambda i: (w.train[i].time, i))
    fit, hold = order[:-n_hold], order[-n_hold:]
    val = dataclasses.replace(
        w, train=[w.train[i] for i in fit], test=[w.train[i] for i in hold], pop_test=w.pop_train
    )
    scores: dict[float | None, float] = {}
    for lr in ONLINE_LRS:
        ranks, _ = replay(val, held, [personal[i] for i in hold], True, _quiet, lr)
        scores[lr] = float(ndcg_per_user(ranks["search_online"]).mean())
    best = max(ONLINE_LRS, key=lambda lr: scores[lr])  # the first of equals: no reset on a tie
    frozen = float(ndcg_per_user(ranks["search_frozen"]).mean())
    return best, {"lr": best, "holdout_online_ndcg@10": scores[best], "holdout_frozen_ndcg@10": frozen}


def replay(
    w: World,
    ranker: LinearRanker,
    personal: list[np.ndarray | None],
    online: bool,
    log: Log,
    online_lr: float | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every model's 0-based rank of each test case's target (see the module doc). The online
    learner starts from ``ranker``'s weights, with its AdaGrad state, or a fresh one at ``online_lr``."""
    names = [*BASELINES, *UNSEEN, "search", *(("search_online",) if online else ())]
    ranks = {m: np.zeros(len(w.test), np.int64) for m in names}
    frozen = w.searcher()
    live = w.searcher() if online else None
    start = ranker.copy() if online_lr is None else LinearRanker(ranker.weights(), lr=online_lr)
    learner = (
        SearchLearner(start, debias=False, gate_every=GATE_EVERY, memory=live.remember_click)
        if live
        else None
    )
    done = 0
    for j, c, is_click in timeline(w.train, w.test):
        if is_click:
            for s in (frozen, live):
                if s is not None:
                    s.remember_click(query_key(c.query), c.target, 1.0, c.time)
            continue
        r, sig = rank_case(w, frozen, c, personal[j], w.pop_test, ranker)
        history = np.asarray(c.history)
        ranks["bm25"][j] = rank_of(sig.bm25, c.target)
        ranks["semantic"][j] = rank_of(sig.cosine, c.target)
        ranks["bm25_unseen"][j] = rank_of(sig.bm25, c.target, history)
        ranks["semantic_unseen"][j] = rank_of(sig.cosine, c.target, history)
        own = personal[j]
        ranks["recommender"][j] = rank_of(w.pop_test if own is None else own, c.target, history)
        ranks["search"][j] = ranked_rank(r, c.target)
        if live is not None and learner is not None:
            r = live.rank(c.query, sig, np.ones(w.n, bool), learner.live, depth=w.n)
            ranks["search_online"][j] = ranked_rank(r, c.target)
            learner.shown(f"case-{j}", Shown(c.user, r.query_key, r.rows[:SHOWN], r.features[:SHOWN], False))
            hit = np.flatnonzero(r.rows[:SHOWN] == c.target)
            if hit.size:
                learner.click(f"case-{j}", int(hit[0]), now=c.time)
        done += 1
        if done % max(1, len(w.test) // 4) == 0:
            log(f"  ranked {done:,}/{len(w.test):,} test cases")
    if online:
        ranks["search_frozen"] = ranks["search"]
    status = learner.status() if learner else {}
    return ranks, {k: status[k] for k in ("weights", "published", "rejected", "clicks") if k in status}


@dataclass
class SeedRun:
    seed: int
    ranks: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)


def run_seed(w: World, seed: int, fit_personal: FitPersonal, online: bool, log: Log = _quiet) -> SeedRun:
    log(f"seed {seed}: training the personal model on {len(w.split.train):,} users")
    score, personal_info = fit_personal(w.split, w.vectors, seed)
    p_train = personal_scores(score, w.train, w.n)
    ranker, fit_info, held = fit_ranker(training_examples(w, p_train, log), seed)
    log(f"  ranker: lr {fit_info['lr']}, {fit_info['epochs']} epochs, weights {ranker.weights()}")
    info: dict[str, Any] = {"personal": personal_info, "ranker": fit_info, "weights": ranker.weights()}
    online_lr = None
    if online:
        online_lr, info["online_choice"] = choose_online(w, p_train, held, fit_info["holdout_cases"])
        log(f"  online learning rate {online_lr} (None: the offline AdaGrad state): {info['online_choice']}")
    ranks, replayed = replay(w, ranker, personal_scores(score, w.test, w.n), online, log, online_lr)
    if online:
        info["online"] = replayed
    return SeedRun(seed, ranks, info)


def _ci(terms: np.ndarray, over: np.ndarray | None = None) -> list[float] | None:
    if over is not None and not over.sum():
        return None
    return list(bootstrap_interval(terms, over, 0.05, 10_000, random_state=0))


def _paired(
    models: dict[str, dict[str, Any]], per_case: dict[str, np.ndarray], model: str, against: Sequence[str]
) -> dict[str, Any]:
    """``model`` against the best of ``against`` by mean NDCG@10: the ratio and difference of mean
    NDCG@10 with their paired 95% bootstrap intervals over the cases."""
    best = max(against, key=lambda m: models[m]["ndcg@10"])
    a, b = models[model]["ndcg@10"], models[best]["ndcg@10"]
    return {
        "baseline": best,
        "ratio": a / b if b else None,
        "ratio_ci95": _ci(per_case[model], per_case[best]),
        "difference": a - b,
        "difference_ci95": _ci(per_case[model] - per_case[best]),
    }


def summarize(w: World, runs: Sequence[SeedRun]) -> dict[str, Any]:
    """Means over seeds; intervals over cases of the per-case NDCG@10 averaged over seeds."""
    per_case = {m: np.mean([ndcg_per_user(r.ranks[m]) for r in runs], axis=0) for m in runs[0].ranks}
    per_seed = []
    for r in runs:
        figs = {m: ranking_metrics(rk, (10,)) for m, rk in r.ranks.items()}
        per_seed.append({"seed": r.seed, "models": figs, **r.info})
    keys = ("ndcg@10", "hr@10", "mrr")
    models: dict[str, dict[str, Any]] = {
        m: {k: float(np.mean([p["models"][m][k] for p in per_seed])) for k in keys} for m in per_case
    }
    for m in per_case:
        models[m]["ndcg@10_ci95"] = _ci(per_case[m])
    ratio = None
    extra: dict[str, Any] = {}
    if "search_online" in models:
        frozen = models["search_frozen"]["ndcg@10"]
        ratio = models["search_online"]["ndcg@10"] / frozen if frozen else None
        extra["paired_online"] = _paired(models, per_case, "search_online", ("search_frozen",))
    weights = {k: float(np.mean([r.info["weights"][k] for r in runs])) for k in runs[0].info["weights"]}
    return {
        "models": {m: v for m, v in models.items() if m not in UNSEEN},
        "cases": len(w.test),
        "online_vs_frozen_ndcg@10": ratio,
        # search against the best of bm25, semantic and recommender (the bar), and against the best
        # of those and the diagnostics that exclude the history like the recommender
        "paired": _paired(models, per_case, "search", BASELINES),
        "paired_strongest": _paired(models, per_case, "search", BASELINES + UNSEEN),
        **extra,
        "diagnostics": {m: models[m] for m in UNSEEN},
        "weights": weights,
        "mode": w.mode,
        "training_cases": len(w.train),
        "items": w.n,
        "skipped_query_rows": w.skipped,
        "seeds": [r.seed for r in runs],
        "per_seed": per_seed,
    }


def evaluate_search(
    data: Dataset,
    encode: Encode,
    fit_personal: FitPersonal,
    seeds: Sequence[int] = (0,),
    queries: Sequence[QueryRow] | None = None,
    test_fraction: float = 0.5,
    online: bool = False,
    rewards: RewardWeights | None = None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """The whole comparison (see the module doc) as one JSON-ready dict."""
    w = build_world(data, encode, queries, test_fraction, rewards, log)
    return summarize(w, [run_seed(w, s, fit_personal, online, log) for s in seeds])
