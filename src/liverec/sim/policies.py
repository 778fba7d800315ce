"""Two reference policies that only a simulation can have: uniformly random, and the oracle.

They bracket every real policy: random is what a system that learned nothing earns (and the
logging policy of the warm-up), the oracle what the world's hidden truth allows. Both follow the
`Policy` contract, so they run inside the real `Engine` like any other and log propensities.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from liverec.core.catalog import Catalog
from liverec.policy.base import Policy, Slate, check_inputs, make_slate, top_k
from liverec.sim.world import World


class UniformRandom(Policy):
    """``k`` distinct candidates in uniformly random order. Exact propensities: the marginal of any
    candidate at any position is 1 / M, the conditional at position p is 1 / (M - p)."""

    name = "random"

    def __init__(self, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, _, kk = check_inputs(candidates, scores, k)
        m = rows.size
        order = self.rng.permutation(m)[:kk]
        marg = np.full(kk, 1.0 / m) if m else np.ones(0)
        cond = 1.0 / (m - np.arange(kk)) if m else np.ones(0)
        return make_slate(self.name, rows, np.asarray(scores), order, marg, cond)


class Oracle(Policy):
    """The best slate under the world's true click probabilities (position bias does not depend on
    the item, so sorting by P(click | examined) is optimal). Needs ``catalog`` set to the engine's
    before the first request, and every item as a candidate to be the true optimum."""

    name = "oracle"
    deterministic = True

    def __init__(self, world: World, catalog: Catalog | None = None) -> None:
        self.world = world
        self.catalog = catalog

    def select(
        self, candidates: np.ndarray, scores: np.ndarray, k: int, context: Mapping[str, Any] | None = None
    ) -> Slate:
        rows, _, kk = check_inputs(candidates, scores, k)
        if self.catalog is None or not context or "user_id" not in context:
            raise ValueError("the oracle needs the engine's catalog and the user_id in the context")
        ids = self.catalog.ids
        p = self.world.click_prob(str(context["user_id"]), [ids[r] for r in rows.tolist()])
        order = top_k(p, kk)
        ones = np.ones(kk)
        return make_slate(self.name, rows, np.asarray(scores), order, ones, ones)
