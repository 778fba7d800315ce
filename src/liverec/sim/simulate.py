"""`simulate`: the real service, in-process, against a drifting `World`, with regret against its oracle.

1. Warm-up: a uniformly random logging policy serves ``warmup`` visits; the log (impressions with
   propensities, then clicks, carts, purchases, dwell, skips) goes into the store.
2. Initial model (``model="transformer"``): a small SASRec trained offline on a leave-one-out split
   of that log, with MiniLM embeddings of the items' text (cached in the store), registered and
   promoted in a temporary `ModelRegistry`. ``model="popularity"`` serves the popularity +
   co-occurrence model instead (no Transformer).
3. ``interactions`` visits: a user asks the real `Engine.recommend` (its policy, its impressions
   log), the world responds, the feedback goes through `Engine.ingest`; new items arrive with text.
   ``learner="online"`` runs the real `Follower` (an `OnlineLearner` behind the validation gate)
   every ``learn_every`` visits; a promotion is loaded by the engine's `ModelManager` synchronously
   (no watcher thread), so a seed fixes the run. ``learner="frozen"`` never changes the weights.

Reward is clicks; regret sums, per visit, the expected clicks of the oracle's slate minus those of
the served slate, both from the world's true click probabilities with position bias, over the
items the engine may show (not yet interacted with).
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from liverec.core.rewards import Rewards
from liverec.core.schema import Event, EventContext, EventType, Item
from liverec.model.text import TextEncoder
from liverec.policy.base import Policy
from liverec.policy.registry import POLICIES, make_policy, policy_params
from liverec.serve.engine import Engine
from liverec.settings import JoinConfig, ServerSettings, Settings, TrainConfig
from liverec.sim.feedback import feedback_events, uniform_slate
from liverec.sim.policies import Oracle, UniformRandom
from liverec.sim.report import SimResult, summarize
from liverec.sim.world import World
from liverec.store import EventStore, open_store
from liverec.trainer.follow import Follower, GateConfig
from liverec.trainer.online import OnlineConfig

T0 = 1_700_000_000.0  # event time of the first warm-up visit (fixed: a seed fixes the whole run)
SIM_POLICIES = ("oracle", "random")  # besides the real ones in `liverec.policy.registry`
MODEL_PARAMS: dict[str, Any] = {"d_model": 32, "n_layers": 1, "n_heads": 2, "max_len": 50, "dropout": 0.2}
TRAIN_PARAMS: dict[str, Any] = {"epochs": 30, "batch_size": 128, "lr": 3e-3, "patience": 3}
Progress = Callable[[int, int], None]  # (visits done, visits total)


@dataclass
class SimConfig:
    """One run. World knobs describe the scenario; the rest are the system's (tune those only on a
    seed you do not report)."""

    policy: str = "thompson"
    policy_params: dict[str, Any] = field(default_factory=dict)
    learner: str = "online"  # online | frozen
    model: str = "transformer"  # transformer | popularity
    interactions: int = 10_000
    seed: int = 0
    # the world
    users: int = 1000
    items: int = 1000
    drift: float = 0.03  # radians of taste rotation per visit
    arrival_rate: float = 0.01  # new items per visit, on average
    dt_s: float = 5.0  # event time between visits
    # serving
    k: int = 10
    candidates: int = 100
    # warm-up log and the initial model
    warmup: int = 20_000  # visits served by the uniformly random logging policy
    model_params: dict[str, Any] = field(default_factory=lambda: dict(MODEL_PARAMS))
    train_params: dict[str, Any] = field(default_factory=lambda: dict(TRAIN_PARAMS))
    # online learning
    learn_every: int = 50  # visits between learner steps
    online_params: dict[str, Any] = field(default_factory=dict)  # `OnlineConfig` fields
    gate_params: dict[str, Any] = field(default_factory=lambda: {"publish_events": 1000})  # `GateConfig`
    # bookkeeping
    windows: int = 20
    store: str = "memory://"
    threads: int = 1  # torch/BLAS threads (1: deterministic, and fair on a shared machine)

    def validate(self) -> None:
        if self.learner not in ("online", "frozen"):
            raise ValueError(f"learner must be online or frozen, got {self.learner!r}")
        if self.model not in ("transformer", "popularity"):
            raise ValueError(f"model must be transformer or popularity, got {self.model!r}")
        if self.model == "popularity" and self.learner == "online":
            raise ValueError("the popularity model learns its statistics per event; use --learner frozen")
        if self.policy not in POLICIES and self.policy not in SIM_POLICIES:
            known = ", ".join([*sorted(POLICIES), *SIM_POLICIES])
            raise ValueError(f"unknown policy {self.policy!r}; known: {known}")
        if self.interactions < 1 or self.warmup < 0 or self.k < 1 or self.learn_every < 1:
            raise ValueError("need interactions >= 1, warmup >= 0, k >= 1, learn_every >= 1")
        if self.users < 2 or self.items < self.k or self.windows < 1 or self.dt_s <= 0:
            raise ValueError("need users >= 2, items >= k, windows >= 1, dt_s > 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MemoEncoder(TextEncoder):
    """The real text encoder, remembering every text it encoded (runs of one world share texts)."""

    def __init__(self) -> None:
        super().__init__()
        self.memo: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        todo = list(dict.fromkeys(t for t in texts if t not in self.memo))
        if todo:
            self.memo.update(zip(todo, super().encode(todo), strict=True))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            if t in self.memo:
                out[i] = self.memo[t]
        if progress:
            progress(len(texts))
        return out


def catalog_items(items: Sequence[Any], created_at: float) -> list[Item]:
    return [Item(**it.payload(), created_at=created_at) for it in items]


def warm_up(
    world: World, store: EventStore, visits: int, k: int, rng: np.random.Generator, seen: dict[str, set[str]]
) -> float:
    """``visits`` visits served uniformly at random, logged to ``store``; returns the next event time."""
    item_ids = [it.item_id for it in world.items]
    batch: list[Event] = []
    now = T0
    for v in range(visits):
        user_id = world.users[int(rng.integers(len(world.users)))].user_id
        slate, propensity = uniform_slate(item_ids, seen[user_id], k, rng)
        rid = f"warm{v}"
        for pos, item_id in enumerate(slate):
            batch.append(
                Event.model_construct(
                    event_id=f"imp:{rid}:{pos}",
                    user_id=user_id,
                    item_id=item_id,
                    type=EventType.impression,
                    value=None,
                    timestamp=now,
                    context=EventContext.model_construct(
                        request_id=rid, position=pos, propensity=propensity, policy="random"
                    ),
                )
            )
        resp = world.respond(user_id, slate)
        ids = [f"{rid}:{j}" for j in range(len(resp.events))]
        batch += feedback_events(resp, {"request_id": rid, "policy": "random"}, now, ids)
        seen[user_id].update(ev.item_id for ev in resp.events)
        now += 1.0  # warm-up visits are a second apart: the log reads like real traffic
        if len(batch) >= 20_000:
            store.append(batch)
            batch = []
    if batch:
        store.append(batch)
    return now


def train_initial(
    cfg: SimConfig, store: EventStore, encoder: TextEncoder, registry_dir: Path
) -> dict[str, Any]:
    """Train the Transformer on the warm-up log (leave-one-out), register it and make it live."""
    from liverec.evaluate.offline import split_from_store
    from liverec.registry.registry import ModelRegistry
    from liverec.trainer.offline import fit_transformer

    split = split_from_store(store, min_len=3)
    if not split.train:
        raise ValueError("the warm-up log has no user with 3 positives: raise --warmup")
    texts = [split.seqs.texts.get(i, "") for i in split.seqs.vocab.ids]
    vectors = encoder.encode_cached(texts, store)
    tcfg = TrainConfig(**{**cfg.train_params, "seed": cfg.seed, "threads": cfg.threads})
    model, result = fit_transformer(split, vectors, cfg.model_params, tcfg)
    registry = ModelRegistry(registry_dir)
    version = registry.save(
        model,
        split.seqs.vocab.to_list(),
        {"val": result.best_val, "best_epoch": result.best_epoch},
        extra={"trainer_offset": store.last_offset(), "train": tcfg.model_dump()},
    )
    registry.promote(version)
    return {
        "version": version,
        "users": len(split.train),
        "val": result.best_val,
        "best_epoch": result.best_epoch,
        "train_s": round(result.seconds, 2),
    }


def build_policy(cfg: SimConfig, world: World) -> Policy:
    """The configured policy; stochastic ones get the run's seed unless one is given."""
    params = dict(cfg.policy_params)
    if cfg.policy == "oracle":
        return Oracle(world)
    if cfg.policy == "random":
        return UniformRandom(params.get("seed", cfg.seed))
    if "seed" in policy_params(cfg.policy):
        params.setdefault("seed", cfg.seed)
    return make_policy(cfg.policy, **params)


@contextlib.contextmanager
def _workdir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="liverec-sim-") as tmp:
        yield Path(tmp)


def simulate(
    cfg: SimConfig,
    encoder: TextEncoder | None = None,
    workdir: Path | None = None,
    progress: Progress | None = None,
    on_engine: Callable[[Engine], None] | None = None,
) -> SimResult:
    """Run one simulation end to end (see the module docstring); the store is closed on return.
    ``on_engine`` sees the engine before it is closed (tests look at its store and model)."""
    cfg.validate()
    encoder = encoder or TextEncoder()
    with _workdir(workdir) as wd:
        return _Run(cfg, encoder, wd, progress).run(on_engine)


class _Run:
    def __init__(
        self, cfg: SimConfig, encoder: TextEncoder, workdir: Path, progress: Progress | None
    ) -> None:
        self.cfg = cfg
        self.encoder = encoder
        self.workdir = workdir
        self.progress = progress
        self.timings: dict[str, float] = dict.fromkeys(
            ("warmup", "train", "recommend", "world", "ingest", "arrivals", "learn", "publish"), 0.0
        )

    def run(self, on_engine: Callable[[Engine], None] | None) -> SimResult:
        cfg, t_start = self.cfg, time.perf_counter()
        world = World(cfg.items, cfg.users, cfg.seed, drift=cfg.drift, arrival_rate=cfg.arrival_rate)
        store = open_store(cfg.store)
        if store.last_offset():
            store.close()
            raise ValueError(f"store {cfg.store} is not empty; the simulation needs a fresh one")
        rng = np.random.default_rng([cfg.seed, 11])  # warm-up slates and who visits
        seen: dict[str, set[str]] = {u.user_id: set() for u in world.users}
        registry_dir = self.workdir / "registry"
        try:
            t = time.perf_counter()
            store.upsert_items(catalog_items(world.items, T0))
            now = warm_up(world, store, cfg.warmup, cfg.k, rng, seen)
            self.timings["warmup"] = time.perf_counter() - t
            initial: dict[str, Any] = {}
            if cfg.model == "transformer":
                t = time.perf_counter()
                initial = train_initial(cfg, store, self.encoder, registry_dir)
                self.timings["train"] = time.perf_counter() - t
        except BaseException:
            store.close()
            raise
        settings = Settings(
            data_dir=self.workdir,
            store_url=cfg.store,
            registry_dir=registry_dir,
            server=ServerSettings(compute_threads=cfg.threads),
            join=JoinConfig(window_s=cfg.dt_s / 2),  # the engine is handed its policy below
        )
        policy = build_policy(cfg, world)
        engine = Engine(settings, store, policy)
        try:
            engine.start(models=cfg.model == "transformer", background=False)
            if engine.manager is not None:
                engine.manager.encoder = self.encoder
            if isinstance(policy, Oracle):
                policy.catalog = engine.catalog
            engine.recommender.candidates = cfg.candidates
            if isinstance(policy, Oracle | UniformRandom):
                engine.recommender.candidates = 1 << 30  # every item is a candidate
            follower = self._follower(engine) if cfg.learner == "online" else None
            result = self._loop(world, engine, follower, rng, seen, now)
            result.initial_model = initial
            result.config = cfg.to_dict()
            result.seconds = {k: round(v, 2) for k, v in self.timings.items()}
            result.seconds["total"] = round(time.perf_counter() - t_start, 2)
            if on_engine is not None:
                on_engine(engine)
        finally:
            engine.close()
        return result

    def _follower(self, engine: Engine) -> Follower:
        cfg = self.cfg
        online = OnlineConfig(**{"seed": cfg.seed, "threads": cfg.threads, **cfg.online_params})
        gate = GateConfig(**{**cfg.gate_params, "publish_s": math.inf})  # publish by event count only
        follower = Follower(
            engine.store, engine.registry, online, gate, engine.settings.rewards, None, self.encoder
        )
        follower.start()
        return follower

    def _loop(
        self,
        world: World,
        engine: Engine,
        follower: Follower | None,
        rng: np.random.Generator,
        seen: dict[str, set[str]],
        now: float,
    ) -> SimResult:
        cfg, n, tm = self.cfg, self.cfg.interactions, self.timings
        shown = np.zeros(n, dtype=np.int64)
        clicks = np.zeros(n, dtype=np.int64)
        expected = np.zeros(n)
        oracle = np.zeros(n)
        weighted = np.zeros(n)
        reward = Rewards(engine.settings.rewards)
        versions: list[tuple[int, str]] = [(0, engine.model_version)]
        decisions: list[dict[str, Any]] = []
        users = [u.user_id for u in world.users]
        clock = time.perf_counter
        for i in range(n):
            user_id = users[int(rng.integers(len(users)))]
            t = clock()
            rec = engine.recommend(user_id, cfg.k, now=now)
            slate = [it.item_id for it in rec.items]
            t1 = clock()
            best = world.oracle_slate(user_id, cfg.k, seen[user_id])
            oracle[i] = world.expected_clicks(user_id, best)
            expected[i] = world.expected_clicks(user_id, slate)
            resp = world.respond(user_id, slate)
            context = {"request_id": rec.request_id, "policy": rec.policy, "model": rec.model}
            events = feedback_events(
                resp, context, now, [f"{rec.request_id}:{j}" for j in range(len(resp.events))]
            )
            t2 = clock()
            if events:
                engine.ingest(events)
            t3 = clock()
            seen[user_id].update(ev.item_id for ev in resp.events)
            shown[i], clicks[i] = len(slate), resp.clicks
            weighted[i] = sum(reward(e) for e in events)
            arrived = world.tick()
            if arrived:
                self._arrive(engine, catalog_items(arrived, now))
            t4 = clock()
            tm["recommend"] += t1 - t
            tm["world"] += t2 - t1
            tm["ingest"] += t3 - t2
            tm["arrivals"] += t4 - t3
            now += cfg.dt_s
            if follower is not None and (i + 1) % cfg.learn_every == 0:
                decision = self._learn(engine, follower)
                if decision is not None:
                    decisions.append(decision)
            if engine.model_version != versions[-1][1]:
                versions.append((i + 1, engine.model_version))
            if self.progress is not None and ((i + 1) % 100 == 0 or i + 1 == n):
                self.progress(i + 1, n)
        return summarize(shown, clicks, expected, oracle, weighted, cfg.windows, versions, decisions)

    def _arrive(self, engine: Engine, items: list[Item]) -> None:
        """New items into the catalog; a served Transformer gets their text (through the store's
        embedding cache, with the shared encoder) before the next request."""
        if engine.manager is not None:
            self.encoder.encode_cached([it.content() for it in items], engine.store)
        engine.upsert_items(items)
        if engine.manager is not None:
            engine.manager.encode_pending()

    def _learn(self, engine: Engine, follower: Follower) -> dict[str, Any] | None:
        """Learn from the new log events; publish through the gate when due, and serve a promotion."""
        t = time.perf_counter()
        learner = follower.learner
        assert learner is not None
        while batch := engine.store.read(learner.offset, 10_000):
            follower.step(batch)
        t1 = time.perf_counter()
        self.timings["learn"] += t1 - t
        if not follower.due():
            return None
        decision = follower.decide()
        if decision is None:
            return None
        if decision.published and engine.manager is not None:
            engine.manager.reload()
            engine.manager.encode_pending()
        self.timings["publish"] += time.perf_counter() - t1
        return {
            "offset": decision.offset,
            "published": decision.published,
            "candidate_ndcg": round(decision.candidate.get("ndcg@10", 0.0), 4),
            "live_ndcg": round(decision.live.get("ndcg@10", 0.0), 4),
        }
