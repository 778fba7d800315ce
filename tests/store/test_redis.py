"""What the contract cannot say about Redis: script atomicity, key layout, durability warnings."""

from __future__ import annotations

import logging
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import redis

from liverec.core.schema import Event, Item
from liverec.store import StoreError, open_store
from liverec.store.redis import RedisEventStore


def ev(eid: str, user: str = "u", item: str = "i") -> Event:
    return Event(event_id=eid, user_id=user, item_id=item, type="click", timestamp=1_700_000_000.0)


@pytest.fixture
def store(redis_store_url: str) -> Iterator[RedisEventStore]:
    s = RedisEventStore(redis_store_url)
    yield s
    s.close()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def _nothing_written(store: RedisEventStore, before: int) -> None:
    assert store.count_events() == before and store.last_offset() == before
    assert store.get_item("new-item") is None
    assert store.user_history("first-half") == []


def test_a_batch_that_fails_halfway_applies_nothing(store: RedisEventStore, client: redis.Redis) -> None:
    """Redis does not roll back a failed script: ours must fail before its first write."""
    store.append([ev("before")])
    first_half = [ev(f"a{i}", user="first-half", item="new-item") for i in range(3)]
    batch = [*first_half, ev("b", user="spoiled")]
    client.set(store._user_key("spoiled"), "not a sorted set")  # the 4th event's index is unusable
    with pytest.raises(StoreError) as info:
        store.append(batch)
    _nothing_written(store, 1)
    assert "holds a string" in str(info.value)
    client.delete(store._user_key("spoiled"))
    assert [s.offset for s in store.append(batch).accepted] == [2, 3, 4, 5]  # no id was remembered


def test_a_damaged_counter_applies_nothing(store: RedisEventStore, client: redis.Redis) -> None:
    store.append([ev("before")])
    client.set(store._seq, "seven")
    with pytest.raises(StoreError, match="not an integer"):
        store.append([ev("a0", user="first-half", item="new-item")])
    client.set(store._seq, "0")  # behind the stream: the first offset is taken already
    with pytest.raises(StoreError, match="XADD"):
        store.append([ev("a0", user="first-half", item="new-item"), ev("a1", user="first-half")])
    client.set(store._seq, "1")
    _nothing_written(store, 1)
    assert store.append([ev("a0")]).accepted[0].offset == 2


def test_failed_upsert_and_delete_apply_nothing(store: RedisEventStore, client: redis.Redis) -> None:
    store.append([ev("a", user="x")])
    client.set(store._item_seq, "n/a")
    with pytest.raises(StoreError, match="not an integer"):
        store.upsert_items([Item(item_id="brand-new")])
    assert store.get_item("brand-new") is None
    client.set(store._users, "oops")
    with pytest.raises(StoreError, match="holds a string"):
        store.delete_user("x")
    assert [s.event.event_id for s in store.user_history("x")] == ["a"]


def test_offsets_are_stream_ids_and_keys_share_the_prefix(
    store: RedisEventStore, client: redis.Redis
) -> None:
    store.append([ev(f"e{i}", user=f"u{i % 2}") for i in range(4)])
    store.upsert_items([Item(item_id="x")])
    store.put_embeddings({"k": np.ones(2, dtype=np.float32)})
    assert [e[0] for e in client.xrange(store._log) or []] == [b"0-1", b"0-2", b"0-3", b"0-4"]
    keys = {k.decode() for k in client.scan_iter(match="{" + store.prefix + "}:*")}
    names = ("seq", "log", "ids", "items", "item_order", "item_seq", "users", "emb")
    users = {store._user_key("u0"), store._user_key("u1")}
    assert keys == {f"{{{store.prefix}}}:{k}" for k in names} | users
    store.delete_user("u0")
    assert not client.exists(store._user_key("u0"))
    assert [e[0] for e in client.xrange(store._log) or []] == [b"0-2", b"0-4"]


def test_prefixes_isolate_stores(redis_url: str, store: RedisEventStore, client: redis.Redis) -> None:
    other_prefix = store.prefix + "-other"
    try:
        with open_store(f"{redis_url}?prefix={other_prefix}") as other:
            store.append([ev("a")])
            other.append([ev("b"), ev("c")])
            assert [s.event.event_id for s in store.read()] == ["a"]
            assert other.count_events() == 2 and other.stats().items == 1
    finally:
        keys = list(client.scan_iter(match="{" + other_prefix + "}:*"))
        client.delete(*keys)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0", "Redis open failed at redis://127.0.0.1:1/0"),
        ("redis://:s3cret@127.0.0.1:1/0", "Connection refused|Error 111"),
        ("redis://127.0.0.1:6379/0?prefix=a{b}", "without braces"),
        ("redis://127.0.0.1:6379/0?prefix=", "without braces"),
        ("redis://127.0.0.1:6379/notanumber", "database .notanumber. is not a number"),
    ],
)
def test_bad_url_is_a_readable_store_error(redis_url: str, url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        open_store(url)
    assert "s3cret" not in str(info.value)


@contextmanager
def private_redis(tmp_path: Path, *config: str) -> Iterator[str]:
    """A throwaway redis-server with its own config, so the shared one is never reconfigured."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path)]
    server = subprocess.Popen([*cmd, *config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize(
    ("config", "warning"),
    [
        (("--appendonly", "no"), "appendonly=no"),
        (("--appendonly", "yes", "--appendfsync", "everysec"), "appendfsync=everysec"),
        (("--appendonly", "yes", "--appendfsync", "always"), None),
    ],
)
def test_durability_warning_follows_the_server_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, config: tuple[str, ...], warning: str | None
) -> None:
    with private_redis(tmp_path, *config) as url:
        with caplog.at_level(logging.WARNING, logger="liverec.store.redis"), open_store(url) as store:
            assert isinstance(store, RedisEventStore)
            store.append([ev("a")])
        messages = [r.getMessage() for r in caplog.records]
        if warning is None:
            assert store.durability_warning is None and messages == []
        else:
            assert store.durability_warning is not None and warning in store.durability_warning
            assert len(messages) == 1 and warning in messages[0]
