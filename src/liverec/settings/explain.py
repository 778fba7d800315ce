"""Explanations (`[explain]`): what ``?explain=true`` cites and when a reason counts."""

from __future__ import annotations

from pydantic import Field

from liverec.settings.tables import Table


class ExplainSettings(Table):
    """Each item of an explained list cites the user's history items that raised its score most (the
    drop when one is left out of the live sequence), its nearest history item in text, and the
    non-model reasons that applied (see docs/api.md)."""

    history: int = Field(
        10, ge=1, le=50, description="newest live-sequence items whose influence is measured"
    )
    max_cited: int = Field(3, ge=1, le=10, description="history items cited per recommended item, at most")
    min_influence: float = Field(
        1e-3, ge=0, description="smallest score drop that counts as influence (below it: float noise)"
    )
    content_min_similarity: float = Field(
        0.5, ge=-1, le=1, description="text cosine from which a history item is cited as similar in text"
    )
    popular_top: int = Field(20, ge=1, description="an item among this many most popular now is 'popular'")
    trending_ratio: float = Field(
        2.0,
        gt=1,
        description="'trending': the item's share of recent engagement is at least this times its share "
        "of long-run engagement (and it is among popular_top by recent engagement)",
    )
