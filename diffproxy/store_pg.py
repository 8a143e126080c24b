"""Results in a PostgreSQL shared by several diff proxy replicas (`-store.url`).

The same results and API as the SQLite store (`store.py`): exact counts per endpoint and
field, the first `samples_first` and latest `samples_latest` examples per (endpoint,
field), each example one whole result stored once. What changes is that many processes
write at once:

- Counts are increments (`INSERT ... ON CONFLICT DO UPDATE SET n = n + excluded.n`),
  never read-modify-write, so concurrent replicas add up exactly. Each replica flushes its
  increments every `flush_interval` in one transaction; a `kill -9` loses at most that
  replica's unwritten window (`flush_interval`, default 200 ms, and at most one batch).
- The API reads counts from memory: the database's totals as of this replica's last
  refresh (every `REFRESH_INTERVAL`, 1 s: it reads every count row, so not at every
  flush) plus what this replica wrote or counted since. Another replica's comparisons show
  up within its flush interval plus a refresh interval; after traffic stops every replica
  reports the same totals.
- One sampling policy for the cluster (`sampling.py`): the first N examples of a field are
  the first N written by any replica (the field's row lock, taken by the count increment,
  serialises writers of one field); the latest N are the N newest by a database sequence.
- `-max.endpoints` and `-max.fields` hold for the whole cluster: names not yet in the
  database are admitted under a transaction-scoped advisory lock, and those past the cap
  are counted under `__overflow__` / `__overflow_fields__`, as in one process.
- `POST /api/1/clear` on any replica clears for all: it bumps a generation number; a
  batch counted before a replica saw the new generation is discarded, so are the requests it
  took in before then (`epoch`) and its latency sketches, and the replica resets its
  endpoint names and first examples (`on_cleared`).
- The schema is created, or migrated, under an advisory lock, so replicas starting
  together do it once. A database whose diffproxy tables carry a newer schema version, or
  tables of that name that are not ours, is refused before anything is written.
- Start: the database must answer within `connect_timeout` (default 30 s; the Kubernetes
  StatefulSet may start after the replicas), else `StoreError` and exit 2.
- Database lost while running: the batch that failed is dropped and counted (`on_drop`),
  `problem()` (so `/readyz`) reports it, comparisons made while it is down are dropped and
  counted too, the proxy keeps answering callers, and writing resumes when it is back. A
  connection lost during COMMIT may have stored the batch it counted as dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from .endpoints import OVERFLOW_ENDPOINT
from .latency import LatencyBook
from .model import Record
from .sampling import newest
from .settings import mask_url
from .store import (
    FLUSH_ITEMS,
    OVERFLOW_FIELD,
    EndpointCounts,
    FieldCounts,
    StoreError,
    _storable,
    stop_flusher,
    touched_fields,
    with_endpoint,
)

SCHEMA_VERSION = 1
REFRESH_INTERVAL = 1.0  # seconds between reads of the cluster's totals while idle
RETRY_INTERVAL = 1.0  # seconds between connection attempts while the database is away
# Arbitrary, fixed advisory lock keys: schema set-up, admission of new names.
SCHEMA_LOCK = 0x64696666_0001
NAMES_LOCK = 0x64696666_0002
TABLES = ("diffproxy_meta", "diffproxy_endpoints", "diffproxy_fields", "diffproxy_results",
          "diffproxy_samples")

log = logging.getLogger("diffproxy.store")

# The counters of `store.EndpointCounts` and `store.FieldCounts`, in their order.
EP_COLUMNS = tuple(f.name for f in dataclasses.fields(EndpointCounts))
FIELD_COLUMNS = tuple(f.name for f in dataclasses.fields(FieldCounts))


def _counters(columns: tuple[str, ...]) -> str:
    return ", ".join(f"{c} bigint NOT NULL" for c in columns)


_SCHEMA = f"""
CREATE TABLE diffproxy_meta(key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE diffproxy_endpoints(name text PRIMARY KEY, {_counters(EP_COLUMNS)});
CREATE TABLE diffproxy_fields(endpoint text NOT NULL, path text NOT NULL,
                              {_counters(FIELD_COLUMNS)}, PRIMARY KEY(endpoint, path));
CREATE SEQUENCE diffproxy_result_seq;
CREATE TABLE diffproxy_results(id text PRIMARY KEY, seq bigint NOT NULL UNIQUE, doc text NOT NULL);
CREATE TABLE diffproxy_samples(endpoint text NOT NULL, path text NOT NULL, kind text NOT NULL,
                               seq bigint NOT NULL, result_id text NOT NULL,
                               PRIMARY KEY(endpoint, path, kind, seq));
CREATE INDEX diffproxy_samples_by_result ON diffproxy_samples(result_id);
INSERT INTO diffproxy_meta VALUES ('schema_version', '{SCHEMA_VERSION}'), ('generation', '0');
"""
# Steps from version N to N+1, run in order under SCHEMA_LOCK (none yet: 1 is the first).
_MIGRATIONS: dict[int, str] = {}


@dataclass
class _Batch:
    endpoints: dict[str, list[int]] = field(default_factory=dict)  # name -> EP_COLUMNS
    fields: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # -> FIELD_COLUMNS
    results: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (endpoint, doc)
    samples: list[tuple[str, str, str, str]] = field(default_factory=list)  # ep, path, kind, id
    comparisons: int = 0
    # Per comparison, for those naming an endpoint or field the database did not hold at the
    # last refresh: what `_fold` needs to re-count them exactly under the overflow names.
    touches: list[tuple[str, dict[str, list[bool]], int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.comparisons or self.fields)


def _postgres_error(exc: BaseException) -> bool:
    return isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError, OSError,
                            TimeoutError, ConnectionError))


class PostgresStore:
    """Open with `await PostgresStore.open(url, ...)`; then as `store.Store`."""

    def __init__(self, url: str, pool: asyncpg.Pool, *, samples_first: int, samples_latest: int,
                 max_fields: int, max_endpoints: int, flush_interval: float,
                 on_flush: Callable[[], None] | None, on_error: Callable[[], None] | None,
                 on_drop: Callable[[int], None] | None,
                 on_cleared: Callable[[], None] | None,
                 on_latency: Callable[[str, tuple], None] | None = None) -> None:
        self.url = url
        # Latency sketches are this replica's own, in memory: its API and /metrics show the
        # requests it compared (docs/latency.md, "Scaling out"); not shared through the database.
        self.latency = LatencyBook()
        self.epoch = 0  # bumped by `clear`; see `Record.epoch`
        self._on_latency = on_latency or (lambda _ep, _ms: None)
        self.samples_first = samples_first
        self.samples_latest = samples_latest
        self.max_fields = max_fields
        self.max_endpoints = max_endpoints
        self.flush_interval = flush_interval
        self._pool = pool
        self._on_flush = on_flush or (lambda: None)
        self._on_error = on_error or (lambda: None)
        self._on_drop = on_drop or (lambda n: None)
        self._on_cleared = on_cleared or (lambda: None)
        self.endpoints: dict[str, EndpointCounts] = {}
        self.fields: dict[str, dict[str, FieldCounts]] = {}
        self.last_reset: int | None = None
        self._generation = 0
        # What the database held at the last refresh: names in it need no admission.
        self._db_endpoints: dict[str, EndpointCounts] = {}
        self._db_fields: dict[str, dict[str, FieldCounts]] = {}
        self._pending = _Batch()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._closed = False
        self._down: str | None = None  # why the database is unusable, while it is
        self._last_refresh = 0.0

    # Opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(cls, url: str, *, samples_first: int = 5, samples_latest: int = 5,
                   max_fields: int = 200, max_endpoints: int = 1000, flush_interval: float = 0.2,
                   connect_timeout: float = 30.0, on_flush=None, on_error=None, on_drop=None,
                   on_cleared=None, on_latency=None) -> PostgresStore:
        pool = await _connect(url, connect_timeout)
        try:
            async with pool.acquire() as conn:
                await _prepare_schema(conn)
            store = cls(url, pool, samples_first=samples_first, samples_latest=samples_latest,
                        max_fields=max_fields, max_endpoints=max_endpoints,
                        flush_interval=flush_interval, on_flush=on_flush, on_error=on_error,
                        on_drop=on_drop, on_cleared=on_cleared, on_latency=on_latency)
            await store._refresh(notify=False)
        except BaseException:
            pool.terminate()
            raise
        store._flusher = asyncio.create_task(store._flush_loop(), name="diffproxy-store-flush")
        return store

    async def close(self) -> None:
        """Write everything still pending (if the database answers), then disconnect."""
        if self._closed:
            return
        self._closed = True
        await stop_flusher(self._flusher)
        try:
            await self.flush()
        except StoreError as exc:  # dropped and counted already; the stop goes on
            log.error("results not written at stop: %s", exc)
        finally:
            try:
                await asyncio.wait_for(self._pool.close(), 10.0)
            except (TimeoutError, *_PG_ERRORS):
                self._pool.terminate()

    @property
    def is_open(self) -> bool:
        return not self._closed

    def problem(self) -> str | None:
        if self._closed:
            return "results store closed"
        return f"results database unavailable: {self._down}" if self._down else None

    # Recording -------------------------------------------------------------------------------

    def known_endpoints(self) -> list[str]:
        return list(self.endpoints)

    def add(self, record: Record) -> bool:
        """Count one comparison in memory; the next flush writes it. While the database is
        away it is dropped and counted instead (the API would show counts never stored).
        False (nothing counted) when the record's request arrived before this replica's
        last clear, as `Store.add`."""
        if record.epoch != self.epoch:
            return False
        self._count(record)
        return True

    def _count(self, record: Record) -> None:
        if self._closed:
            raise StoreError("store is closed")
        if self._down:
            self._on_drop(1)
            return
        ep = _storable(record.endpoint)
        self.latency.add(ep, record.latency_ms)
        self._on_latency(ep, record.latency_ms)
        b = self._pending
        b.comparisons += 1
        one = {"total": 1, "differences": int(bool(record.raw)),
               "baseline_failures": int(record.baseline_failed),
               **{f"failed_{name}": 1 for name in record.failed}}
        step = [one.get(c, 0) for c in EP_COLUMNS]
        _add(self.endpoints.setdefault(ep, EndpointCounts()), EP_COLUMNS, step)
        delta = b.endpoints.setdefault(ep, [0] * len(EP_COLUMNS))
        for i, n in enumerate(step):
            delta[i] += n
        fields = self.fields.setdefault(ep, {})
        touched = touched_fields(fields, record, self.max_fields)
        db_fields = self._db_fields.get(ep)
        siblings = len(record.raw)  # Diffy's weight: fields differing alongside
        if db_fields is None or any(path not in db_fields for path in touched):
            b.touches.append((ep, touched, siblings))
        for path, (raw, noise) in touched.items():
            step = [int(raw), int(noise), siblings if raw else 0]  # FIELD_COLUMNS
            _add(fields[path], FIELD_COLUMNS, step)
            d = b.fields.setdefault((ep, path), [0] * len(FIELD_COLUMNS))
            for i, n in enumerate(step):
                d[i] += n
            if record.document is not None:
                if self.samples_first > 0:
                    b.samples.append((ep, path, "first", record.id))
                if self.samples_latest > 0:
                    b.samples.append((ep, path, "latest", record.id))
        if record.document is not None and touched and (self.samples_first or self.samples_latest):
            b.results[record.id] = (ep, record.document)
        if len(b.results) + len(b.endpoints) >= FLUSH_ITEMS:
            self._wake.set()

    # Writing ----------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            interval = RETRY_INTERVAL if self._down else self.flush_interval
            try:
                await asyncio.wait_for(self._wake.wait(), interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
                if self._down or loop.time() - self._last_refresh >= REFRESH_INTERVAL:
                    async with self._lock:
                        await self._refresh()
            except Exception as exc:  # noqa: BLE001 - keep going; logged once per outage
                self._lost(exc)

    def _lost(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        if self._down is None:
            log.error("results database lost (%s); comparisons are dropped and counted "
                      "until it answers again", reason)
        self._down = reason

    async def flush(self) -> None:
        """Write the pending batch in one transaction, then re-read the cluster's totals."""
        async with self._lock:
            batch = self._pending
            if not batch:
                return
            self._pending = _Batch()
            try:
                written = await self._transact(self._write, batch)
            except Exception as exc:  # noqa: BLE001 - any failure drops the batch, counted
                self._on_error()
                self._on_drop(batch.comparisons)
                if _postgres_error(exc):
                    self._lost(exc)
                self._rebuild_view()  # the dropped counts leave the API too
                raise StoreError(f"writing results failed: {exc}") from None
            if not written:  # counted before a clear elsewhere: discarded, as a clear says
                await self._refresh()
                return
            self._on_flush()
            # What this replica wrote is in the database now; the others' writes arrive
            # with the next refresh (every REFRESH_INTERVAL), which reads every row.
            for ep, step in batch.endpoints.items():
                _add(self._db_endpoints.setdefault(ep, EndpointCounts()), EP_COLUMNS, step)
                self._db_fields.setdefault(ep, {})
            for (ep, path), step in batch.fields.items():
                _add(self._db_fields.setdefault(ep, {}).setdefault(path, FieldCounts()),
                     FIELD_COLUMNS, step)
            self._rebuild_view()

    async def _transact(self, fn, *args):
        """`fn(conn, *args)` in one transaction; a deadlock between replicas is retried."""
        for attempt in range(3):
            try:
                async with self._pool.acquire() as conn, conn.transaction():
                    return await fn(conn, *args)
            except asyncpg.DeadlockDetectedError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _write(self, conn: asyncpg.Connection, b: _Batch) -> bool:
        generation = int(await conn.fetchval(
            "SELECT value FROM diffproxy_meta WHERE key='generation' FOR SHARE"))
        if generation != self._generation:
            return False
        await self._admit(conn, b)
        # Sorted: replicas lock rows in one order, so they queue rather than deadlock.
        eps = sorted(b.endpoints.items())
        await conn.execute(_UPSERT_ENDPOINTS, [k for k, _ in eps],
                           *([v[i] for _, v in eps] for i in range(len(EP_COLUMNS))))
        rows = sorted(b.fields.items())
        if rows:
            await conn.execute(_UPSERT_FIELDS, [k[0] for k, _ in rows], [k[1] for k, _ in rows],
                               *([v[i] for _, v in rows] for i in range(len(FIELD_COLUMNS))))
        if b.samples:
            await self._write_samples(conn, b)
        return True

    async def _admit(self, conn: asyncpg.Connection, b: _Batch) -> None:
        """Fold names past the cluster-wide caps into the overflow names, as one process
        would. Only names the database did not hold at the last refresh need the lock."""
        new_eps = [ep for ep in b.endpoints if ep not in self._db_endpoints]
        new_fields = [k for k in b.fields if k[1] not in self._db_fields.get(k[0], {})]
        if not new_eps and not new_fields:
            return
        await conn.execute("SELECT pg_advisory_xact_lock($1)", NAMES_LOCK)
        have = {r[0] for r in await conn.fetch("SELECT name FROM diffproxy_endpoints")}
        rename: dict[str, str] = {}
        count = len(have - {OVERFLOW_ENDPOINT})
        for ep in sorted(new_eps):
            if ep in have or ep == OVERFLOW_ENDPOINT:
                continue
            if count >= self.max_endpoints:
                rename[ep] = OVERFLOW_ENDPOINT
            else:
                count += 1
        eps = {rename.get(ep, ep) for ep, _ in new_fields}
        rows = await conn.fetch("SELECT endpoint, path FROM diffproxy_fields "
                                "WHERE endpoint = ANY($1::text[])", list(eps))
        paths: dict[str, set[str]] = {}
        for r in rows:
            paths.setdefault(r[0], set()).add(r[1])
        field_rename: dict[tuple[str, str], str] = {}
        for ep, path in sorted(new_fields):
            target_ep = rename.get(ep, ep)
            known = paths.setdefault(target_ep, set())
            if path in known or path == OVERFLOW_FIELD:
                continue
            if len(known - {OVERFLOW_FIELD}) >= self.max_fields:
                field_rename[(ep, path)] = OVERFLOW_FIELD
            else:
                known.add(path)
        if rename or field_rename:
            _fold(b, rename, field_rename)

    async def _write_samples(self, conn: asyncpg.Connection, b: _Batch) -> None:
        keys = sorted({(ep, path) for ep, path, _, _ in b.samples})
        # The field rows are locked by this transaction's increments: no other replica
        # writes examples of these fields until it commits, so these counts stay true.
        firsts = {(r[0], r[1]): r[2] for r in await conn.fetch(
            "SELECT endpoint, path, count(*) FROM diffproxy_samples WHERE kind='first' "
            "AND (endpoint, path) IN (SELECT * FROM unnest($1::text[], $2::text[])) "
            "GROUP BY endpoint, path", [k[0] for k in keys], [k[1] for k in keys])}
        chosen: list[tuple[str, str, str, str]] = []
        latest = [s for s in b.samples if s[2] == "latest"]
        for s, keep in zip(latest, newest([((s[0], s[1]),) for s in latest],
                                          self.samples_latest)):
            if keep:
                chosen.append(s)
        for s in b.samples:
            if s[2] == "first":
                n = firsts.get((s[0], s[1]), 0)
                if n < self.samples_first:
                    firsts[(s[0], s[1])] = n + 1
                    chosen.append(s)
        order = {rid: i for i, rid in enumerate(b.results)}  # the order they were counted in
        ids = sorted({s[3] for s in chosen}, key=order.__getitem__)
        if not ids:
            return
        seqs = await conn.fetch("SELECT nextval('diffproxy_result_seq') "
                                "FROM generate_series(1, $1)", len(ids))
        seq_of = {rid: r[0] for rid, r in zip(ids, seqs)}
        await conn.executemany(
            "INSERT INTO diffproxy_results(id, seq, doc) VALUES($1, $2, $3) "
            "ON CONFLICT(id) DO NOTHING",
            [(rid, seq_of[rid], with_endpoint(b.results[rid][1], b.results[rid][0]))
             for rid in ids])
        await conn.execute(
            "INSERT INTO diffproxy_samples(endpoint, path, kind, seq, result_id) "
            "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) "
            "ON CONFLICT DO NOTHING",
            [s[0] for s in chosen], [s[1] for s in chosen], [s[2] for s in chosen],
            [seq_of[s[3]] for s in chosen], [s[3] for s in chosen])
        touched = sorted({(s[0], s[1]) for s in chosen if s[2] == "latest"})
        if touched:
            stale = await conn.fetch(
                "DELETE FROM diffproxy_samples s USING ("
                " SELECT endpoint, path, seq, row_number() OVER "
                "  (PARTITION BY endpoint, path ORDER BY seq DESC) AS n"
                " FROM diffproxy_samples WHERE kind='latest' AND (endpoint, path) IN "
                "  (SELECT * FROM unnest($1::text[], $2::text[]))) old "
                "WHERE s.kind='latest' AND s.endpoint=old.endpoint AND s.path=old.path "
                "AND s.seq=old.seq AND old.n > $3 RETURNING s.result_id",
                [k[0] for k in touched], [k[1] for k in touched], self.samples_latest)
            if stale:
                await conn.execute(
                    "DELETE FROM diffproxy_results r WHERE r.id = ANY($1::text[]) AND NOT EXISTS "
                    "(SELECT 1 FROM diffproxy_samples s WHERE s.result_id = r.id)",
                    list({r[0] for r in stale}))

    # The cluster's totals ----------------------------------------------------------------------

    async def _refresh(self, notify: bool = True) -> None:
        """Re-read the database's totals (under the lock, or before the store is shared)."""
        async with self._pool.acquire() as conn, conn.transaction(isolation="repeatable_read",
                                                                  readonly=True):
            meta = dict(await conn.fetch("SELECT key, value FROM diffproxy_meta"))
            endpoints = await conn.fetch(
                f"SELECT name, {', '.join(EP_COLUMNS)} FROM diffproxy_endpoints")
            rows = await conn.fetch(
                f"SELECT endpoint, path, {', '.join(FIELD_COLUMNS)} FROM diffproxy_fields")
        was_down, self._down = self._down, None
        if was_down:
            log.info("results database back; recording again")
        self._last_refresh = asyncio.get_running_loop().time()
        generation = int(meta.get("generation", 0))
        self.last_reset = int(meta["last_reset"]) if "last_reset" in meta else None
        if generation != self._generation:
            self._generation = generation
            self._pending = _Batch()  # counted before the clear: the clear wins
            # As a clear here does: requests taken in before it, still queued, and their
            # latencies are from before it too.
            self.epoch += 1
            self.latency.clear()
            if notify:
                self._on_cleared()
        self._db_endpoints = {r[0]: EndpointCounts(*r[1:]) for r in endpoints}
        self._db_fields = {name: {} for name in self._db_endpoints}
        for r in rows:
            self._db_fields.setdefault(r[0], {})[r[1]] = FieldCounts(*r[2:])
        self._rebuild_view()

    def _rebuild_view(self) -> None:
        """Database totals plus what this replica counted and has not written yet."""
        endpoints = {k: dataclasses.replace(v) for k, v in self._db_endpoints.items()}
        by_ep = {ep: {p: dataclasses.replace(f) for p, f in paths.items()}
                 for ep, paths in self._db_fields.items()}
        for ep, step in self._pending.endpoints.items():
            _add(endpoints.setdefault(ep, EndpointCounts()), EP_COLUMNS, step)
            by_ep.setdefault(ep, {})
        for (ep, path), step in self._pending.fields.items():
            _add(by_ep.setdefault(ep, {}).setdefault(path, FieldCounts()), FIELD_COLUMNS, step)
        self.endpoints, self.fields = endpoints, by_ep

    # Reading ----------------------------------------------------------------------------------

    async def _fetch(self, query: str, *args) -> list:
        if self._closed:
            raise StoreError("store is closed")
        try:
            await self.flush()
        except StoreError:
            pass  # counted; the examples already stored can still be read
        try:
            async with self._pool.acquire() as conn:
                return await conn.fetch(query, *args)
        except Exception as exc:
            if not _postgres_error(exc):
                raise
            self._lost(exc)
            raise StoreError(f"results database unavailable: {self._down}") from None

    async def results(self, endpoint: str, path: str, shape=None) -> list[dict[str, Any]]:
        """As `Store.results`; `shape(doc)` runs in a thread, one document at a time."""
        rows = await self._fetch(
            "SELECT doc FROM diffproxy_results WHERE id IN (SELECT result_id FROM "
            "diffproxy_samples WHERE endpoint=$1 AND path=$2) ORDER BY seq", endpoint, path)

        def parse() -> list[dict[str, Any]]:
            docs = (json.loads(r[0]) for r in rows)
            return [shape(d) for d in docs] if shape else list(docs)

        return await asyncio.to_thread(parse)

    async def result(self, result_id: str) -> dict[str, Any] | None:
        rows = await self._fetch("SELECT doc FROM diffproxy_results WHERE id=$1", result_id)
        return json.loads(rows[0][0]) if rows else None

    async def clear(self) -> int:
        """Forget every count and example, for every replica; returns the reset time (msec)."""
        now = int(time.time() * 1000)

        async def wipe(conn: asyncpg.Connection) -> int:
            # FOR UPDATE waits for batches being written (they hold the row FOR SHARE).
            generation = int(await conn.fetchval(
                "SELECT value FROM diffproxy_meta WHERE key='generation' FOR UPDATE")) + 1
            await conn.execute("TRUNCATE diffproxy_endpoints, diffproxy_fields, "
                               "diffproxy_results, diffproxy_samples")
            await conn.execute(
                "INSERT INTO diffproxy_meta VALUES ('generation', $1), ('last_reset', $2) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value", str(generation), str(now))
            return generation

        self.epoch += 1
        self.latency.clear()
        async with self._lock:
            try:
                self._generation = await self._transact(wipe)
            except Exception as exc:
                if not _postgres_error(exc):
                    raise
                self._lost(exc)
                raise StoreError(f"results database unavailable: {self._down}") from None
            self._pending = _Batch()
            self._db_endpoints, self._db_fields = {}, {}
            self.last_reset = now
            self._rebuild_view()
            return now


_PG_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _add(counts, columns: tuple[str, ...], step) -> None:
    for name, n in zip(columns, step):
        setattr(counts, name, getattr(counts, name) + n)


def _upsert(table: str, keys: tuple[str, ...], columns: tuple[str, ...]) -> str:
    """Increments from parallel arrays: `n = n + excluded.n`, never read-modify-write."""
    names = (*keys, *columns)
    types = ["text"] * len(keys) + ["bigint"] * len(columns)
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, start=1))
    updates = ", ".join(f"{c} = t.{c} + excluded.{c}" for c in columns)
    return (f"INSERT INTO {table} AS t({', '.join(names)}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT({', '.join(keys)}) DO UPDATE SET {updates}")


_UPSERT_ENDPOINTS = _upsert("diffproxy_endpoints", ("name",), EP_COLUMNS)
_UPSERT_FIELDS = _upsert("diffproxy_fields", ("endpoint", "path"), FIELD_COLUMNS)


def _fold(b: _Batch, rename: dict[str, str], field_rename: dict[tuple[str, str], str]) -> None:
    """Move a batch's counts and examples from names past a cap onto the overflow names.
    A comparison counts once per field however many of its paths fold into that field, so
    the comparisons that named new fields are re-counted one by one (`b.touches`)."""
    def key_of(ep: str, path: str) -> tuple[str, str]:
        return rename.get(ep, ep), field_rename.get((ep, path), path)

    endpoints: dict[str, list[int]] = {}
    for ep, step in b.endpoints.items():
        d = endpoints.setdefault(rename.get(ep, ep), [0] * len(EP_COLUMNS))
        for i, n in enumerate(step):
            d[i] += n
    rows = {k: list(v) for k, v in b.fields.items()}
    for ep, touched, siblings in b.touches:
        merged: dict[tuple[str, str], list[bool]] = {}
        for path, (raw, noise) in touched.items():
            d = rows[(ep, path)]
            d[0] -= raw
            d[1] -= noise
            d[2] -= siblings if raw else 0
            m = merged.setdefault(key_of(ep, path), [False, False])
            m[0] |= raw
            m[1] |= noise
        for key, (raw, noise) in merged.items():
            d = rows.setdefault(key, [0] * len(FIELD_COLUMNS))
            d[0] += raw
            d[1] += noise
            d[2] += siblings if raw else 0
    b.fields = {k: v for k, v in rows.items() if any(v)}  # the names folded away are empty
    b.endpoints = endpoints
    b.samples = list(dict.fromkeys((*key_of(ep, path), kind, rid)
                                   for ep, path, kind, rid in b.samples))
    b.results = {rid: (rename.get(ep, ep), doc) for rid, (ep, doc) in b.results.items()}


async def _connect(url: str, timeout: float) -> asyncpg.Pool:
    """A small pool, retried until `timeout`: writes are one transaction at a time, reads of
    examples (the console) may run beside them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            return await asyncpg.create_pool(url, min_size=1, max_size=3, command_timeout=30,
                                             timeout=min(10.0, max(1.0, timeout)))
        except (asyncpg.InvalidAuthorizationSpecificationError,
                asyncpg.InvalidPasswordError, asyncpg.InvalidCatalogNameError) as exc:
            raise StoreError(f"results database {mask_url(url)} refused us: {exc}") from None
        except (*_PG_ERRORS, TimeoutError, ValueError) as exc:
            if isinstance(exc, ValueError) or loop.time() >= deadline:
                raise StoreError(f"results database {mask_url(url)} not reachable within "
                                 f"{timeout:g}s ({attempt} attempts): "
                                 f"{type(exc).__name__}: {exc}") from None
            if attempt == 1:
                log.warning("results database %s not reachable yet (%s); retrying for %gs",
                            mask_url(url), exc, timeout)
            await asyncio.sleep(min(RETRY_INTERVAL, max(0.0, deadline - loop.time())))


async def _prepare_schema(conn: asyncpg.Connection) -> None:
    """Create or migrate the tables once, whichever replica comes first; refuse, without
    writing anything, tables that are not ours or come from a newer diffproxy."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        present = {r[0] for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = ANY($1::text[])", list(TABLES))}
        if not present:
            await conn.execute(_SCHEMA)
            log.info("results database: created schema version %d", SCHEMA_VERSION)
            return
        if "diffproxy_meta" not in present:
            raise StoreError(f"results database has tables {', '.join(sorted(present))} but no "
                             "diffproxy_meta: not a diffproxy store; refusing to touch it")
        try:
            value = await conn.fetchval(
                "SELECT value FROM diffproxy_meta WHERE key='schema_version'")
            version = int(value) if value is not None else -1
        except (asyncpg.PostgresError, ValueError):
            version = -1
        if version < 1:
            raise StoreError("results database: diffproxy_meta has no valid schema version; "
                             "refusing to touch it")
        if version > SCHEMA_VERSION:
            raise StoreError(f"results database has schema version {version}, newer than this "
                             f"diffproxy supports ({SCHEMA_VERSION}); upgrade diffproxy or use "
                             "another database")
        for step in range(version, SCHEMA_VERSION):
            await conn.execute(_MIGRATIONS[step])
            await conn.execute("UPDATE diffproxy_meta SET value=$1 WHERE key='schema_version'",
                               str(step + 1))
        missing = set(TABLES) - present
        if missing:
            raise StoreError(f"results database is damaged: tables {', '.join(sorted(missing))} "
                             "are missing")
