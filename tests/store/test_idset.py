"""`IdSet` against a plain set: membership through merges of recent ids into the sorted array."""

from __future__ import annotations

import random

import numpy as np

from liverec.store.idset import IdSet


def test_idset_matches_a_set_through_adds_merges_and_removes() -> None:
    rng = random.Random(0)
    ids, ref = IdSet(range(-5, 5)), set(range(-5, 5))
    merges = 0
    for _ in range(300):
        batch = [rng.randrange(-200_000, 200_000) for _ in range(rng.randint(0, 1500))]
        assert ids.contains(batch).tolist() == [h in ref for h in batch]
        if rng.random() < 0.1:
            gone = rng.sample(sorted(ref), min(50, len(ref)))
            ids.remove(gone)
            ref.difference_update(gone)
        new = [h for h in dict.fromkeys(batch) if h not in ref]  # the store adds only unknown ids
        pending = len(ids._recent)
        ids.add(new)
        ref.update(new)
        merges += len(ids._recent) < pending
        assert len(ids) == len(ref)
    assert merges >= 2
    assert bool(np.all(np.diff(ids._sorted) > 0))  # still sorted, no repeats
    assert set(ids._sorted.tolist()) | ids._recent == ref


def test_idset_built_from_repeated_hashes_holds_each_once() -> None:
    ids = IdSet([3, -1, 3, 7, -1, 2**62, -(2**63)])
    assert len(ids) == 5
    assert ids.contains([3, -1, 7, 2**62, -(2**63), 0, 5]).tolist() == [True] * 5 + [False] * 2
