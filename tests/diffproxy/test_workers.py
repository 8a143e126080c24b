"""`-workers=N`: several processes share the proxy port; the owner keeps one store, one API,
one set of metrics. Totals must be exact across processes, and workers must never outlive
the owner."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from diffproxy.client import ApiClient
from tests.diffproxy.conftest import start_proxy
from tests.support import diffapi

N_JSON = 24   # /json: the candidate differs in one field
N_UUID = 16   # /uuid: every target differs (noise)


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


def send_fresh_connections(proxy, path: str, n: int) -> list[str]:
    """One new connection per request, so the kernel spreads them over the processes."""
    ids = []
    for _ in range(n):
        r = httpx.get(proxy.proxy_url + path, timeout=10.0)
        assert r.status_code == 200, r.text
        ids.append(r.headers["X-Diffproxy-Request-Id"])
    return ids


def settled(proxy, requests: int):
    def check():
        m = diffapi.metrics(proxy.admin_url)
        got = sum(v for (name, _), v in m.items() if name == "diffproxy_requests_total")
        done = (diffapi.metric(m, "diffproxy_comparisons_completed_total")
                + diffapi.metric(m, "diffproxy_comparisons_failed_total"))
        return m if got == requests and done == requests else None
    return wait_for(check, what=f"{requests} requests compared")


@pytest.fixture(scope="module")
def traffic(backends, tmp_path_factory, proc_logs):
    proxy = start_proxy(backends, tmp_path_factory.mktemp("workers") / "results.sqlite",
                        extra=["-workers=2", "-samples.first=2", "-samples.latest=2"],
                        log_dir=proc_logs)
    try:
        ids = send_fresh_connections(proxy, "/json", N_JSON)
        ids += send_fresh_connections(proxy, "/uuid", N_UUID)
        metrics = settled(proxy, N_JSON + N_UUID)
        yield proxy, ids, metrics
    finally:
        proxy.stop()


def test_both_processes_serve_the_proxy_port(traffic):
    proxy, ids, _ = traffic
    prefixes = {rid[:16] for rid in ids}  # request ids carry a random per-process prefix
    assert len(prefixes) == 2
    assert len(children(proxy.popen.pid)) >= 1


def test_totals_are_exact_across_processes(traffic):
    proxy, _, _ = traffic
    endpoints = diffapi.get_json(proxy.api_url, "endpoints")
    assert diffapi.counts(endpoints)["GET /json"] == {"total": N_JSON, "differences": N_JSON}
    assert endpoints["GET /uuid"]["total"] == N_UUID
    fields = diffapi.stats(proxy.api_url, "GET /json")["fields"]
    assert fields["body.slideshow.author"]["differences"] == N_JSON
    uuid = diffapi.stats(proxy.api_url, "GET /uuid")["fields"]["body.uuid"]
    assert (uuid["differences"], uuid["noise"]) == (N_UUID, N_UUID)


def test_metrics_add_up_over_processes(traffic):
    proxy, _, m = traffic
    total = N_JSON + N_UUID
    assert diffapi.metric(m, "diffproxy_requests_total", method="GET") == total
    assert diffapi.metric(m, "diffproxy_comparisons_queued_total") == total
    assert diffapi.metric(m, "diffproxy_comparisons_completed_total") == total
    assert diffapi.metric(m, "diffproxy_comparisons_dropped_total") == 0
    assert diffapi.metric(m, "diffproxy_differences_total") == total
    assert diffapi.metric(m, "diffproxy_noise_total") == N_UUID
    assert diffapi.metric(m, "diffproxy_workers") == 2
    assert diffapi.metric(m, "diffproxy_comparison_queue_depth") == 0
    for target in ("primary", "secondary", "candidate"):
        assert diffapi.metric(m, "diffproxy_target_requests_total", target=target) == total
        # Per endpoint, observed by the owner as it counts each worker's results.
        assert sum(diffapi.metric(m, "diffproxy_target_latency_seconds_count", target=target,
                                  endpoint=ep) for ep in ("GET /json", "GET /uuid")) == total
        assert diffapi.metric(m, "diffproxy_target_up", target=target) == 1


def test_examples_from_workers_are_kept_and_complete(traffic):
    proxy, ids, _ = traffic
    kept = diffapi.results(proxy.api_url, "GET /json", "body.slideshow.author")["requests"]
    # first 2 ever + latest 2 per field; each process keeps its own first ones, the owner trims
    assert 2 <= len(kept) <= 4
    for result in kept:
        assert result["id"] in ids[:N_JSON]
        assert result["endpoint"] == "GET /json"
        assert result["candidate"]["body"]["slideshow"]["author"] == "Yours Truly, v2"
        assert diffapi.get_json(proxy.api_url, f"requests/{result['id']}")["id"] == result["id"]


def test_workers_die_with_a_killed_owner(backends, tmp_path, proc_logs):
    proxy = start_proxy(backends, tmp_path / "results.sqlite", extra=["-workers=3"],
                        log_dir=proc_logs)
    try:
        workers = wait_for(lambda: children(proxy.popen.pid) if len(children(proxy.popen.pid)) == 2
                           else None, what="two worker processes")
        send_fresh_connections(proxy, "/get", 4)
        os.kill(proxy.popen.pid, signal.SIGKILL)  # the owner only, not its process group
        proxy.popen.wait(5)
        wait_for(lambda: not any(alive(pid) for pid in workers), timeout=10,
                 what="no worker left after kill -9 of the owner")
    finally:
        proxy.kill()


def test_sigterm_ships_every_worker_result_before_exit(backends, tmp_path, proc_logs):
    store = tmp_path / "results.sqlite"
    proxy = start_proxy(backends, store, extra=["-workers=2"], log_dir=proc_logs)
    try:
        workers = children(proxy.popen.pid)
        n = 20
        send_fresh_connections(proxy, "/json", n)
        os.kill(proxy.popen.pid, signal.SIGTERM)
        assert proxy.popen.wait(30) == 0
        assert not any(alive(pid) for pid in workers)
    finally:
        proxy.kill()
    with sqlite3.connect(store) as conn:
        total, = conn.execute("SELECT total FROM endpoints WHERE name='GET /json'").fetchone()
    assert total == n  # every acknowledged request was counted and written


def test_clear_with_workers_starts_counts_and_examples_afresh(traffic):
    proxy, _, _ = traffic
    assert ApiClient(proxy.api_url, timeout=10).clear() == {"success": "Diffs cleared"}
    ids = send_fresh_connections(proxy, "/json", 6)
    settled(proxy, N_JSON + N_UUID + 6)
    assert diffapi.counts(diffapi.get_json(proxy.api_url, "endpoints")) == {
        "GET /json": {"total": 6, "differences": 6}}
    kept = diffapi.results(proxy.api_url, "GET /json", "body.slideshow.author")["requests"]
    assert kept and {r["id"] for r in kept} <= set(ids)


def test_a_killed_worker_is_restarted_and_counted(backends, tmp_path, proc_logs):
    proxy = start_proxy(backends, tmp_path / "results.sqlite", extra=["-workers=2"],
                        log_dir=proc_logs)
    try:
        (worker,) = children(proxy.popen.pid)
        os.kill(worker, signal.SIGKILL)
        # kill() returns before the process is gone: a connection the kernel hands to its
        # listening socket meanwhile is reset when the socket closes.
        wait_for(lambda: not alive(worker), what="the killed worker gone")
        send_fresh_connections(proxy, "/json", 5)  # served meanwhile, by whoever is alive

        def restarted():
            m = diffapi.metrics(proxy.admin_url)
            return (diffapi.metric(m, "diffproxy_worker_restarts_total") == 1
                    and diffapi.metric(m, "diffproxy_workers") == 2)
        wait_for(restarted, timeout=60, what="the killed worker restarted")
        (new,) = wait_for(lambda: {p for p in children(proxy.popen.pid) if alive(p)} or None,
                          what="a live worker process")
        assert new != worker
        send_fresh_connections(proxy, "/json", 20)
        wait_for(lambda: diffapi.get_json(proxy.api_url, "endpoints").get("GET /json", {})
                 .get("total") == 25, what="25 requests counted")
        assert proxy.alive()
    finally:
        assert proxy.stop() == 0


def test_comparisons_in_flight_in_workers_during_a_clear_are_not_recorded(faults, tmp_path):
    """Requests answered by any process before a clear, whose candidate answers after it:
    counted as cleared, never recorded (a worker's results reach the owner late)."""
    from tests.diffproxy.conftest import start_fault_proxy

    held = 6
    proxy = start_fault_proxy(faults, tmp_path / "w.sqlite", log_dir=tmp_path,
                              extra=["-workers=2", "-target.timeout=15s"])
    try:
        before = diffapi.wait_idle(proxy.admin_url)
        try:
            for i in range(held):  # a fresh connection each: both processes take some
                r = httpx.get(f"{proxy.proxy_url}/hold/candidate?n={i}", timeout=10)
                assert r.status_code == 200
            deadline = time.monotonic() + 10
            while faults.holding("candidate") < held and time.monotonic() < deadline:
                time.sleep(0.02)
            assert faults.holding("candidate") == held
            ApiClient(proxy.api_url, timeout=10).clear()
        finally:
            faults.release("candidate")
        after = diffapi.wait_idle(proxy.admin_url, timeout=30)
        assert "GET /hold/candidate" not in diffapi.get_json(proxy.api_url, "endpoints")
        assert diffapi.metric(after, "diffproxy_comparisons_cleared_total") == \
            diffapi.metric(before, "diffproxy_comparisons_cleared_total") + held
        assert diffapi.metric(after, "diffproxy_comparisons_completed_total") == \
            diffapi.metric(before, "diffproxy_comparisons_completed_total")
    finally:
        proxy.stop()
