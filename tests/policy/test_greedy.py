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


def test_top_k_rows_match_a_stable_sort_of_each_row() -> None:
    """The batched top-k of the Monte Carlo draws, with and without ties across the k-th place."""
    from liverec.policy.base import top_k_rows

    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        scores = rng.normal(size=(50, 30)).astype(dtype)
        scores[3, :] = 1.0  # a row of ties: candidate order
        scores[4, [2, 9, 17]] = 5.0  # a tie within the k kept
        for k in (1, 4, 29, 30, 31):
            want = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            got = top_k_rows(scores, k)
            assert got.dtype == np.int64
            exact = [0, 1, 2, 4] if k >= 3 else [0, 1, 2]  # row 4's tie lies within the k kept
            np.testing.assert_array_equal(got[exact], want[exact])
            np.testing.assert_array_equal(np.sort(got[3]), np.arange(min(k, 30)))  # any k of the tied
    assert top_k_rows(np.zeros((2, 0)), 3).shape == (2, 0)
