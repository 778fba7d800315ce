"""`SequentialModel`: serves a trained `SASRec` behind the `Model` contract.

It reads the user's *live* sequence on every call, so a click changes the next list without any
weight update. The network keeps its own item indices (its training vocabulary); `sync` maps every
catalog row to a model index, growing the embedding table in place for items the model has never
seen (text-only until trained). Users with no history get the fallback model (popularity).

With `[retrieval] ann_above` (and a catalog that large) `retrieve` answers from an index over the
item table instead of scoring every row (`model.retrieval`); `sync` and `set_text` keep the index
in step with the table, so a new or re-described item is found at once.

Online changes cost the rows they touch, not the catalog: a new item takes a spare row of the net
(grown a quarter at a time once serving) and of the cached tables, and new text recomputes only its
items' representations. At 1M items a reallocation costs seconds here (fresh memory), a row does not.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from itertools import islice
from typing import Any

import numpy as np
import torch

from liverec.core.catalog import Catalog
from liverec.core.features import Seq
from liverec.core.state import UserState
from liverec.core.vocab import Vocab
from liverec.model.base import DenseScores, Model, Scores, leave_out, score_drop
from liverec.model.inputs import Inputs, model_inputs
from liverec.model.retrieval import AnnScores, ItemIndex, RulesTerm
from liverec.model.rules import SequentialRules
from liverec.model.transformer import SASRec
from liverec.settings import RetrievalSettings

SPARE = 4  # once serving, the net and the tables grow by at least 1/SPARE of their rows at a time


class SequentialModel(Model):
    name = "transformer"

    def __init__(
        self,
        net: SASRec,
        vocab: Sequence[str],
        version: str,
        fallback: Model,
        trained_offset: int = 0,
        rules: SequentialRules | None = None,
        rules_weight: float = 0.0,
        retrieval: RetrievalSettings | None = None,
    ) -> None:
        self.net = net.eval()
        # live item-to-item counts whose log is added to the scores (see `model.rules`); shared, not copied
        self.rules = rules if rules_weight > 0 else None
        self.rules_weight = rules_weight
        self.trained_offset = trained_offset  # log offset the weights have learned up to
        self.vocab = Vocab.from_list(list(vocab))
        self.registry_version = version
        self.fallback = fallback
        self._to_model = np.zeros(0, dtype=np.int64)  # catalog row -> model index (row + 1 in vocab)
        self._net_table = torch.zeros(1, net.config.d_model)  # (M+1, D) by model index, cached
        self._store = torch.zeros(0, net.config.d_model)  # (capacity, D): `_table` and spare rows
        self._table = self._store[:0]  # (N_catalog, D) by catalog row, a view of `_store`
        self._normed: torch.Tensor | None = None
        # candidates from an index over `_table` once the catalog reaches `ann_above` (0: never)
        self.index: ItemIndex | None = None
        if retrieval is not None and retrieval.ann_above > 0:
            self.index = ItemIndex(retrieval, net.config.d_model)
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return f"{self.name}@{self.registry_version}"

    def version_for(self, user: UserState | None) -> str:
        return self.version if user is not None and user.items else self.fallback.version

    # -- catalog alignment ----------------------------------------------------------------------
    def sync(self, catalog: Catalog, texts: dict[int, np.ndarray] | None = None) -> list[int]:
        """Cover every catalog row; new ones grow the model. Returns catalog rows that were new to the
        model (callers encode their text and pass it later through `set_text`)."""
        with self._lock:
            start = len(self._to_model)
            if start == len(catalog):
                return []
            new_rows: list[int] = []
            mapping = np.empty(len(catalog) - start, dtype=np.int64)
            for k, item_id in enumerate(catalog.ids[start:]):
                idx = self.vocab.row(item_id)
                if idx is None:
                    idx = self.vocab.add(item_id)
                    new_rows.append(start + k)
                mapping[k] = idx + 1
            need = len(self.vocab) - self.net.config.n_items
            if need > 0:  # one copy of every row; once serving, with spare rows for the next items
                self.net.grow(need + (self.net.config.n_items // SPARE if start else 0))
            self._to_model = np.concatenate([self._to_model, mapping])
            if not start or len(self._net_table) <= self.net.config.n_items:  # the net grew
                self._refresh()
            else:  # the new rows' representations are the spare rows' (untrained, no text yet)
                self._place(start)
            if texts:
                self._set_text(texts)
            self._follow(np.union1d(np.arange(start, len(catalog)), list(texts or ())))
        return new_rows

    def set_text(self, texts: dict[int, np.ndarray]) -> None:
        """Text embeddings (384,) float32 for catalog rows; refreshes those items' representations."""
        if not texts:
            return
        with self._lock:
            self._follow(self._set_text(texts))

    def _set_text(self, texts: dict[int, np.ndarray]) -> np.ndarray:
        """`set_text` with the lock held; returns the (R,) catalog rows whose text it set."""
        rows = np.fromiter(texts.keys(), dtype=np.int64, count=len(texts))
        vecs = torch.from_numpy(np.stack([texts[int(r)] for r in rows]).astype(np.float32))
        idx = torch.from_numpy(self._to_model[rows])
        self.net.set_text(idx, vecs)
        with torch.no_grad():  # in place: a request reading one of these rows meanwhile may see either
            fresh = self.net.item_rows(idx)  # (R, D)
            self._net_table[idx] = fresh
            self._store[torch.from_numpy(rows)] = fresh
        self._normed = None
        return rows

    def _follow(self, rows: np.ndarray) -> None:
        """The index (if any) takes catalog ``rows`` (R,) as `_table` now holds them: built when due."""
        if self.index is not None:
            self.index.follow(self._table.numpy(), np.asarray(rows, dtype=np.int64))

    def _refresh(self) -> None:
        """Recompute every cached item representation (first alignment, or the net grew)."""
        with torch.no_grad():
            self._net_table = self.net.item_table()  # (M+1, D)
        self._store = self._store[:0]
        self._place(0)

    def _place(self, start: int) -> None:
        """Catalog rows from ``start`` on take their model rows' representations; `_table` then shows
        them (rows a reader already sees are not written)."""
        n, store = len(self._to_model), self._store
        if n > len(store):
            grown = torch.empty(n + n // SPARE, store.shape[1])
            grown[:start] = store[:start]
            store = self._store = grown
        with torch.no_grad():
            store[start:n] = self._net_table[torch.from_numpy(self._to_model[start:])]
        self._table = store[:n]
        self._normed = None

    # -- scoring --------------------------------------------------------------------------------
    def _inputs(self, user: UserState) -> Inputs:
        """The user's newest `max_len` interactions as (1, T) model indices (+ features)."""
        c = self.net.config
        start = max(0, len(user.items) - c.max_len)
        rows = np.fromiter(islice(user.items, start, None), dtype=np.int64)
        types = np.fromiter(islice(user.types, start, None), np.int64) if c.event_types else None
        return self._encode([self._window(rows, types)])

    def _window(self, rows: np.ndarray, types: np.ndarray | None) -> Seq:
        """The newest `max_len` of a history of catalog rows (oldest first), rows added after the last
        sync skipped: what the network reads of it."""
        n = self.net.config.max_len
        rows, types = rows[-n:], None if types is None else types[-n:]
        known = rows < len(self._to_model)
        return Seq(rows[known], None, None if types is None else types[known])

    def _encode(self, seqs: list[np.ndarray]) -> Inputs:
        """Catalog-row sequences -> left-padded model inputs (indices via the catalog alignment)."""
        to_model = self._to_model
        mapped = []
        for s in seqs:
            ok = np.asarray(s) < len(to_model)
            sub = s.keep(ok) if isinstance(s, Seq) else np.asarray(s)[ok]
            idx = to_model[np.asarray(sub)] - 1
            mapped.append(Seq(idx, sub.times, sub.types) if isinstance(sub, Seq) else idx)
        return model_inputs(mapped, self.net.config)

    def score(self, user: UserState | None, n_items: int, user_id: str = "") -> np.ndarray:
        return self.score_and_embed(user, n_items, user_id)[0]

    def _hidden(self, user: UserState | None) -> torch.Tensor | None:
        """(D,) the newest hidden state of the user's live window; None: the fallback serves them."""
        if user is None or not user.items:
            return None
        seq, types = self._inputs(user)
        if not bool((seq != 0).any()):
            return None
        with torch.no_grad():
            return self.net.forward(seq, types, table=self._net_table, last=True)[0, -1]

    def retrieve(self, user: UserState | None, n_items: int, user_id: str = "") -> Scores:
        """From the index when the catalog is large (`model.retrieval`), else every row scored."""
        index, table = self.index, self._table
        if index is None or not index.active(n_items):
            return super().retrieve(user, n_items, user_id)
        h = self._hidden(user)
        if h is None or user is None:
            return DenseScores(self.fallback.score(user, n_items, user_id))
        rules = None
        if self.rules is not None:
            rules = RulesTerm(self.rules, self.rules_weight, user.items, n_items)
        index.searches += 1
        return AnnScores(h.numpy(), table.numpy(), index, rules)

    def retrieval_status(self) -> dict[str, Any]:
        if self.index is None:
            return {"approximate": False, "ann_above": 0}
        return {"approximate": self.index.active(len(self._table))} | self.index.status()

    def score_and_embed(
        self, user: UserState | None, n_items: int, user_id: str = ""
    ) -> tuple[np.ndarray, np.ndarray | None]:
        h = self._hidden(user)
        if h is None:
            return self.fallback.score(user, n_items, user_id), None
        table = self._table
        with torch.no_grad():
            scores = (table[:n_items] @ h).numpy()
        out = np.full(n_items, -np.inf, dtype=np.float32)
        out[: len(scores)] = scores
        if self.rules is not None:
            assert user is not None  # `_hidden` serves only users with a history
            out += (self.rules_weight * self.rules.log_prior(user.items, n_items)).astype(np.float32)
        return out, h.numpy()

    def influence(
        self,
        user: UserState | None,
        rows: np.ndarray,
        positions: Sequence[int],
        n_items: int,
        user_id: str = "",
        base: np.ndarray | None = None,
    ) -> np.ndarray:
        """`Model.influence` from one pass over the history (`SASRec.newest_without`: the items older
        than the one left out are shared by every variant), scored for ``rows`` only; the rules'
        prior for ``rows`` only, recomputed only for positions among its `history` newest. A
        variant left with nothing the network knows is scored by the fallback, as `score` would."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(positions), len(rows)), dtype=np.float32)
        if user is None or not user.items or not len(positions):
            return out
        items = np.fromiter(user.items, dtype=np.int64, count=len(user.items))  # (L,)
        types = np.fromiter(user.types, dtype=np.int64) if self.net.config.event_types else None
        if not len(self._window(items, types)):  # the fallback serves this user
            return self.fallback.influence(user, rows, positions, n_items, user_id, base)
        table = self._table
        states, empty = self._without_each(items, types, positions, base is None)  # (1 + P, D), (1 + P,)
        ok = rows < len(table)
        scores = np.full((1 + len(positions), len(rows)), -np.inf, dtype=np.float32)  # (1 + P, R)
        with torch.no_grad():
            scores[:, ok] = (states @ table[torch.from_numpy(rows[ok])].T).numpy()
        rules = self.rules
        prior = None if rules is None else rules.log_prior_at(items, rows, n_items)[0]  # (R,)
        newest = len(items) - (rules.history if rules is not None else 0)
        for b in range(1 + len(positions)):
            if empty[b]:  # nothing left the network knows: `score` hands it to the fallback
                scores[b] = self.fallback.score(leave_out(user, positions[b - 1]), n_items, user_id)[rows]
            elif rules is not None and prior is not None:
                mine = prior
                if b and positions[b - 1] >= newest:  # the rules read the newest `history` items only
                    mine = rules.log_prior_at(np.delete(items, positions[b - 1]), rows, n_items)[0]
                scores[b] += (self.rules_weight * mine).astype(np.float32)
        served = scores[0] if base is None else np.asarray(base, dtype=np.float32)
        for p in range(len(positions)):
            out[p] = score_drop(served, scores[p + 1])
        return out

    def _without_each(
        self, items: np.ndarray, types: np.ndarray | None, positions: Sequence[int], full: bool = True
    ) -> tuple[torch.Tensor, np.ndarray]:
        """(1 + P, D) the newest hidden state of the live window, then of it with each position left
        out (windowed as `_inputs` windows); (1 + P,) bool: the variant holds nothing to read.
        ``full`` False: the caller has the window's scores; row 0 (and any variant that leaves the
        window as it is) may then hold anything."""
        n, count = self.net.config.max_len, len(items)
        ext = items[-(n + 1) :]  # the window and the next older item, which moves in
        empty = np.zeros(1 + len(positions), dtype=bool)
        with torch.no_grad():
            if count < 2 or bool((ext >= len(self._to_model)).any()):
                return self._without_each_plainly(items, types, positions)
            seq = torch.from_numpy(self._to_model[ext])[None]  # (1, T) model indices
            kinds = None if types is None else torch.from_numpy(types[-(n + 1) :])[None]
            window = min(count, n)
            drops = [count - 1 - p for p in positions]
            whole = torch.zeros(1, self.net.config.d_model)
            if full or max(drops) >= window:
                recent = None if kinds is None else kinds[:, -window:]
                whole = self.net.forward(seq[:, -window:], recent, table=self._net_table, last=True)[:, -1]
            inside = sorted({d for d in drops if 1 <= d < window})
            found = self.net.newest_without(seq, kinds, inside, table=self._net_table)  # (1 + V, D)
            at = {0: 0} | {d: 1 + v for v, d in enumerate(inside)}
            pick = [at[d] if d < window else -1 for d in drops]  # -1: outside the window, no change
            index = torch.tensor([0, *[1 + i if i >= 0 else 0 for i in pick]])
            return torch.cat([whole, found])[index], empty

    def _without_each_plainly(
        self, items: np.ndarray, types: np.ndarray | None, positions: Sequence[int]
    ) -> tuple[torch.Tensor, np.ndarray]:
        """`_without_each` as a batch of whole sequences: for windows holding rows the model has not
        synced yet (`_window` skips them, so the shared-prefix shortcut does not hold)."""
        seqs = [self._window(items, types)]
        for pos in positions:
            seqs.append(self._window(np.delete(items, pos), None if types is None else np.delete(types, pos)))
        empty = np.array([not len(s) for s in seqs])
        states = torch.zeros(len(seqs), self.net.config.d_model)
        live = np.flatnonzero(~empty)
        seq, kinds = self._encode([seqs[b] for b in live])  # (B, T)
        h = self.net.forward(seq, kinds, table=self._net_table, last=True)[:, -1]  # (B, D)
        states[torch.from_numpy(live)] = h
        return states, empty

    def text_vectors(self, rows: np.ndarray) -> np.ndarray | None:
        if self.net.text_proj is None:
            return None
        to_model = self._to_model
        ok = rows < len(to_model)
        text = self.net.text_emb[torch.from_numpy(to_model[rows[ok]])].numpy()  # (R', Dt), these rows only
        norms = np.linalg.norm(text, axis=1, keepdims=True)
        out = np.zeros((len(rows), text.shape[1]), dtype=np.float32)
        out[ok] = np.divide(text, norms, out=np.zeros_like(text), where=norms > 0)
        return out

    def item_vectors(self, rows: np.ndarray) -> np.ndarray | None:
        table = self._table
        ok = rows < len(table)
        out = np.zeros((len(rows), table.shape[1]), dtype=np.float32)
        out[ok] = table[torch.from_numpy(rows[ok])].numpy()
        return out

    def score_batch(self, seqs: list[np.ndarray], batch: int = 256) -> np.ndarray:
        """(B, N_catalog) float32 scores after each sequence of catalog rows (offline evaluation)."""
        out = []
        with torch.no_grad():
            for i in range(0, len(seqs), batch):
                items, types = self._encode(seqs[i : i + batch])
                h = self.net.forward(items, types, table=self._net_table, last=True)[:, -1]  # (b, D)
                out.append((h @ self._table.T).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self._table)), np.float32)

    def similar(self, row: int, n_items: int) -> np.ndarray:
        if self._normed is None:
            self._normed = torch.nn.functional.normalize(self._table, dim=1)
        normed = self._normed
        if row >= len(normed):
            return self.fallback.similar(row, n_items)
        sims = (normed[:n_items] @ normed[row]).numpy()
        out = np.full(n_items, -np.inf, dtype=np.float32)
        out[: len(sims)] = sims
        return out
