"""One diff proxy process for one scenario: start, scrape /metrics, wait for its queue to drain."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import BenchError, running, wait_for_port
from bench.settings import REPO
from diffproxy.client import ApiClient
from toolbox import prom, ready
from toolbox.ports import free_port

# Series names as diffproxy/metrics.py exports them.
REQUESTS = "diffproxy_requests_total"
QUEUED = "diffproxy_comparisons_queued_total"
COMPLETED = "diffproxy_comparisons_completed_total"
DROPPED = "diffproxy_comparisons_dropped_total"
FAILED = "diffproxy_comparisons_failed_total"
QUEUE_DEPTH = "diffproxy_comparison_queue_depth"


@dataclass(frozen=True)
class Counts:
    requests: float
    queued: float
    completed: float
    dropped: float
    failed: float
    depth: float

    def minus(self, before: Counts) -> Counts:
        return Counts(self.requests - before.requests, self.queued - before.queued,
                      self.completed - before.completed, self.dropped - before.dropped,
                      self.failed - before.failed, self.depth)


@dataclass(frozen=True)
class ProxyUnderTest:
    pid: int
    proxy_port: int
    admin_port: int
    http_port: int
    popen: subprocess.Popen | None = field(default=None, compare=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}/"

    def _get(self, port: int, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.read()

    def counts(self) -> Counts:
        s = prom.parse(self._get(self.admin_port, "/metrics").decode())

        def value(name: str) -> float:
            v = prom.total(s, name)
            if v is None and name == REQUESTS:
                return 0.0  # labelled by method: no series until the first request
            if v is None:
                raise BenchError(f"/metrics has no {name}; has diffproxy/metrics.py renamed it?")
            return v

        return Counts(value(REQUESTS), value(QUEUED), value(COMPLETED), value(DROPPED),
                      value(FAILED), value(QUEUE_DEPTH))

    def endpoints(self) -> int:
        return len(ApiClient(f"http://127.0.0.1:{self.http_port}").endpoints())

    def drain(self, timeout: float) -> tuple[Counts, float, bool]:
        """Wait until every request that came in has been compared (or dropped); bounded."""
        start = time.monotonic()
        previous = None
        while True:
            now = self.counts()
            settled = (now.depth == 0 and now.queued <= now.completed + now.failed
                       and previous is not None and previous.requests == now.requests)
            elapsed = time.monotonic() - start
            if settled or elapsed >= timeout:
                return now, elapsed, settled
            previous = now
            time.sleep(0.2)


@contextlib.contextmanager
def diffproxy(python: str, workdir: Path, primary: int, secondary: int, candidate: int,
              workers: int = 1, ready_timeout: float = 30.0,
              store_url: str | None = None, extra: tuple[str, ...] = ()) -> Iterator[ProxyUnderTest]:
    """`store_url`: the shared PostgreSQL store instead of a SQLite file of its own;
    `extra`: more flags, after these."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = [free_port() for _ in range(3)]
    argv = [python, "-m", "diffproxy",
            f"-candidate=127.0.0.1:{candidate}",
            f"-master.primary=127.0.0.1:{primary}",
            f"-master.secondary=127.0.0.1:{secondary}",
            f"-proxy.port=127.0.0.1:{ports[0]}",
            f"-admin.port=127.0.0.1:{ports[1]}",
            f"-http.port=127.0.0.1:{ports[2]}",
            f"-store.url={store_url}" if store_url else f"-store.path={workdir / 'results.sqlite'}",
            "-serviceName=bench",
            f"-workers={workers}", *extra]
    log = workdir / "diffproxy.log"
    with running(argv, log, cwd=REPO) as proc:
        for port in ports:
            wait_for_port(port, proc, ready_timeout, log)
        dp = ProxyUnderTest(proc.pid, *ports, popen=proc)
        _wait_ready(dp, proc, ready_timeout, log)
        yield dp


def _wait_ready(dp: ProxyUnderTest, proc, timeout: float, log: Path) -> None:
    url = f"http://127.0.0.1:{dp.admin_port}/readyz"
    outcome = ready.poll(lambda: ready.http_status(url, timeout=2) == 200, timeout,
                         died=lambda: proc.poll() is not None, interval=0.1)
    if outcome == "died":
        raise BenchError(f"diffproxy exited with {proc.returncode}; see {log}")
    if outcome == "timeout":
        raise BenchError(f"diffproxy not ready after {timeout:g}s ({url} answered "
                         f"{ready.http_status(url, timeout=2) or 'nothing'}); see {log}")
