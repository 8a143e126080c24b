"""The hostile-traffic figures of issue 13: memory, store size, drain and crash window.

    python -m bench.hostile memory [--wide 200] [--keys 10000] [--big 150] [--mb 1.1] [-- flags]
    python -m bench.hostile store  [--posts 108] [--mb 1.6] [--clients 4 | --paced] [-- flags]
    python -m bench.hostile drain  [--requests 200] [--keys 2000]
    python -m bench.hostile crash  [--mb 4] [--seconds 8] [--clients 1] [--pause 0.2]

Each runs a fresh diff proxy at its default settings (plus what the case needs, printed)
against `bench.hostile_backend`, and prints what it measured. Timings depend on the
machine and its load: a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import string
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench import diffproxy_run
from bench.procs import rss_bytes, running, wait_for_port
from bench.settings import REPO
from diffproxy.client import ApiClient
from toolbox import prom
from toolbox.ports import free_port

MB = 1024 * 1024


def word(n: int) -> str:
    """A path segment without digits: endpoint naming keeps it as it is."""
    out = ""
    while True:
        n, r = divmod(n, 26)
        out = string.ascii_lowercase[r] + out
        if n == 0:
            return out


@contextmanager
def proxy(work: Path, extra: tuple[str, ...] = ()) -> Iterator[diffproxy_run.ProxyUnderTest]:
    ports = [free_port() for _ in range(3)]
    log = work / "backend.log"
    with running([sys.executable, "-m", "bench.hostile_backend", *map(str, ports)], log,
                 cwd=REPO) as backend:
        for port in ports:
            wait_for_port(port, backend, 15, log)
        with diffproxy_run.diffproxy(sys.executable, work / "proxy", *ports, extra=extra) as dp:
            print(f"proxy flags beyond the defaults: {' '.join(extra) or 'none'}")
            yield dp


class PeakRss:
    """The proxy's resident memory, sampled every 50 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.at_rest = rss_bytes(pid)
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def metrics(dp: diffproxy_run.ProxyUnderTest) -> prom.Samples:
    return prom.parse(httpx.get(f"http://127.0.0.1:{dp.admin_port}/metrics", timeout=30).text)


def value(m: prom.Samples, name: str, **labels: str) -> float:
    return prom.total(m, name, **labels) or 0.0


def fan(n: int, workers: int, call: Callable[[httpx.Client, int], httpx.Response]) -> list[int]:
    with httpx.Client(timeout=120) as client, ThreadPoolExecutor(workers) as pool:
        return [r.status_code for r in pool.map(lambda i: call(client, i), range(n))]


def counts_line(m: prom.Samples) -> str:
    return (f"comparisons completed {value(m, 'diffproxy_comparisons_completed_total'):.0f}, "
            f"dropped {value(m, 'diffproxy_comparisons_dropped_total'):.0f} "
            f"({value(m, 'diffproxy_comparisons_dropped_bytes_total') / MB:.0f} MiB), "
            f"bounded {value(m, 'diffproxy_comparisons_bounded_total'):.0f}, "
            f"failed {value(m, 'diffproxy_comparisons_failed_total'):.0f}")


def memory(args, work: Path) -> None:
    """Item 6: wide JSON, then MB-sized answers, each on a fresh proxy; peak RSS of each."""
    cases = [(f"{args.wide} answers of {args.keys} random JSON keys", args.wide,
              lambda c, i, u: c.get(f"{u}/wide/{args.keys}")),
             (f"{args.big} answers of {args.mb:g} MB", args.big,
              lambda c, i, u: c.get(f"{u}/big/{word(i)}", params={"mb": args.mb}))]
    for n, (label, count, call) in enumerate(cases):
        if not count:
            continue
        with proxy(work / f"memory{n}", tuple(args.extra)) as dp:
            url = dp.url.rstrip("/")
            with PeakRss(dp.pid) as rss:
                started = time.monotonic()
                statuses = fan(count, 16, lambda c, i, call=call, url=url: call(c, i, url))
                answered = time.monotonic() - started
                _, took, settled = dp.drain(600)
            m = metrics(dp)
            print(f"{label}: {statuses.count(200)}/{count} answered 200 in {answered:.1f} s, "
                  f"compared within {answered + took:.1f} s (settled: {settled}); "
                  f"RSS at rest {rss.at_rest / MB:.0f} MiB, peak {rss.peak / MB:.0f} MiB, "
                  f"after {rss_bytes(dp.pid) / MB:.0f} MiB; {counts_line(m)}")


def sqlite_value(path: Path, sql: str):
    """One value from the proxy's results file, read after the proxy stopped writing."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def store(args, work: Path) -> None:
    """Item 7: large POSTs (each kept as an example) under the store's size budget."""
    extra = ("-allowHttpSideEffects", *args.extra)
    body = ("x" * int(args.mb * 1_000_000)).encode()
    with proxy(work / "store", extra) as dp:
        def post(client: httpx.Client, i: int) -> httpx.Response:
            r = client.post(f"{dp.url}echo/{word(i)}", content=body,
                            headers={"Content-Type": "text/plain"})
            if args.paced:  # one at a time through the comparison: nothing dropped
                dp.drain(600)
            return r
        statuses = fan(args.posts, 1 if args.paced else args.clients, post)
        dp.drain(600)
        time.sleep(1.5)  # the last flush and its checkpoint
        m = metrics(dp)
        files = {p.name: p.stat().st_size for p in (work / "store" / "proxy").glob("results.sqlite*")}
        api = ApiClient(f"http://127.0.0.1:{dp.http_port}", timeout=60).endpoints()
    examples = sqlite_value(work / "store" / "proxy" / "results.sqlite", "SELECT count(*) FROM results")
    print(f"{args.posts} POSTs of {args.mb:g} MB: {statuses.count(200)} answered 200; "
          f"{sum(e['total'] for e in api.values())} counted over {len(api)} endpoints; "
          f"{examples} examples kept, "
          f"{value(m, 'diffproxy_store_examples_thinned_total'):.0f} thinned; files: "
          + ", ".join(f"{name} {size / MB:.0f} MiB" for name, size in sorted(files.items()))
          + f"; {counts_line(m)}")


def drain(args, work: Path) -> None:
    """Item 9: SIGTERM while slow comparisons are queued; how long the stop takes, and
    where each answered request went (stored, or dropped and counted)."""
    with proxy(work / "drain") as dp:
        url = dp.url.rstrip("/")
        statuses = fan(args.requests, 16, lambda c, i: c.get(f"{url}/wide/{args.keys}"))
        m = metrics(dp)
        waiting = value(m, "diffproxy_comparison_queue_depth")
        done_before = value(m, "diffproxy_comparisons_completed_total")
        sent_at = time.monotonic()
        os.kill(dp.pid, signal.SIGTERM)
        code = dp.popen.wait(600)
        took = time.monotonic() - sent_at
    log = (work / "drain" / "proxy" / "diffproxy.log").read_text(errors="replace")
    dropped = [line for line in log.splitlines() if "dropped after" in line]
    stored = sqlite_value(work / "drain" / "proxy" / "results.sqlite",
                          "SELECT coalesce(sum(total), 0) FROM endpoints")
    print(f"{args.requests} requests of {args.keys} random keys answered ({statuses.count(200)} "
          f"200); at SIGTERM {done_before:.0f} compared, {waiting:.0f} queued; exit {code} "
          f"after {took:.2f} s (-shutdown.drainTimeout 5 s); stored after the stop: {stored}; "
          f"log: {dropped[-1].split('] ', 1)[-1] if dropped else 'nothing dropped'}")


def crash(args, work: Path) -> None:
    """Item 9: kill -9 under a load of MB-sized answers; the oldest answered request the
    file misses is the real crash window."""
    acked: dict[str, float] = {}
    stop = threading.Event()
    with proxy(work / "crash") as dp:
        url = dp.url.rstrip("/")
        numbers = iter(range(990))  # one endpoint each, under -max.endpoints (1000)
        lock = threading.Lock()

        def load() -> None:
            with httpx.Client(timeout=60) as client:
                while not stop.is_set():
                    with lock:
                        n = next(numbers, None)
                    if n is None:
                        return
                    name = word(n)
                    try:
                        r = client.get(f"{url}/big/{name}", params={"mb": args.mb})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        acked[f"GET /big/{name}"] = time.monotonic()
                    stop.wait(args.pause)  # below what the proxy compares: nothing queued

        threads = [threading.Thread(target=load) for _ in range(args.clients)]
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        m = metrics(dp)
        killed_at = time.monotonic()
        os.kill(dp.pid, signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(60)
    with sqlite3.connect(work / "crash" / "proxy" / "results.sqlite") as conn:
        stored = {name for (name,) in conn.execute("SELECT name FROM endpoints")}
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    answered = {ep: t for ep, t in acked.items() if t <= killed_at}
    missing = sorted(killed_at - t for ep, t in answered.items() if ep not in stored)
    print(f"{len(answered)} answers of {args.mb:g} MB in {args.seconds:g} s by {args.clients} "
          f"clients pausing {args.pause:g} s, {len(stored & set(answered))} of them in the file after kill -9 "
          f"(integrity_check {ok}); missing {len(missing)}, the oldest answered "
          f"{missing[-1] if missing else 0:.2f} s before the kill; just before it: "
          f"{counts_line(m)}, queue depth {value(m, 'diffproxy_comparison_queue_depth'):.0f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="case", required=True)
    p = sub.add_parser("memory")
    p.add_argument("--wide", type=int, default=200)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--big", type=int, default=150)
    p.add_argument("--mb", type=float, default=1.1)
    p.add_argument("extra", nargs="*", help="more proxy flags (after --)")
    p = sub.add_parser("store")
    p.add_argument("--posts", type=int, default=108)
    p.add_argument("--mb", type=float, default=1.6)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--paced", action="store_true", help="each POST compared before the next")
    p.add_argument("extra", nargs="*", help="more proxy flags (after --)")
    p = sub.add_parser("drain")
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--keys", type=int, default=2000)
    p = sub.add_parser("crash")
    p.add_argument("--mb", type=float, default=4.0)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--clients", type=int, default=1)
    p.add_argument("--pause", type=float, default=0.2, help="seconds between a client's requests")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix=f"bench-hostile-{args.case}-"))
    print(f"load average {os.getloadavg()[0]:.2f}; work in {work}")
    {"memory": memory, "store": store, "drain": drain, "crash": crash}[args.case](args, work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
