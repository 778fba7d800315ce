"""The engagement rule (`core.sequence.Engagements`) and the four places that read sequences through
it: live state, the offline splits, the online learner and the sequential rules must agree."""

from __future__ import annotations

import numpy as np
import pytest

from liverec.core.catalog import Catalog
from liverec.core.schema import Event, EventType, StoredEvent
from liverec.core.sequence import Engagements
from liverec.core.split import sequences_from_events
from liverec.core.state import LiveState
from liverec.model.rules import SequentialRules
from liverec.model.transformer import SASRec, TransformerConfig
from liverec.settings import RewardWeights
from liverec.trainer.online import OnlineLearner

T0 = 1_700_000_000.0
ITEMS = [f"i{k}" for k in range(6)]


def test_a_repeat_deepens_the_newest_engagement() -> None:
    seq = Engagements.bounded(None)
    assert seq.add(3, 10.0, 1) and not seq.repeats(2) and seq.repeats(3)
    assert not seq.add(3, 11.0, 4)  # the cart after the click: same position, deeper type
    assert seq.add(2, 12.0, 1) and seq.add(3, 13.0, 1)  # not consecutive: a new engagement
    assert (list(seq.items), list(seq.times), list(seq.types)) == ([3, 2, 3], [10.0, 12.0, 13.0], [4, 1, 1])


def test_a_bounded_sequence_keeps_the_newest() -> None:
    seq = Engagements.bounded(2)
    for k, item in enumerate([1, 2, 2, 3]):
        seq.add(item, float(k), k)
    assert (list(seq.items), list(seq.times), list(seq.types)) == ([2, 3], [1.0, 3.0], [2, 3])


def random_log(seed: int, n: int = 400) -> list[Event]:
    """A log with many repeats: clicks, carts and purchases on a few items, negatives, impressions."""
    rng = np.random.default_rng(seed)
    kinds = [EventType.click, EventType.add_to_cart, EventType.purchase, EventType.impression, EventType.skip]
    out = []
    for k in range(n):
        item = ITEMS[int(rng.integers(0, 3 if rng.random() < 0.5 else len(ITEMS)))]
        kind = kinds[int(rng.choice(len(kinds), p=[0.4, 0.2, 0.1, 0.2, 0.1]))]
        out.append(Event(user_id=f"u{rng.integers(0, 5)}", item_id=item, type=kind, timestamp=T0 + k))
    return out


@pytest.mark.parametrize("seed", range(5))
def test_live_state_splits_learner_and_rules_see_the_same_sequences(seed: int) -> None:
    events = random_log(seed)
    stored = [StoredEvent(k + 1, e) for k, e in enumerate(events)]
    offline = sequences_from_events(events)
    want = {u: [offline.vocab.ids[r] for r in offline.items[k]] for k, u in enumerate(offline.users)}
    want_types = {u: offline.types[k].tolist() for k, u in enumerate(offline.users)}
    positives = sum(e.type in (EventType.click, EventType.add_to_cart, EventType.purchase) for e in events)
    assert sum(map(len, want.values())) < positives  # the log has repeats for the rule to fold

    live = LiveState(Catalog(), RewardWeights(), max_sequence=1000)
    interactions = live.apply(stored)
    for u, items in want.items():
        st = live.get(u)
        assert st is not None
        assert [live.catalog.ids[r] for r in st.items] == items and list(st.types) == want_types[u]

    net = SASRec(
        TransformerConfig(n_items=len(ITEMS), text_dim=0, d_model=8, n_layers=1, n_heads=1, max_len=1000)
    )
    learner = OnlineLearner(net, ITEMS)
    learner.fold(stored, train=False)
    for u, items in want.items():
        track = learner.users[u]
        assert [ITEMS[i - 1] for i in track.items] == items and list(track.types) == want_types[u]

    # the rules counted live equal the rules counted from the offline sequences (rows: the catalog's)
    rows = {item_id: live.catalog.row(item_id) for item_id in ITEMS}
    train = [np.asarray([rows[i] for i in items], np.int64) for items in want.values()]
    fitted = SequentialRules(merge_every=10**9).fit(train, len(live.catalog))
    observed = SequentialRules(merge_every=1)
    observed.observe(interactions)
    np.testing.assert_allclose(
        observed.counts.toarray()[: fitted.n_items, : fitted.n_items], fitted.counts.toarray()
    )
