import math

import numpy as np
import pytest

from liverec.policy.shuffle import RANDOMIZED, ShuffleTopK


def test_randomized_slates_say_so_and_the_rest_are_greedy() -> None:
    policy = ShuffleTopK(epsilon=0.3, depth=4, seed=1)
    rows = np.arange(10, 20, dtype=np.int64)
    scores = np.linspace(1.0, 0.1, 10).astype(np.float32)
    names = []
    for _ in range(2000):
        slate = policy.select(rows, scores, 6)
        names.append(slate.policy)
        assert slate.rows[4:].tolist() == [14, 15]  # below depth: always greedy
        if slate.policy == "shuffle":
            assert slate.rows.tolist() == [10, 11, 12, 13, 14, 15]
            assert slate.slate_propensity == pytest.approx(0.7 + 0.3 / math.factorial(4))
        else:
            assert slate.policy == RANDOMIZED
            assert sorted(slate.rows[:4].tolist()) == [10, 11, 12, 13]
    assert np.mean([n == RANDOMIZED for n in names]) == pytest.approx(0.3, abs=0.04)


def test_on_randomized_slates_the_click_rate_per_position_is_the_examination_curve() -> None:
    """Why the policy exists: items of different relevance, clicks = examined(position) * relevant.
    Greedy slates confound the two; randomized ones give CTR(p) / CTR(0) = exam(p) / exam(0)."""
    rng = np.random.default_rng(0)
    exam = 1.0 / (1.0 + np.arange(5))
    rel = np.array([0.9, 0.7, 0.5, 0.3, 0.1])
    policy = ShuffleTopK(epsilon=1.0, depth=5, seed=2)
    clicks, shown = np.zeros(5), np.zeros(5)
    for _ in range(20_000):
        slate = policy.select(np.arange(5), -np.arange(5.0), 5)
        shown += 1
        clicks += rng.random(5) < exam * rel[slate.rows]
    np.testing.assert_allclose(clicks / clicks[0], exam, atol=0.05)


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        ShuffleTopK(epsilon=1.5)
    with pytest.raises(ValueError, match="depth"):
        ShuffleTopK(depth=0)
