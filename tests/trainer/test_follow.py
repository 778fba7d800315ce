"""`Follower` behind its gate, with a real registry and a real `Engine` (hot reload) serving it:
good candidates go live with the right `trainer_offset`, a broken update never does (and no request
fails meanwhile), a live regression is rolled back, and pruning never touches live, rollback
history or offline versions."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from fastapi.testclient import TestClient

from liverec.registry.registry import ModelRegistry
from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from liverec.settings import PrivacySettings
from liverec.trainer.filters import FilterConfig
from liverec.trainer.follow import Decision, Follower
from liverec.trainer.online import owner_key
from support.world import TRAIN, same_weights, start_engine, wait_until

from .conftest import GATE, ONLINE, PAGE, STREAM_T0, Rig, click, max_abs, stream, weights

EVERY_PAGE = GATE.model_copy(update={"publish_events": PAGE})  # one decision per page


@dataclass
class Traffic:
    """A thread asking for recommendations for every user, round robin, until stopped."""

    client: TestClient
    users: int = 300
    statuses: Counter[int] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            r = self.client.get(f"/v1/users/u{n % self.users}/recommendations", params={"k": 10})
            self.statuses[r.status_code] += 1
            if r.status_code == 200:
                self.models[r.json()["model"]] += 1
            n += 1


@contextmanager
def serving(rig: Rig) -> Iterator[tuple[Engine, Traffic]]:
    """An `Engine` on the rig's data dir (following LIVE every `POLL_S`) under constant traffic."""
    engine = start_engine(rig.settings, rig.encoder)
    try:
        with TestClient(create_app(rig.settings, engine)) as client:
            traffic = Traffic(client)
            thread = threading.Thread(target=traffic.run, daemon=True)
            thread.start()
            try:
                yield engine, traffic
            finally:
                traffic.stop.set()
                thread.join(timeout=30)
    finally:
        engine.close()


def drive(f: Follower, pages: list[int] | None = None, break_at: int | None = None) -> list[Decision]:
    """`Follower.run`'s loop, page by page; with ``break_at`` the learning rate is absurd (1e3)
    while learning that page: a real broken update, on a real optimiser."""
    learner = f.learner or f.start()
    k = 0
    while batch := f.store.read(learner.offset, PAGE):
        lr = learner.cfg.lr
        if k == break_at:
            learner.cfg.lr = 1e3
        f.step(batch)
        learner.cfg.lr = lr
        if f.due():
            f.decide()
        k += 1
    return f.decisions


def test_a_good_candidate_is_published_with_the_right_trainer_offset_and_served(rig: Rig) -> None:
    """Candidates that hold up on the slice are published and promoted; each version's
    `trainer_offset` is exactly the log prefix its weights learned (a second learner that folds the
    same pages up to it gets the same weights); the server swaps each in and reports that offset."""
    rig.append(stream(5))
    with serving(rig) as (engine, traffic):
        f = rig.follower()
        decisions = drive(f)
        published = [d.published for d in decisions if d.published]
        assert len(published) >= 2, [d.reason for d in decisions]
        live = rig.registry.live()
        assert live == published[-1]
        wait_until(lambda: engine.model_version == f"transformer@{live}", "the server to swap in")
        assert engine.model_offset == rig.registry.meta(live)["trainer_offset"]
        wait_until(lambda: sum(traffic.models.values()) > 20, "some traffic")
    assert set(traffic.statuses) == {200}

    # the same learning from v1 again, in a registry of its own that holds only v1
    v1 = rig.registry.load(rig.v1)
    again = ModelRegistry(rig.registry.root.parent / "again")
    again.promote(again.save(v1.model, v1.vocab, extra={"trainer_offset": v1.meta["trainer_offset"]}))
    learner = Follower(rig.store, again, ONLINE.model_copy(), GATE, rig.settings.rewards).start()
    start = learner.offset
    offsets = [rig.registry.meta(v)["trainer_offset"] for v in published]
    assert offsets == sorted(offsets) and start < offsets[0] < offsets[-1] <= rig.store.last_offset()
    for version, offset in zip(published, offsets, strict=True):
        while learner.offset < offset:
            learner.fold(rig.store.read(learner.offset, PAGE))
        assert learner.offset == offset  # a page boundary: published weights are whole pages
        assert same_weights(weights(rig.registry.load(version).model), weights(learner.ema)), version


def test_a_broken_update_is_rejected_and_never_served(rig: Rig) -> None:
    """An absurd learning rate for one page wrecks the learner (raw and EMA weights blow up). The
    candidate published right after that page is the one scored before it (sane), every later
    candidate is rejected with the reason, LIVE and the served version stay on the last good one,
    and not one request fails meanwhile."""
    rig.append(stream(8))
    sane = 3 * max_abs(rig.live_net())
    with serving(rig) as (engine, traffic):
        f = rig.follower(gate=EVERY_PAGE)
        decisions = drive(f, break_at=3)
        assert f.learner is not None and max_abs(f.learner.ema) > 10 * sane  # the update broke it
        assert len(decisions) == 8
        good, after = decisions[:4], decisions[4:]
        assert any(d.published for d in good)
        for d in after:
            assert d.published is None and d.reason.startswith("rejected: candidate"), d.reason
            assert d.candidate["ndcg@10"] < d.live["ndcg@10"] - EVERY_PAGE.tolerance
        last_good = [d.published for d in good if d.published][-1]
        for v in rig.registry.list_versions():
            assert max_abs(rig.registry.load(v).model) < sane, f"{v} was published broken"
        assert rig.registry.live() == last_good
        wait_until(lambda: engine.model_version == f"transformer@{last_good}", "the server to swap in")
        n = sum(traffic.models.values())
        wait_until(lambda: sum(traffic.models.values()) > n + 20, "more traffic")
        assert engine.model_version == f"transformer@{last_good}"
    assert set(traffic.statuses) == {200}, traffic.statuses
    assert set(traffic.models) <= {f"transformer@{v}" for v in rig.registry.list_versions()}


def test_a_live_regression_is_rolled_back_and_the_server_follows(rig: Rig) -> None:
    """A live version worse than its parent on the newest slice (here a v2 whose item embeddings
    were scrambled, promoted over v1) is rolled back automatically: LIVE returns to v1, the reason
    says so, and the server swaps back."""
    bad = rig.live_net()
    with torch.no_grad():
        perm = torch.randperm(bad.id_emb.weight.shape[0] - 1, generator=torch.Generator().manual_seed(0))
        bad.id_emb.weight[1:] = bad.id_emb.weight[1:][perm]
        bad.text_emb[1:] = bad.text_emb[1:][perm]
    offset = rig.registry.meta(rig.v1)["trainer_offset"]
    v2 = rig.registry.save(bad, rig.trained.vocab, parent=rig.v1, extra={"trainer_offset": offset})
    rig.registry.promote(v2)
    rig.append(stream(3))
    with serving(rig) as (engine, traffic):
        wait_until(lambda: engine.model_version == f"transformer@{v2}", "the server to serve v2")
        f = rig.follower(gate=EVERY_PAGE)
        decisions = drive(f)
        first = decisions[0]
        assert first.published is None
        assert f"live {v2} regressed" in first.reason and f"rolled back to {rig.v1}" in first.reason
        assert rig.registry.live() == rig.v1 and v2 not in rig.registry.history()
        wait_until(lambda: engine.model_version == f"transformer@{rig.v1}", "the server to roll back")
    assert set(traffic.statuses) == {200}, traffic.statuses


def test_old_online_versions_are_pruned_but_live_history_and_offline_ones_never_are(rig: Rig) -> None:
    """Beyond `keep_versions`, the oldest online versions that are neither live nor on the rollback
    history are deleted; every live/history version and an offline (``liverec train``) version that
    was never promoted survive, and every survivor still loads."""
    reg, net = rig.registry, rig.live_net()
    offline = reg.save(net, rig.trained.vocab, extra={"trainer_offset": 1})  # trained, not promoted
    stray = [reg.save(net, rig.trained.vocab, extra={"online": True}) for _ in range(4)]  # off history
    rig.append(stream(4))
    f = rig.follower(gate=EVERY_PAGE.model_copy(update={"keep_versions": 2}))
    decisions = drive(f)
    published = [d.published for d in decisions if d.published]
    assert len(published) >= 2
    left = set(reg.list_versions())
    assert {rig.v1, offline, *published} <= left  # live, history, offline
    assert set(reg.history()) | {reg.live()} <= left
    assert left & set(stray) == set(stray[-2:])  # the two newest strays, the oldest pruned
    for v in left:
        reg.load(v)


def test_events_the_filter_holds_back_are_not_scored_by_the_gate(rig: Rig) -> None:
    """A page of five real clicks and a 500-click burst from one user: the gate scores the real
    clicks and the burst's first click (which the filter lets through), not the quarantined rest,
    so a bot cannot make up the slice the candidate is judged on."""
    real = stream(1)[:5]
    t = real[-1].timestamp
    burst = [click("u5", "space-3", t + k * 0.01, event_id=f"bot-{k}") for k in range(500)]
    rig.append(real + burst)
    f = rig.follower(
        gate=GATE.model_copy(update={"min_eval": 1, "eval_per_page": 1_000}), filters=FilterConfig()
    )
    learner = f.start()
    stats = f.step(rig.store.read(learner.offset, 1_000))
    assert stats.held_back == 499
    decision = f.decide()
    assert decision is not None and decision.candidate["n"] == 6


# -- deletions ----------------------------------------------------------------------------------
def test_a_deletion_is_forgotten_at_once_and_retrained_away_within_the_deadline(rig: Rig) -> None:
    """The learner drops the deleted user's track and replay examples as soon as the store records
    the deletion; once it nears its (tiny) deadline, a version trained on the store without them is
    live, every version trained on them is purged (rollback too), and the deletion is honoured."""
    deadline = 60.0
    f = Follower(
        rig.store,
        rig.registry,
        ONLINE.model_copy(),
        EVERY_PAGE,
        rig.settings.rewards,
        encoder=rig.encoder,
        privacy=PrivacySettings(retrain_deadline_s=deadline, retrain_lead=0.05),  # retrain after 3 s
        retrain=TRAIN,
    )
    rig.append(stream(2))
    f.run(follow=False, page=PAGE)
    published = [d.published for d in f.decisions if d.published]
    assert published and rig.registry.live() == published[-1]
    learner = f.learner
    assert learner is not None and "u5" in learner.users
    key = owner_key("u5")
    assert (learner.replay.owners[: len(learner.replay)] == key).any()

    assert rig.store.delete_user("u5") > 0
    assert rig.store.delete_user("never-seen") == 0  # nothing to retrain for
    (pending,) = rig.store.pending_deletions()
    affected = rig.registry.affected_versions(rig.store.deletions())
    assert set(affected) == {rig.v1, *published}  # every version so far learned from u5
    assert f.handle_deletions(now=pending.deleted_at + 1.0) is None  # forgotten, not retrained yet
    assert "u5" not in learner.users
    alive = learner.replay.alive[: len(learner.replay)]
    assert not (learner.replay.owners[: len(learner.replay)][alive] == key).any()
    assert rig.registry.live() == published[-1]

    f.run(follow=True, poll_s=0.1, max_seconds=deadline, stop=lambda: not rig.store.pending_deletions())
    (done,) = [d for d in rig.store.deletions() if d.events]
    assert done.honoured_at is not None and done.honoured_at - done.deleted_at < deadline
    (clean,) = f.retrains
    meta = rig.registry.meta(clean)
    assert rig.registry.live() == clean and meta["deletions_through"] >= done.seq
    assert rig.registry.affected_versions(rig.store.deletions()) == {}
    assert set(rig.registry.list_versions()).isdisjoint({rig.v1, *published})  # purged
    assert rig.registry.history() == []  # no rollback to a version that learned from u5
    assert f.learner is not None and "u5" not in f.learner.users  # restarted from the clean version
    assert f.deletions_through == max(d.seq for d in rig.store.deletions())  # both records
    # the online learner goes on publishing from it, and says so in what it publishes
    rig.append(stream(1, t0=STREAM_T0 + 7_200.0))
    f.run(follow=False, page=PAGE)
    later = rig.registry.live()
    assert later is not None and rig.registry.meta(later)["deletions_through"] >= done.seq
