"""`Follower`: tails the event log and keeps the live model learning, behind a validation gate.

Each cycle reads new events after the committed offset (through the `EventStore` interface only),
first *scores* the candidate (the learner's EMA weights) and the live version on them, then
*learns* from them: a prequential test-then-train slice. Every `publish_events` events or
`publish_s` seconds the candidate is published only if its NDCG@10 on the slice is not worse than
live's beyond `tolerance`; otherwise it is rejected and the reason logged. What is published is the
candidate exactly as it was last scored (a copy taken before learning the newest page), so no update
reaches the registry without having been scored on events it had not learned from. If the live version
itself turns worse than the one before it on a slice, the registry is rolled back.

Why no version yet: after every page and decision (at most once a second) the follower writes
`status` to the registry's `trainer/status.json` (`trainer.status`): events waiting, examples scored
against `min_eval`, when the gate is next due, the last decision and its reason. The server's
`/healthz` admin detail and `liverec learn` show it.

Deletions: every cycle the follower reads the store's deletion records; a deleted user's track,
remembered impressions and replay examples go at once (`OnlineLearner.forget`). Their influence on
the weights goes by retraining: once the oldest pending deletion is `retrain_lead` of
``[privacy] retrain_deadline_s`` old, the follower trains a fresh model offline on the store (which
no longer holds their events), promotes it, purges the versions trained on them
(`ModelRegistry.affected_versions`) and marks the deletions honoured; then learns on from it.

Crash safety: the trainer checkpoint (weights, EMA, optimiser, offset) is written atomically after
each decision; a restart resumes from its offset, so no event is skipped (at-least-once).
"""

from __future__ import annotations

import copy
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liverec.core.metrics import SliceScore
from liverec.core.schema import EventType, StoredEvent
from liverec.model.text import TextEncoder
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.registry.registry import ModelRegistry, RegistryError
from liverec.settings import GateConfig, PrivacySettings, RewardWeights, TrainConfig
from liverec.store.base import Deletion, EventStore
from liverec.trainer.filters import EventFilter, FilterConfig
from liverec.trainer.online import LearnStats, OnlineConfig, OnlineLearner, pad_moments
from liverec.trainer.retrain import retrain_from_store
from liverec.trainer.status import write_status

log = logging.getLogger(__name__)


@dataclass
class Decision:
    published: str | None
    reason: str
    candidate: dict[str, float]
    live: dict[str, float]
    offset: int
    at: float = field(default_factory=time.time)


class Follower:
    def __init__(
        self,
        store: EventStore,
        registry: ModelRegistry,
        cfg: OnlineConfig | None = None,
        gate: GateConfig | None = None,
        rewards: RewardWeights | None = None,
        filters: FilterConfig | None = None,
        encoder: TextEncoder | None = None,
        checkpoint: Path | None = None,
        privacy: PrivacySettings | None = None,
        retrain: TrainConfig | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.cfg = cfg or OnlineConfig()
        self.gate = gate or GateConfig()
        self.rewards = rewards
        self.filters = filters
        self.encoder = encoder
        self.checkpoint = checkpoint or registry.root / "trainer" / "checkpoint.pt"
        self.privacy = privacy or PrivacySettings()
        self.retrain_cfg = retrain or TrainConfig()  # the deletion retrain: as `liverec train`
        self.deletions_seen = 0  # the last deletion record folded into the learner's state
        self.deletions_through = 0  # the weights hold no user of a deletion with seq <= this
        self.retrains: list[str] = []  # versions published by deletion retrains
        self.learner: OnlineLearner | None = None
        self.live_version: str | None = None
        self.live_net: SASRec | None = None
        self.parent_net: SASRec | None = None
        self.decisions: list[Decision] = []
        self.on_decision: Callable[[Decision], None] | None = None
        self.on_status: Callable[[dict[str, Any]], None] | None = None  # after each status write
        self.status_every_s = 1.0  # at most this often between decisions
        self._status_t = -float("inf")
        self._cand = SliceScore()
        self._live = SliceScore()
        self._parent = SliceScore()
        self._scored: tuple[SASRec, int] | None = None  # the candidate as last scored, and its offset
        self._since_events = 0
        self._since_t = time.monotonic()
        self._rng = np.random.default_rng(self.cfg.seed)

    # -- start ----------------------------------------------------------------------------------
    def _text_fn(self, item_ids: list[str]) -> dict[str, np.ndarray]:
        items = {i: self.store.get_item(i) for i in item_ids}
        texts = {i: it.content() for i, it in items.items() if it is not None and it.content()}
        if not texts:
            return {}
        encoder = self.encoder = self.encoder or TextEncoder()
        vecs = encoder.encode_cached(list(texts.values()), self.store)
        return dict(zip(texts, vecs, strict=True))

    def start(self) -> OnlineLearner:
        """Resume from the trainer checkpoint, else start from the live registry version; then
        rebuild sequences and the replay buffer from the log up to the resume offset."""
        state: dict[str, Any] | None = None
        if self.checkpoint.exists():
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        self.live_version = self.registry.live()
        if state is not None:
            net = SASRec(TransformerConfig.from_dict(state["config"]))
            net.load_state_dict(state["net"])
            vocab, offset = state["vocab"], int(state["offset"])
            self.deletions_through = int(state.get("deletions_through", 0))
        elif self.live_version is not None:
            snap = self.registry.load(self.live_version)
            net, vocab = snap.model, snap.vocab
            offset = int(snap.meta.get("trainer_offset", 0))
            self.deletions_through = int(snap.meta.get("deletions_through", 0))
        else:
            raise RegistryError("no model to learn from: train one first with `liverec train`")
        learner = OnlineLearner(
            net,
            vocab,
            self.cfg,
            self.rewards,
            self._text_fn,
            EventFilter(self.filters) if self.filters else None,
        )
        if state is not None:
            learner.ema.load_state_dict(state["ema"])
            learner.opt.load_state_dict(state["opt"])
            pad_moments(learner.opt)  # a checkpoint from before the event-type table grew
            learner.steps, learner.examples = int(state["steps"]), int(state["examples"])
        for page in self.store.pages(0, 20_000):  # rebuild: sequences, filters, replay; no training
            page = [s for s in page if s.offset <= offset]
            if not page:
                break
            learner.fold(page, train=False)
        learner.offset = offset
        # rebuilt from the store, which holds no deleted user's events: every record is folded in
        self.deletions_seen = max((d.seq for d in self.store.deletions()), default=0)
        self.learner = learner
        self._load_live()
        log.info("learning from offset %d (live %s, %d items)", offset, self.live_version, len(learner.vocab))
        return learner

    def _load_live(self) -> None:
        """Keep a copy of the live version (and its parent) aligned to the learner's vocabulary."""
        assert self.learner is not None
        self.live_net, self.parent_net = None, None
        if self.live_version is None:
            return
        try:
            self.live_net = self._aligned(self.live_version)
            parent = self.registry.meta(self.live_version).get("parent")
            self.parent_net = self._aligned(parent) if parent else None
        except (RegistryError, OSError, RuntimeError) as exc:
            log.warning("cannot load live version %s for the gate: %s", self.live_version, exc)

    def _aligned(self, version: str) -> SASRec:
        """A registry version re-indexed to the learner's vocabulary (unknown items: text-only)."""
        assert self.learner is not None
        snap = self.registry.load(version)
        vocab = self.learner.vocab
        net = copy.deepcopy(self.learner.ema)
        with torch.no_grad():
            src = {item_id: k + 1 for k, item_id in enumerate(snap.vocab)}
            own = snap.model.state_dict()
            state = net.state_dict()
            for key, value in own.items():
                if key in ("id_emb.weight", "text_emb"):
                    continue
                state[key] = value
            net.load_state_dict(state)
            rows = [(k + 1, src[i]) for k, i in enumerate(vocab.ids) if i in src]
            dst = torch.tensor([r for r, _ in rows], dtype=torch.long)
            frm = torch.tensor([s for _, s in rows], dtype=torch.long)
            net.id_emb.weight.zero_()
            if len(rows):
                net.id_emb.weight[dst] = snap.model.id_emb.weight[frm]
                net.text_emb[dst] = snap.model.text_emb[frm]
        return net.eval()

    # -- the loop -------------------------------------------------------------------------------
    def step(self, page: list[StoredEvent]) -> LearnStats:
        """Score the slice with candidate and live (before learning from it), then learn. Events the
        filter holds back are neither scored nor learned from."""
        learner = self.learner
        assert learner is not None
        admitted = learner.screen(page)
        self._score_slice([s for s, ok in zip(page, admitted, strict=True) if ok])
        stats = learner.fold(page, admitted=admitted)
        self._since_events += stats.events
        return stats

    def _score_slice(self, page: list[StoredEvent]) -> None:
        learner = self.learner
        assert learner is not None
        picked: list[tuple[str, int]] = []  # (user, target model index)
        for s in page:
            ev = s.event
            if ev.type is EventType.impression or learner.reward(ev) <= 0:
                continue
            row = learner.vocab.row(ev.item_id)
            track = learner.users.get(ev.user_id)
            if row is None or track is None or not track.items or track.repeats(row + 1):
                continue  # new item, no history yet, or the same engagement again: nothing to score
            picked.append((ev.user_id, row + 1))
        if not picked:
            return
        if len(picked) > self.gate.eval_per_page:
            keep = np.sort(self._rng.choice(len(picked), self.gate.eval_per_page, replace=False))
            picked = [picked[k] for k in keep]
        windows = [learner.window_of(user, learner.cfg.window) for user, _ in picked]
        seen = [learner.seen_of(user) for user, _ in picked]
        targets = [target for _, target in picked]
        w, t = np.stack(windows), np.asarray(targets)
        self._cand.add(learner.rank(learner.ema, w, t, seen))
        self._scored = (copy.deepcopy(learner.ema).eval(), learner.offset)  # what the gate has seen
        if self.live_net is not None:
            self._live.add(learner.rank(self._grown(self.live_net), w, t, seen))
        if self.parent_net is not None:
            self._parent.add(learner.rank(self._grown(self.parent_net), w, t, seen))

    def _grown(self, net: SASRec) -> SASRec:
        """``net`` covering every item the learner knows: items that arrived after it was copied
        are text-only in it (as when served), instead of out of range."""
        assert self.learner is not None
        ema = self.learner.ema
        old, new = net.config.n_items, ema.config.n_items
        if new > old:
            net.grow(new - old)
            with torch.no_grad():
                net.text_emb[old + 1 :] = ema.text_emb[old + 1 :]
        return net

    # -- status ---------------------------------------------------------------------------------
    def status(self, running: bool = True) -> dict[str, Any]:
        """Why the live version is what it is: events learned since the last decision, examples the
        gate has scored of the `min_eval` it needs, when it is next due, and the last decision."""
        learner, g = self.learner, self.gate
        since, scored = self._since_events, self._cand.n
        due_in = max(0.0, g.publish_s - (time.monotonic() - self._since_t))
        events_left = max(0, g.publish_events - since)
        last = self.decisions[-1] if self.decisions else None
        short = self.live_net is not None and scored < g.min_eval
        if learner is None:
            why = "starting"
        elif since == 0:
            why = "caught up: no new events since the last decision" if last else "no events to learn yet"
        elif self.due() and short:
            why = (
                f"waiting for examples: the candidate is scored on {scored} of the {g.min_eval} positives "
                "the gate needs (a user's first click, a repeat or a filtered event scores none)"
            )
        else:
            why = f"gate due after {events_left} more events or in {due_in:.0f} s"
            if short:
                why += f", if {g.min_eval - scored} more examples are scored by then"
        return {
            "running": running,
            "at": time.time(),
            "pid": os.getpid(),
            "live": self.live_version,
            "offset": learner.offset if learner else 0,
            "examples": learner.examples if learner else 0,
            "events_waiting": since,
            "scored": scored,
            "min_eval": g.min_eval,
            "next_due_in_s": round(due_in, 1) if since else None,
            "next_due_after_events": events_left,
            "why": why,
            "last_decision": None
            if last is None
            else {"published": last.published, "reason": last.reason, "offset": last.offset, "at": last.at},
        }

    def report_status(self, force: bool = False, running: bool = True) -> None:
        """Write `status` to the registry (atomically; throttled to `status_every_s` unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._status_t < self.status_every_s:
            return
        self._status_t = now
        status = self.status(running)
        try:
            write_status(self.registry.root, status)
        except OSError as exc:
            log.warning("cannot write learner status: %s", exc)
        if self.on_status:
            self.on_status(status)

    def due(self) -> bool:
        g = self.gate
        return self._since_events >= g.publish_events or (
            self._since_events > 0 and time.monotonic() - self._since_t >= g.publish_s
        )

    def decide(self) -> Decision | None:
        """Publish the candidate or reject it; roll back a regressed live version; checkpoint."""
        learner = self.learner
        assert learner is not None
        if self._cand.n < self.gate.min_eval and self.live_net is not None:
            return None
        cand, live, parent = self._cand.value(), self._live.value(), self._parent.value()
        tol = self.gate.tolerance
        reason, published = "", None
        regressed = (
            self.live_net is not None
            and self.parent_net is not None
            and parent["n"] >= self.gate.min_eval
            and live["ndcg@10"] < parent["ndcg@10"] - tol
        )
        if regressed:
            try:
                back = self.registry.rollback()
                reason = (
                    f"live {self.live_version} regressed ({live['ndcg@10']:.4f} < parent "
                    f"{parent['ndcg@10']:.4f}); rolled back to {back}"
                )
                self.live_version = back
                self._load_live()
            except RegistryError as exc:
                reason = f"live regressed but rollback failed: {exc}"
        elif self.live_net is None or cand["ndcg@10"] >= live["ndcg@10"] - tol:
            published = self._publish(cand, live)
            reason = f"candidate {cand['ndcg@10']:.4f} >= live {live['ndcg@10']:.4f} - {tol}"
        else:
            reason = f"rejected: candidate {cand['ndcg@10']:.4f} < live {live['ndcg@10']:.4f} - {tol}"
        decision = Decision(published, reason, cand, live, learner.offset)
        (log.info if published else log.warning)(
            "offset %d, %d examples, %d steps: %s", learner.offset, learner.examples, learner.steps, reason
        )
        self.decisions.append(decision)
        if self.on_decision:
            self.on_decision(decision)
        self._cand, self._live, self._parent = SliceScore(), SliceScore(), SliceScore()
        self._scored = None
        self._since_events, self._since_t = 0, time.monotonic()
        self.save_checkpoint()
        self.report_status(force=True)
        return decision

    def _publish(self, cand: dict[str, float], live: dict[str, float]) -> str:
        learner = self.learner
        assert learner is not None
        # the scored copy (items that arrived after it are not in it: a vocabulary prefix), else
        # (no live version to compare with) the current weights
        net, offset = self._scored or (copy.deepcopy(learner.ema).eval(), learner.offset)
        version = self.registry.save(
            net,
            learner.vocab.to_list()[: net.config.n_items],
            metrics={"prequential": {"candidate": cand, "live": live}},
            parent=self.live_version,
            extra={
                "trainer_offset": offset,
                "online": True,
                "published_at": time.time(),
                "deletions_through": self.deletions_through,
            },
        )
        self.registry.promote(version)
        self.parent_net, self.live_net = self.live_net, net
        self.live_version = version
        self._prune()
        return version

    def _prune(self) -> None:
        """Delete the oldest online versions beyond `keep_versions`; live, rollback-history and offline
        (`liverec train`) versions are never pruned."""
        keep = set(self.registry.history()) | {self.live_version}
        online = [v for v in self.registry.list_versions() if v not in keep and self._online(v)]
        for v in online[: max(0, len(online) - self.gate.keep_versions)]:
            self.registry.delete(v)

    def _online(self, version: str) -> bool:
        try:
            return bool(self.registry.meta(version).get("online"))
        except RegistryError:
            return False

    def save_checkpoint(self) -> None:
        """Atomically persist weights, EMA, optimiser and the offset they include."""
        assert self.learner is not None
        self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint.with_name(f".{self.checkpoint.name}.{uuid.uuid4().hex}")
        with open(tmp, "wb") as fh:
            torch.save({**self.learner.state_dict(), "deletions_through": self.deletions_through}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.checkpoint)

    # -- deletions ------------------------------------------------------------------------------
    def handle_deletions(self, now: float | None = None) -> OnlineLearner | None:
        """Forget newly deleted users; retrain when the oldest pending deletion nears its deadline.
        Returns the learner to go on with when a retrain replaced it, else None."""
        assert self.learner is not None
        records = self.store.deletions()
        fresh = [d for d in records if d.seq > self.deletions_seen]
        if fresh:
            self.learner.forget({d.user_hash for d in fresh})
            self.deletions_seen = fresh[-1].seq
        pending = [d for d in records if d.pending]
        if not pending:
            return None
        now = time.time() if now is None else now
        p = self.privacy
        if now - pending[0].deleted_at < p.retrain_deadline_s * p.retrain_lead:
            return None
        self.retrain_without(records)
        return self.learner

    def retrain_without(self, records: list[Deletion]) -> str:
        """Train a fresh model offline on the store as it is now (no deleted user's events), promote
        it, purge every version trained on a deleted user, mark the deletions honoured and restart
        the learner from the new version. Returns the version."""
        through = max(d.seq for d in records)  # read before the events: later deletions stay pending
        offset = self.store.last_offset()
        live = self.live_version or self.registry.live()
        t0 = time.monotonic()
        config = dict(self.registry.meta(live)["config"]) if live else {}
        if config.get("text_dim", 0):
            self.encoder = self.encoder or TextEncoder()
        extra = {"trainer_offset": offset, "deletions_through": through, "retrain": "deletions"}
        version = retrain_from_store(
            self.store, self.registry, config, self.retrain_cfg, self.rewards, self.encoder, extra
        )
        self.registry.promote(version)
        affected = self.registry.affected_versions(records)
        purged = self.registry.purge([v for v in affected if v != version])
        self.store.honour_deletions(through)
        self.retrains.append(version)
        log.info(
            "retrained %s without %d deleted user(s) in %.0fs; purged %s",
            version,
            sum(1 for d in records if d.seq <= through and d.pending),
            time.monotonic() - t0,
            ", ".join(purged) or "nothing",
        )
        self.checkpoint.unlink(missing_ok=True)  # weights trained on them: start over from the new version
        self.learner = None
        self._cand, self._live, self._parent = SliceScore(), SliceScore(), SliceScore()
        self._scored = None
        self._since_events, self._since_t = 0, time.monotonic()
        self.start()
        return version

    def run(
        self,
        follow: bool = True,
        poll_s: float = 0.2,
        page: int = 2_000,
        max_seconds: float = 0.0,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        """Learn until the log is exhausted (``follow=False``), ``max_seconds`` pass, or ``stop()``."""
        learner = self.learner or self.start()
        t0 = time.monotonic()
        while not (stop and stop()):
            learner = self.handle_deletions() or learner
            batch = self.store.read(learner.offset, page)
            if batch:
                self.step(batch)
            if self.due():
                self.decide()
            self.report_status()
            if max_seconds and time.monotonic() - t0 >= max_seconds:
                break
            if not batch:
                if not follow:
                    break
                time.sleep(poll_s)
        if self._since_events:
            self.decide()
        self.report_status(force=True, running=False)  # stopped: the status says so
