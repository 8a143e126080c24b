"""Crashes and stops under load: kill -9 loses at most the documented window, SIGTERM loses
nothing, and a damaged store is refused without being touched."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from diffproxy.client import ApiClient
from diffproxy.model import Record
from diffproxy.store import Store
from tests.support import procs
from tests.support.diffapi import get_json

from .conftest import start_fault_proxy
from .faultserver import SLOW_OK

FLUSH_INTERVAL = 0.2
MARGIN = 1.0  # queueing and scheduling on a busy CI machine, on top of the flush interval
PATHS = ("/ok", "/echo-headers", "/crash-a", "/crash-b")  # echo-headers differs: examples too


def _load(proxy, stop: threading.Event, acked: list, errors: list) -> None:
    with httpx.Client(timeout=5.0) as client:
        n = 0
        while not stop.is_set():
            path = PATHS[n % len(PATHS)]
            n += 1
            try:
                r = client.get(proxy.proxy_url + path)
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                return
            if r.status_code == 200:
                acked.append((time.monotonic(), f"GET {path}"))


@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_under_load_loses_at_most_the_flush_window(faults, tmp_path, workers):
    # With workers, their last unsent message (at most 100 ms) adds to the window; the
    # margin covers it.
    store = tmp_path / "crash.sqlite"
    extra = [f"-store.flushInterval={int(FLUSH_INTERVAL * 1000)}ms", f"-workers={workers}"]
    proxy = start_fault_proxy(faults, store, extra, log_dir=tmp_path)
    stop, acked, errors = threading.Event(), [], []
    threads = [threading.Thread(target=_load, args=(proxy, stop, acked, errors)) for _ in range(6)]
    try:
        for t in threads:
            t.start()
        time.sleep(2.5)
        killed_at = time.monotonic()
        proxy.kill()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        proxy.stop()

    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        orphans = conn.execute("SELECT count(*) FROM samples WHERE result_id NOT IN "
                               "(SELECT id FROM results)").fetchone()[0]
        assert orphans == 0
    conn.close()

    proxy = start_fault_proxy(faults, store, extra, log_dir=tmp_path)
    try:
        stored = {ep: c["total"] for ep, c in get_json(proxy.api_url, "endpoints").items()}
        assert proxy.alive()
        assert httpx.get(proxy.proxy_url + "/ok").status_code == 200  # serving again
    finally:
        assert proxy.stop() == 0

    total = Counter(ep for _, ep in acked)
    old = Counter(ep for t, ep in acked if t < killed_at - FLUSH_INTERVAL - MARGIN)
    assert sum(old.values()) > 100, "too little load to prove anything"
    lost_outside_window = sum(max(0, old[ep] - stored.get(ep, 0)) for ep in total)
    print(f"\nkill -9: {sum(total.values())} acknowledged, {sum(stored.values())} stored, "
          f"{sum(old.values())} older than the window, {lost_outside_window} of those lost")
    for ep in total:
        assert old[ep] <= stored.get(ep, 0) <= total[ep], ep
    assert set(stored) <= set(total)


def test_sigterm_under_load_finishes_in_flight_and_keeps_everything(faults, tmp_path):
    store = tmp_path / "term.sqlite"
    proxy = start_fault_proxy(faults, store, log_dir=tmp_path)
    seen = len(faults.targets("primary"))
    in_flight = 12
    with ThreadPoolExecutor(in_flight + 4) as pool:
        try:
            slow = [pool.submit(httpx.get, proxy.proxy_url + "/slow-ok", timeout=10)
                    for _ in range(in_flight)]
            deadline = time.monotonic() + 5
            while len(faults.targets("primary")) - seen < in_flight:  # all at the targets
                assert time.monotonic() < deadline, "requests never reached the targets"
                time.sleep(0.01)
            os.kill(proxy.popen.pid, signal.SIGTERM)
            late = [pool.submit(httpx.get, proxy.proxy_url + "/ok", timeout=5) for _ in range(4)]
            answers = [f.result() for f in slow]
            assert proxy.popen.wait(15) == 0
        finally:
            proxy.stop()
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * in_flight
    assert all(a.elapsed.total_seconds() >= SLOW_OK for a in answers)
    for f in late:  # after SIGTERM: a clear refusal or a clear 503, never a half answer
        try:
            r = f.result()
        except httpx.ConnectError:
            continue
        assert r.status_code in (200, 503), r.text

    proxy = start_fault_proxy(faults, store, log_dir=tmp_path)
    try:
        endpoints = get_json(proxy.api_url, "endpoints")
    finally:
        proxy.stop()
    assert endpoints["GET /slow-ok"]["total"] == in_flight
    late_ok = sum(1 for f in late if not f.exception() and f.result().status_code == 200)
    assert endpoints.get("GET /ok", {"total": 0})["total"] == late_ok


async def _written_store(path) -> None:
    store = await Store.open(str(path))
    for n in range(60):
        store.add(Record(id=f"r{n}", endpoint=f"GET /e{n % 6}",
                         raw={"body.x": {"type": "changed", "left": 1, "right": 2}}, noise={},
                         document=json.dumps({"id": f"r{n}", "pad": "p" * 2000})))
    await store.close()


def _page_of(path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        page = conn.execute("SELECT rootpage FROM sqlite_master WHERE name=?", (table,)).fetchone()[0]
    conn.close()
    return page


@pytest.mark.parametrize("damage", ["schema page", "endpoints table", "last page"])
async def test_damaged_store_exits_2_and_is_left_alone(tmp_path, damage):
    path = tmp_path / "damaged.sqlite"
    await _written_store(path)
    data = bytearray(path.read_bytes())
    page_size = 4096
    page = {"schema page": 1, "endpoints table": _page_of(path, "endpoints"),
            "last page": len(data) // page_size}[damage]
    start = (page - 1) * page_size + (100 if page == 1 else 0)  # keep the file header
    data[start:page * page_size] = b"\xa5" * (page * page_size - start)
    path.write_bytes(bytes(data))
    before = hashlib.sha256(data).hexdigest()

    result = procs.run_diffproxy([
        "-candidate=127.0.0.1:9", "-master.primary=127.0.0.1:9", f"-store.path={path}",
        *(f"-{name}.port=127.0.0.1:{procs.free_port()}" for name in ("proxy", "admin", "http"))])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0]
    assert "corrupt" in lines[0] or "malformed" in lines[0]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(os.listdir(tmp_path)) == ["damaged.sqlite"]  # no -wal/-journal left either


async def test_api_answers_503_while_the_store_is_closed(tmp_path, faults):
    from .test_proxy import _settings, _url, running

    s = _settings(tmp_path, faults.address("primary"), faults.address("candidate"))
    async with running(s) as (proxy, client):
        api = _url(s.listeners.http) + "/api/1"
        await client.get(_url(s.listeners.proxy) + "/echo-headers")
        await proxy.settled()
        await proxy.store.close()  # what a stop does before the http port goes away
        r = await client.get(api + "/requests/x")
        assert r.status_code == 503 and "store" in r.json()["error"]
        assert r.headers["x-content-type-options"] == "nosniff"
        ready = await client.get(_url(s.listeners.admin) + "/readyz")
        assert ready.status_code == 503
        # mirrored traffic still gets its answer; the comparison fails and is counted
        r = await client.get(_url(s.listeners.proxy) + "/ok")
        assert r.status_code == 200
        await proxy.settled()
        assert proxy.metrics.failed.get() == 1


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs: a disk that fills up for real."""
    import subprocess

    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(directory) -> None:
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass
    finally:
        os.close(fd)


def test_disk_full_is_reported_and_callers_keep_being_answered(faults, small_disk, tmp_path):
    store = small_disk / "full.sqlite"
    proxy = start_fault_proxy(faults, store, log_dir=tmp_path)
    try:
        admin = httpx.get(proxy.admin_url + "/readyz", timeout=10)
        assert admin.status_code == 200
        _fill(small_disk)

        def reported():
            for _ in range(5):  # differing answers: examples to write
                assert httpx.get(proxy.proxy_url + "/echo-headers", timeout=10).status_code == 200
            r = httpx.get(proxy.admin_url + "/readyz", timeout=10)
            return r if r.status_code == 503 else None
        deadline = time.monotonic() + 60
        while (ready := reported()) is None:
            assert time.monotonic() < deadline, "/readyz never reported the full disk"
        assert "unwritable" in ready.json()["reason"] and "ENOSPC" in ready.json()["reason"]
        # callers are still answered, and counts and examples still read without a 500
        assert httpx.get(proxy.proxy_url + "/ok", timeout=10).status_code == 200
        api = ApiClient(proxy.api_url, timeout=10)  # an error status raises ApiError
        assert api.endpoints()["GET /echo-headers"]["total"] >= 1
        fields = api.stats("GET /echo-headers")["fields"]
        assert "requests" in api.results("GET /echo-headers", next(iter(fields)))
        os.kill(proxy.popen.pid, signal.SIGTERM)
        code = proxy.popen.wait(60)
    finally:
        proxy.stop()
    log = proxy.log(tail=10**9)
    assert code == 1, log
    assert "Traceback" not in log
    assert "disk full (ENOSPC)" in log.strip().splitlines()[-1]

    again = procs.run_diffproxy([
        f"-candidate={faults.address('candidate')}", f"-master.primary={faults.address('primary')}",
        f"-store.path={store}",
        *(f"-{name}.port=127.0.0.1:{procs.free_port()}" for name in ("proxy", "admin", "http"))])
    print("\nrestart on the full disk:", again.returncode, again.stderr.strip()[-300:])
    if again.returncode == 0:  # a restart that fits on the full disk is fine too
        return
    assert again.returncode == 2, again.stderr
    assert "another diffproxy" not in again.stderr and "Traceback" not in again.stderr
    assert "disk full" in again.stderr, again.stderr
