"""A bounded, recency-weighted replay buffer of training examples (input window, target).

Mixing replayed history into every online mini-batch keeps the model from forgetting what it knew
while it adapts to the newest events. Newer examples are replayed more often: the sampling weight
halves every `half_life` examples. Each example remembers its user's `owner` key, so a deleted
user's examples can be dropped (`drop`) without knowing their raw id.
"""

from __future__ import annotations

import numpy as np


class ReplayBuffer:
    def __init__(self, capacity: int, shape: tuple[int, ...], half_life: float, seed: int = 0) -> None:
        self.capacity = capacity
        self.shape = shape  # of one example's input, e.g. (2, window): items, event types
        self.half_life = half_life
        self.inputs = np.zeros((capacity, *shape), dtype=np.int32)
        self.targets = np.zeros(capacity, dtype=np.int32)
        self.weights = np.ones(capacity, dtype=np.float32)  # example weights (inverse propensities)
        self.serial = np.zeros(capacity, dtype=np.int64)  # arrival number of each slot's example
        self.owners = np.zeros(capacity, dtype=np.int64)  # `trainer.online.owner_key` of each example's user
        self.alive = np.ones(capacity, dtype=bool)  # False: dropped (a deleted user's), never sampled
        self.added = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    def add(
        self,
        inputs: np.ndarray,
        targets: np.ndarray,
        weights: np.ndarray | None = None,
        owners: np.ndarray | None = None,
    ) -> None:
        """inputs (B, *shape) int32, targets (B,) int32, weights (B,) float (None = 1), owners (B,)
        int64 user keys (None = 0, nobody)."""
        for k in range(len(targets)):
            slot = self.added % self.capacity
            self.inputs[slot] = inputs[k]
            self.targets[slot] = targets[k]
            self.weights[slot] = 1.0 if weights is None else weights[k]
            self.owners[slot] = 0 if owners is None else owners[k]
            self.alive[slot] = True
            self.serial[slot] = self.added
            self.added += 1

    def drop(self, owners: set[int]) -> int:
        """Erase every example of these users (zeroed, never sampled again); returns how many."""
        size = len(self)
        gone = np.flatnonzero(np.isin(self.owners[:size], list(owners)) & self.alive[:size])
        self.inputs[gone], self.targets[gone], self.owners[gone] = 0, 0, 0
        self.alive[gone] = False
        return len(gone)

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, *shape) inputs, (n,) targets and (n,) weights, newer examples more likely."""
        size = len(self)
        if size == 0 or n <= 0:
            return np.zeros((0, *self.shape), np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
        age = (self.added - 1 - self.serial[:size]).astype(np.float64)
        weights = np.exp2(-age / self.half_life) * self.alive[:size]
        if not weights.any():
            return np.zeros((0, *self.shape), np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
        idx = self.rng.choice(size, size=n, p=weights / weights.sum())
        return self.inputs[idx], self.targets[idx], self.weights[idx]
