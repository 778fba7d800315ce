"""What the search ranker sees of one (query, user, item): a short, named feature vector.

Every feature is scaled per request so that one linear weight means the same thing for every query:

- ``bm25``: lexical relevance, divided by the best BM25 score among the candidates (0..1);
- ``cosine``: query-item cosine of the MiniLM vectors (about -0.2..0.9);
- ``personal``: the served recommender's score for the item given the user's live sequence,
  standardised over the candidates (mean 0, sd 1; 0 for anonymous search);
- ``popularity``: log(1 + positive weight) over the catalog's largest (0..1);
- ``freshness``: 0.5 ** (age / half life), age from the item's ``created_at``;
- ``seen``: 1 if the user already engaged with the item (search keeps those: people search for
  what they know; the ranker learns how much that matters);
- ``clicks``: log(1 + what the click memory learned for this query and item), see `ClickMemory`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liverec.search.index import tokenize

FEATURES: tuple[str, ...] = ("bm25", "cosine", "personal", "popularity", "freshness", "seen", "clicks")
F = len(FEATURES)
DAY_S = 86_400.0


def query_key(query: str) -> str:
    """The form a query is remembered by: its index tokens, sorted and unique, so "Thriller Action"
    and "the action  thriller" share their clicks."""
    return " ".join(sorted(set(tokenize(query))))


@dataclass
class Signals:
    """What one request knows about the catalog: (N,) arrays over catalog rows."""

    bm25: np.ndarray  # (N,) float32
    cosine: np.ndarray | None  # (N,) float32; None on a large catalog (the ANN's ``semantic`` instead)
    personal: np.ndarray | None  # (N,) float32 model scores; None: anonymous or no model
    popularity: np.ndarray  # (N,) float positive weight per item
    created_at: np.ndarray  # (N,) float64 epoch seconds
    now: float  # epoch seconds (event time)
    seen: np.ndarray | None = None  # (S,) int64 rows the user engaged with
    semantic: np.ndarray | None = None  # (K,) int64 the nearest rows by cosine, when ``cosine`` is None
    query_vector: np.ndarray | None = None  # (384,) float32


def feature_matrix(
    rows: np.ndarray,
    signals: Signals,
    clicks: np.ndarray,
    cosine: np.ndarray | None = None,
    freshness_half_life_days: float = 30.0,
) -> np.ndarray:
    """(M, F) float32 features of candidate ``rows`` (M,) int64; ``clicks`` (M,) their click memory;
    ``cosine`` (M,) their cosines (default: ``signals.cosine[rows]``)."""
    m = rows.size
    x = np.zeros((m, F), dtype=np.float32)
    if m == 0:
        return x
    bm25 = signals.bm25[rows].astype(np.float64)
    top = bm25.max()
    x[:, 0] = bm25 / top if top > 0 else 0.0
    if cosine is not None:
        x[:, 1] = cosine
    elif signals.cosine is not None:
        x[:, 1] = signals.cosine[rows]
    if signals.personal is not None:
        p = signals.personal[rows].astype(np.float64)
        p = np.where(np.isfinite(p), p, np.nan)
        if np.isfinite(p).any():
            mu, sd = np.nanmean(p), np.nanstd(p)
            z = (p - mu) / sd if sd > 0 else np.zeros(m)
            x[:, 2] = np.nan_to_num(z, nan=-3.0)  # unscorable: well below the rest
    pop = np.log1p(np.maximum(signals.popularity, 0.0))
    scale = pop.max() if pop.size else 0.0
    if scale > 0:
        x[:, 3] = pop[rows] / scale
    age_days = np.maximum(signals.now - signals.created_at[rows], 0.0) / DAY_S
    x[:, 4] = 0.5 ** (age_days / freshness_half_life_days)
    if signals.seen is not None and signals.seen.size:
        x[:, 5] = np.isin(rows, signals.seen)
    x[:, 6] = np.log1p(np.maximum(clicks, 0.0))
    return x
