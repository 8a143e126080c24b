"""The results stores: exact counts, first/latest examples, overflow, persistence.

Tests taking `backend` run twice: on the SQLite file and on a real PostgreSQL (a new empty
database per test, tests/conftest.py). The file-specific ones (foreign files, locking)
stay SQLite only; tests/diffproxy/test_store_pg.py holds the shared-database ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from dataclasses import replace

import pytest

from diffproxy.model import Record
from diffproxy.store import OVERFLOW_FIELD, Store, StoreError

CHANGED = {"type": "changed", "left": 1, "right": 2}


def record(n: int, endpoint: str = "GET /a", raw=("body.x",), noise=()) -> Record:
    rid = f"r{n}"
    raw_d = {p: CHANGED for p in raw}
    noise_d = {p: CHANGED for p in noise}
    doc = json.dumps({"id": rid, "differences": raw_d, "noise": noise_d,
                      "request": {"uri": f"/a?n={n}"}})
    return Record(id=rid, endpoint=endpoint, raw=raw_d, noise=noise_d, document=doc)


async def open_store(path, **kwargs) -> Store:
    return await Store.open(str(path), **{"samples_first": 2, "samples_latest": 2, **kwargs})


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path):
    """An opener of one store location: `await backend()` opens it (again)."""
    if request.param == "sqlite":
        where = tmp_path / "s.sqlite"

        async def opener(**kwargs):
            return await open_store(where, **kwargs)
    else:
        from diffproxy.store_pg import PostgresStore

        url = request.getfixturevalue("pg_url")

        async def opener(**kwargs):
            return await PostgresStore.open(
                url, **{"samples_first": 2, "samples_latest": 2, "connect_timeout": 10, **kwargs})
    opener.kind = request.param
    return opener


async def test_counts_are_exact_and_survive_reopen(backend):
    store = await backend()
    for n in range(5):
        store.add(record(n, raw=("body.x",), noise=("body.x",) if n < 2 else ()))
    for n in range(5, 8):
        store.add(record(n, raw=(), noise=()))  # identical responses: counted, no example
    store.add(record(8, endpoint="GET /b", raw=("status",)))
    assert store.endpoints["GET /a"].total == 8 and store.endpoints["GET /a"].differences == 5
    await store.close()

    store = await backend()
    try:
        a = store.endpoints["GET /a"]
        assert (a.total, a.differences) == (8, 5)
        x = store.fields["GET /a"]["body.x"]
        assert (x.differences, x.noise) == (5, 2)
        assert store.fields["GET /b"]["status"].differences == 1
        assert sorted(store.known_endpoints()) == ["GET /a", "GET /b"]
    finally:
        await store.close()


async def test_keeps_first_and_latest_examples(backend):
    store = await backend()
    try:
        for n in range(1, 7):
            store.add(record(n))
        kept = [d["id"] for d in await store.results("GET /a", "body.x")]
        assert kept == ["r1", "r2", "r5", "r6"]
        assert await store.result("r3") is None  # rolled out of "latest" and deleted
        assert (await store.result("r6"))["request"]["uri"] == "/a?n=6"
        assert await store.results("GET /a", "body.nope") == []
    finally:
        await store.close()


async def test_field_overflow_is_counted_not_lost(backend):
    store = await backend(max_fields=2)
    try:
        store.add(record(1, raw=("body.a", "body.b", "body.c", "body.d")))
        store.add(record(2, raw=("body.e",)))
        store.add(record(3, raw=("body.a",)))
        fields = store.fields["GET /a"]
        assert set(fields) == {"body.a", "body.b", OVERFLOW_FIELD}
        assert fields[OVERFLOW_FIELD].differences == 2  # once per request
        assert fields["body.a"].differences == 2
        overflowed = await store.results("GET /a", OVERFLOW_FIELD)
        assert [d["id"] for d in overflowed] == ["r1", "r2"]
    finally:
        await store.close()


async def test_clear_forgets_everything_and_records_when(backend):
    store = await backend()
    store.add(record(1))
    await store.flush()
    reset = await store.clear()
    assert store.endpoints == {} and await store.result("r1") is None
    # A comparison of a request from before the clear, finishing after it: refused.
    assert store.add(record(3, endpoint="GET /before")) is False
    assert store.add(dataclasses.replace(record(2, endpoint="GET /c"), epoch=store.epoch))
    await store.close()
    store = await backend()
    try:
        assert store.last_reset == reset
        assert list(store.endpoints) == ["GET /c"]
    finally:
        await store.close()


async def test_second_opener_is_refused(tmp_path):
    store = await open_store(tmp_path / "s.sqlite")
    try:
        with pytest.raises(StoreError, match="another diffproxy"):
            await open_store(tmp_path / "s.sqlite")
    finally:
        await store.close()


async def test_foreign_and_broken_files_are_refused_untouched(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\x00garbage" * 64)
    with pytest.raises(StoreError, match="not an SQLite database"):
        await open_store(junk)
    assert junk.read_bytes() == b"\x00garbage" * 64

    foreign = tmp_path / "foreign.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE users(id INTEGER)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    with pytest.raises(StoreError, match="not a diffproxy store"):
        await open_store(foreign)
    assert foreign.read_bytes() == before

    truncated = tmp_path / "truncated.sqlite"
    store = await open_store(truncated)
    store.add(record(1))
    await store.close()
    data = truncated.read_bytes()
    truncated.write_bytes(data[:100] + b"\xff" * (len(data) - 100))  # header kept, pages ruined
    with pytest.raises(StoreError):
        await open_store(truncated)


async def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    store = await open_store(path)
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="schema version 2, newer"):
        await open_store(path)


async def test_batches_are_written_on_a_timer(backend):
    flushes: list[int] = []
    store = await backend(flush_interval=0.05, on_flush=lambda: flushes.append(1))
    try:
        store.add(record(1))
        await asyncio.sleep(0.3)  # several flush intervals, no read and no close
        assert len(flushes) == 1  # one batch, written once; idle intervals write nothing
    finally:
        await store.close()


async def test_a_record_without_a_document_is_counted_but_never_an_example(backend):
    store = await backend()
    try:
        store.add(Record(id="counted", endpoint="GET /a", raw={"body.x": CHANGED}, noise={}))
        store.add(record(1))
        kept = await store.results("GET /a", "body.x")
        assert [doc["id"] for doc in kept] == ["r1"]
        assert store.fields["GET /a"]["body.x"].differences == 2
        assert store.endpoints["GET /a"].total == 2
    finally:
        await store.close()


async def test_the_store_adds_the_endpoint_to_each_document(backend):
    store = await backend()
    try:
        store.add(record(1, endpoint="GET /overflowed"))
        (doc,) = await store.results("GET /overflowed", "body.x")
        assert doc["endpoint"] == "GET /overflowed" and doc["request"] == {"uri": "/a?n=1"}
    finally:
        await store.close()


async def test_size_budget_thins_the_oldest_examples_and_keeps_counts_exact(tmp_path):
    path = tmp_path / "budget.sqlite"
    budget = 2 * 1024 * 1024
    thinned: list[int] = []
    store = await open_store(path, max_bytes=budget, on_thin=thinned.append)
    pad = "p" * 200_000  # 200 KB documents: 200 of them are 20x the budget
    for n in range(200):
        rid = f"r{n}"
        store.add(Record(id=rid, endpoint=f"GET /e{n}", raw={"body.x": CHANGED}, noise={},
                         document=json.dumps({"id": rid, "pad": pad})))
        if n % 5 == 4:
            await store.flush()
    await store.flush()
    assert store.used_bytes() <= budget
    assert sum(thinned) == store.thinned > 150
    assert sum(c.total for c in store.endpoints.values()) == 200  # counts are never thinned
    assert store.fields["GET /e0"]["body.x"].differences == 1
    assert await store.results("GET /e0", "body.x") == []  # the oldest example is gone
    assert [d["id"] for d in await store.results("GET /e199", "body.x")] == ["r199"]
    await store.close()
    assert path.stat().st_size <= 2 * budget  # the file stopped growing near the budget
    with sqlite3.connect(path) as conn:
        orphans = conn.execute("SELECT count(*) FROM samples WHERE result_id NOT IN "
                               "(SELECT id FROM results)").fetchone()[0]
        totals = conn.execute("SELECT sum(total) FROM endpoints").fetchone()[0]
    conn.close()
    assert orphans == 0 and totals == 200


async def test_failures_and_weights_survive_reopen_and_old_files_gain_the_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    # a store as the first release wrote it: schema version 1 without the issue-12 columns
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "CREATE TABLE endpoints(name TEXT PRIMARY KEY, total INTEGER NOT NULL,"
        " differences INTEGER NOT NULL);"
        "CREATE TABLE fields(endpoint TEXT NOT NULL, path TEXT NOT NULL, differences INTEGER"
        " NOT NULL, noise INTEGER NOT NULL, PRIMARY KEY(endpoint, path));"
        "CREATE TABLE results(id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, doc TEXT NOT NULL);"
        "CREATE TABLE samples(endpoint TEXT NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL,"
        " seq INTEGER NOT NULL, result_id TEXT NOT NULL, PRIMARY KEY(endpoint, path, kind, seq));"
        "INSERT INTO meta VALUES('schema_version', '1');"
        "INSERT INTO endpoints VALUES('GET /a', 3, 1);"
        "INSERT INTO fields VALUES('GET /a', 'body.x', 1, 0);")
    conn.close()
    store = await open_store(path)
    assert store.endpoints["GET /a"].total == 3 and store.fields["GET /a"]["body.x"].weight == 0
    base = record(10, raw=("body.x", "body.y"))
    store.add(replace(base, failed=("primary",), baseline_failed=True))
    store.add(replace(record(11, raw=("body.x",)), failed=("candidate",)))
    await store.close()

    store = await open_store(path)
    try:
        counts = store.endpoints["GET /a"]
        assert (counts.total, counts.baseline_failures) == (5, 1)
        assert (counts.failed_primary, counts.failed_secondary, counts.failed_candidate) == (1, 0, 1)
        # Diffy's weight: the fields differing alongside, summed over the requests it differed in
        assert store.fields["GET /a"]["body.x"].weight == 2 + 1
        assert store.fields["GET /a"]["body.y"].weight == 2
    finally:
        await store.close()


async def test_failures_and_weights_are_counted_alike_on_every_backend(backend):
    store = await backend()
    store.add(replace(record(1, raw=("body.x", "body.y")), failed=("primary",),
                      baseline_failed=True))
    store.add(replace(record(2, raw=("body.x",)), failed=("candidate",)))
    store.add(record(3, raw=(), noise=("body.z",)))
    await store.close()
    store = await backend()
    try:
        counts = store.endpoints["GET /a"]
        assert (counts.total, counts.differences, counts.baseline_failures) == (3, 2, 1)
        assert (counts.failed_primary, counts.failed_secondary, counts.failed_candidate) == (1, 0, 1)
        fields = store.fields["GET /a"]
        assert (fields["body.x"].differences, fields["body.x"].weight) == (2, 2 + 1)
        assert fields["body.y"].weight == 2
        assert (fields["body.z"].noise, fields["body.z"].weight) == (1, 0)
    finally:
        await store.close()
