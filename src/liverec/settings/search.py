"""Search (`[search]`): retrieval depth, exploration over result positions, and how the ranker learns."""

from __future__ import annotations

from pydantic import Field

from liverec.settings.tables import Table


class SearchSettings(Table):
    """`GET /v1/search`: candidates from BM25, MiniLM cosine and the user's model top, ranked by a
    linear ranker that learns from clicks (see docs/search.md)."""

    enabled: bool = Field(True, description="serve /v1/search and index the catalog for it")
    depth: int = Field(
        300, ge=1, description="candidates taken from each retriever (BM25, semantic, personal)"
    )
    max_query_chars: int = Field(512, ge=1, le=4096, description="longer queries are refused (422)")
    epsilon: float = Field(
        0.05,
        ge=0,
        le=1,
        description="share of result lists whose top shuffle_depth are shown in random order",
    )
    shuffle_depth: int = Field(10, ge=1, description="how many top results a randomized list reorders")
    debias: bool = Field(True, description="weight each click by 1 / P(its position was examined)")
    gate_every: int = Field(20, ge=1, description="clicks between the ranker's guarded publishes")
    tolerance: float = Field(
        0.0, ge=0, description="the learning ranker goes live unless its click MRR is worse by more than this"
    )
    freshness_half_life_days: float = Field(
        30.0, gt=0, description="age at which the freshness feature halves"
    )
    query_cache: int = Field(
        10_000, ge=0, description="query vectors kept (repeated queries skip the encoder)"
    )
    encoder_process: bool = Field(
        True, description="encode new queries in a child process (MiniLM's ~10 ms off the server's GIL)"
    )
