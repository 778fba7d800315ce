"""Redis backend on Streams: ``redis://host:6379/0?prefix=liverec`` (``rediss://`` for TLS).

The log is one stream whose entry ids are ``0-<offset>``, so ``XRANGE (0-<after> + COUNT n`` reads
from an offset. Each write is one Lua script: Redis runs it without interleaving, so dedupe, offset
assignment (a counter), the stream entry, the user index and stub items are one step, and offsets
become visible in order. Redis does not roll back a script that fails halfway, so every script checks
everything that could fail (key types, counters) before its first write; OOM is checked by Redis
before the script starts (``#!lua`` flags). All keys share the hash tag ``{prefix}``, so the store also
works on a Redis Cluster shard.

Durability is the server's: only ``appendonly yes`` + ``appendfsync always`` makes an acknowledged
write survive a crash of the machine. Opening the store logs a warning when that is not the case.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from liverec.core.schema import Event, Item, StoredEvent
from liverec.settings import redact_text, redact_url
from liverec.store.base import (
    AppendResult,
    Deletion,
    EventStore,
    StoreError,
    StoreStats,
    dedupe_batch,
    user_hash,
)
from liverec.store.codec import event_row, stored_event, vector_bytes, vector_from

log = logging.getLogger(__name__)
T = TypeVar("T")

# Shared by the scripts: fail before any write if a key holds the wrong type or a counter is not an
# integer (someone else wrote to our keys), so a script either applies whole or not at all.
_CHECKS = """
local function check_type(key, want)
  local t = redis.call('TYPE', key)['ok']
  if t ~= 'none' and t ~= want then
    return redis.error_reply('liverec: key ' .. key .. ' holds a ' .. t .. ', expected a ' .. want)
  end
end
local function counter(key)
  local v = redis.call('GET', key)
  if not v then return 0 end
  local n = tonumber(v)
  if not n or n ~= math.floor(n) or n < 0 then
    return nil, redis.error_reply('liverec: counter ' .. key .. ' is not an integer: ' .. v)
  end
  return n
end
-- Variadic commands in slices: Lua's unpack() has a stack limit of a few thousand values.
local function chunked(cmd, key, args)
  for i = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
  end
end
local function gather(cmd, key, args)
  local out = {}
  for i = 1, #args, 1000 do
    local reply = redis.call(cmd, key, unpack(args, i, math.min(i + 999, #args)))
    for k = 1, #reply do out[#out + 1] = reply[k] end
  end
  return out
end
"""

# KEYS: seq, log, ids, items, item_order, item_seq, users, then one key per distinct user of the batch.
# ARGV[1]: JSON [[event_id, item_id, timestamp as JSON number text, packed row, user number], ...];
# ARGV[2]: JSON [user_id, ...] matching KEYS[8..]. Two big arguments instead of five per event keep
# the client's encoding cost low. Returns the offset given to each event, 0 for a duplicate.
APPEND = f"""#!lua
{_CHECKS}
local wants = {{'string', 'stream', 'set', 'hash', 'zset', 'string', 'set'}}
for k = 1, #KEYS do
  local err = check_type(KEYS[k], wants[k] or 'zset')
  if err then return err end
end
local last, err = counter(KEYS[1])
if err then return err end
local item_seq, err2 = counter(KEYS[6])
if err2 then return err2 end
local batch = cjson.decode(ARGV[1])
local users = cjson.decode(ARGV[2])
local ids = {{}}
for j = 1, #batch do ids[j] = batch[j][1] end
local known = gather('SMISMEMBER', KEYS[3], ids)
-- The first XADD is the first write: if the counter were behind the stream it fails right there.
local out, fresh, per_user, first_ts, items = {{}}, {{}}, {{}}, {{}}, {{}}
for j = 1, #batch do
  local e = batch[j]
  if known[j] == 0 then
    last = last + 1
    local off = string.format('%d', last)
    redis.call('XADD', KEYS[2], '0-' .. off, 'd', e[4])
    fresh[#fresh + 1] = e[1]
    local z = per_user[e[5]]
    if not z then z = {{}}; per_user[e[5]] = z end
    z[#z + 1] = off
    z[#z + 1] = e[1]
    if not first_ts[e[2]] then first_ts[e[2]] = e[3]; items[#items + 1] = e[2] end
    out[j] = last
  else
    out[j] = 0
  end
end
if #fresh == 0 then return out end
chunked('SADD', KEYS[3], fresh)
local user_ids = {{}}
for u = 1, #users do
  if per_user[u] then
    chunked('ZADD', KEYS[7 + u], per_user[u])
    user_ids[#user_ids + 1] = users[u]
  end
end
chunked('SADD', KEYS[7], user_ids)
local scores = gather('ZMSCORE', KEYS[5], items)
local order, stubs = {{}}, {{}}
for i = 1, #items do
  if not scores[i] then
    item_seq = item_seq + 1
    order[#order + 1] = string.format('%d', item_seq)
    order[#order + 1] = items[i]
    stubs[#stubs + 1] = items[i]
    stubs[#stubs + 1] = '["","",[],{{}},' .. first_ts[items[i]] .. ',true]'
  end
end
if #order > 0 then
  chunked('ZADD', KEYS[5], order)
  chunked('HSET', KEYS[4], stubs)
  redis.call('SET', KEYS[6], string.format('%d', item_seq))
end
redis.call('SET', KEYS[1], string.format('%d', last))
return out
"""

# Reads return one JSON text [[offset, row], ...] built from the stored rows (already JSON): one
# bulk reply parses far faster than thousands of stream entries.
# KEYS: log. ARGV: after, limit.
READ = """#!lua flags=no-writes
local entries = redis.call('XRANGE', KEYS[1], '(0-' .. ARGV[1], '+', 'COUNT', ARGV[2])
local parts = {}
for i = 1, #entries do
  parts[i] = '[' .. string.sub(entries[i][1], 3) .. ',' .. entries[i][2][2] .. ']'
end
return '[' .. table.concat(parts, ',') .. ']'
"""

# KEYS: log, the user's key. ARGV: first rank (0 for all, -n for the newest n). Same reply as READ.
HISTORY = """#!lua flags=no-writes
local members = redis.call('ZRANGE', KEYS[2], ARGV[1], -1, 'WITHSCORES')
local parts = {}
for i = 2, #members, 2 do
  local id = '0-' .. members[i]
  local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
  if entry then parts[#parts + 1] = '[' .. members[i] .. ',' .. entry[2][2] .. ']' end
end
return '[' .. table.concat(parts, ',') .. ']'
"""

# KEYS: log, ids, users, the user's key, deletions, deletion_seq. ARGV: user_id, user hash, time
# (JSON number text). Removes the events and records the deletion (a JSON row in the deletions hash,
# see `_deletion`) in one step. Returns how many events were removed.
DELETE_USER = f"""#!lua
{_CHECKS}
local wants = {{'stream', 'set', 'set', 'zset', 'hash', 'string'}}
for k = 1, 6 do
  local err = check_type(KEYS[k], wants[k])
  if err then return err end
end
local seq, err = counter(KEYS[6])
if err then return err end
local members = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
local top = 0
for i = 1, #members, 2 do
  redis.call('SREM', KEYS[2], members[i])
  redis.call('XDEL', KEYS[1], '0-' .. members[i + 1])
  local off = tonumber(members[i + 1])
  if off > top then top = off end
end
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[3], ARGV[1])
local n = #members / 2
seq = seq + 1
local honoured = 'null'
if n == 0 then honoured = ARGV[3] end
local row = '["' .. ARGV[2] .. '",' .. ARGV[3] .. ',' .. string.format('%d', n) .. ','
  .. string.format('%d', top) .. ',' .. honoured .. ']'
redis.call('HSET', KEYS[5], string.format('%d', seq), row)
redis.call('SET', KEYS[6], string.format('%d', seq))
return n
"""

# KEYS: items, item_order, item_seq. ARGV: item_id, packed item, ... Returns how many were new.
UPSERT_ITEMS = f"""#!lua
{_CHECKS}
local wants = {{'hash', 'zset', 'string'}}
for k = 1, 3 do
  local err = check_type(KEYS[k], wants[k])
  if err then return err end
end
local _, err = counter(KEYS[3])
if err then return err end
local new = 0
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then
    new = new + 1
    redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[i])
  end
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return new
"""

CONNECT_TIMEOUT_S = 5
SOCKET_TIMEOUT_S = 30
CHUNK = 1000


def split_url(url: str) -> tuple[str, str]:
    """redis-py URL and our own ``prefix`` parameter (redis-py rejects unknown parameters)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [v for k, v in query if k == "prefix"]
    prefix = prefixes[-1] if prefixes else "liverec"
    if not prefix or any(c in prefix for c in "{}"):
        raise StoreError(f"bad ?prefix={prefix!r} in Redis URL: non-empty and without braces")
    db = parts.path.strip("/")
    if db and not db.isdigit():  # redis-py would quietly use database 0
        raise StoreError(f"bad Redis URL: database {db!r} is not a number (redis://host:port/0)")
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


def redact(url: str) -> str:
    """The URL without its secrets, for messages and logs (`liverec.settings.redact_url`)."""
    return redact_url(url)


def durability_problem(appendonly: str, appendfsync: str) -> str | None:
    """Why acknowledged writes could be lost on a crash under this server configuration, or None."""
    if appendonly != "yes":
        return (
            "Redis has appendonly=no: acknowledged events live only in memory (and the last RDB "
            "snapshot) and are lost if Redis crashes; set appendonly yes, appendfsync always"
        )
    if appendfsync != "always":
        return (
            f"Redis has appendfsync={appendfsync}: up to ~1 s of acknowledged events (more with 'no') "
            "can be lost if the machine crashes; set appendfsync always for full durability"
        )
    return None


def _item_from(item_id: str, blob: bytes | str) -> Item:
    title, text, tags, attributes, created_at, available = orjson.loads(blob)
    return Item.model_construct(
        item_id=item_id,
        title=title,
        text=text,
        tags=tags,
        attributes=attributes,
        created_at=created_at,
        available=available,
    )


def _deletion(seq: int, blob: bytes | str) -> Deletion:
    user, deleted_at, events, max_offset, honoured_at = orjson.loads(blob)
    return Deletion(seq, user, float(deleted_at), int(events), int(max_offset), honoured_at)


def _dumps(row: Sequence[Any]) -> str:
    return orjson.dumps(row).decode()


def _packed_item(item: Item) -> bytes:
    row = [item.title, item.text, item.tags, item.attributes, item.created_at, item.available]
    return orjson.dumps(row, option=orjson.OPT_SERIALIZE_NUMPY)


class RedisEventStore(EventStore):
    def __init__(self, url: str) -> None:
        self.url = url
        self._where = redact(url).split("?")[0]
        client_url, self.prefix = split_url(url)
        tag = "{" + self.prefix + "}"
        self._seq, self._log, self._ids = f"{tag}:seq", f"{tag}:log", f"{tag}:ids"
        self._items, self._order, self._item_seq = f"{tag}:items", f"{tag}:item_order", f"{tag}:item_seq"
        self._users, self._emb, self._user_prefix = f"{tag}:users", f"{tag}:emb", f"{tag}:user:"
        self._deletions, self._deletion_seq = f"{tag}:deletions", f"{tag}:deletion_seq"
        try:
            # No automatic retries: a write whose reply was lost would be retried as a duplicate
            # and its events never reported as accepted. Reads retry once in `_run`.
            self._r = redis.Redis.from_url(
                client_url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        except (ValueError, redis.RedisError) as exc:
            raise StoreError(f"bad Redis URL {self._where}: {redact_text(str(exc), self.url)}") from exc
        version = self._run(lambda r: str(r.info("server")["redis_version"]), "open")
        sources = {
            "append": APPEND,
            "read": READ,
            "history": HISTORY,
            "delete_user": DELETE_USER,
            "upsert_items": UPSERT_ITEMS,
        }
        if int(version.split(".")[0]) < 7:  # script flags (the #!lua line) arrived in Redis 7
            sources = {k: v.split("\n", 1)[1] for k, v in sources.items()}
        self._scripts = {k: self._r.register_script(v) for k, v in sources.items()}
        self.durability_warning = self._check_durability()
        if self.durability_warning:
            log.warning("%s (store %s)", self.durability_warning, self._where)

    def _run(self, work: Callable[[redis.Redis], T], action: str, retry: bool = False) -> T:
        """``work`` with every client error turned into a StoreError; reads retry once."""
        for attempt in range(2 if retry else 1):
            try:
                return work(self._r)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if attempt == 0 and retry:
                    continue
                raise StoreError(
                    f"Redis {action} failed at {self._where}: {redact_text(str(exc), self.url)}"
                ) from exc
            except redis.RedisError as exc:
                raise StoreError(
                    f"Redis {action} failed at {self._where}: {redact_text(str(exc), self.url)}"
                ) from exc
        raise AssertionError("unreachable")

    def _check_durability(self) -> str | None:
        try:
            appendonly = self._r.config_get("appendonly").get("appendonly", "")
            appendfsync = self._r.config_get("appendfsync").get("appendfsync", "")
        except redis.RedisError as exc:  # managed services often disable CONFIG
            return f"cannot read the Redis durability settings ({exc}); acknowledged writes may be lost"
        return durability_problem(str(appendonly), str(appendfsync))

    def _user_key(self, user_id: str) -> str:
        return self._user_prefix + user_id

    # -- events -------------------------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> AppendResult:
        fresh, duplicates = dedupe_batch(events, set())
        if not fresh:
            return AppendResult([], duplicates)
        users: dict[str, int] = {}  # user id -> its number, 1-based, in the order first seen
        batch = []
        for ev in fresh:
            number = users.setdefault(ev.user_id, len(users) + 1)
            batch.append((ev.event_id, ev.item_id, repr(ev.timestamp), _dumps(event_row(ev)), number))
        keys = [self._seq, self._log, self._ids, self._items, self._order, self._item_seq, self._users]
        keys += [self._user_key(u) for u in users]
        args = [orjson.dumps(batch), orjson.dumps(list(users))]
        offsets = self._run(lambda r: self._scripts["append"](keys=keys, args=args, client=r), "append")
        accepted = [StoredEvent(off, ev) for off, ev in zip(offsets, fresh, strict=True) if off]
        return AppendResult(accepted, duplicates + len(fresh) - len(accepted))

    def read(self, after: int = 0, limit: int = 10_000) -> list[StoredEvent]:
        if limit <= 0:
            return []
        script = self._scripts["read"]
        packed = self._run(lambda r: script(keys=[self._log], args=[after, limit], client=r), "read", True)
        return [stored_event(off, row) for off, row in orjson.loads(packed)]

    def last_offset(self) -> int:
        return int(self._run(lambda r: r.get(self._seq), "last_offset", retry=True) or 0)

    def wait_for_events(self, after: int, timeout_s: float) -> bool:
        """XREAD BLOCK on the log stream from entry ``0-<after>``: wakes on the first entry past it.
        Blocks at most the socket timeout at a time (longer would read as a dead connection)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            block_ms = int(min(left, SOCKET_TIMEOUT_S / 2) * 1000)
            if block_ms < 1:
                return self.last_offset() > after
            streams: dict[Any, Any] = {self._log: f"0-{after}"}

            def read(r: redis.Redis, streams: dict[Any, Any] = streams, ms: int = block_ms) -> Any:
                return r.xread(streams, count=1, block=ms)

            got = self._run(read, "wait", retry=True)
            if got:
                return True

    def count_events(self) -> int:
        return int(self._run(lambda r: r.xlen(self._log), "count", retry=True))

    def user_history(self, user_id: str, limit: int | None = None) -> list[StoredEvent]:
        if limit is not None and limit <= 0:
            return []
        keys = [self._log, self._user_key(user_id)]
        args = [0 if limit is None else -limit]
        script = self._scripts["history"]
        packed = self._run(lambda r: script(keys=keys, args=args, client=r), "user_history", retry=True)
        return [stored_event(off, row) for off, row in orjson.loads(packed)]

    def delete_user(self, user_id: str) -> int:
        keys = [self._log, self._ids, self._users, self._user_key(user_id)]
        keys += [self._deletions, self._deletion_seq]
        args = [user_id, user_hash(user_id), repr(time.time())]
        return int(
            self._run(lambda r: self._scripts["delete_user"](keys=keys, args=args, client=r), "delete")
        )

    def deletions(self, after: int = 0) -> list[Deletion]:
        rows = self._run(lambda r: r.hgetall(self._deletions), "deletions", retry=True)
        out = [_deletion(int(seq), blob) for seq, blob in rows.items() if int(seq) > after]
        return sorted(out, key=lambda d: d.seq)

    def honour_deletions(self, through: int, at: float | None = None) -> int:
        now = time.time() if at is None else at
        marked = {
            str(d.seq): orjson.dumps([d.user_hash, d.deleted_at, d.events, d.max_offset, now])
            for d in self.deletions()
            if d.pending and d.seq <= through
        }
        if marked:  # only the learner honours, and new records take new fields: no lost update
            self._run(lambda r: r.hset(self._deletions, mapping=marked), "honour_deletions")  # type: ignore[arg-type]
        return len(marked)

    # -- catalog ------------------------------------------------------------------------------
    def upsert_items(self, items: Sequence[Item]) -> int:
        if not items:
            return 0
        args: list[Any] = []
        for item in items:
            args += (item.item_id, _packed_item(item))
        keys = [self._items, self._order, self._item_seq]
        script = self._scripts["upsert_items"]
        return int(self._run(lambda r: script(keys=keys, args=args, client=r), "upsert_items"))

    def get_item(self, item_id: str) -> Item | None:
        blob = self._run(lambda r: r.hget(self._items, item_id), "get_item", retry=True)
        return _item_from(item_id, blob) if blob is not None else None

    def list_items(self) -> list[Item]:
        def work(r: redis.Redis) -> list[Item]:
            ids = [cast(bytes, i).decode() for i in r.zrange(self._order, 0, -1)]
            out = []
            for at in range(0, len(ids), CHUNK):
                chunk = ids[at : at + CHUNK]
                blobs = r.hmget(self._items, chunk)
                out += [_item_from(i, b) for i, b in zip(chunk, blobs, strict=True) if b is not None]
            return out

        return self._run(work, "list_items", retry=True)

    # -- embeddings ---------------------------------------------------------------------------
    def get_embeddings(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        keys = list(keys)
        if not keys:
            return {}

        def work(r: redis.Redis) -> dict[str, np.ndarray]:
            out = {}
            for at in range(0, len(keys), CHUNK):
                chunk = keys[at : at + CHUNK]
                for key, blob in zip(chunk, r.hmget(self._emb, chunk), strict=True):
                    if blob is not None:
                        out[key] = vector_from(cast(bytes, blob))
            return out

        return self._run(work, "get_embeddings", retry=True)

    def put_embeddings(self, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        mapping = {k: vector_bytes(v) for k, v in vectors.items()}
        self._run(lambda r: r.hset(self._emb, mapping=mapping), "put_embeddings")  # type: ignore[arg-type]

    # -- housekeeping -------------------------------------------------------------------------
    def stats(self) -> StoreStats:
        def work(r: redis.Redis) -> list[Any]:
            pipe = r.pipeline(transaction=False)
            pipe.xlen(self._log)
            pipe.hlen(self._items)
            pipe.scard(self._users)
            return pipe.execute()

        events, items, users = self._run(work, "stats", retry=True)
        return StoreStats(events=int(events), items=int(items), users=int(users), size_bytes=0)

    def close(self) -> None:
        self._r.close()
