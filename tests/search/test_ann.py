"""The semantic index on a large catalog: the faiss IVF answers `top`, live, close to the exact scan."""

import numpy as np

from liverec.search.index import SemanticIndex

DIM = 32


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, centers: int = 40) -> np.ndarray:
    """Unit vectors around ``centers`` topics, as text embeddings are (uniform noise: an IVF's worst)."""
    c = unit(rng, centers)
    v = c[rng.integers(centers, size=n)] + 0.35 * rng.normal(size=(n, DIM)).astype(np.float32) / np.sqrt(DIM)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def exact_top(vecs: np.ndarray, q: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-(vecs @ q))[:k].tolist())


def test_below_the_threshold_the_scan_is_exact_and_above_it_the_ivf_recalls_most() -> None:
    rng = np.random.default_rng(0)
    ix = SemanticIndex(DIM, ann_min=3000, nprobe=8)
    vecs = clustered(rng, 2000)
    ix.upsert(range(2000), vecs)
    assert not ix.ann.ready
    q = unit(rng, 1)[0]
    assert set(ix.top(q, 20)[0].tolist()) == exact_top(vecs, q, 20)
    more = clustered(rng, 2000)
    ix.upsert(range(2000, 4000), more)
    assert ix.ann.ready
    everything = np.vstack([vecs, more])
    recall = np.mean(
        [len(set(ix.top(q, 20)[0].tolist()) & exact_top(everything, q, 20)) / 20 for q in clustered(rng, 50)]
    )
    assert recall > 0.8, recall
    rows, scores = ix.top(q, 20)
    np.testing.assert_allclose(scores, everything[rows] @ q, atol=1e-5)  # true cosines, best first
    assert (np.diff(scores) <= 1e-6).all()


def test_a_written_vector_is_found_at_once_and_a_removed_one_never() -> None:
    rng = np.random.default_rng(1)
    ix = SemanticIndex(DIM, ann_min=1000)
    ix.upsert(range(3000), unit(rng, 3000))
    assert ix.ann.ready
    target = unit(rng, 1)[0]
    ix.upsert([3000], target[None, :])
    assert ix.top(target, 5)[0][0] == 3000
    ix.upsert([7], target[None, :])  # an existing row changes its vector
    assert set(ix.top(target, 2)[0].tolist()) == {3000, 7}
    ix.remove([3000])
    assert 3000 not in ix.top(target, 50)[0].tolist()


def test_a_filter_the_ivf_cannot_fill_falls_back_to_the_exact_scan() -> None:
    rng = np.random.default_rng(2)
    ix = SemanticIndex(DIM, ann_min=1000)
    vecs = unit(rng, 3000)
    ix.upsert(range(3000), vecs)
    allowed = np.zeros(3000, dtype=bool)
    allowed[[5, 500, 2999]] = True
    q = unit(rng, 1)[0]
    rows, _ = ix.top(q, 3, allowed)
    assert sorted(rows.tolist()) == [5, 500, 2999]


def test_scores_at_gathers_exact_cosines() -> None:
    rng = np.random.default_rng(3)
    ix = SemanticIndex(DIM)
    vecs = unit(rng, 10)
    ix.upsert(range(10), vecs)
    q = unit(rng, 1)[0]
    np.testing.assert_allclose(
        ix.scores_at(q, np.array([3, 1, 12])), [vecs[3] @ q, vecs[1] @ q, 0.0], atol=1e-6
    )
