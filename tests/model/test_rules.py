"""Sequential rules: hand-counted pairs, live counting equal to a batch fit, and the blend."""

from __future__ import annotations

import numpy as np
import pytest

from liverec.core.state import Interaction
from liverec.model.rules import SequentialRules, blend


def test_pairs_are_counted_by_lag_in_both_directions() -> None:
    rules = SequentialRules(window=2, decay=0.5, backward=0.25).fit([np.array([0, 1, 2])], 4)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 2] = 1.0  # lag 1, forward
    expected[1, 0] = expected[2, 1] = 0.25  # lag 1, backward
    expected[0, 2], expected[2, 0] = 0.5, 0.125  # lag 2 weighs decay
    np.testing.assert_allclose(rules.counts.toarray(), expected)
    # a history sums its newest `history` rows, the newest weighted 1, the one before it decay
    rules.history = 2
    np.testing.assert_allclose(rules.user_counts([0, 1], 4), [0.25, 0.5, 1.0 + 0.25, 0.0])
    known = np.log(np.array([0.25, 0.5, 1.25]) + 0.01)
    # item 3 was never seen: the rules say nothing of it (the known items' mean), not "never follows"
    np.testing.assert_allclose(rules.log_prior([0, 1], 4), [*known, known.mean()])


def test_live_counting_equals_a_fit_on_the_same_sequences() -> None:
    """Interleaved users, repeats of one engagement, negatives and new items arriving late: what
    `observe` counts (part merged, part pending) is what `fit` counts on the sequences."""
    rng = np.random.default_rng(0)
    seqs: dict[str, list[int]] = {u: [] for u in "abcd"}
    stream: list[Interaction] = []
    for t in range(300):
        user = str(rng.choice(list(seqs)))
        row = int(rng.integers(0, 10 + t // 10))  # the catalog grows
        positive = bool(rng.random() > 0.2)
        stream.append(Interaction(user, row, 1.0 if positive else -1.0, float(t), positive))
        if positive and (not seqs[user] or seqs[user][-1] != row):
            seqs[user].append(row)
        if positive and rng.random() < 0.1:  # the same item again, one step deeper: one position
            stream.append(Interaction(user, row, 2.0, float(t), True))
    n = 1 + max(max(s) for s in seqs.values())
    live = SequentialRules(window=4, decay=0.7, backward=0.3, history=3, merge_every=100)
    for k in range(0, len(stream), 7):
        live.observe(stream[k : k + 7])
    assert live.counts.nnz > 0 and live._pending  # both paths are exercised
    batch = SequentialRules(window=4, decay=0.7, backward=0.3, history=3).fit(
        [np.array(s) for s in seqs.values()], n
    )
    for history in ([1, 2, 3], list(seqs["a"]), [n - 1], [n + 5]):  # n + 5: an item nobody touched
        np.testing.assert_allclose(live.user_counts(history, n), batch.user_counts(history, n), atol=1e-9)
        np.testing.assert_allclose(live.log_prior(history, n + 3), batch.log_prior(history, n + 3), atol=1e-9)


def test_blend_adds_the_weighted_log_prior_to_the_scores() -> None:
    rules = SequentialRules(history=1).fit([np.array([0, 2]), np.array([0, 2]), np.array([0, 1])], 3)

    def flat(seqs: list[np.ndarray]) -> np.ndarray:
        return np.zeros((len(seqs), 3), dtype=np.float32)

    scored = blend(flat, rules, 2.0, 3)([np.array([0])])
    np.testing.assert_allclose(scored[0], 2.0 * np.log(rules.user_counts([0], 3) + rules.eps), rtol=1e-6)
    assert int(np.argmax(scored[0][1:])) + 1 == 2  # 0 -> 2 twice, 0 -> 1 once


@pytest.mark.parametrize(
    "bad", [{"window": 0}, {"history": 0}, {"decay": 0.0}, {"backward": -1.0}, {"eps": 0.0}]
)
def test_bad_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SequentialRules(**bad)  # type: ignore[arg-type]


def test_rows_keep_their_largest_counts_when_bounded() -> None:
    """A bound keeps each item's largest followers, in a fit and at every live merge; 0 keeps all."""
    # item 0 is followed by 1 four times, by 2 twice and by 3 once (window 1, forward only)
    seqs = [np.array([0, 1])] * 4 + [np.array([0, 2])] * 2 + [np.array([0, 3])]
    kw = {"window": 1, "backward": 0.0, "history": 1}
    full = SequentialRules(**kw, max_per_row=0).fit(seqs, 4)
    np.testing.assert_allclose(full.counts.toarray()[0], [0, 4, 2, 1])
    bounded = SequentialRules(**kw, max_per_row=2).fit(seqs, 4)
    np.testing.assert_allclose(bounded.counts.toarray()[0], [0, 4, 2, 0])
    live = SequentialRules(**kw, max_per_row=2, merge_every=1)
    for u, s in enumerate(seqs):
        live.observe([Interaction(str(u), int(r), 1.0, float(t), True) for t, r in enumerate(s)])
    assert not live._pending
    assert live.counts[0].nnz == 2 and live.counts[0, 1] == 4.0
    assert np.diff(live.counts.indptr).max() <= 2


def test_forget_subtracts_exactly_one_users_pairs() -> None:
    """Counts after `forget` equal counts that never saw the user: pairs, known items (an item only
    they used is unknown again), and a new sequence of theirs starts from nothing."""
    rng = np.random.default_rng(1)
    stream = [
        Interaction(str(rng.choice(["a", "b", "gone"])), int(rng.integers(0, 12)), 1.0, float(t), True)
        for t in range(400)
    ]
    stream.append(Interaction("gone", 15, 1.0, 400.0, True))  # an item only they touched
    stream.append(Interaction("gone", 15, 1.0, 401.0, True))  # (twice: one engagement)
    kw = {"window": 4, "decay": 0.7, "backward": 0.3, "merge_every": 90}
    live, fresh = SequentialRules(**kw), SequentialRules(**kw)  # type: ignore[arg-type]
    for k in range(0, len(stream), 13):
        live.observe(stream[k : k + 13])
        fresh.observe([it for it in stream[k : k + 13] if it.user_id != "gone"])
    live.forget([it for it in stream if it.user_id == "gone"])
    fresh._merge()
    got = live.counts.toarray()
    np.testing.assert_allclose(got[:12, :12], fresh.counts.toarray(), atol=1e-9)
    assert not got[12:].any() and not got[:, 12:].any()  # their own item: no pair left
    assert not live.known[15] and (live.known[:12] == fresh.known[:12]).all()
    assert "gone" not in live._recent
