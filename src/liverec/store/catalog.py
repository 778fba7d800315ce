"""The in-memory item index: item id <-> dense row, grown in creation order, plus row flags.

Every score vector in liverec is indexed by these rows. Rows are never reused or reordered, so a
model's embedding table can grow in place when new items arrive.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from liverec.events.schema import Item


class Catalog:
    def __init__(self, items: Iterable[Item] = ()) -> None:
        self.ids: list[str] = []
        self._row: dict[str, int] = {}
        self._available = np.zeros(1024, dtype=bool)
        self._created = np.zeros(1024, dtype=np.float64)
        for item in items:
            self.upsert(item)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def row(self, item_id: str) -> int | None:
        return self._row.get(item_id)

    def rows(self, item_ids: Iterable[str]) -> list[int]:
        """Rows of the known ids, in order; unknown ids are dropped."""
        return [r for r in (self._row.get(i) for i in item_ids) if r is not None]

    def ensure(self, item_id: str, created_at: float = 0.0) -> int:
        """Row of ``item_id``, appending a new available row if it is new."""
        row = self._row.get(item_id)
        if row is not None:
            return row
        row = len(self.ids)
        if row == len(self._available):
            self._available = np.concatenate([self._available, np.zeros_like(self._available)])
            self._created = np.concatenate([self._created, np.zeros_like(self._created)])
        self.ids.append(item_id)
        self._row[item_id] = row
        self._available[row] = True
        self._created[row] = created_at
        return row

    def upsert(self, item: Item) -> int:
        row = self.ensure(item.item_id, item.created_at)
        self._available[row] = item.available
        self._created[row] = item.created_at
        return row

    @property
    def available(self) -> np.ndarray:
        """(N,) bool: rows that may be recommended. A view: do not write to it."""
        return self._available[: len(self.ids)]

    @property
    def created_at(self) -> np.ndarray:
        """(N,) float64 epoch seconds."""
        return self._created[: len(self.ids)]
