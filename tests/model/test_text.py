"""The real MiniLM text encoder: stable unit vectors that capture meaning, cached in the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from liverec.model.text import DIM, EncoderProcess, OnnxEncoder, TextEncoder
from liverec.store import embedding_key, open_store

TEXTS = [
    "A cat sleeps on the warm windowsill",
    "A kitten naps in the sun by the window",
    "Quarterly tax report for the finance department",
]


def cached_keys(db: Path) -> set[str]:
    """The keys in the SQLite store's embedding table, read through a connection of our own."""
    with sqlite3.connect(db) as conn:
        return {k for (k,) in conn.execute("SELECT key FROM embeddings")}


def test_encodings_are_deterministic_384_d_unit_vectors_and_empty_text_is_zero(
    encoder: TextEncoder,
) -> None:
    """Same text, same vector (also inside a different batch); float32, 384-d, L2 norm 1; blank -> 0."""
    first = encoder.encode(TEXTS)
    assert first.shape == (3, DIM) == (3, 384) and first.dtype == np.float32
    assert np.array_equal(first, encoder.encode(TEXTS))
    np.testing.assert_allclose(encoder.encode(TEXTS[1:2])[0], first[1], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    mixed = encoder.encode(["", TEXTS[0], "   \n"])
    assert not mixed[[0, 2]].any()
    np.testing.assert_allclose(mixed[1], first[0], atol=1e-5)
    assert encoder.encode([]).shape == (0, DIM)


def test_close_meanings_are_closer_than_unrelated_ones(encoder: TextEncoder) -> None:
    """Cosine similarity follows meaning, not shared words."""
    cat, kitten, tax = encoder.encode(TEXTS)
    assert float(cat @ kitten) > float(cat @ tax) + 0.2
    assert float(cat @ kitten) > float(kitten @ tax) + 0.2


def test_encode_cached_fills_the_store_and_reencodes_only_changed_text(
    encoder: TextEncoder, tmp_path: Path
) -> None:
    """The first call caches every non-empty text by (encoder, text); a second call reads the cache
    (a vector planted in the table comes back as is); a changed text gets a fresh encoding."""
    db = tmp_path / "events.db"
    with open_store(f"sqlite:///{db}") as store:
        texts = [*TEXTS, ""]
        first = encoder.encode_cached(texts, store)
        keys = [embedding_key(encoder.name, t) for t in TEXTS]
        assert cached_keys(db) == set(keys)  # the blank text is not cached
        np.testing.assert_allclose(first, np.vstack([encoder.encode(TEXTS), np.zeros((1, DIM))]), atol=1e-5)
        stored = store.get_embeddings(keys)
        for k, vec in zip(keys, first, strict=False):
            np.testing.assert_array_equal(stored[k], vec)

        planted = np.full(DIM, 0.5, dtype=np.float32)  # no encoder would produce this
        store.put_embeddings({keys[0]: planted})
        second = encoder.encode_cached(texts, store)
        np.testing.assert_array_equal(second[0], planted)  # read from the cache, not encoded again
        np.testing.assert_array_equal(second[1:], first[1:])
        assert cached_keys(db) == set(keys)  # nothing new to cache

        edited = [TEXTS[0] + " all afternoon", *texts[1:]]
        third = encoder.encode_cached(edited, store)
        assert not np.array_equal(third[0], planted)
        np.testing.assert_allclose(third[0], encoder.encode(edited[:1])[0], atol=1e-5)
        assert cached_keys(db) == {*keys, embedding_key(encoder.name, edited[0])}


@pytest.mark.slow
def test_the_encoder_process_gives_the_same_vectors_and_comes_back_after_its_child_dies(
    encoder: TextEncoder,
) -> None:
    child = EncoderProcess()
    try:
        texts = ["a space adventure", "", "film noir in the rain"]
        np.testing.assert_allclose(child.encode(texts), encoder.encode(texts), atol=1e-5)
        assert child._proc is not None
        child._proc.kill()
        child._proc.wait()
        np.testing.assert_allclose(child.encode(texts[:1]), encoder.encode(texts[:1]), atol=1e-5)
    finally:
        child.close()
    assert child._proc is None


@pytest.mark.slow
def test_the_onnx_export_gives_the_same_vectors_for_texts_of_any_length(encoder: TextEncoder) -> None:
    onnx = OnnxEncoder(encoder)
    texts = ["noir", "", "a long description of a space adventure with pirates, robots and a lost moon"]
    np.testing.assert_allclose(onnx.encode(texts), encoder.encode(texts), atol=1e-5)  # padded batch
    np.testing.assert_allclose(onnx.encode(texts[2:]), encoder.encode(texts[2:]), atol=1e-5)
