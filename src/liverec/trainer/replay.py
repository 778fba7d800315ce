"""A bounded, recency-weighted replay buffer of training examples (input window, target).

Mixing replayed history into every online mini-batch keeps the model from forgetting what it knew
while it adapts to the newest events. Newer examples are replayed more often: the sampling weight
halves every `half_life` examples.
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
        self.added = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return min(self.added, self.capacity)

    def add(self, inputs: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None) -> None:
        """inputs (B, *shape) int32, targets (B,) int32, weights (B,) float (None = 1)."""
        for k in range(len(targets)):
            slot = self.added % self.capacity
            self.inputs[slot] = inputs[k]
            self.targets[slot] = targets[k]
            self.weights[slot] = 1.0 if weights is None else weights[k]
            self.serial[slot] = self.added
            self.added += 1

    def sample(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(n, *shape) inputs, (n,) targets and (n,) weights, newer examples more likely."""
        size = len(self)
        if size == 0 or n <= 0:
            return np.zeros((0, *self.shape), np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
        age = (self.added - 1 - self.serial[:size]).astype(np.float64)
        weights = np.exp2(-age / self.half_life)
        idx = self.rng.choice(size, size=n, p=weights / weights.sum())
        return self.inputs[idx], self.targets[idx], self.weights[idx]
