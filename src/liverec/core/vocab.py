"""`Vocab`: an append-only id <-> row map. Rows are dense, never reused and never reordered, so an
embedding table indexed by row can grow in place when new ids arrive (no hashing, no collisions)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class Vocab:
    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = []
        self._row: dict[str, int] = {}
        self.extend(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row

    def row(self, item_id: str) -> int | None:
        return self._row.get(item_id)

    def rows(self, item_ids: Iterable[str]) -> list[int]:
        """Rows of the known ids, in order; unknown ids are dropped."""
        return [r for r in (self._row.get(i) for i in item_ids) if r is not None]

    def add(self, item_id: str) -> int:
        """Row of ``item_id``, appending it if new."""
        row = self._row.get(item_id)
        if row is None:
            row = len(self.ids)
            self.ids.append(item_id)
            self._row[item_id] = row
        return row

    def extend(self, item_ids: Iterable[str]) -> list[int]:
        return [self.add(i) for i in item_ids]

    def to_list(self) -> list[str]:
        return list(self.ids)

    @classmethod
    def from_list(cls, ids: Sequence[str]) -> Vocab:
        vocab = cls(ids)
        if len(vocab) != len(ids):
            raise ValueError("vocabulary has duplicate ids")
        return vocab
