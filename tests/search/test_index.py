"""The live search indexes: BM25 against bm25s itself, main + delta freshness, semantic cosine."""

from __future__ import annotations

import threading
from collections.abc import Callable

import bm25s
import numpy as np
import pytest

from liverec.search.index import LexicalIndex, SemanticIndex, tokenize

CORPUS = {
    0: "Star Wars: a sci-fi space opera with Jedi knights",
    1: "The Godfather, a crime family saga",
    2: "Alien: sci-fi horror in deep space",
    3: "A romantic comedy in Paris",
    4: "Space documentary about the moon landing and the space race",
    5: "Crime thriller: a heist in Paris",
    6: "Toy Story, animated comedy about toys",
    7: "Jedi return: space opera sequel",
}
QUERIES = ["space", "sci-fi jedi", "crime paris", "comedy", "space opera space", "moon", "nothing here"]


def lexical(docs: dict[int, str], k1: float = 1.5, b: float = 0.75) -> LexicalIndex:
    """An index over docs, compacted: everything in the main bm25s index."""
    ix = LexicalIndex(k1=k1, b=b)
    ix.upsert(list(docs), list(docs.values()))
    ix.compact()
    return ix


def bm25s_scores(docs: dict[int, str], query: str, n: int, k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """The library's own scores, built directly on the same tokens, mapped back to rows."""
    rows = sorted(docs)
    model = bm25s.BM25(k1=k1, b=b, method="lucene")
    model.index([tokenize(docs[r]) for r in rows], show_progress=False)
    out = np.zeros(n, np.float32)
    q = tokenize(query)
    if q:
        out[rows] = model.get_scores(q)
    return out


def run_together(*targets: Callable[[], None]) -> None:
    """Run each target in its own thread and wait for all (the concurrency checks)."""
    threads = [threading.Thread(target=t) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)


def test_tokenize_lowercases_splits_and_drops_stopwords() -> None:
    assert tokenize("Sci-Fi: The Return of the JEDI") == ["sci", "fi", "return", "jedi"]
    assert tokenize("sci fi") == tokenize("sci-fi")
    assert tokenize("Amélie (2001)") == ["amélie", "2001"]
    assert tokenize("the of and a") == []
    assert tokenize("") == []


def test_rare_term_ranks_first_and_shorter_docs_win() -> None:
    ix = lexical(CORPUS)
    rows, scores = ix.top("moon space", 10)
    assert rows[0] == 4  # the only doc with the rare "moon"
    assert np.all(np.diff(scores) <= 0) and np.all(scores > 0)
    # "horror" once in a short doc beats "horror" once in a long one.
    ix = lexical({0: "horror film", 1: "horror film with many other long words padding it out", 2: "drama"})
    rows, _ = ix.top("horror", 10)
    assert rows.tolist() == [0, 1]


@pytest.mark.parametrize(("k1", "b"), [(1.5, 0.75), (1.2, 0.3)])
def test_compacted_scores_equal_bm25s_built_on_the_same_tokens(k1: float, b: float) -> None:
    ix = lexical(CORPUS, k1=k1, b=b)
    for q in QUERIES:
        np.testing.assert_allclose(ix.scores(q, 10), bm25s_scores(CORPUS, q, 10, k1, b), rtol=1e-5, atol=1e-6)


def test_after_edits_compact_equals_a_fresh_index_and_bm25s() -> None:
    ix = LexicalIndex(max_delta=1000)
    ix.upsert([12, 3, 7], ["space opera", "paris comedy", "crime saga"])  # out of order, with gaps
    ix.compact()
    ix.upsert([3, 20], ["paris crime thriller", "space horror"])  # change a main row, add a new one
    ix.upsert([20], ["space horror in deep space"])  # and change the delta row again
    ix.remove([7])
    final = {12: "space opera", 3: "paris crime thriller", 20: "space horror in deep space"}
    ix.compact()
    fresh = lexical(final)
    assert len(ix) == len(fresh) == 3
    for q in [*QUERIES, "saga", "thriller horror"]:
        got = ix.scores(q, 25)
        np.testing.assert_allclose(got, fresh.scores(q, 25), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got, bm25s_scores(final, q, 25), rtol=1e-5, atol=1e-6)


def test_delta_only_index_is_exact_bm25() -> None:
    """With an empty snapshot, the delta scores with its own statistics: exact BM25 before any compaction."""
    ix = LexicalIndex(max_delta=100)
    ix.upsert(list(CORPUS), list(CORPUS.values()))
    for q in QUERIES:
        np.testing.assert_allclose(ix.scores(q, 10), bm25s_scores(CORPUS, q, 10), rtol=1e-5, atol=1e-6)


def test_delta_doc_scores_like_the_same_doc_in_main() -> None:
    """Delta docs use the snapshot's IDF and avgdl, so a copy of a main doc gets the main doc's score."""
    ix = lexical(CORPUS)
    ix.upsert([30], [CORPUS[2]])
    for q in ["space", "sci-fi horror", "deep alien"]:
        s = ix.scores(q, 31)
        assert s[30] > 0
        assert s[30] == pytest.approx(float(s[2]), rel=1e-5)


def test_new_item_is_searchable_right_after_upsert() -> None:
    ix = lexical(CORPUS)
    ix.upsert([8], ["Zyzzyva: the space beetle"])
    rows, scores = ix.top("zyzzyva", 5)  # a term the snapshot never saw
    assert rows.tolist() == [8] and scores[0] > 0
    rows, _ = ix.top("space beetle", 10)
    assert rows[0] == 8 and {0, 2, 4, 7} <= set(rows.tolist())
    assert len(ix) == 9


def test_changed_text_drops_old_terms_and_matches_new_ones() -> None:
    ix = lexical(CORPUS)
    ix.upsert([1], ["A western with cowboys"])  # row 1 was in main
    assert 1 not in ix.top("godfather", 10)[0]
    assert ix.scores("godfather crime", 10)[1] == 0
    assert ix.top("cowboys", 10)[0].tolist() == [1]
    ix.upsert([1], ["Submarine war drama"])  # now changed while in the delta
    assert ix.top("cowboys", 10)[0].size == 0
    assert ix.top("submarine", 10)[0].tolist() == [1]
    ix.upsert([9, 9], ["first text", "second text"])  # the latest of a batch wins
    assert ix.top("first", 10)[0].size == 0 and ix.top("second", 10)[0].tolist() == [9]
    assert len(ix) == 9


def test_removal_from_main_and_from_delta() -> None:
    ix = lexical(CORPUS)
    ix.upsert([8], ["lunar space probe"])
    ix.remove([4])  # in main
    ix.upsert([8], [""])  # in the delta; an empty text removes too
    assert len(ix) == 7
    for q in ["moon landing", "lunar probe"]:
        assert ix.top(q, 10)[0].size == 0
    s = ix.scores("space lunar", 10)
    assert s[4] == 0 and s[8] == 0 and s[0] > 0
    ix.upsert([6], ["the and of"])  # only stopwords: nothing to index, so removed
    assert len(ix) == 6 and ix.top("toy", 5)[0].size == 0
    ix.compact()
    assert len(ix) == 6 and ix.top("moon", 5)[0].size == 0 and ix.top("jedi", 5)[0].size == 2


def test_compaction_when_the_delta_is_full_restores_exact_scores() -> None:
    base = {r: CORPUS[r] for r in range(6)}
    ix = LexicalIndex(max_delta=3)
    ix.upsert(list(base), list(base.values()))
    ix.compact()
    docs = dict(base)
    extra = ["space station drama", "space cowboys", "crime in space", "space comedy"]
    for i, text in enumerate(extra):
        docs[10 + i] = text
        ix.upsert([10 + i], [text])
        exact = bm25s_scores(docs, "space", 20)
        got = ix.scores("space", 20)
        assert set(ix.top("space", 20)[0].tolist()) == set(np.flatnonzero(exact).tolist())
        if i < 3:  # 1-3 changed rows: delta scored with the stale snapshot statistics
            assert not np.allclose(got, exact, rtol=1e-5, atol=1e-6)
        else:  # the 4th exceeded max_delta=3: compacted, exact again
            np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-6)


def test_allowed_mask() -> None:
    ix = lexical(CORPUS)
    rows, _ = ix.top("space", 10)
    best = int(rows[0])
    allowed = np.ones(8, bool)
    allowed[best] = False
    got, _ = ix.top("space", 10, allowed)
    assert best not in got and set(got.tolist()) == set(rows.tolist()) - {best}
    ix.upsert([12], ["space space space"])  # beyond a short mask: not allowed
    assert 12 in ix.top("space", 10)[0]
    assert 12 not in ix.top("space", 10, allowed)[0]
    assert ix.top("space", 10, np.zeros(0, bool))[0].size == 0
    assert len(ix.top("space", 2)[0]) == 2


def test_empty_index_and_empty_queries() -> None:
    ix = LexicalIndex()
    assert len(ix) == 0
    assert ix.scores("space", 5).tolist() == [0.0] * 5
    assert ix.top("space", 5)[0].size == 0
    ix.compact()
    assert ix.top("space", 5)[0].size == 0
    ix = lexical(CORPUS)
    for q in ["", "the of and", "unknownword", "!!!"]:
        assert not ix.scores(q, 8).any()
        rows, scores = ix.top(q, 5)
        assert rows.dtype == np.int64 and scores.dtype == np.float32 and rows.size == 0
    assert ix.scores("space", 0).shape == (0,)
    assert ix.scores("space", 3)[[0, 2]].all()  # rows < n only, no error for larger rows
    assert ix.top("space", 0)[0].size == 0
    ix.remove(list(CORPUS))
    assert len(ix) == 0 and ix.top("space", 5)[0].size == 0
    ix.compact()
    assert ix.top("space", 5)[0].size == 0


def test_lexical_concurrent_upserts_and_queries() -> None:
    vocab = [f"w{i}" for i in range(50)]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(vocab, 6)) for _ in range(600)]
    ix = LexicalIndex(max_delta=40)  # several compactions while the reader runs
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for r, t in enumerate(texts):
                ix.upsert([r], [t])
                if r % 7 == 0:
                    ix.remove([r // 2])
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def read() -> None:
        try:
            while not done.is_set():
                rows, scores = ix.top("w1 w2 w3", 50)
                assert len(rows) == len(scores) <= 50
                assert len(set(rows.tolist())) == len(rows) and np.all(np.diff(scores) <= 0)
                assert np.all(scores > 0)
                assert ix.scores("w4", 700).shape == (700,)
        except BaseException as e:
            errors.append(e)

    run_together(write, read)
    assert not errors, errors
    removed = {r // 2 for r in range(0, 600, 7)}  # each after its own upsert, never upserted again
    live = {r: t for r, t in enumerate(texts) if r not in removed}
    assert len(ix) == len(live)
    ix.compact()
    exact = bm25s_scores(live, "w1 w2", 600)
    np.testing.assert_allclose(ix.scores("w1 w2", 600), exact, rtol=1e-5, atol=1e-6)


# --- semantic ---------------------------------------------------------------------------------------


def unit(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    out: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)  # (n, dim) float32
    return out


def test_semantic_scores_are_cosines_and_top_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    vecs = unit(rng, 300)
    ix = SemanticIndex(dim=16)
    ix.upsert(range(300), vecs * rng.uniform(0.1, 10, (300, 1)).astype(np.float32))  # normalised here
    q = unit(rng, 1)[0]
    np.testing.assert_allclose(ix.scores(q * 3, 300), vecs @ q, atol=1e-5)
    rows, scores = ix.top(q, 20)
    assert rows.dtype == np.int64 and scores.dtype == np.float32
    assert rows.tolist() == np.argsort(-(vecs @ q))[:20].tolist()
    assert ix.top(vecs[42], 1)[0].tolist() == [42]
    assert ix.top(vecs[42], 1)[1][0] == pytest.approx(1.0, abs=1e-5)
    assert len(ix) == 300


def test_semantic_growth_gaps_removal_and_zero_vectors() -> None:
    rng = np.random.default_rng(2)
    vecs = unit(rng, 40)
    ix = SemanticIndex(dim=16)
    for r in range(30):
        ix.upsert([r], vecs[r : r + 1])
    ix.upsert([1000, 500], vecs[30:32])  # a gap, past the capacity
    assert len(ix) == 32
    s = ix.scores(vecs[30], 1001)
    assert s[1000] == pytest.approx(1.0, abs=1e-5) and not s[30:500].any() and not s[501:1000].any()
    np.testing.assert_allclose(s[:30], vecs[:30] @ vecs[30], atol=1e-5)
    ix.remove([1000])
    ix.upsert([3], np.zeros((1, 16), np.float32))  # an all-zero vector removes
    assert len(ix) == 30 and ix.scores(vecs[30], 1001)[[3, 1000]].tolist() == [0.0, 0.0]
    assert 3 not in ix.top(vecs[3], 40)[0] and 1000 not in ix.top(vecs[30], 40)[0]
    ix.upsert([3], vecs[3:4])  # back again
    assert ix.top(vecs[3], 1)[0].tolist() == [3]
    ix.upsert([5, 5], vecs[35:37])  # the latest of a batch wins
    assert ix.top(vecs[36], 1)[0].tolist() == [5]
    assert ix.scores(vecs[35], 6)[5] == pytest.approx(float(vecs[36] @ vecs[35]), abs=1e-5)
    ix.remove([99_999])  # unknown row: nothing to do
    assert len(ix) == 31


def test_semantic_top_holds_only_rows_with_a_vector_and_allowed() -> None:
    rng = np.random.default_rng(3)
    vecs = unit(rng, 3)
    ix = SemanticIndex(dim=16)
    ix.upsert([0, 4, 9], vecs)
    rows, scores = ix.top(-vecs[1], 10)  # every cosine may be negative; empty rows still never show
    assert sorted(rows.tolist()) == [0, 4, 9] and np.all(np.diff(scores) <= 0)
    allowed = np.ones(5, bool)
    allowed[4] = False
    assert ix.top(vecs[1], 10, allowed)[0].tolist() == [0]  # 4 not allowed, 9 beyond the mask


def test_semantic_empty_and_zero_query() -> None:
    ix = SemanticIndex(dim=16)
    q = unit(np.random.default_rng(4), 1)[0]
    assert len(ix) == 0 and not ix.scores(q, 5).any() and ix.top(q, 5)[0].size == 0
    ix.upsert([0], q[None])
    zero = np.zeros(16, np.float32)
    assert not ix.scores(zero, 3).any() and ix.top(zero, 5)[0].size == 0
    assert ix.top(q, 0)[0].size == 0
    with pytest.raises(ValueError):
        ix.upsert([1], np.ones((1, 8), np.float32))
    with pytest.raises(ValueError):
        ix.top(np.ones(8, np.float32), 5)


def test_semantic_concurrent_upserts_and_queries() -> None:
    rng = np.random.default_rng(5)
    vecs = unit(rng, 3000)
    ix = SemanticIndex(dim=16)
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            for r in range(3000):
                ix.upsert([r], vecs[r : r + 1])
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def read() -> None:
        try:
            while not done.is_set():
                rows, scores = ix.top(vecs[0], 30)
                assert len(rows) == len(scores) <= 30 and len(set(rows.tolist())) == len(rows)
                assert ix.scores(vecs[1], 3000).shape == (3000,)
        except BaseException as e:
            errors.append(e)

    run_together(write, read)
    assert not errors, errors
    assert len(ix) == 3000
    np.testing.assert_allclose(ix.scores(vecs[0], 3000), vecs @ vecs[0], atol=1e-5)
