"""What the contract cannot say about Postgres: errors, durability settings, schemas, reconnects."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from liverec.core.schema import Event, Item
from liverec.store import StoreError, open_store
from liverec.store.postgres import PostgresEventStore, split_url


def ev(eid: str, user: str = "u", item: str = "i") -> Event:
    return Event(event_id=eid, user_id=user, item_id=item, type="click", timestamp=1_700_000_000.0)


@pytest.fixture
def store(postgres_store_url: str) -> Iterator[PostgresEventStore]:
    s = PostgresEventStore(postgres_store_url)
    yield s
    s.close()


def _schema(url: str) -> str:
    schema = split_url(url)[1]
    assert schema is not None
    return schema


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://root@127.0.0.1:1/test", "cannot connect to Postgres at postgresql://root@127.0.0.1:1"),
        ("postgres://root:s3cret@127.0.0.1:1/test", "refused"),
        ("postgresql://ro ot@127.0.0.1/test", "cannot connect"),
        ("postgresql://root@127.0.0.1:5432/test?schema=", "empty \\?schema="),
        ("postgresql://root@127.0.0.1:5432/test?no_such_option=1", "invalid URI query parameter"),
    ],
)
def test_bad_url_is_a_readable_store_error(postgres_url: str, url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        open_store(url)
    assert "s3cret" not in str(info.value)  # never echo a password


def test_missing_database_is_named(postgres_url: str) -> None:
    with pytest.raises(StoreError, match='database "liverec_no_such_db" does not exist'):
        open_store(postgres_url.rsplit("/", 1)[0] + "/liverec_no_such_db")


def test_sessions_commit_synchronously_into_their_schema(store: PostgresEventStore) -> None:
    settings = store._run(
        lambda c: c.execute("SELECT current_setting('synchronous_commit'), current_schema()").fetchone(),
        "test",
    )
    assert settings == ("on", _schema(store.url))


def test_schemas_isolate_stores(store: PostgresEventStore, postgres_url: str) -> None:
    other_url = f"{postgres_url}?schema={_schema(store.url)}_other"
    try:
        with open_store(other_url) as other:
            store.append([ev("a")])
            other.append([ev("b"), ev("c")])
            assert [s.event.event_id for s in store.read()] == ["a"]
            assert other.count_events() == 2 and other.last_offset() == 2
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{_schema(other_url)}" CASCADE')


def test_tables_live_in_the_named_schema(store: PostgresEventStore, postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
            (_schema(store.url),),
        ).fetchall()
    assert [r[0] for r in rows] == [
        "liverec_deletions",
        "liverec_embeddings",
        "liverec_events",
        "liverec_items",
        "liverec_meta",
    ]


def test_a_statement_failing_late_rolls_back_the_whole_append(
    store: PostgresEventStore, postgres_url: str
) -> None:
    """The events insert succeeds, the stub item insert after it fails: nothing may remain."""
    store.append([ev("before")])
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        table = f'"{_schema(store.url)}".liverec_items'
        admin.execute(f"ALTER TABLE {table} ADD CONSTRAINT no_bad CHECK (item_id <> 'forbidden')")
    batch = [ev("a", user="x"), ev("b", user="x", item="forbidden")]
    with pytest.raises(StoreError, match="no_bad"):
        store.append(batch)
    assert [s.event.event_id for s in store.read()] == ["before"]
    assert store.last_offset() == 1 and store.user_history("x") == []
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        admin.execute(f"ALTER TABLE {table} DROP CONSTRAINT no_bad")
    assert [s.offset for s in store.append(batch).accepted] == [2, 3]  # no ids kept, no holes


def test_text_postgres_cannot_hold_is_refused_whole(store: PostgresEventStore) -> None:
    store.append([ev("before")])
    nul = ev("c").model_copy(update={"user_id": "nul\x00inside"})  # the schema would reject it
    bad = [ev("a"), ev("b", item="new-item"), nul]
    with pytest.raises(StoreError, match="NUL"):
        store.append(bad)
    assert [s.event.event_id for s in store.read()] == ["before"]
    assert store.get_item("new-item") is None and store.last_offset() == 1
    with pytest.raises(StoreError, match="0x00"):
        store.upsert_items([Item(item_id="x").model_copy(update={"title": "a\x00b"})])  # schema rejects it
    assert store.get_item("x") is None
    # NUL inside the context is fine: it is JSON text, escaped
    odd = ev("d").model_copy(update={"context": ev("d").context.model_copy(update={"surface": "a\x00b"})})
    store.append([odd])
    assert store.read()[-1].event == odd


def test_server_side_disconnects(store: PostgresEventStore, postgres_url: str) -> None:
    """Reads retry on a fresh connection; a write on a dead one fails cleanly and is not retried."""
    store.append([ev("a")])

    def kill_sessions() -> None:
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            pids = store._run(lambda c: [c.info.backend_pid], "pid")
            for pid in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    kill_sessions()
    assert [s.event.event_id for s in store.read()] == ["a"]
    kill_sessions()
    with pytest.raises(StoreError, match="append failed"):
        store.append([ev("b")])
    assert store.append([ev("b"), ev("c")]).duplicates == 0  # the failed write wrote nothing
    assert [s.event.event_id for s in store.read()] == ["a", "b", "c"]


def test_closed_store_refuses_work(postgres_store_url: str) -> None:
    store = PostgresEventStore(postgres_store_url)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.read()
