"""History influence (`Model.influence`): the score drop of leaving one live-sequence position out.

Faithfulness is checked against the plain serving path: remove the engagement from a deep copy of the
`UserState` by hand and call `score`; the batched override must give the same drops, past the model's
window (`max_len`), with event types, with the sequential rules' prior, and when a leave-one-out
variant leaves the network nothing (the fallback then scores it).
"""

from __future__ import annotations

import copy
from collections import deque

import numpy as np
import pytest
import torch

from liverec.core.catalog import Catalog
from liverec.core.features import event_type_id
from liverec.core.schema import EventType
from liverec.core.state import Interaction, UserState
from liverec.model.base import Model
from liverec.model.popularity import PopularityCooc
from liverec.model.rules import SequentialRules
from liverec.model.sequential import SequentialModel
from liverec.model.transformer import SASRec, TransformerConfig
from support.world import ITEM_IDS, NEW_TEXT, Trained, walks, world_items

TOL = 1e-4
TYPES = [
    event_type_id(EventType.click),
    event_type_id(EventType.purchase),
    event_type_id(EventType.rating, 5.0),
    event_type_id(EventType.rating, 2.0),
]


def state(rows: list[int], types: list[int] | None = None) -> UserState:
    types = types if types is not None else [TYPES[0]] * len(rows)
    return UserState(
        deque(rows, maxlen=200), deque(float(t) for t in range(len(rows))), deque(types, maxlen=200)
    )


def removed(user: UserState, position: int) -> UserState:
    """The state had the engagement at ``position`` never happened, built by hand (not `leave_out`)."""
    gone = copy.deepcopy(user)
    for values in (gone.items, gone.times, gone.types):
        del values[position]
    return gone


def reference(model: Model, user: UserState, rows: np.ndarray, positions: list[int], n: int) -> np.ndarray:
    """(P, R) the drops through the normal `score` path."""
    base = model.score(user, n)[rows]
    return np.stack([base - model.score(removed(user, p), n)[rows] for p in positions])


def fallback(users: dict[str, UserState]) -> PopularityCooc:
    pop = PopularityCooc(users)
    pop.observe([Interaction(f"c{k}", k % 7, 1.0, float(k), True) for k in range(40)])
    return pop


def catalog_with_new_items() -> Catalog:
    """The world's 24 items plus 3 that no sequence has used (the rules do not know them)."""
    return Catalog(world_items([*ITEM_IDS, *NEW_TEXT]))


def fitted_rules(n: int) -> SequentialRules:
    vocab = {item: r for r, item in enumerate(ITEM_IDS)}
    seqs = [np.array([vocab[i] for i in w]) for w in walks(120, seed=3)]
    return SequentialRules(window=4, history=3).fit(seqs, n)


def random_net(max_len: int) -> SASRec:
    """An untrained SASRec with event types, weights drawn wide so scores differ by whole units: the
    check is of the arithmetic, not of what was learned."""
    torch.manual_seed(0)
    cfg = {"n_items": len(ITEM_IDS), "text_dim": 0, "d_model": 16, "n_layers": 2, "n_heads": 2}
    net = SASRec(TransformerConfig.model_validate(cfg | {"max_len": max_len, "event_types": True}))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.4)
    return net.eval()


@pytest.fixture
def typed_model() -> SequentialModel:
    catalog = catalog_with_new_items()
    rules = fitted_rules(len(catalog))
    model = SequentialModel(random_net(8), ITEM_IDS, "typed", fallback({}), rules=rules, rules_weight=0.7)
    model.sync(catalog)
    return model


@pytest.fixture
def text_model(trained: Trained) -> SequentialModel:
    model = SequentialModel(trained.fresh(), trained.vocab, "v1", fallback({}))
    model.sync(Catalog(world_items()))
    return model


@pytest.mark.parametrize("length", [1, 2, 5, 8, 9, 20, 45])
def test_batched_influence_is_the_score_drop_of_really_removing_the_event(
    typed_model: SequentialModel, length: int
) -> None:
    """Event types on, rules on (3 newest items), a window of 8: sequences shorter than it, at it, and
    longer (removing an item then lets the next older one into the window)."""
    rng = np.random.default_rng(length)
    n = 27
    user = state(rng.integers(0, 24, length).tolist(), rng.choice(TYPES, length).tolist())
    rows = rng.choice(n, 12, replace=False)  # new items (24..26) included: the rules' mean prior
    positions = sorted({*range(max(0, length - 10), length), *rng.integers(0, length, 3).tolist()})
    got = typed_model.influence(user, rows, positions, n)
    want = reference(typed_model, user, rows, positions, n)
    assert got.shape == (len(positions), len(rows)) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    # and the generic contract (rescoring copies through `score`) gives the same numbers
    np.testing.assert_allclose(got, Model.influence(typed_model, user, rows, positions, n), atol=TOL, rtol=0)
    if length > 8:  # something really changes: the test would catch a wrong window
        assert np.abs(want).max() > 0.1


def test_the_served_scores_can_be_passed_in_and_unsynced_rows_take_the_plain_path(
    typed_model: SequentialModel,
) -> None:
    """``base`` (a served list's scores) replaces the model's own pass; a history holding a row the
    model has not synced yet (skipped by the window) is scored as whole sequences, still faithfully."""
    rng = np.random.default_rng(11)
    user = state(rng.integers(0, 24, 12).tolist(), rng.choice(TYPES, 12).tolist())
    rows, positions = np.arange(27), list(range(2, 12))
    base = typed_model.score(user, 27)[rows]
    np.testing.assert_allclose(
        typed_model.influence(user, rows, positions, 27, base=base),
        reference(typed_model, user, rows, positions, 27),
        atol=TOL,
        rtol=0,
    )
    user.items[5] = 30  # a catalog row added after the last sync
    got = typed_model.influence(user, rows, positions, 31)
    np.testing.assert_allclose(got, reference(typed_model, user, rows, positions, 31), atol=TOL, rtol=0)


def test_a_variant_the_network_cannot_read_is_scored_by_the_fallback(typed_model: SequentialModel) -> None:
    """One engagement: leaving it out leaves no history, so `score` serves the fallback's list."""
    user = state([3])
    rows = np.arange(27)
    got = typed_model.influence(user, rows, [0], 27)
    np.testing.assert_allclose(got, reference(typed_model, user, rows, [0], 27), atol=TOL, rtol=0)
    np.testing.assert_allclose(
        got[0], typed_model.score(user, 27)[rows] - typed_model.fallback.score(None, 27), atol=TOL, rtol=0
    )


def test_the_trained_text_model_is_faithful_too(text_model: SequentialModel) -> None:
    rng = np.random.default_rng(7)
    for length in (3, 16, 17, 30):  # max_len is 16
        user = state(rng.integers(0, 24, length).tolist())
        rows = rng.choice(24, 8, replace=False)
        positions = list(range(max(0, length - 10), length))
        got = text_model.influence(user, rows, positions, 24)
        np.testing.assert_allclose(got, reference(text_model, user, rows, positions, 24), atol=TOL, rtol=0)


def test_an_unknown_user_or_no_positions_has_no_influence(typed_model: SequentialModel) -> None:
    rows = np.arange(5)
    assert typed_model.influence(None, rows, [], 27).shape == (0, 5)
    assert not typed_model.influence(state([]), rows, [], 27).any()
    assert not typed_model.fallback.influence(None, rows, [], 27).any()


def test_the_popularity_models_influence_is_its_own_score_drop() -> None:
    """The generic contract on the co-occurrence model: a history item with co-visitors moves scores."""
    users: dict[str, UserState] = {}
    pop = PopularityCooc(users)
    for u in range(30):
        users[f"u{u}"] = state([u % 5, 5 + u % 5])
        pop.observe([Interaction(f"u{u}", r, 1.0, float(u), True) for r in users[f"u{u}"].items])
    me = state([0, 1, 2])
    rows = np.arange(10)
    got = pop.influence(me, rows, [0, 1, 2], 10, "me")
    want = np.stack(
        [pop.score(me, 10, "me")[rows] - pop.score(removed(me, p), 10, "me")[rows] for p in range(3)]
    )
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert got[0, 5] > 0  # item 5 is co-visited with item 0 only: removing 0 lowers it


def test_the_rules_prior_of_a_few_rows_equals_the_dense_one() -> None:
    n = 27
    rules = fitted_rules(n)
    rules.observe([Interaction("live", r, 1.0, float(r), True) for r in (1, 2, 25)])  # pending counts
    rows = np.array([0, 1, 2, 3, 9, 24, 25, 26])
    for history in ([0, 1, 2], [5], [25, 2], [26], list(range(24))):
        prior, counts = rules.log_prior_at(history, rows, n)
        np.testing.assert_allclose(prior, rules.log_prior(history, n)[rows], atol=1e-9)
        np.testing.assert_allclose(counts, rules.user_counts(history, n)[rows], atol=1e-9)
