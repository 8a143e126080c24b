"""Results on disk: exact counts per endpoint and field, and example requests, in SQLite.

Counts live in memory (exact, read by the API without touching the disk) and are written
with the example records in batches: one transaction every `flush_interval` (default
200 ms) or every `FLUSH_ITEMS` records, whichever comes first. SQLite runs in WAL mode with
synchronous=NORMAL in one dedicated thread, so a kill -9 loses at most the last unwritten
batch (well under a second); a clean stop writes everything.

Examples per (endpoint, field): the first `samples_first` ever seen, kept until cleared,
and a ring of the latest `samples_latest`. Each example is one whole result (request and
the three lifted responses, already redacted by the caller), stored once however many
fields point at it and deleted when none does.

A file that is not a diffproxy store, or one written by a newer version, is refused with
a `StoreError` and never modified.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .model import Record
from .sampling import ExampleSampler, newest

SCHEMA_VERSION = 1
OVERFLOW_FIELD = "__overflow_fields__"
FLUSH_ITEMS = 200
SQLITE_MAGIC = b"SQLite format 3\x00"

log = logging.getLogger("diffproxy.store")

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE endpoints(name TEXT PRIMARY KEY, total INTEGER NOT NULL,
                       differences INTEGER NOT NULL);
CREATE TABLE fields(endpoint TEXT NOT NULL, path TEXT NOT NULL,
                    differences INTEGER NOT NULL, noise INTEGER NOT NULL,
                    PRIMARY KEY(endpoint, path));
CREATE TABLE results(id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE samples(endpoint TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,
                     seq INTEGER NOT NULL, result_id TEXT NOT NULL,
                     PRIMARY KEY(endpoint, path, kind, seq));
CREATE INDEX samples_by_result ON samples(result_id);
"""
# Columns added after schema version 1 shipped (issue 12): added in place when missing, so
# a version-1 file keeps working both ways (older diffproxy ignores them).
_ADDED_COLUMNS = (
    ("endpoints", "baseline_failures"), ("endpoints", "failed_primary"),
    ("endpoints", "failed_secondary"), ("endpoints", "failed_candidate"), ("fields", "weight"),
)


def _add_columns(conn: sqlite3.Connection) -> None:
    for table, column in _ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}  # fixed names
        if column not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line."""


@dataclass
class EndpointCounts:
    total: int = 0
    differences: int = 0
    # issue 12: requests on which primary or secondary failed and the candidate did not,
    # and each target's own failures (see compare.failed)
    baseline_failures: int = 0
    failed_primary: int = 0
    failed_secondary: int = 0
    failed_candidate: int = 0

    def copy(self) -> EndpointCounts:
        return EndpointCounts(self.total, self.differences, self.baseline_failures,
                              self.failed_primary, self.failed_secondary, self.failed_candidate)


@dataclass
class FieldCounts:
    differences: int = 0
    noise: int = 0
    # Diffy's weight: over the requests where this field differed (primary vs candidate),
    # the sum of how many fields differed in each
    weight: int = 0


@dataclass
class _Batch:
    endpoints: dict[str, EndpointCounts]
    fields: dict[tuple[str, str], FieldCounts]
    results: list[tuple[str, int, str, str]]  # id, seq, endpoint, document without endpoint
    samples: list[tuple[str, str, str, int, str]]       # endpoint, path, kind, seq, id
    latest_touched: set[tuple[str, str]]


def _check_file(path: str) -> None:
    file = Path(path)
    if file.exists():
        if not file.is_file():
            raise StoreError(f"store {path} is not a file")
        with file.open("rb") as fh:
            head = fh.read(len(SQLITE_MAGIC))
        if head and head != SQLITE_MAGIC:
            raise StoreError(f"store {path} is not an SQLite database; refusing to overwrite it")
    else:
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for store {path}: {exc.strerror}") from None


def _validate(conn: sqlite3.Connection, path: str) -> bool:
    """Read-only checks before anything is written. True when the schema is already there."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return False
    if "meta" not in tables:
        raise StoreError(f"store {path} is an SQLite file but not a diffproxy store; refusing to touch it")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    try:
        version = int(row[0]) if row else -1
    except ValueError:
        version = -1
    if version < 1:
        raise StoreError(f"store {path} has no valid schema version; refusing to touch it")
    if version > SCHEMA_VERSION:
        raise StoreError(f"store {path} has schema version {version}, newer than this "
                         f"diffproxy supports ({SCHEMA_VERSION}); upgrade diffproxy or use another -store.path")
    missing = {"endpoints", "fields", "results", "samples"} - tables
    if missing:
        raise StoreError(f"store {path} is damaged: tables {', '.join(sorted(missing))} are missing")
    return True


def _open_sync(path: str) -> sqlite3.Connection:
    _check_file(path)
    try:
        conn = sqlite3.connect(path, timeout=1.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"store {path} cannot be opened: {exc}") from None
    try:
        # Exclusive locking: a second proxy on the same file fails at start instead of
        # both writing interleaved counts.
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        has_schema = _validate(conn, path)
        if has_schema:
            # Before the first write: a damaged page found later would fail flushes or
            # reads at random, and writing first would change the file we refuse.
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise StoreError(f"store {path} is corrupt ({'; '.join(problems)[:200]}); "
                                 "refusing to touch it")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"store {path}: cannot switch to WAL mode (got {mode})")
        conn.execute("PRAGMA synchronous=NORMAL")
        if not has_schema:
            # One script, one transaction: a crash half-way leaves an empty file, never a
            # schema without its version.
            conn.executescript(f"BEGIN;{_SCHEMA}INSERT INTO meta VALUES('schema_version', "
                               f"'{SCHEMA_VERSION}');COMMIT;")
        _add_columns(conn)
        # A write takes the exclusive lock now, so a second proxy on this file fails here
        # rather than at its first flush.
        conn.execute("INSERT OR REPLACE INTO meta VALUES('opened_by', ?)",
                     (f"diffproxy pid {os.getpid()}",))
        return conn
    except StoreError:
        conn.close()
        raise
    except sqlite3.OperationalError as exc:
        conn.close()
        raise StoreError(f"store {path} cannot be opened: {exc} "
                         "(is another diffproxy using it?)") from None
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"store {path} is corrupt or not a database: {exc}") from None


def _storable(name: str) -> str:
    """A name SQLite can hold. Field paths come from target bodies, and JSON may spell a
    lone surrogate (`{"\\ud800": 1}`) that UTF-8 cannot encode: one such key would fail
    every later flush."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def with_endpoint(document: str, endpoint: str) -> str:
    """A record's document (a JSON object without its endpoint) with the endpoint added as
    its first key: a string splice, not a parse, as a worker's endpoint may be renamed by
    the owner's -max.endpoints cap after the document was built."""
    rest = document.strip()[1:].lstrip()
    head = '{"endpoint":' + json.dumps(endpoint)
    return head + "}" if rest.startswith("}") else head + "," + rest


class Store:
    """Open with `await Store.open(...)`; `add()` from the event loop; `close()` at the end."""

    def __init__(self, path: str, samples_first: int, samples_latest: int, max_fields: int,
                 flush_interval: float, conn: sqlite3.Connection, executor: ThreadPoolExecutor,
                 on_flush=None, on_error=None) -> None:
        self.path = path
        self.samples_first = samples_first
        self.samples_latest = samples_latest
        self.max_fields = max_fields
        self.flush_interval = flush_interval
        self._conn = conn
        self._executor = executor
        self._on_flush = on_flush or (lambda: None)
        self._on_error = on_error or (lambda: None)
        self.endpoints: dict[str, EndpointCounts] = {}
        self.fields: dict[str, dict[str, FieldCounts]] = {}
        self.last_reset: int | None = None
        self._sampler = ExampleSampler(samples_first, samples_latest, max_keys=None)
        self._seq = 0
        self._pending: _Batch = self._new_batch()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task | None = None
        self._closed = False

    # Opening and closing -------------------------------------------------------------------

    @classmethod
    async def open(cls, path: str, *, samples_first: int = 5, samples_latest: int = 5,
                   max_fields: int = 200, flush_interval: float = 0.2,
                   on_flush=None, on_error=None) -> Store:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffproxy-store")
        loop = asyncio.get_running_loop()

        try:
            conn = await loop.run_in_executor(executor, _open_sync, path)
            store = cls(path, samples_first, samples_latest, max_fields, flush_interval,
                        conn, executor, on_flush, on_error)
            await loop.run_in_executor(executor, store._load)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        store._flusher = asyncio.create_task(store._flush_loop(), name="diffproxy-store-flush")
        return store

    def _load(self) -> None:
        try:
            conn = self._conn
            for name, *counts in conn.execute(
                    "SELECT name, total, differences, baseline_failures, failed_primary, "
                    "failed_secondary, failed_candidate FROM endpoints"):
                self.endpoints[name] = EndpointCounts(*counts)
                self.fields.setdefault(name, {})
            for ep, path, diffs, noise, weight in conn.execute(
                    "SELECT endpoint, path, differences, noise, weight FROM fields"):
                self.fields.setdefault(ep, {})[path] = FieldCounts(diffs, noise, weight)
            for ep, path, n in conn.execute(
                    "SELECT endpoint, path, count(*) FROM samples WHERE kind='first' "
                    "GROUP BY endpoint, path"):
                self._sampler.first_counts[(ep, path)] = n
            self._seq = conn.execute("SELECT coalesce(max(seq), 0) FROM results").fetchone()[0]
            row = conn.execute("SELECT value FROM meta WHERE key='last_reset'").fetchone()
            self.last_reset = int(row[0]) if row else None
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise StoreError(f"store {self.path} is corrupt: {exc}") from None

    async def close(self) -> None:
        """Write everything still pending, then release the file."""
        if self._closed:
            return
        self._closed = True
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
        try:
            await self.flush()
        finally:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._executor.shutdown(wait=True)

    @property
    def is_open(self) -> bool:
        return not self._closed

    # Recording -------------------------------------------------------------------------------

    @staticmethod
    def _new_batch() -> _Batch:
        return _Batch({}, {}, [], [], set())

    def known_endpoints(self) -> list[str]:
        return list(self.endpoints)

    def _field(self, endpoint: str, path: str) -> str:
        """The field a path is counted under (registered on first sight), or the overflow
        field once the endpoint has max_fields of them."""
        known = self.fields.setdefault(endpoint, {})
        if path not in known:
            if len(known) - (OVERFLOW_FIELD in known) >= self.max_fields:
                path = OVERFLOW_FIELD
            known.setdefault(path, FieldCounts())
        return path

    def add(self, record: Record) -> None:
        """Count one comparison and keep it as an example where it is among the first or
        latest for a field. Cheap and synchronous: the disk write happens in the next flush."""
        if self._closed:
            raise StoreError("store is closed")
        ep = _storable(record.endpoint)
        counts = self.endpoints.setdefault(ep, EndpointCounts())
        counts.total += 1
        if record.raw:
            counts.differences += 1
        if record.baseline_failed:
            counts.baseline_failures += 1
        for name in record.failed:
            attr = f"failed_{name}"
            setattr(counts, attr, getattr(counts, attr) + 1)
        batch = self._pending
        batch.endpoints[ep] = counts

        # Per request and field: a field counts once per request however many overflowed
        # paths map onto it.
        fields = self.fields.setdefault(ep, {})
        touched: dict[str, list[bool]] = {}
        for path in record.raw:
            touched.setdefault(self._field(ep, _storable(path)), [False, False])[0] = True
        for path in record.noise:
            touched.setdefault(self._field(ep, _storable(path)), [False, False])[1] = True
        if not touched:
            self._maybe_wake()
            return
        siblings = len(record.raw)
        if record.document is None:
            for path, (raw, noise) in touched.items():
                fc = fields[path]
                fc.differences += raw
                fc.noise += noise
                if raw:
                    fc.weight += siblings
                batch.fields[(ep, path)] = fc
            self._maybe_wake()
            return
        self._seq += 1
        seq = self._seq
        keep = False
        for path, (raw, noise) in touched.items():
            fc = fields[path]
            fc.differences += raw
            fc.noise += noise
            if raw:
                fc.weight += siblings
            batch.fields[(ep, path)] = fc
            if self._sampler.take_first((ep, path)):
                batch.samples.append((ep, path, "first", seq, record.id))
                keep = True
            if self.samples_latest > 0:
                batch.samples.append((ep, path, "latest", seq, record.id))
                batch.latest_touched.add((ep, path))
                keep = True
        if keep:
            batch.results.append((record.id, seq, ep, record.document))
        self._maybe_wake()

    def _maybe_wake(self) -> None:
        if len(self._pending.results) + len(self._pending.endpoints) >= FLUSH_ITEMS:
            self._wake.set()

    # Writing ----------------------------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # keep flushing; the error is logged and counted
                log.exception("writing results failed")

    async def flush(self) -> None:
        """Write the pending batch in one transaction (no-op when nothing is pending)."""
        async with self._lock:
            batch = self._pending
            if not (batch.endpoints or batch.fields or batch.results):
                return
            self._pending = self._new_batch()
            # Snapshot the absolute counts now: later add() calls mutate the live objects.
            snap = _Batch(
                {k: v.copy() for k, v in batch.endpoints.items()},
                {k: FieldCounts(v.differences, v.noise, v.weight) for k, v in batch.fields.items()},
                batch.results, batch.samples, batch.latest_touched)
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._write, snap)
            except Exception:
                self._on_error()
                # The counts are absolute, so re-marking the keys dirty repairs them on the
                # next flush; the example records of this batch are lost.
                for k, v in batch.endpoints.items():
                    self._pending.endpoints.setdefault(k, v)
                for k, v in batch.fields.items():
                    self._pending.fields.setdefault(k, v)
                raise
            self._on_flush()

    def _thin(self, b: _Batch) -> None:
        """Drop the "latest" samples a newer one in the same batch pushes out of the ring,
        and the results no sample refers to any more. Runs in the store thread."""
        latest = [i for i, sample in enumerate(b.samples) if sample[2] == "latest"]
        keep = newest([((b.samples[i][0], b.samples[i][1]),) for i in latest], self.samples_latest)
        dropped = {i for i, kept in zip(latest, keep) if not kept}
        if dropped:
            b.samples = [sample for i, sample in enumerate(b.samples) if i not in dropped]
        needed = {sample[4] for sample in b.samples}
        b.results = [(rid, seq, ep, doc) for rid, seq, ep, doc in b.results if rid in needed]

    def _write(self, b: _Batch) -> None:
        self._thin(b)
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO endpoints(name, total, differences, baseline_failures, failed_primary, "
                "failed_secondary, failed_candidate) VALUES(?,?,?,?,?,?,?) "
                "ON CONFLICT(name) DO UPDATE SET total=excluded.total, differences=excluded.differences, "
                "baseline_failures=excluded.baseline_failures, failed_primary=excluded.failed_primary, "
                "failed_secondary=excluded.failed_secondary, failed_candidate=excluded.failed_candidate",
                [(k, v.total, v.differences, v.baseline_failures, v.failed_primary,
                  v.failed_secondary, v.failed_candidate) for k, v in b.endpoints.items()])
            conn.executemany(
                "INSERT INTO fields(endpoint, path, differences, noise, weight) VALUES(?,?,?,?,?) "
                "ON CONFLICT(endpoint, path) DO UPDATE SET differences=excluded.differences, "
                "noise=excluded.noise, weight=excluded.weight",
                [(ep, path, v.differences, v.noise, v.weight) for (ep, path), v in b.fields.items()])
            conn.executemany("INSERT OR REPLACE INTO results(id, seq, doc) VALUES(?,?,?)",
                             [(rid, seq, with_endpoint(doc, ep)) for rid, seq, ep, doc in b.results])
            conn.executemany("INSERT OR REPLACE INTO samples VALUES(?,?,?,?,?)", b.samples)
            orphans: set[str] = set()
            for ep, path in b.latest_touched:
                stale = conn.execute(
                    "SELECT seq, result_id FROM samples WHERE endpoint=? AND path=? AND kind='latest' "
                    "ORDER BY seq DESC LIMIT -1 OFFSET ?", (ep, path, self.samples_latest)).fetchall()
                if stale:
                    conn.executemany(
                        "DELETE FROM samples WHERE endpoint=? AND path=? AND kind='latest' AND seq=?",
                        [(ep, path, seq) for seq, _ in stale])
                    orphans.update(rid for _, rid in stale)
            if orphans:
                conn.executemany(
                    "DELETE FROM results WHERE id=? AND NOT EXISTS "
                    "(SELECT 1 FROM samples WHERE result_id=?)", [(r, r) for r in orphans])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # Reading (examples come from disk, after writing what is pending) ------------------------

    async def _read(self, fn, *args):
        if self._closed:
            raise StoreError("store is closed")
        await self.flush()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def results(self, endpoint: str, path: str) -> list[dict[str, Any]]:
        """The examples of one field, oldest first (first-N then latest-N, no duplicates)."""
        def query() -> list[dict[str, Any]]:
            rows = self._conn.execute(
                "SELECT r.doc FROM results r WHERE r.id IN "
                "(SELECT result_id FROM samples WHERE endpoint=? AND path=?) ORDER BY r.seq",
                (endpoint, path)).fetchall()
            return [json.loads(doc) for (doc,) in rows]
        return await self._read(query)

    async def result(self, result_id: str) -> dict[str, Any] | None:
        def query() -> dict[str, Any] | None:
            row = self._conn.execute("SELECT doc FROM results WHERE id=?", (result_id,)).fetchone()
            return json.loads(row[0]) if row else None
        return await self._read(query)

    async def clear(self) -> int:
        """Forget every count and example; returns the reset time (msec)."""
        async with self._lock:
            self._pending = self._new_batch()
            now = int(time.time() * 1000)

            def wipe() -> None:
                conn = self._conn
                conn.execute("BEGIN")
                try:
                    for table in ("endpoints", "fields", "results", "samples"):
                        conn.execute(f"DELETE FROM {table}")  # fixed names, no input
                    conn.execute("INSERT OR REPLACE INTO meta VALUES('last_reset', ?)", (str(now),))
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise

            await asyncio.get_running_loop().run_in_executor(self._executor, wipe)
            self.endpoints.clear()
            self.fields.clear()
            self._sampler.reset()
            self.last_reset = now
            return now

