"""The in-memory item index: a `Vocab` (item id <-> dense row, in creation order) plus row flags.

Every score vector in liverec is indexed by these rows. Rows are never reused or reordered, so a
model's embedding table can grow in place when new items arrive.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from liverec.core.schema import Item
from liverec.core.vocab import Vocab


class Catalog(Vocab):
    def __init__(self, items: Iterable[Item] = ()) -> None:
        super().__init__()
        self._available = np.zeros(1024, dtype=bool)
        self._created = np.zeros(1024, dtype=np.float64)
        self._titles: dict[int, str] = {}  # rows with a title: what explanations call an item
        for item in items:
            self.upsert(item)

    def ensure(self, item_id: str, created_at: float = 0.0) -> int:
        """Row of ``item_id``, appending a new available row if it is new."""
        row = self.row(item_id)
        if row is not None:
            return row
        row = self.add(item_id)
        if row >= len(self._available):
            self._available = np.concatenate([self._available, np.zeros_like(self._available)])
            self._created = np.concatenate([self._created, np.zeros_like(self._created)])
        self._available[row] = True
        self._created[row] = created_at
        return row

    def upsert(self, item: Item) -> int:
        row = self.ensure(item.item_id, item.created_at)
        self._available[row] = item.available
        self._created[row] = item.created_at
        if item.title:
            self._titles[row] = item.title
        else:
            self._titles.pop(row, None)
        return row

    def title(self, row: int) -> str:
        """The item's title, or its id when it has none (a stub, or an item without one)."""
        return self._titles.get(row) or self.ids[row]

    @property
    def available(self) -> np.ndarray:
        """(N,) bool: rows that may be recommended. A view: do not write to it."""
        return self._available[: len(self.ids)]

    @property
    def created_at(self) -> np.ndarray:
        """(N,) float64 epoch seconds."""
        return self._created[: len(self.ids)]
