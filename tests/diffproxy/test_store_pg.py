"""The shared PostgreSQL store (`-store.url`): several writers on one real database.

Stores in one test stand for replicas: each has its own pool, batches and view, as separate
processes would; one test runs them as separate processes (and the e2e case,
tests/e2e/test_e2e_replicas.py, as three diff proxies). The database
is real (tests/conftest.py starts PostgreSQL from Debian's packages).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import multiprocessing

import asyncpg
import httpx
import pytest

from diffproxy.endpoints import OVERFLOW_ENDPOINT
from diffproxy.model import Record
from diffproxy.store import OVERFLOW_FIELD, StoreError
from diffproxy.store_pg import SCHEMA_VERSION, PostgresStore
from tests.diffproxy.conftest import demo_flags
from tests.support import diffapi, procs
from toolbox.ports import free_port
from toolbox.postgres import PostgresServer

CHANGED = {"type": "changed", "left": 1, "right": 2}


def record(rid: str, endpoint: str = "GET /a", raw=("body.x",), noise=()) -> Record:
    raw_d = {p: CHANGED for p in raw}
    noise_d = {p: CHANGED for p in noise}
    doc = json.dumps({"id": rid, "differences": raw_d, "noise": noise_d})
    return Record(id=rid, endpoint=endpoint, raw=raw_d, noise=noise_d, document=doc)


async def replicas(url: str, n: int, **kwargs) -> list[PostgresStore]:
    options = {"samples_first": 2, "samples_latest": 2, "connect_timeout": 10,
               "flush_interval": 0.05, **kwargs}
    return list(await asyncio.gather(*(PostgresStore.open(url, **options) for _ in range(n))))


async def close_all(stores) -> None:
    for store in stores:
        await store.close()


async def settle(stores) -> None:
    """Everything written, then every view re-read (what the refresh loop does anyway)."""
    for store in stores:
        await store.flush()
    for store in stores:
        async with store._lock:
            await store._refresh()


async def test_concurrent_writers_add_up_exactly(pg_url):
    stores = await replicas(pg_url, 3)
    try:
        async def write(i: int, store: PostgresStore) -> None:
            for n in range(300):
                store.add(record(f"s{i}-{n}", raw=("body.x",) if n % 3 else (),
                                 noise=("body.y",) if n % 5 == 0 else ()))
                if n % 25 == 0:
                    await asyncio.sleep(0.01)  # many flushes interleave across the writers

        await asyncio.gather(*(write(i, s) for i, s in enumerate(stores)))
        await settle(stores)
        for store in stores:  # every replica sees the cluster's totals, not its own share
            a = store.endpoints["GET /a"]
            assert (a.total, a.differences) == (900, 3 * 200)
            assert store.fields["GET /a"]["body.x"].differences == 600
            assert store.fields["GET /a"]["body.y"].noise == 3 * 60
    finally:
        await close_all(stores)


async def test_one_sampling_policy_across_replicas(pg_url):
    a, b = await replicas(pg_url, 2)
    try:
        a.add(record("a1"))
        await a.flush()
        b.add(record("b1"))
        b.add(record("b2"))  # b's first examples: the cluster already has one of its two
        await b.flush()
        for n in range(3, 6):
            a.add(record(f"a{n}"))
            await a.flush()
        kept = [d["id"] for d in await b.results("GET /a", "body.x")]
        # First two ever written (a1, b1), then the latest two (a4, a5): not two per replica.
        assert kept == ["a1", "b1", "a4", "a5"]
        assert await a.result("b2") is None and await a.result("a3") is None
        conn = await asyncpg.connect(pg_url)
        try:  # no example stored that no sample points at
            assert await conn.fetchval("SELECT count(*) FROM diffproxy_results") == 4
        finally:
            await conn.close()
    finally:
        await close_all([a, b])


async def test_endpoint_and_field_caps_hold_for_the_cluster(pg_url):
    a, b = await replicas(pg_url, 2, max_endpoints=2, max_fields=1)
    try:
        # Each replica alone is within the caps; together they are past them.
        a.add(record("a1", endpoint="GET /a"))
        a.add(record("a2", endpoint="GET /b"))
        b.add(record("b1", endpoint="GET /c", raw=("body.x",)))
        b.add(record("b2", endpoint="GET /a", raw=("body.z", "body.w")))
        await a.flush()
        await b.flush()
        await settle([a, b])
        for store in (a, b):
            assert sorted(store.endpoints) == ["GET /a", "GET /b", OVERFLOW_ENDPOINT]
            assert store.endpoints[OVERFLOW_ENDPOINT].total == 1
            fields = store.fields["GET /a"]
            assert set(fields) == {"body.x", OVERFLOW_FIELD}
            # b2 named two new fields; it counts once under the overflow field.
            assert fields[OVERFLOW_FIELD].differences == 1
        (doc,) = await a.results(OVERFLOW_ENDPOINT, "body.x")
        assert doc["endpoint"] == OVERFLOW_ENDPOINT and doc["id"] == "b1"
    finally:
        await close_all([a, b])


async def test_clear_on_one_replica_clears_all(pg_url):
    cleared: list[int] = []
    a, = await replicas(pg_url, 1)
    b, = await replicas(pg_url, 1, on_cleared=lambda: cleared.append(1))
    try:
        a.add(record("a1"))
        b.add(record("b1"))
        await settle([a, b])
        assert b.endpoints["GET /a"].total == 2
        b.add(record("b2"))  # counted by b, not written yet, when a clears
        b._wake.clear()
        reset = await a.clear()
        await b.flush()  # the batch from before the clear is discarded, not written
        await settle([a, b])
        assert a.endpoints == {} and b.endpoints == {}
        assert cleared == [1] and b.last_reset == reset
        assert await b.result("b1") is None
        # A request taken in after b saw the clear carries its new epoch and is counted.
        assert b.add(dataclasses.replace(record("b3", endpoint="GET /new"), epoch=b.epoch))
        await settle([a, b])
        assert a.endpoints["GET /new"].total == 1
    finally:
        await close_all([a, b])


async def test_a_clear_elsewhere_discards_what_arrived_before_it_as_a_local_clear_does(pg_url):
    a, b = await replicas(pg_url, 2)
    try:
        b.add(dataclasses.replace(record("b1"), latency_ms=(5.0, 5.0, 50.0)))
        await settle([a, b])
        assert b.latency.sketches
        # A request b took in before the clear, compared after it.
        queued = dataclasses.replace(record("queued"), epoch=b.epoch)
        await a.clear()
        await settle([a, b])  # b sees the new generation
        assert b.add(queued) is False  # as `Store.add` after `Store.clear`
        assert b.latency.sketches == {}  # its latency verdicts start again too
        await settle([a, b])
        assert a.endpoints == {} and b.endpoints == {}
    finally:
        await close_all([a, b])


def _writer_process(url: str, name: str, start, stop, settled, out) -> None:
    """One replica in its own process: opens at `start` (with the others, on an empty
    database), writes until `stop`, then reports (accepted, accepted when it saw the clear,
    its view of the total)."""
    async def main() -> None:
        accepted, seen = 0, []
        start.wait()
        store = await PostgresStore.open(url, samples_first=2, samples_latest=2,
                                         flush_interval=0.02, connect_timeout=30,
                                         on_cleared=lambda: seen.append(accepted))
        out.put((name, "writing"))
        n = 0
        while not stop.is_set():
            for _ in range(20):  # stamped with the epoch at arrival, as the pipeline does
                n += 1
                accepted += store.add(dataclasses.replace(record(f"{name}{n}"),
                                                          epoch=store.epoch))
            await asyncio.sleep(0.001)
        await store.flush()
        out.put((name, "flushed"))
        await asyncio.to_thread(settled.wait)
        async with store._lock:
            await store._refresh()
        out.put((name, accepted, seen, store.endpoints["GET /a"].total))
        await store.close()

    asyncio.run(main())


async def test_processes_starting_together_writing_and_clearing_add_up_exactly(pg_url):
    """Three processes open the same empty database at once; two write flat out while the
    third clears: the database keeps exactly what the writers took in after they saw the
    clear, and every replica reports that total."""
    ctx = multiprocessing.get_context("spawn")
    start, stop, settled, out = ctx.Barrier(3), ctx.Event(), ctx.Event(), ctx.Queue()
    writers = [ctx.Process(target=_writer_process, args=(pg_url, name, start, stop, settled, out))
               for name in ("b", "c")]
    for p in writers:
        p.start()
    get = functools.partial(asyncio.to_thread, out.get, timeout=120)
    try:
        await asyncio.to_thread(start.wait, 60)
        a = await PostgresStore.open(pg_url, connect_timeout=30)
        try:
            assert sorted([await get(), await get()]) == [("b", "writing"), ("c", "writing")]
            await asyncio.sleep(0.5)
            await a.clear()
            await asyncio.sleep(0.5)
            stop.set()
            assert sorted([await get(), await get()]) == [("b", "flushed"), ("c", "flushed")]
            settled.set()
            reports = {r[0]: r[1:] for r in [await get(), await get()]}
            async with a._lock:
                await a._refresh()
            kept = a.endpoints["GET /a"].total
        finally:
            await a.close()
        expected = 0
        for accepted, seen, view in reports.values():
            (at_clear,) = seen  # each writer saw the clear once, mid-stream
            assert 0 < at_clear < accepted
            expected += accepted - at_clear
            assert view == kept
        assert kept == expected
        conn = await asyncpg.connect(pg_url)
        try:
            meta = dict(await conn.fetch("SELECT key, value FROM diffproxy_meta"))
            assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["generation"] == "1"
            assert await conn.fetchval(
                "SELECT differences FROM diffproxy_fields WHERE path='body.x'") == kept
        finally:
            await conn.close()
    finally:
        stop.set()
        settled.set()
        for p in writers:
            p.join(30)
            if p.is_alive():
                p.kill()


async def test_replicas_starting_together_create_the_schema_once(pg_url):
    stores = await replicas(pg_url, 6)
    try:
        conn = await asyncpg.connect(pg_url)
        try:
            rows = await conn.fetch("SELECT key, value FROM diffproxy_meta ORDER BY key")
            assert [tuple(r) for r in rows] == [("generation", "0"),
                                                ("schema_version", str(SCHEMA_VERSION))]
        finally:
            await conn.close()
    finally:
        await close_all(stores)


async def _dump(url: str) -> list:
    """Every table's rows, and the shape of the schema: columns, indexes, sequences."""
    conn = await asyncpg.connect(url)
    try:
        tables = [r[0] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1")]
        shape = [tuple(r) for q in (
            "SELECT table_name, column_name, data_type, is_nullable FROM "
            "information_schema.columns WHERE table_schema='public' ORDER BY 1, 2",
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname='public' ORDER BY 1",
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname='public'")
            for r in await conn.fetch(q)]
        return [shape, *[(t, [tuple(r) for r in await conn.fetch(f'SELECT * FROM "{t}" ORDER BY 1')])
                         for t in tables]]
    finally:
        await conn.close()


async def test_a_newer_schema_is_refused_untouched(pg_url):
    store, = await replicas(pg_url, 1)
    store.add(record("r1"))
    await store.close()
    conn = await asyncpg.connect(pg_url)
    await conn.execute("UPDATE diffproxy_meta SET value='99' WHERE key='schema_version'")
    await conn.close()
    before = await _dump(pg_url)
    with pytest.raises(StoreError, match="schema version 99, newer"):
        await PostgresStore.open(pg_url, connect_timeout=5)
    assert await _dump(pg_url) == before


async def test_tables_that_are_not_ours_are_refused_untouched(pg_url):
    conn = await asyncpg.connect(pg_url)
    await conn.execute("CREATE TABLE diffproxy_results(id text); INSERT INTO diffproxy_results "
                       "VALUES ('theirs')")
    await conn.close()
    before = await _dump(pg_url)
    with pytest.raises(StoreError, match="not a diffproxy store"):
        await PostgresStore.open(pg_url, connect_timeout=5)
    assert await _dump(pg_url) == before


async def test_an_unreachable_database_at_start_is_a_clear_error():
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/x"
    with pytest.raises(StoreError, match="not reachable within 1s") as exc:
        await PostgresStore.open(url, connect_timeout=1)
    assert "hunter2" not in str(exc.value) and ":***@" in str(exc.value)


async def test_a_lost_database_drops_and_counts_then_recovers():
    dropped: list[int] = []
    with PostgresServer.start() as server:
        store = await PostgresStore.open(server.create_database("lost"), samples_first=1,
                                         samples_latest=1, flush_interval=0.05,
                                         connect_timeout=10, on_drop=dropped.append)
        try:
            store.add(record("before"))
            await store.flush()
            assert store.problem() is None
            server.stop("immediate")
            store.add(record("in-flight"))  # in the batch that fails (or dropped at once,
            with contextlib.suppress(StoreError):  # if the idle refresh saw the loss first)
                await store.flush()
            assert store.problem() and "unavailable" in store.problem()
            store.add(record("while-down"))
            assert sum(dropped) == 2
            assert store.endpoints["GET /a"].total == 1  # the API shows only what is stored
            with pytest.raises(StoreError, match="unavailable"):
                await store.result("before")
            server.start_again()
            for _ in range(200):  # the flush loop reconnects on its own
                if store.problem() is None:
                    break
                await asyncio.sleep(0.05)
            assert store.problem() is None
            store.add(record("after"))
            await store.flush()
            assert store.endpoints["GET /a"].total == 2
            assert (await store.result("before"))["id"] == "before"
        finally:
            await store.close()


# The process: flags, exit code, readiness ---------------------------------------------------


def test_cli_refuses_an_unreachable_database_with_exit_2():
    done = procs.run_diffproxy(
        ["-candidate=127.0.0.1:1", "-master.primary=127.0.0.1:1", "-store.connectTimeout=1"],
        env={"DIFFPROXY_STORE_URL": f"postgresql://u:s3cret@127.0.0.1:{free_port()}/db"})
    assert done.returncode == 2
    assert "not reachable within 1s" in done.stderr and "s3cret" not in done.stderr


def test_cli_refuses_two_stores_and_a_bad_url():
    both = procs.run_diffproxy(["-candidate=127.0.0.1:1", "-master.primary=127.0.0.1:1",
                                "-store.path=/tmp/x.sqlite", "-store.url=postgresql://h/db"])
    assert both.returncode == 2 and "choose one store" in both.stderr
    bad = procs.run_diffproxy(["-candidate=127.0.0.1:1", "-master.primary=127.0.0.1:1",
                               "-store.url=mysql://u:pw@h/db"])
    assert bad.returncode == 2 and "postgresql://" in bad.stderr and "pw@" not in bad.stderr


def test_proxy_on_a_lost_database_answers_callers_and_is_not_ready(backends, proc_logs):
    with PostgresServer.start() as server:
        url = server.create_database("svc")
        proxy = procs.start_diffproxy(
            backends.primary.address, backends.secondary.address, backends.candidate.address,
            store_path=None, extra=[*demo_flags(), "-store.flushInterval=50ms"],
            env={"DIFFPROXY_STORE_URL": url}, log_dir=proc_logs)
        try:
            info = diffapi.get_json(proxy.api_url, "info")
            assert info["store"]["url"] == url and info["store"]["path"] is None
            assert httpx.get(proxy.proxy_url + "/json", timeout=10).status_code == 200
            diffapi.wait_idle(proxy.admin_url, timeout=30)
            server.stop("immediate")
            for _ in range(5):  # callers are still answered
                assert httpx.get(proxy.proxy_url + "/json", timeout=10).status_code == 200
            diffapi.wait_idle(proxy.admin_url, timeout=30)
            status = None
            for _ in range(200):
                status, _, body = diffapi.fetch(proxy.admin_url + "/readyz")
                if status == 503:
                    break
                httpx.get(proxy.proxy_url + "/json", timeout=10)
                diffapi.wait_idle(proxy.admin_url, timeout=30)
            assert status == 503 and b"database unavailable" in body
            m = diffapi.metrics(proxy.admin_url)
            assert diffapi.metric(m, "diffproxy_store_dropped_total") >= 5
            server.start_again()
            proxy.wait_until(proxy.admin_url + "/readyz", timeout=60)
            assert httpx.get(proxy.proxy_url + "/json", timeout=10).status_code == 200
        finally:
            proxy.stop()


def test_a_password_in_the_url_is_masked_wherever_it_is_shown():
    from diffproxy.settings import load, mask_url
    from diffproxy.storage import describe

    assert mask_url("postgresql://app:s3cret@db:5432/r") == "postgresql://app:***@db:5432/r"
    assert mask_url("postgresql://app@db/r") == "postgresql://app@db/r"
    settings = load(["-candidate=h:1", "-master.primary=h:2"],
                    env={"DIFFPROXY_STORE_URL": "postgresql://app:s3cret@db:5432/r"})
    assert settings.store.url.endswith("@db:5432/r") and "s3cret" not in describe(settings)


async def test_a_stop_while_the_database_is_away_counts_what_it_could_not_write():
    dropped: list[int] = []
    with PostgresServer.start() as server:
        store = await PostgresStore.open(server.create_database("stop"), flush_interval=10,
                                         connect_timeout=10, on_drop=dropped.append)
        store.add(record("never-written"))
        server.stop("immediate")
        await asyncio.wait_for(store.close(), 60)  # returns: a stop never hangs on the database
        assert sum(dropped) == 1 and not store.is_open
