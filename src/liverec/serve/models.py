"""`ModelManager`: keeps the served model in step with the registry and the catalog.

- Hot reload: a watcher thread polls the registry's LIVE pointer; a newly promoted version is
  loaded, aligned to the catalog and given text off the request path, then swapped in with one
  reference assignment. Requests in flight finish on the model they started with: none fails.
- Growth: when the catalog grows, the served model grows with it. Items written through
  `Engine.upsert_items` get their text encoded on the write path (then `items_changed`), so
  they are recommendable from their text when the PUT returns; items that only appear in events
  (catalog stubs) and a version loaded mid-write get theirs from a background worker (store cache
  first).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from liverec.core.catalog import Catalog
from liverec.core.schema import Item
from liverec.model.base import Model
from liverec.model.rules import SequentialRules
from liverec.model.sequential import SequentialModel
from liverec.model.text import TextEncoder
from liverec.registry.registry import ModelRegistry, RegistryError
from liverec.settings import RetrievalSettings
from liverec.store.base import EventStore

log = logging.getLogger(__name__)


class ModelManager:
    def __init__(
        self,
        registry: ModelRegistry,
        catalog: Catalog,
        store: EventStore,
        fallback: Model,
        on_swap: Callable[[Model], None],
        encoder: TextEncoder | None = None,
        poll_s: float = 0.5,
        rules: SequentialRules | None = None,
        rules_weight: float = 0.0,
        retrieval: RetrievalSettings | None = None,
    ) -> None:
        self.registry = registry
        self.catalog = catalog
        self.store = store
        self.fallback = fallback
        self.on_swap = on_swap
        self.encoder = encoder or TextEncoder()
        self.poll_s = poll_s
        self.rules, self.rules_weight = rules, rules_weight  # handed to every model version served
        self.retrieval = retrieval  # each version builds its own index (`model.retrieval`) when due
        self.current: SequentialModel | None = None
        self.swaps = 0
        self._text_queue: queue.Queue[list[int] | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._load_lock = threading.Lock()

    # -- life cycle -----------------------------------------------------------------------------
    def start(self, background: bool = True) -> None:
        """Load the live version (if any) now, then watch for promotions and encode text.

        ``background=False`` starts no threads: the caller calls `reload` and `encode_pending`
        itself, so a simulation sees every swap and every new item's text at a fixed point.
        """
        self.reload()
        if not background:
            return
        for target, name in ((self._watch, "liverec-model-watch"), (self._encode_loop, "liverec-text")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._text_queue.put(None)
        for t in self._threads:
            t.join(timeout=5)

    # -- reload ---------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Swap in the registry's live version if it differs from the served one."""
        with self._load_lock:
            live = self.registry.live()
            served = self.current.registry_version if self.current else None
            if live is None or live == served:
                return False
            try:
                snap = self.registry.load(live)
            except (RegistryError, OSError, RuntimeError) as exc:
                log.error("cannot load model %s, keeping %s: %s", live, served, exc)
                return False
            offset = int(snap.meta.get("trainer_offset", 0))
            model = SequentialModel(
                snap.model,
                snap.vocab,
                snap.version,
                self.fallback,
                offset,
                self.rules,
                self.rules_weight,
                self.retrieval,
            )
            new_rows = model.sync(self.catalog)
            model.set_text(self._texts(new_rows))
            self.current = model
            self.on_swap(model)
            late = model.sync(self.catalog)  # items that arrived while we were loading: their text too
            if late:
                self._text_queue.put(late)
            self.swaps += 1
            log.info("serving model %s (was %s)", live, served)
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.reload()
            except Exception:  # never let the watcher die
                log.exception("model reload failed")

    # -- catalog growth and text ----------------------------------------------------------------
    def catalog_changed(self, rows: Iterable[int] = ()) -> None:
        """Call after the catalog grew or items' text changed (``rows``); cheap when nothing did."""
        model = self.current
        if model is None:
            return
        todo = set(model.sync(self.catalog))
        todo.update(rows)
        if todo:
            self._text_queue.put(sorted(todo))

    def items_changed(self, rows: Sequence[int], items: Sequence[Item], texts: dict[str, np.ndarray]) -> None:
        """After an upsert put ``items`` at catalog ``rows``: grow the served model and set the text
        the engine encoded; rows without it (a model swapped in meanwhile) go to the worker."""
        model = self.current
        if model is None:
            return
        todo = set(model.sync(self.catalog))
        ready = {r: texts[it.item_id] for r, it in zip(rows, items, strict=True) if it.item_id in texts}
        model.set_text(ready)
        todo.update(r for r, it in zip(rows, items, strict=True) if it.content())
        todo.difference_update(ready)
        if todo:
            self._text_queue.put(sorted(todo))

    def _texts(self, rows: Iterable[int]) -> dict[int, np.ndarray]:
        rows = list(rows)
        items = [self.store.get_item(self.catalog.ids[r]) for r in rows]
        pairs = [
            (r, it.content()) for r, it in zip(rows, items, strict=True) if it is not None and it.content()
        ]
        if not pairs:
            return {}
        vecs = self.encoder.encode_cached([c for _, c in pairs], self.store)
        return {r: vecs[k] for k, (r, _) in enumerate(pairs)}

    def _encode_loop(self) -> None:
        while not self._stop.is_set():
            rows = self._text_queue.get()
            if rows is None:
                return
            try:
                texts = self._texts(rows)
                if self.current is not None:
                    self.current.set_text(texts)
            except Exception:
                log.exception("encoding item text failed")
            finally:
                self._text_queue.task_done()

    def encode_pending(self) -> int:
        """Encode queued items' text now, on the caller's thread (without background threads, nothing
        else does); returns how many rows were queued."""
        rows: set[int] = set()
        while True:
            try:
                batch = self._text_queue.get_nowait()
            except queue.Empty:
                break
            if batch is not None:
                rows.update(batch)
            self._text_queue.task_done()
        if rows and self.current is not None:
            self.current.set_text(self._texts(sorted(rows)))
        return len(rows)

    def wait_for_text(self) -> None:
        """Block until every queued item has been encoded (tests, demos)."""
        self._text_queue.join()
