"""POST /v1/events: bad input gets a clear 4xx and writes nothing; duplicates are accepted once."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from liverec.core.schema import Event
from liverec.serve.app import create_app
from liverec.store import open_store
from support.api import Api, Response, event, make_settings

JSON = {"content-type": "application/json"}


def raw_post(api: Api, body: bytes | Iterator[bytes], headers: dict[str, str] | None = None) -> Response:
    return api.client.post("/v1/events", content=body, headers=headers or JSON)


def assert_nothing_written(api: Api, before: tuple[int, int]) -> None:
    assert api.counts() == before


def errors_by_index(r: Response) -> dict[int, list[dict[str, str]]]:
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]
    return {e["index"]: e["errors"] for e in body["errors"]}


@pytest.fixture
def seeded(api: Api) -> tuple[Api, tuple[int, int]]:
    """An app with a few events already in it, so that 'nothing written' is not 'still empty'."""
    api.ok(event("u0", "i0"), event("u1", "i1"), event("u1", "i0"))
    return api, api.counts()


# -- body-level errors: 400 and 413 ----------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"user_id": "u", "item_id": "i", "type": "rating", "value": NaN}',
        b'{"user_id": "u", "item_id": "i", "type": "rating", "value": Infinity}',
        b'{"user_id": "u", "item_id": "i", "type": "rating", "value": -Infinity}',
        b'{"user_id": "u", "item_id": "i", "type": "rating", "value": 1e999}',
        b'{"user_id": "u", "item_id": "i", "type": "click", "timestamp": NaN}',
        b'{"user_id": "u", "item_id": "i", "type": "click"',
        b"{'user_id': 'u'}",
        b"not json at all",
    ],
)
def test_malformed_or_non_finite_json_is_400(seeded: tuple[Api, tuple[int, int]], body: bytes) -> None:
    api, before = seeded
    r = raw_post(api, body)
    assert r.status_code == 400, r.text
    assert "malformed JSON" in r.json()["detail"]
    assert_nothing_written(api, before)


def test_python_nan_and_infinity_serialised_by_a_client_are_400(seeded: tuple[Api, tuple[int, int]]) -> None:
    api, before = seeded
    for bad in (math.nan, math.inf, -math.inf):
        body = json.dumps(event("u", "i", "rating", value=bad), allow_nan=True).encode()
        r = raw_post(api, body)
        assert r.status_code == 400, r.text
    assert_nothing_written(api, before)


def test_python_nan_never_validates_as_an_event() -> None:
    for bad in (math.nan, math.inf):
        with pytest.raises(ValidationError, match="value"):
            Event(user_id="u", item_id="i", type="rating", value=bad)
        with pytest.raises(ValidationError, match="finite"):
            Event(user_id="u", item_id="i", type="click", timestamp=bad)
        with pytest.raises(ValidationError, match="propensity"):
            Event.model_validate(event("u", "i", context={"propensity": bad}))


@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t "])
def test_empty_body_is_400(seeded: tuple[Api, tuple[int, int]], body: bytes) -> None:
    api, before = seeded
    r = raw_post(api, body)
    assert r.status_code == 400
    assert "empty" in r.json()["detail"]
    assert_nothing_written(api, before)


def _big_batch(n_events: int) -> bytes:
    return json.dumps({"events": [event("u", f"item-{i:06d}") for i in range(n_events)]}).encode()


def test_oversized_body_with_content_length_is_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=2_000)
    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        api.ok(event("u", "x"))
        before = api.counts()
        body = _big_batch(30)
        assert len(body) > 2_000
        r = raw_post(api, body)
        assert r.status_code == 413
        assert "2000 bytes" in r.json()["detail"]
        assert_nothing_written(api, before)


def test_oversized_streamed_body_without_content_length_is_413(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, max_body_bytes=2_000)
    body = _big_batch(30)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 256):
            yield body[i : i + 256]

    with TestClient(create_app(settings)) as client:
        api = Api(client, settings)
        api.ok(event("u", "x"))
        before = api.counts()
        r = raw_post(api, chunks())
        assert r.status_code == 413, r.text
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert_nothing_written(api, before)
        # a streamed body under the limit goes through the same path and is accepted
        small = json.dumps(event("u", "y")).encode()
        r = raw_post(api, iter([small[:10], small[10:]]))
        assert r.status_code == 200, r.text
        assert api.counts()[0] == before[0] + 1


def test_oversized_chunked_body_is_413_on_a_real_server(tmp_path: Path, live_server: Any) -> None:
    server = live_server(env={"LIVEREC_SERVER__MAX_BODY_BYTES": "2000"})
    body = _big_batch(30)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 256):
            yield body[i : i + 256]

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        r = client.post("/v1/events", content=chunks(), headers=JSON)
        assert r.status_code == 413, r.text
        assert "content-length" not in {k.lower() for k in r.request.headers}
        assert client.get("/healthz").json()["events"] == 0
        r = client.post("/v1/events", content=_big_batch(30), headers=JSON)
        assert r.status_code == 413
        r = client.post("/v1/events", json=event("u", "i"))
        assert r.status_code == 200, r.text
    server.stop()
    with open_store(server.store_url) as st:
        assert [s.event.item_id for s in st.iter_events()] == ["i"]


def test_too_many_events_in_a_batch_is_413(seeded: tuple[Api, tuple[int, int]]) -> None:
    api, before = seeded
    limit = api.settings.server.max_batch_events
    too_many = [event("u", f"i{i}") for i in range(limit + 1)]
    r = api.client.post("/v1/events", json={"events": too_many})
    assert r.status_code == 413
    assert str(limit) in r.json()["detail"]
    r = api.client.post("/v1/events", json=too_many)  # a bare list is a batch too
    assert r.status_code == 413
    assert_nothing_written(api, before)
    assert api.ok(*too_many[:limit])["accepted"] == limit  # exactly at the limit is fine


# -- event-level errors: 422 with index and field --------------------------------------------------
BAD_EVENTS: list[tuple[str, Any, str, str]] = [
    # (case, event, field the error must name, words in the message)
    ("missing user", {"item_id": "i", "type": "click"}, "user_id", "required"),
    ("missing item", {"user_id": "u", "type": "click"}, "item_id", "required"),
    ("missing type", {"user_id": "u", "item_id": "i"}, "type", "required"),
    ("user is a number", event(123, "i"), "user_id", "string"),  # type: ignore[arg-type]
    ("value is text", event("u", "i", "rating", value="high"), "value", "number"),
    ("timestamp is a list", event("u", "i", timestamp=[1]), "timestamp", "timestamp"),
    ("timestamp is text", event("u", "i", timestamp="yesterday"), "timestamp", "ISO-8601"),
    ("timestamp before 1970", event("u", "i", timestamp=-5), "timestamp", "1970"),
    ("unknown type", event("u", "i", "teleport"), "type", "click"),
    ("empty user", event("", "i"), "user_id", "at least 1"),
    ("whitespace user", event("   ", "i"), "user_id", "at least 1"),
    ("whitespace item", event("u", "\t \n"), "item_id", "at least 1"),
    ("whitespace event id", event("u", "i", event_id="  "), "event_id", "at least 1"),
    ("rating without value", event("u", "i", "rating"), "(event)", "value"),
    ("dwell without value", event("u", "i", "dwell"), "(event)", "value"),
    ("negative dwell", event("u", "i", "dwell", value=-3.0), "(event)", "negative"),
    ("propensity zero", event("u", "i", context={"propensity": 0}), "context.propensity", "greater"),
    ("propensity above 1", event("u", "i", context={"propensity": 1.5}), "context.propensity", "less"),
    ("propensity negative", event("u", "i", context={"propensity": -0.1}), "context.propensity", "greater"),
    ("negative position", event("u", "i", context={"position": -1}), "context.position", "greater"),
    ("unknown field", event("u", "i", colour="red"), "colour", "extra"),
    ("event is not an object", "click", "(event)", "dict"),
]


@pytest.mark.parametrize(("case", "bad", "field", "words"), BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS])
def test_invalid_event_is_422_naming_index_and_field(
    seeded: tuple[Api, tuple[int, int]], case: str, bad: Any, field: str, words: str
) -> None:
    api, before = seeded
    good = [event("v", "j1", event_id=f"{case}-1"), event("v", "j2", event_id=f"{case}-2")]
    alone = [[bad]] if isinstance(bad, dict) else []  # a bare non-object is a shape error (below)
    for body in [[*good[:1], bad, *good[1:]], *alone]:  # in a batch, and alone
        r = api.client.post("/v1/events", json={"events": body} if len(body) > 1 else body[0])
        assert r.status_code == 422, r.text
        errors = errors_by_index(r)
        index = body.index(bad)
        assert list(errors) == [index], errors  # only the bad one is blamed...
        fields = {e["field"] for e in errors[index]}
        assert field in fields, errors
        assert any(words.lower() in e["msg"].lower() for e in errors[index]), errors
    assert_nothing_written(api, before)  # ...and the valid ones around it were not written either


def test_future_timestamp_is_422_naming_the_event_index(seeded: tuple[Api, tuple[int, int]]) -> None:
    api, before = seeded
    skew = api.settings.server.max_future_skew_s
    batch = [
        event("u", "a"),
        event("u", "b", timestamp=time.time() + skew / 2),  # within the allowed clock skew
        event("u", "c", timestamp=time.time() + skew + 86_400),
        event("u", "d", timestamp="2999-01-01T00:00:00Z"),
    ]
    r = api.client.post("/v1/events", json={"events": batch})
    assert r.status_code == 422
    errors = errors_by_index(r)
    assert sorted(errors) == [2, 3]
    for i in (2, 3):
        assert errors[i][0]["field"] == "timestamp"
        assert "future" in errors[i][0]["msg"]
    assert "2 of 4" in r.json()["detail"]
    assert_nothing_written(api, before)


def test_every_problem_in_a_batch_is_reported(seeded: tuple[Api, tuple[int, int]]) -> None:
    api, before = seeded
    batch = [
        event("u", "a"),
        event("", "b"),
        event("u", "c", "rating"),
        event("u", "d", timestamp=time.time() + 10 * 86_400),
        event("u", "e", context={"propensity": 2}),
    ]
    r = api.client.post("/v1/events", json={"events": batch})
    assert r.status_code == 422
    errors = errors_by_index(r)
    assert sorted(errors) == [1, 2, 3, 4]
    assert errors[1][0]["field"] == "user_id"
    assert errors[3][0]["field"] == "timestamp"
    assert errors[4][0]["field"] == "context.propensity"
    assert_nothing_written(api, before)


@pytest.mark.parametrize(
    "body",
    [
        {"events": []},
        [],
        {"events": [event("u", "i")], "source": "web"},
        {"events": {"user_id": "u"}},
        42,
        "click",
        None,
    ],
    ids=[
        "empty batch",
        "empty list",
        "batch with extra key",
        "events not a list",
        "number",
        "string",
        "null",
    ],
)
def test_wrong_shape_is_422(seeded: tuple[Api, tuple[int, int]], body: Any) -> None:
    api, before = seeded
    r = raw_post(api, json.dumps(body).encode())
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    assert_nothing_written(api, before)


def test_valid_edge_values_are_accepted(api: Api) -> None:
    """The boundaries of the rules above are inside: otherwise the rejections prove nothing."""
    out = api.ok(
        event("u", "a", context={"propensity": 1.0, "position": 0, "surface": "home", "campaign": "x"}),
        event("u", "b", "dwell", value=0.0),
        event("u", "c", "rating", value=-2.5),
        event("  padded  ", "d"),
        event("u", "e", timestamp="2024-05-01T12:00:00+02:00"),
    )
    assert out == {"accepted": 5, "duplicates": 0}
    users = {s.event.user_id for s in api.log()}
    assert users == {"u", "padded"}  # ids are stripped, not rejected, when something is left


# -- duplicates ------------------------------------------------------------------------------------
def test_same_event_id_in_one_batch_is_accepted_once(api: Api) -> None:
    out = api.ok(
        event("u", "a", event_id="e1"), event("u", "b", event_id="e1"), event("u", "c", event_id="e2")
    )
    assert out == {"accepted": 2, "duplicates": 1}
    log = api.log()
    assert sorted(s.event.event_id for s in log) == ["e1", "e2"]
    assert next(s.event.item_id for s in log if s.event.event_id == "e1") == "a"  # the first one wins


def test_same_event_id_across_requests_is_accepted_once(api: Api) -> None:
    assert api.ok(event("u", "a", event_id="e1")) == {"accepted": 1, "duplicates": 0}
    assert api.ok(event("u", "a", event_id="e1")) == {"accepted": 0, "duplicates": 1}
    out = api.ok(event("u", "a", event_id="e1"), event("u", "b", event_id="e2"))
    assert out == {"accepted": 1, "duplicates": 1}
    assert sorted(s.event.event_id for s in api.log()) == ["e1", "e2"]
    assert api.health()["events"] == 2  # live state folded each event once too
    assert list(api.engine.state.get("u").items) == [api.engine.catalog.row(i) for i in ("a", "b")]  # type: ignore[union-attr]


def test_events_without_id_get_generated_unique_ids(api: Api) -> None:
    same = event("u", "a")
    assert api.ok(same) == {"accepted": 1, "duplicates": 0}
    assert api.ok(same, same) == {"accepted": 2, "duplicates": 0}
    ids = [s.event.event_id for s in api.log()]
    assert len(ids) == 3
    assert len(set(ids)) == 3
    assert all(i.strip() for i in ids)


def test_concurrent_duplicates_on_a_real_server_are_accepted_once(live_server: Any) -> None:
    """Requests that share one group commit still split accepted/duplicates correctly."""
    server = live_server()
    batch = {"events": [event(f"u{i % 7}", f"i{i % 11}", event_id=f"dup-{i}") for i in range(40)]}
    results: list[dict[str, int]] = []
    lock = threading.Lock()

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            for _ in range(3):
                r = client.post("/v1/events", json=batch)
                assert r.status_code == 200, r.text
                with lock:
                    results.append(r.json())

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 12
    assert sum(r["accepted"] for r in results) == 40
    assert sum(r["duplicates"] for r in results) == 11 * 40
    server.stop()
    with open_store(server.store_url) as st:
        ids = [s.event.event_id for s in st.iter_events()]
    assert sorted(ids) == sorted(e["event_id"] for e in batch["events"])
