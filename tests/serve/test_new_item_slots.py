"""New-item slots: the last positions of a list go to the best-scored items nobody has used yet."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from liverec.core.catalog import Catalog
from liverec.core.state import LiveState
from liverec.model.popularity import PopularityCooc
from liverec.policy.base import Greedy
from liverec.policy.plackett_luce import PlackettLuce
from liverec.serve.app import create_app
from liverec.serve.engine import Engine
from liverec.serve.recommender import Recommender, with_new_slots
from liverec.settings import RewardWeights, ServerSettings, Settings
from support.api import Api, event

SCORES = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0], dtype=np.float32)  # row r scores 9 - r


def test_the_last_position_goes_to_the_best_new_item_outside_the_head() -> None:
    rows = np.arange(len(SCORES))
    slate = Greedy().select(rows, SCORES[rows], 4)  # rows 0 1 2 3
    new = np.zeros(len(SCORES), bool)
    new[[5, 6]] = True
    out = with_new_slots(slate, SCORES, np.ones(len(SCORES), bool), new, 1, len(SCORES))
    assert out.rows.tolist() == [0, 1, 2, 5]  # the head keeps the policy's first 3; 5 beats 6
    assert out.scores.tolist() == [9.0, 8.0, 7.0, 4.0]  # the model's own scores
    assert out.propensities.tolist() == [1.0] * 4
    assert out.index is not None and out.index.tolist() == [0, 1, 2, 8]  # past the 8 candidates
    assert out.policy == "greedy+new1"
    assert out.slate_propensity == 1.0


def test_a_new_item_already_in_the_head_stays_and_the_slot_takes_the_next() -> None:
    rows = np.arange(len(SCORES))
    slate = Greedy().select(rows, SCORES, 4)
    new = np.zeros(len(SCORES), bool)
    new[[1, 6]] = True
    out = with_new_slots(slate, SCORES, np.ones(len(SCORES), bool), new, 1, len(SCORES))
    assert out.rows.tolist() == [0, 1, 2, 6]


def test_masked_new_items_never_fill_a_slot_and_the_policy_keeps_its_rows_when_none_is_left() -> None:
    rows = np.arange(len(SCORES))
    slate = Greedy().select(rows, SCORES, 4)
    new = np.zeros(len(SCORES), bool)
    new[[5]] = True
    mask = np.ones(len(SCORES), bool)
    mask[5] = False  # seen or unavailable
    assert with_new_slots(slate, SCORES, mask, new, 1, len(SCORES)) is slate
    # two slots, one new item: the policy's 3rd row fills the other
    new[6] = True
    out = with_new_slots(slate, SCORES, mask, new, 2, len(SCORES))
    assert out.rows.tolist() == [0, 1, 2, 6]
    assert out.index is not None and out.index.tolist() == [0, 1, 2, 8]


def test_an_exploring_head_keeps_its_propensities() -> None:
    rows = np.arange(len(SCORES))
    slate = PlackettLuce(temperature=2.0, seed=0).select(rows, SCORES, 4)
    new = np.zeros(len(SCORES), bool)
    new[7] = True
    out = with_new_slots(slate, SCORES, np.ones(len(SCORES), bool), new, 1, len(SCORES))
    assert out.rows[:3].tolist() == slate.rows[:3].tolist()
    assert out.rows[3] == 7
    assert out.propensities[:3].tolist() == slate.propensities[:3].tolist()
    assert out.propensities[3] == 1.0
    cond = slate.conditional_propensities
    assert cond is not None and out.conditional_propensities is not None
    assert out.conditional_propensities.tolist() == [*cond[:3].tolist(), 1.0]
    assert out.slate_propensity == pytest.approx(float(np.prod(cond[:3])))


def test_recommender_rejects_bad_slot_settings() -> None:
    catalog = Catalog()
    state = LiveState(catalog, RewardWeights())
    model = PopularityCooc(state.users)
    with pytest.raises(ValueError, match="new_item_slots must be >= 0"):
        Recommender(catalog, state, model, new_item_slots=-1)
    with pytest.raises(ValueError, match="needs is_new"):
        Recommender(catalog, state, model, new_item_slots=1)


def test_a_negative_slot_count_in_settings_fails_before_anything_opens(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"policy.new_item_slots\n.*greater than or equal to 0"):
        Engine(Settings(data_dir=tmp_path / "data", policy={"name": "greedy", "new_item_slots": -1}))
    assert not (tmp_path / "data").exists()  # no store was created


def test_a_new_item_gets_the_last_slot_until_it_has_its_own_clicks(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        server=ServerSettings(max_batch_events=200),
        policy={"name": "greedy", "new_item_slots": 1, "new_item_positives": 3},
    )
    plain = Settings(data_dir=tmp_path / "plain", server=ServerSettings(max_batch_events=200))
    t = time.time() - 3600
    crowd = [event(f"c{i}-{n}", f"p{i}", timestamp=t) for i in range(12) for n in range(14 - i)]
    lists = {}
    for name, s in (("slot", settings), ("plain", plain)):
        with TestClient(create_app(s)) as client:
            api = Api(client, s)
            api.load(crowd)
            assert client.put("/v1/items/fresh", json={"title": "Just arrived"}).status_code == 200
            lists[name] = api.recs("newcomer", k=10)
            if name == "slot":
                # two clicks: still new (fewer than 3 positives), still in the slot
                api.load([event(f"f{n}", "fresh", timestamp=t + 1) for n in range(2)])
                assert api.rec_ids("newcomer", k=10)[-1] == "fresh"
                # a third: no longer new (nor is any other item), so the 10th popular item is back
                api.load([event("f2", "fresh", timestamp=t + 1)])
                assert "fresh" not in api.rec_ids("newcomer", k=10)
    plain_ids = [i["item_id"] for i in lists["plain"]["items"]]
    slot_ids = [i["item_id"] for i in lists["slot"]["items"]]
    assert plain_ids == [f"p{i}" for i in range(10)]  # nobody clicked "fresh": plain lists never show it
    assert slot_ids == [*plain_ids[:9], "fresh"]
    assert lists["slot"]["policy"] == "greedy+new1"
