"""Candidate retrieval (`[retrieval]`): when the served Transformer stops scoring every item."""

from __future__ import annotations

from pydantic import Field

from liverec.settings.tables import Table


class RetrievalSettings(Table):
    """Above `ann_above` items the served Transformer finds its candidates with an approximate
    maximum-inner-product index over its item vectors (faiss IVF) and scores only those exactly;
    below, it scores the whole catalog (see docs/model.md, "Million-item catalogs")."""

    ann_above: int = Field(
        200_000,
        ge=0,
        description="catalog size from which candidates come from the approximate index instead of "
        "scoring every item; 0 = never",
    )
    nlist: int = Field(0, ge=0, description="index cells; 0 = sqrt(items) at each build")
    nprobe: int = Field(
        32, ge=1, description="cells scanned per query: more finds more of the exact top, slower"
    )
    exact_below: int = Field(
        20_000,
        ge=0,
        description="a filter that leaves at most this many items (new-item slots, the rules' "
        "groups) is scored exactly instead",
    )
    sample: int = Field(
        100_000, ge=1_000, description="item vectors the index's k-means is trained on at each build"
    )
