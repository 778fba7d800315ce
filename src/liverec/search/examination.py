"""How likely a result position is looked at: the examination curve that debiases search clicks.

Estimated from the logged randomization (`liverec.policy.shuffle`): on a slate whose top ``depth``
results were shown in uniformly random order, every position holds an item of the same expected
relevance, so the click-through rate at position p is proportional to the probability that p is
examined. ``p(k) = CTR(k) / CTR(0)``, each CTR shrunk towards a prior curve
``(1 + k) ** -prior_decay`` with ``prior_strength`` pseudo-impressions, so the estimate starts at the
prior and moves to the data as randomized traffic accrues. The prior is deliberately flatter than
most measured curves (0.5; eye-tracking and click logs put the exponent near 0.7-1): an estimate
that under-corrects leans toward naive learning, one that over-corrects teaches the ranker to push
down whatever it ranks high, which is worse.

Why this rather than a click model fitted by EM on all traffic: it needs no model of relevance, so
it cannot mistake "the ranker puts good items first" for "people look at the top" (the confound EM
must untangle by assumption); the price is the share of randomized slates.
"""

from __future__ import annotations

import numpy as np


class Examination:
    def __init__(
        self, depth: int = 10, prior_strength: float = 100.0, prior_decay: float = 0.5, floor: float = 0.05
    ) -> None:
        if depth < 1 or prior_strength <= 0 or prior_decay < 0 or not 0 < floor <= 1:
            raise ValueError("need depth >= 1, prior_strength > 0, prior_decay >= 0 and floor in (0, 1]")
        self.depth = depth
        self.prior_strength = float(prior_strength)
        self.floor = float(floor)
        self.prior = (1.0 + np.arange(depth)) ** -float(prior_decay)  # (depth,)
        self.shown = np.zeros(depth)  # (depth,) randomized impressions per position
        self.clicks = np.zeros(depth)  # (depth,) their clicks

    def observe_shown(self, position: int) -> None:
        if 0 <= position < self.depth:
            self.shown[position] += 1

    def observe_click(self, position: int) -> None:
        if 0 <= position < self.depth:
            self.clicks[position] += 1

    def curve(self) -> np.ndarray:
        """(depth,) float64 P(examined | position), 1 at position 0, floored at ``floor``."""
        ctr0 = (self.clicks[0] + 1.0) / (self.shown[0] + 2.0)  # a rough CTR scale for the prior
        m = self.prior_strength
        ctr = (self.clicks + m * ctr0 * self.prior) / (self.shown + m)
        return np.clip(ctr / ctr[0], self.floor, 1.0)

    def p(self, position: int) -> float:
        """P(examined) at ``position``; below ``depth`` the last estimate continues (floored)."""
        c = self.curve()
        return float(c[min(max(position, 0), self.depth - 1)])

    def weight(self, position: int) -> float:
        """The inverse propensity of examination a click at ``position`` is learned with."""
        return 1.0 / self.p(position)
