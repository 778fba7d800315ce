"""`[retrieval] ann_above` over HTTP: a server whose catalog passes the threshold serves the trained
Transformer's lists from the item index (`model.retrieval`), says so in /healthz, and serves what
exact scoring serves: the tiny world's 24 items fit one index cell, so the index's answer is the
exact top and any difference would be the path's own fault (masking, rescoring, slots)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from liverec.model.base import DenseScores, top_rows
from liverec.model.retrieval import AnnScores
from liverec.model.text import TextEncoder
from liverec.settings import ServerSettings, Settings
from support.world import POLL_S, T0, Served, Trained, serving

WALK = ["space-0", "space-1", "space-2", "space-3"]


@pytest.fixture
def indexed(tmp_path: Path, trained: Trained, encoder: TextEncoder) -> Iterator[Served]:
    settings = Settings(
        data_dir=tmp_path / "data",
        server=ServerSettings(reload_poll_s=POLL_S),
        retrieval={"ann_above": 20, "exact_below": 0},  # 24 items: the index serves
        policy={"candidates": 6, "new_item_slots": 1},  # fewer than the catalog: the index is asked
    )
    with serving(settings, trained, encoder) as served:
        yield served


def test_a_server_past_the_threshold_serves_from_the_index_what_exact_scoring_serves(indexed: Served) -> None:
    for n, item in enumerate(WALK):
        indexed.click("walker", item, T0 + 1000 + n)
    health = indexed.client.get("/healthz").json()["retrieval"]
    assert health["approximate"] is True and health["built_over"] == 24 and health["searches"] == 0

    body = indexed.client.get("/v1/users/walker/recommendations", params={"k": 4, "explain": "true"}).json()
    served = [item["item_id"] for item in body["items"]]
    assert indexed.client.get("/healthz").json()["retrieval"]["searches"] >= 1

    engine, model = indexed.engine, indexed.model
    user = engine.state.get("walker")
    assert user is not None
    n = len(engine.catalog)
    assert isinstance(model.retrieve(user, n), AnnScores)
    mask = engine.catalog.available.copy()
    mask[list(user.seen)] = False
    scores = model.score(user, n)
    head = top_rows(scores, mask, 3)  # greedy: the exact top 3, then the new-item slot
    assert served[:3] == [engine.catalog.ids[r] for r in head]
    assert not set(served) & set(WALK)  # seen items stay out
    for item, row in zip(body["items"], [engine.catalog.row(i) for i in served], strict=True):
        assert row is not None and abs(item["score"] - float(scores[row])) < 1e-4  # exact scores
        assert item["explanation"]["sentence"]  # explanations read the served rows only
    assert any(item["explanation"]["history"] for item in body["items"])

    # a user with no history gets the fallback, scored in full, as before
    assert isinstance(model.retrieve(None, n), DenseScores)
    cold = indexed.client.get("/v1/users/nobody/recommendations", params={"k": 3}).json()
    assert [i["item_id"] for i in cold["items"]] == ["football-5", "cooking-2", "space-7"]
    assert np.isfinite([i["score"] for i in cold["items"]]).all()
