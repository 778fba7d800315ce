"""Greedy: the top-k by model score, ties in candidate order, propensity 1 everywhere."""

from __future__ import annotations

import numpy as np

from liverec.policy import Greedy
from liverec.policy.base import Greedy as BaseGreedy


def test_top_k_by_score_with_ties_in_candidate_order() -> None:
    rows = np.array([10, 11, 12, 13, 14], dtype=np.int64)
    scores = np.array([0.5, 2.0, -np.inf, 2.0, 1.0], dtype=np.float32)
    s = Greedy().select(rows, scores, 4)
    assert s.rows.tolist() == [11, 13, 14, 10]
    assert s.scores.tolist() == [2.0, 2.0, 1.0, 0.5]
    assert s.propensities.tolist() == [1.0] * 4 and s.slate_propensity == 1.0
    assert Greedy().select(rows, scores, 10).rows.tolist() == [11, 13, 14, 10, 12]  # -inf last


def test_still_importable_from_base() -> None:
    assert Greedy is BaseGreedy and Greedy().name == "greedy"
