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

Size budget (`max_bytes`, -store.maxBytes, default 1 GiB): after each flush, when the live
pages of the file exceed the budget, the oldest example documents (and their sample rows)
are deleted until it is back under 90% of it. Counts are never thinned. SQLite reuses the
freed pages, so the file stops growing at about the budget plus one batch; the WAL is
truncated to `WAL_LIMIT` after each checkpoint.

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

from .latency import LatencyBook
from .model import Record
from .sampling import ExampleSampler, newest

SCHEMA_VERSION = 1
OVERFLOW_FIELD = "__overflow_fields__"
FLUSH_ITEMS = 200
LATENCY_WRITE_INTERVAL = 1.0  # seconds between writes of the latency sketches
SQLITE_MAGIC = b"SQLite format 3\x00"
WAL_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is truncated to after a checkpoint
THIN_TO = 0.9  # thinning frees down to this share of the budget

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


# Added without a version bump: a version-1 file from before gains it at open.
_LATENCY_SCHEMA = """
CREATE TABLE IF NOT EXISTS latency(endpoint TEXT NOT NULL, target TEXT NOT NULL,
                                   sketch TEXT NOT NULL, PRIMARY KEY(endpoint, target));
"""


class StoreError(Exception):
    """The store cannot be opened or used; the message is one line."""


def describe(exc: BaseException) -> str:
    """One line naming the cause of a write failure; disk full is said as such."""
    text = str(exc) or type(exc).__name__
    errno_ = getattr(exc, "sqlite_errorcode", None)
    if errno_ == sqlite3.SQLITE_FULL or "disk is full" in text or getattr(exc, "errno", None) == 28:
        return f"disk full (ENOSPC): {text}"
    return text


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
        conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        if not has_schema:
            # One script, one transaction: a crash half-way leaves an empty file, never a
            # schema without its version.
            conn.executescript(f"BEGIN;{_SCHEMA}INSERT INTO meta VALUES('schema_version', "
                               f"'{SCHEMA_VERSION}');COMMIT;")
        _add_columns(conn)
        conn.executescript(f"BEGIN;{_LATENCY_SCHEMA}COMMIT;")
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
        if "locked" in str(exc):
            raise StoreError(f"store {path} cannot be opened: {exc} "
                             "(is another diffproxy using it?)") from None
        raise StoreError(f"store {path} cannot be written: {describe(exc)}") from None
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"store {path} is corrupt or not a database: {exc}") from None


def _rollback(conn: sqlite3.Connection) -> None:
    """ROLLBACK unless SQLite already did (it does on SQLITE_FULL): a second error would
    hide the first, which names the cause."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _storable(name: str) -> str:
    """A name SQLite can hold. Field paths come from target bodies, and JSON may spell a
    lone surrogate (`{"\\ud800": 1}`) that UTF-8 cannot encode: one such key would fail
    every later flush."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def touched_fields(fields: dict[str, FieldCounts], record: Record, max_fields: int) -> dict[str, list[bool]]:
    """The fields one request touched, each `[differs, noise]`, registering new ones in
    `fields` (one endpoint's) up to `max_fields`, the rest under `OVERFLOW_FIELD`. A field
    counts once per request however many overflowed paths map onto it. Both stores count
    with it."""
    touched: dict[str, list[bool]] = {}
    for side, paths in ((0, record.raw), (1, record.noise)):
        for path in paths:
            path = _storable(path)
            if path not in fields:
                if len(fields) - (OVERFLOW_FIELD in fields) >= max_fields:
                    path = OVERFLOW_FIELD
                fields.setdefault(path, FieldCounts())
            touched.setdefault(path, [False, False])[side] = True
    return touched


async def stop_flusher(task: asyncio.Task | None) -> None:
    """Cancel a store's periodic flush and wait until it has stopped."""
    if task is not None:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


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
                 on_flush=None, on_error=None, on_latency=None, max_bytes: int | None = None,
                 on_thin=None) -> None:
        self.path = path
        self.samples_first = samples_first
        self.samples_latest = samples_latest
        self.max_fields = max_fields
        self.flush_interval = flush_interval
        self._conn = conn
        self._executor = executor
        self._on_flush = on_flush or (lambda: None)
        self._on_error = on_error or (lambda: None)
        self.max_bytes = max_bytes
        self._on_thin = on_thin or (lambda n: None)
        self.thinned = 0  # example documents deleted for the size budget
        self.write_error: str | None = None  # why the last flush failed; None once one works
        self.endpoints: dict[str, EndpointCounts] = {}
        self.fields: dict[str, dict[str, FieldCounts]] = {}
        self.last_reset: int | None = None
        self.latency = LatencyBook()
        self._latency_written = 0.0
        # Called with (endpoint, latency_ms) for every counted request: the /metrics histogram.
        self._on_latency = on_latency or (lambda _ep, _ms: None)
        self.epoch = 0  # bumped by `clear`; see `Record.epoch`
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
                   on_flush=None, on_error=None, on_latency=None, max_bytes: int | None = None,
                   on_thin=None) -> Store:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffproxy-store")
        loop = asyncio.get_running_loop()

        try:
            conn = await loop.run_in_executor(executor, _open_sync, path)
            store = cls(path, samples_first, samples_latest, max_fields, flush_interval,
                        conn, executor, on_flush, on_error, on_latency, max_bytes, on_thin)
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
            self.latency.load(conn.execute("SELECT endpoint, target, sketch FROM latency"))
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
        await stop_flusher(self._flusher)
        try:
            await self.flush()
        except Exception as exc:  # noqa: BLE001 - any write failure: named in one line
            raise StoreError(f"could not write the last results to {self.path}: "
                             f"{describe(exc)}") from None
        finally:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._executor.shutdown(wait=True)

    @property
    def is_open(self) -> bool:
        return not self._closed

    def problem(self) -> str | None:
        """Why results cannot be recorded now (`storage.ResultStore`), or None."""
        if self.write_error is not None:
            return f"results store unwritable: {self.write_error}"
        return "results store closed" if self._closed else None

    # Recording -------------------------------------------------------------------------------

    @staticmethod
    def _new_batch() -> _Batch:
        return _Batch({}, {}, [], [], set())

    def known_endpoints(self) -> list[str]:
        return list(self.endpoints)

    def add(self, record: Record) -> bool:
        """Count one comparison and keep it as an example where it is among the first or
        latest for a field. Cheap and synchronous: the disk write happens in the next flush.
        False (and nothing counted) when the record's request arrived before the last clear."""
        if self._closed:
            raise StoreError("store is closed")
        if record.epoch != self.epoch:
            return False
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
        self.latency.add(ep, record.latency_ms)
        self._on_latency(ep, record.latency_ms)

        fields = self.fields.setdefault(ep, {})
        touched = touched_fields(fields, record, self.max_fields)
        if not touched:
            self._maybe_wake()
            return True
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
            return True
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
        return True

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
            failing = self.write_error
            try:
                await self.flush()
            except Exception as exc:  # noqa: BLE001 - keep flushing; counted always, logged once
                if describe(exc) != failing:
                    log.error("writing results to %s failed: %s; counts are kept in memory "
                              "and retried", self.path, describe(exc))
            else:
                if failing is not None and self.write_error is None:
                    log.info("writing results to %s works again", self.path)

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
            # Encoded now, in the event loop: the sketches go on changing while the write runs.
            # ~30 us per sketch, so at most once a second (a crash loses at most that much,
            # as the counts' own promise); always on close.
            now = time.monotonic()
            if self._closed or now - self._latency_written >= LATENCY_WRITE_INTERVAL:
                sketches = self.latency.take_dirty()
                self._latency_written = now
            else:
                sketches = []
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._executor, self._write, snap, sketches)
            except Exception as exc:
                self.write_error = describe(exc)
                self._on_error()
                self.latency.dirty.update(ep for ep, _, _ in sketches if ep in self.latency.sketches)
                # The counts are absolute, so re-marking the keys dirty repairs them on the
                # next flush; the example records of this batch are lost.
                for k, v in batch.endpoints.items():
                    self._pending.endpoints.setdefault(k, v)
                for k, v in batch.fields.items():
                    self._pending.fields.setdefault(k, v)
                raise
            self.write_error = None
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

    def _write(self, b: _Batch, sketches: list[tuple[str, str, str]] = ()) -> None:
        self._thin(b)
        conn = self._conn
        conn.execute("BEGIN")
        try:
            conn.executemany("INSERT OR REPLACE INTO latency(endpoint, target, sketch) "
                             "VALUES(?,?,?)", sketches)
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
            _rollback(conn)
            raise
        if self.max_bytes is not None:
            self._keep_budget()

    def used_bytes(self) -> int:
        """Bytes of live pages in the file (free pages are reused before it grows)."""
        conn = self._conn
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * conn.execute("PRAGMA page_size").fetchone()[0]

    def _keep_budget(self) -> None:
        """Delete the oldest example documents while the file is over its budget. Runs in
        the store thread, after a flush."""
        used = self.used_bytes()
        if used <= self.max_bytes:
            return
        to_free = used - int(self.max_bytes * THIN_TO)
        conn = self._conn
        victims: list[str] = []
        freed = 0
        for rid, size in conn.execute("SELECT id, length(doc) FROM results ORDER BY seq"):
            victims.append(rid)
            freed += size
            if freed >= to_free:
                break
        if not victims:
            return
        conn.execute("BEGIN")
        try:
            conn.executemany("DELETE FROM samples WHERE result_id=?", [(r,) for r in victims])
            conn.executemany("DELETE FROM results WHERE id=?", [(r,) for r in victims])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        self.thinned += len(victims)
        self._on_thin(len(victims))
        log.warning("store %s over its %d-byte budget (-store.maxBytes): deleted the %d oldest "
                    "examples (counts are kept)", self.path, self.max_bytes, len(victims))

    # Reading (examples come from disk, after writing what is pending) ------------------------

    async def _read(self, fn, *args):
        if self._closed:
            raise StoreError("store is closed")
        try:
            await self.flush()
        except Exception:  # noqa: BLE001 - unwritable (disk full): the file can still be read
            pass
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def results(self, endpoint: str, path: str, shape=None) -> list[dict[str, Any]]:
        """The examples of one field, oldest first (first-N then latest-N, no duplicates).
        `shape(doc)`, if given, runs in the store thread on each document as it is read (the
        API cuts big bodies there: one whole document in memory at a time)."""
        def query() -> list[dict[str, Any]]:
            rows = self._conn.execute(
                "SELECT r.doc FROM results r WHERE r.id IN "
                "(SELECT result_id FROM samples WHERE endpoint=? AND path=?) ORDER BY r.seq",
                (endpoint, path))
            return [json.loads(doc) if shape is None else shape(json.loads(doc))
                    for (doc,) in rows]
        return await self._read(query)

    async def result(self, result_id: str) -> dict[str, Any] | None:
        def query() -> dict[str, Any] | None:
            row = self._conn.execute("SELECT doc FROM results WHERE id=?", (result_id,)).fetchone()
            return json.loads(row[0]) if row else None
        return await self._read(query)

    async def clear(self) -> int:
        """Forget every count and example; returns the reset time (msec)."""
        # At once, before any await: from here on, comparisons of earlier requests are
        # refused by `add` rather than counted into the results being wiped.
        self.epoch += 1
        self._pending = self._new_batch()
        self.endpoints.clear()
        self.fields.clear()
        self.latency.clear()
        self._sampler.reset()
        async with self._lock:  # a flush in progress writes old rows first: wiped below
            now = int(time.time() * 1000)

            def wipe() -> None:
                conn = self._conn
                conn.execute("BEGIN")
                try:
                    for table in ("endpoints", "fields", "results", "samples", "latency"):
                        conn.execute(f"DELETE FROM {table}")  # fixed names, no input
                    conn.execute("INSERT OR REPLACE INTO meta VALUES('last_reset', ?)", (str(now),))
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise

            await asyncio.get_running_loop().run_in_executor(self._executor, wipe)
            self.last_reset = now
            return now

