"""Serving the Transformer live: clicks steer it with no weight update, versions switch under load
without a failed request, strangers get popularity, new items are scorable from their text, a
model is aligned to the catalog by item id, and a corrupt version is never swapped in."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from liverec.model.text import TextEncoder
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.policy import LinUCB
from liverec.registry.registry import ModelRegistry
from liverec.settings import PolicySettings
from support.api import start_server
from support.world import (
    CROWD,
    ITEM_IDS,
    NEW_TEXT,
    T0,
    Served,
    Trained,
    click,
    crowd_events,
    fill_store,
    genre,
    make_settings,
    next_item,
    plant_pickle,
    rows_of,
    same_weights,
    start_engine,
    state_of,
    truncate,
    wait_until,
    world_items,
)


def predicted(trained: Trained, history: list[str], k: int) -> list[str]:
    """The top-k unseen items the trained network itself ranks after ``history``."""
    net = trained.fresh()
    scores = net.score_last(rows_of(net, trained.vocab, history))[0].numpy()
    order = [trained.vocab[r] for r in np.argsort(-scores, kind="stable")]
    return [i for i in order if i not in history][:k]


def test_a_click_changes_the_next_list_through_the_live_sequence_with_no_weight_update(
    served: Served,
) -> None:
    """The list follows the user's live sequence (after space-1, space-2, clicking space-3 makes
    space-4 the top pick, exactly as the network ranks that sequence) while the served weights stay
    bit-identical: no reload, no update."""
    served.click("U", "space-1", T0 + 99)
    served.click("U", "space-2", T0 + 100)
    model = served.model
    weights = state_of(model.net)
    swaps = served.engine.manager.swaps if served.engine.manager else -1

    before = served.recs("U", k=5)
    assert before["model"] == "transformer@v000001"
    assert [i["item_id"] for i in before["items"]] == predicted(served.trained, ["space-1", "space-2"], 5)
    assert before["items"][0]["item_id"] == "space-3"

    served.click("U", "space-3", T0 + 101)
    after = served.rec_ids("U", k=5)  # the very next request
    assert after == predicted(served.trained, ["space-1", "space-2", "space-3"], 5)
    assert after[0] == "space-4" != before["items"][0]["item_id"]
    assert "space-3" not in after  # seen

    assert served.model is model  # same model object, no reload ...
    assert served.engine.manager is not None and served.engine.manager.swaps == swaps
    assert same_weights(state_of(model.net), weights)  # ... and not a single weight changed


def test_users_without_history_get_the_popularity_fallback_and_are_told_so(served: Served) -> None:
    """No positive history -> the popularity fallback answers, and the response names it."""
    by_clicks = sorted(CROWD, key=lambda i: -CROWD[i])
    stranger = served.recs("stranger", k=3)
    assert stranger["model"] == "popularity-cooc"
    assert [i["item_id"] for i in stranger["items"]] == by_clicks

    r = served.client.post(
        "/v1/events", json={"user_id": "grump", "item_id": "space-1", "type": "dislike", "timestamp": T0}
    )
    assert r.status_code == 200, r.text
    grump = served.recs("grump", k=3)  # known to live state, but nothing positive to read
    assert grump["model"] == "popularity-cooc"
    assert "space-1" not in [i["item_id"] for i in grump["items"]]

    served.click("fan", "cooking-3", T0 + 4)
    served.click("fan", "cooking-4", T0 + 5)
    fan = served.recs("fan", k=3)
    assert fan["model"] == "transformer@v000001"
    assert fan["items"][0]["item_id"] == "cooking-5"


def test_a_new_item_is_scorable_from_its_text(served: Served) -> None:
    """PUT items after training: once encoded, their representation is their text plus the learned
    unknown-item id embedding, similar-items ranks same-genre items first, and taste decides their
    scores."""
    assert served.client.get("/v1/items/new-space/similar").status_code == 404
    for item_id, text in [*NEW_TEXT.items(), ("new-blank", "")]:
        r = served.client.put(f"/v1/items/{item_id}", json={"title": text})
        assert r.status_code == 200, r.text
    assert served.engine.manager is not None
    served.engine.manager.wait_for_text()

    model = served.model
    table = model.net.item_table().detach()
    ids = model.net.id_emb.weight.detach()
    assert model.net.unk_id is not None  # the fixture trains with id dropout
    unk = model.net.unk_id.detach()
    for item_id in NEW_TEXT:
        idx = model.vocab.row(item_id)
        assert idx is not None and idx >= len(ITEM_IDS)  # grown, not trained
        assert torch.equal(ids[idx + 1], unk)
        assert not torch.allclose(table[idx + 1], unk)  # the text part
    blank = model.vocab.row("new-blank")
    assert blank is not None and torch.equal(table[blank + 1], unk)  # no text: the unknown item itself

    for item_id in NEW_TEXT:
        r = served.client.get(f"/v1/items/{item_id}/similar", params={"k": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "transformer@v000001"
        assert [genre(i["item_id"]) for i in body["items"]] == [item_id.removeprefix("new-")] * 3

    full: dict[str, list[str]] = {}
    for n, g in enumerate(("space", "cooking", "football")):
        served.click(f"{g}-fan", f"{g}-1", T0 + 10 + n)
        served.click(f"{g}-fan", f"{g}-2", T0 + 20 + n)
        full[g] = served.rec_ids(f"{g}-fan", k=40)
    for g, ranked in full.items():
        new = [i for i in ranked if i.startswith("new-") and i != "new-blank"]
        assert new[0] == f"new-{g}", (g, ranked)  # the new item of the fan's genre scores highest


def test_an_item_first_named_by_an_event_joins_the_served_model_at_once(served: Served) -> None:
    """An event may name an item no PUT created (the store makes a catalog stub): the served model
    grows to cover it in the same fold, so the item is scored (not -inf) and can be recommended."""
    served.click("stub-fan", "space-1", T0 + 1)
    served.click("someone", "stub-item", T0 + 2)  # never PUT: a stub row
    model = served.model
    assert model.vocab.row("stub-item") is not None  # grown with the fold, no model swap needed
    ranked = served.rec_ids("stub-fan", k=len(ITEM_IDS) + 5)
    assert "stub-item" in ranked


def test_a_model_with_another_vocabulary_is_aligned_by_item_id(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """The catalog holds items the model never saw, first, and the trained items in reverse order:
    every item's score is the network's score for that item id, and new items score by text
    (and the unknown-item embedding)."""
    settings = make_settings(tmp_path / "data")
    catalog_order = [*NEW_TEXT, *reversed(ITEM_IDS)]
    history = ["space-2", "space-3"]
    events = [click("U", item, T0 + n) for n, item in enumerate(history)]
    fill_store(settings, world_items(catalog_order), events, encoder)
    registry = ModelRegistry(settings.registry_path)
    registry.promote(registry.save(trained.fresh(), trained.vocab))
    engine = start_engine(settings, encoder)
    try:
        assert engine.manager is not None and engine.manager.current is not None
        engine.manager.wait_for_text()
        assert engine.catalog.ids == catalog_order
        served = engine.manager.current
        user = engine.state.get("U")
        scores = served.score(user, len(engine.catalog), "U")

        net = trained.fresh()
        seq = rows_of(net, trained.vocab, history)
        expected = net.score_last(seq)[0].numpy()  # by the model's own vocabulary
        for r, item_id in enumerate(trained.vocab):
            row = engine.catalog.row(item_id)
            assert row is not None
            assert scores[row] == pytest.approx(float(expected[r]), rel=1e-5, abs=1e-5), item_id
        with torch.no_grad():
            h = net.forward(seq)[0, -1]
            assert net.text_proj is not None and net.unk_id is not None
            vectors = torch.from_numpy(encoder.encode(list(NEW_TEXT.values())))
            text = (net.unk_id + net.text_proj(vectors)) @ h  # untrained id + text
        new_rows = [engine.catalog.ids.index(i) for i in NEW_TEXT]
        assert scores[new_rows] == pytest.approx(text.numpy(), rel=1e-4, abs=1e-4)

        rec = engine.recommend("U", k=3, log_impressions=False)
        assert rec.model == "transformer@v000001"
        assert rec.items[0].item_id == next_item(history[-1])
    finally:
        engine.close()


# -- corrupt versions -----------------------------------------------------------------------------
def logged(caplog: pytest.LogCaptureFixture, version: str) -> bool:
    """Whether the model manager has logged a failure to load ``version``."""
    return any(version in r.getMessage() for r in caplog.records)


def _wrong_shapes(folder: Path, marker: Path) -> None:
    torch.save(
        SASRec(TransformerConfig(n_items=5, d_model=16, n_layers=1)).state_dict(), folder / "weights.pt"
    )


CORRUPTIONS: dict[str, Callable[[Path, Path], None]] = {
    "truncated weights": lambda folder, marker: truncate(folder / "weights.pt"),
    "weights that run code": lambda folder, marker: plant_pickle(folder / "weights.pt", marker),
    "weights of another shape": _wrong_shapes,
    "missing vocabulary": lambda folder, marker: (folder / "vocab.json").unlink(),
}


def test_a_corrupt_live_version_is_not_swapped_in(
    served: Served, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each kind of unreadable version, promoted, is refused: the server keeps answering with v1.
    A good version promoted afterwards is picked up, so the watcher survived every failure."""
    caplog.set_level(logging.ERROR, logger="liverec.serve.models")
    manager = served.engine.manager
    assert manager is not None
    served.click("U", "football-0", T0 + 100)
    served.click("U", "football-1", T0 + 101)
    marker = tmp_path / "code-ran"
    for kind, corrupt in CORRUPTIONS.items():
        version = served.registry.save(served.trained.fresh(), served.trained.vocab)
        corrupt(served.registry.versions_dir / version, marker)
        served.registry.promote(version)
        wait_until(partial(logged, caplog, version), f"{kind}: a reload attempt")
        assert manager.reload() is False, kind  # what the watcher does, done once more by hand
        rec = served.recs("U", k=3)
        assert rec["model"] == "transformer@v000001", kind
        assert rec["items"][0]["item_id"] == "football-2"
    assert not marker.exists()

    good = served.registry.save(served.trained.fresh(), served.trained.vocab)
    served.registry.promote(good)
    wait_until(lambda: served.recs("U")["model"] == f"transformer@{good}", "the good version")


def test_a_server_starting_on_a_corrupt_live_version_serves_the_fallback(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """Start-up with an unreadable live version neither crashes nor runs its code: popularity serves
    until a readable version is promoted."""
    settings = make_settings(tmp_path / "data")
    fill_store(
        settings,
        world_items(),
        [*crowd_events(), click("U", "space-0", T0 + 50), click("U", "space-1", T0 + 51)],
        encoder,
    )
    registry = ModelRegistry(settings.registry_path)
    bad = registry.save(trained.fresh(), trained.vocab)
    marker = tmp_path / "code-ran"
    plant_pickle(registry.versions_dir / bad / "weights.pt", marker)
    registry.promote(bad)
    engine = start_engine(settings, encoder)
    try:
        assert engine.model_version == "popularity-cooc"
        assert not marker.exists()
        good = registry.save(trained.fresh(), trained.vocab)
        registry.promote(good)
        wait_until(lambda: engine.model_version == f"transformer@{good}", "the good version")
        assert engine.recommend("U", k=1, log_impressions=False).items[0].item_id == "space-2"
    finally:
        engine.close()


# -- promote and rollback under load, on a real server --------------------------------------------
@dataclass
class Load:
    """Client threads asking for recommendations nonstop, recording (start, end, status, model)."""

    url: str
    threads: int = 2
    results: list[tuple[float, float, int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self.stop.is_set():
                t0 = time.monotonic()
                try:
                    r = client.get(f"{self.url}/v1/users/U/recommendations", params={"k": 3})
                    status, model = r.status_code, r.json().get("model", r.text)
                except (httpx.HTTPError, ValueError) as exc:
                    status, model = 0, repr(exc)
                self.results.append((t0, time.monotonic(), status, model))

    def serves(self, model: str, after: float) -> bool:
        return self.first_with(model, after) is not None

    def first_with(self, model: str, after: float) -> float | None:
        done = [end for start, end, _, m in list(self.results) if start >= after and m == model]
        return min(done) if done else None


def test_promote_and_rollback_switch_a_real_server_with_no_failed_request(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """`liverec serve` under continuous GET load while v2 is promoted and rolled back, three times:
    every request answers 200, and the served version follows LIVE within a bounded wait (requests
    that start after the switch was seen never get the old version)."""
    data = tmp_path / "server-data"
    settings = make_settings(data)
    fill_store(settings, world_items(), [*crowd_events(), click("U", "space-5", T0 + 50)], encoder)
    registry = ModelRegistry(data / "registry")
    v1 = registry.save(trained.fresh(), trained.vocab)
    v2 = registry.save(trained.fresh(), trained.vocab)
    registry.promote(v1)
    server = start_server(data, tmp_path / "server.log", env={"LIVEREC_SERVER__RELOAD_POLL_S": "0.05"})
    load = Load(server.url)
    workers = [threading.Thread(target=load.run, daemon=True) for _ in range(load.threads)]
    try:
        for w in workers:
            w.start()
        wait_until(partial(load.serves, f"transformer@{v1}", 0.0), "v1 served")
        switches: list[tuple[float, str]] = []
        for target in (v2, v1) * 3:
            changed = time.monotonic()
            if target == v2:
                registry.promote(v2)
            else:
                assert registry.rollback() == v1
            wait_until(partial(load.serves, f"transformer@{target}", changed), target)
            switches.append((changed, target))
            time.sleep(0.2)  # let requests run on it for a moment
    finally:
        load.stop.set()
        for w in workers:
            w.join(timeout=60)
        server.stop()
    results = list(load.results)
    assert len(results) > 20
    failures = [r for r in results if r[2] != 200]
    assert not failures, failures[:5]
    # once a version was seen, requests started later (before the next switch) never get another
    bounds = [*[c for c, _ in switches[1:]], float("inf")]
    for (changed, target), until in zip(switches, bounds, strict=True):
        seen = load.first_with(f"transformer@{target}", changed)
        assert seen is not None
        late = [m for start, _, _, m in results if seen <= start < until]
        assert late and set(late) == {f"transformer@{target}"}, (target, set(late))


def test_a_new_model_version_rebases_the_policy_on_its_vectors(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """LinUCB learns on the served model's vectors; when another version starts serving, what it
    learned on the old vector space is dropped (prior again), and so are slates awaiting feedback."""
    settings = make_settings(tmp_path / "data").model_copy(update={"policy": PolicySettings(name="linucb")})
    fill_store(settings, world_items(), crowd_events(), encoder)
    registry = ModelRegistry(settings.registry_path)
    registry.promote(registry.save(trained.fresh(), trained.vocab))
    engine = start_engine(settings, encoder)
    try:
        assert engine.feedback is not None
        policy = engine.recommender.policy
        engine.ingest([click("U", "football-0", T0 + 100), click("U", "football-1", T0 + 101)])
        for k in range(3):  # served lists, then clicks on their top items after the join window
            rec = engine.recommend("U", k=3)
            engine.ingest([click("U", rec.items[0].item_id, time.time() + k)])
        engine.feedback.advance(time.time() + 3_600)
        assert policy.linear.n_updates > 0  # type: ignore[attr-defined]
        engine.recommend("U", k=3)
        assert engine.feedback.served  # this slate's vectors wait for its feedback
        registry.promote(registry.save(trained.fresh(), trained.vocab))
        wait_until(lambda: engine.model_version.endswith("v000002"), "the new version")
        assert policy.linear.n_updates == 0 and not engine.feedback.served  # type: ignore[attr-defined]
    finally:
        engine.close()


def test_a_new_item_slot_gives_the_policy_the_slot_items_own_vector(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """With `[policy] new_item_slots`, the last position holds an item nobody has clicked, and the
    vector LinUCB will learn from for that position is that item's, not some candidate's."""
    policy = PolicySettings(name="linucb", new_item_slots=1, new_item_positives=1)
    settings = make_settings(tmp_path / "data").model_copy(update={"policy": policy})
    fill_store(settings, world_items([*ITEM_IDS, *NEW_TEXT]), crowd_events(), encoder)
    registry = ModelRegistry(settings.registry_path)
    registry.promote(registry.save(trained.fresh(), trained.vocab))
    engine = start_engine(settings, encoder)
    try:
        assert engine.feedback is not None and engine.manager is not None
        engine.manager.wait_for_text()
        engine.ingest([click("U", "football-0", T0 + 100), click("U", "football-1", T0 + 101)])
        rec = engine.recommend("U", k=3)
        assert rec.policy == "linucb+new1" and rec.slate is not None and rec.slate.index is not None
        rows = [engine.catalog.row(i.item_id) for i in rec.items]
        assert None not in rows and len(set(rows)) == 3
        slot = int(rows[-1])  # type: ignore[arg-type]
        assert engine.popularity.counts(len(engine.catalog))[slot] == 0  # nobody clicked it
        shown = engine.feedback.served[rec.request_id].items  # (3, D): the vectors feedback will use
        model = engine.manager.current
        assert model is not None
        vectors = model.item_vectors(np.asarray(rows, dtype=np.int64))
        assert vectors is not None
        np.testing.assert_allclose(shown, vectors, rtol=1e-6)
        assert rec.context is not None  # the slot's vector was appended after the candidates'
        assert int(rec.slate.index[-1]) == len(rec.context["item_vectors"]) - 1
    finally:
        engine.close()


def test_with_rules_the_list_adds_live_item_to_item_counts_learned_at_the_next_request(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """``[rules] weight`` > 0: a served score is the network's plus weight * log(counts + eps), the
    counts taken live from the log. Another user's new pair moves the list at the very next request,
    with no weight update."""
    from fastapi.testclient import TestClient

    from liverec.model.sequential import SequentialModel
    from liverec.serve.app import create_app
    from liverec.settings import RulesSettings

    settings = make_settings(tmp_path / "data").model_copy(update={"rules": RulesSettings(weight=2.0)})
    fill_store(settings, world_items(), crowd_events(), encoder)
    registry = ModelRegistry(settings.registry_path)
    registry.promote(registry.save(trained.fresh(), trained.vocab, {}))
    engine = start_engine(settings, encoder)
    try:
        with TestClient(create_app(settings, engine)) as client:
            served = Served(client, engine, registry, settings, trained)
            served.click("U", "space-1", T0 + 99)
            model, rules = served.model, engine.rules
            assert rules is not None and model.rules is rules
            plain = SequentialModel(trained.fresh(), trained.vocab, "plain", engine.popularity)
            plain.sync(engine.catalog)
            n, row = len(engine.catalog), engine.catalog.row
            user = engine.state.get("U")
            weights = state_of(model.net)

            def expected() -> list[str]:
                scores = plain.score(user, n) + 2.0 * rules.log_prior(user.items, n).astype(np.float32)
                order = [engine.catalog.ids[r] for r in np.argsort(-scores, kind="stable")]
                return [i for i in order if i != "space-1"][:5]

            before = served.rec_ids("U")
            assert before == expected()
            target = next(i for i in reversed(ITEM_IDS) if genre(i) == "cooking" and i not in before)
            assert rules.user_counts([row("space-1")], n)[row(target)] == 0.0
            for k in range(5):  # other users go from space-1 to the target
                served.click(f"V{k}", "space-1", T0 + 200 + 2 * k)
                served.click(f"V{k}", target, T0 + 201 + 2 * k)
            assert rules.user_counts([row("space-1")], n)[row(target)] == 5.0
            after = served.rec_ids("U")
            assert after == expected() and target in after and target not in before
            assert same_weights(state_of(model.net), weights)
    finally:
        engine.close()


def test_a_registered_version_is_evaluated_as_served_when_rules_are_on(
    tmp_path: Path, trained: Trained
) -> None:
    """`evaluate_snapshot` with ``[rules] weight`` > 0 scores network + weight * log prior, the rules
    counted on train + validation (what precedes the test target); weight 0 is the network alone."""
    from liverec.core.metrics import evaluate
    from liverec.evaluate.offline import evaluate_snapshot, rank_snapshot_all, served_rules
    from liverec.model.rules import SequentialRules, blend
    from liverec.settings import RulesSettings
    from liverec.trainer.offline import scorer

    registry = ModelRegistry(tmp_path / "registry")
    snap = registry.load(registry.save(trained.fresh(), trained.vocab))
    split = trained.split
    plain = evaluate_snapshot(snap, split)
    assert evaluate_snapshot(snap, split, rules=RulesSettings(weight=0.0)) == plain
    settings = RulesSettings(weight=2.0, history=1)
    got = evaluate_snapshot(snap, split, rules=settings)
    counted = SequentialRules(**settings.params()).fit(split.train_with_val(), split.n_items)
    both = blend(scorer(trained.fresh()), counted, 2.0, split.n_items)
    want = evaluate(both, split.test_inputs(), split.test, split.n_items)
    assert got == pytest.approx(want)
    assert got["mrr"] != pytest.approx(plain["mrr"])
    # counted once (`served_rules`) and passed in, as `liverec evaluate offline` does for many versions
    assert evaluate_snapshot(snap, split, rules=settings, counted=served_rules(split, settings)) == got
    # both from one pass (what the CLI reports per version), equal to the two separate evaluations
    assert [r.metrics() for r in rank_snapshot_all(snap, split, rules=settings)] == [plain, got]
    assert [r.metrics() for r in rank_snapshot_all(snap, split)] == [plain]


def test_deleting_a_user_drops_their_open_impressions_slates_and_posterior(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """What the serving policy keeps about one user goes with them: the impressions still waiting
    for their rewards, the vectors of their slates, and their per-user posterior (LinUCB)."""
    policy = PolicySettings(name="linucb", user_weight=1.0)
    settings = make_settings(tmp_path / "data").model_copy(update={"policy": policy})
    fill_store(settings, world_items(), crowd_events(), encoder)
    registry = ModelRegistry(settings.registry_path)
    registry.promote(registry.save(trained.fresh(), trained.vocab))
    engine = start_engine(settings, encoder)
    try:
        feedback = engine.feedback
        assert feedback is not None and isinstance(feedback.policy, LinUCB)
        linucb = feedback.policy
        for user in ("U", "V"):
            engine.ingest([click(user, "football-0", T0 + 100), click(user, "football-1", T0 + 101)])
            engine.recommend(user, k=3, now=T0 + 102)
        linucb.user.observe("U", np.ones(4), 0, 1.0)  # as a closed window of U's would teach it
        before = feedback.joiner.open_impressions
        assert before == 6 and {s.user_id for s in feedback.served.values()} == {"U", "V"}
        engine.delete_user("U")
        assert feedback.joiner.open_impressions == 3
        assert {s.user_id for s in feedback.served.values()} == {"V"}
        assert "U" not in linucb.user.users
    finally:
        engine.close()


def test_replicas_sharing_a_registry_swap_to_the_version_promoted_there(
    tmp_path: Path, trained: Trained, encoder: TextEncoder
) -> None:
    """Two engines on one store and one registry directory (as replicas with one learner): a
    promotion there is served by both within a poll, and a rollback takes both back."""
    settings = make_settings(tmp_path / "data")
    fill_store(settings, world_items(), crowd_events(), encoder)
    registry = ModelRegistry(settings.registry_path)
    registry.promote(registry.save(trained.fresh(), trained.vocab))
    replicas = [
        start_engine(settings.model_copy(update={"data_dir": tmp_path / f"r{i}"}), encoder) for i in range(2)
    ]
    try:
        assert {e.model_version for e in replicas} == {"transformer@v000001"}
        registry.promote(registry.save(trained.fresh(), trained.vocab, parent="v000001"))
        wait_until(lambda: {e.model_version for e in replicas} == {"transformer@v000002"}, "both to swap")
        registry.rollback()
        wait_until(lambda: {e.model_version for e in replicas} == {"transformer@v000001"}, "both back")
    finally:
        for e in replicas:
            e.close()
