"""Does reading results stall the proxy? (issue 13 item 5)

`python -m bench.console_poll [--duration 10] [--poll 3] [--rounds 3]`: a store filled to
the caps (1,000 endpoints x 200 fields), the proxy port under wrk load, alternately alone
and while a "console" polls `/api/1/overview` and one endpoint's stats every `--poll`
seconds (the console's interval is 3 s), `--rounds` pairs. Prints each pair's p99s and
the median of their ratios; the promise is a ratio within 2x. One pair on a shared 2-core
machine swings from 0.5x to 2x on its own, hence the pairs. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench import diffproxy_run, wrk
from bench.procs import running, wait_for_port
from bench.settings import REPO
from diffproxy.model import Record
from diffproxy.store import Store
from toolbox.ports import free_port

ENDPOINTS, FIELDS = 1000, 200


async def _fill(path: Path) -> None:
    store = await Store.open(str(path), max_fields=FIELDS)
    changed = {"type": "changed", "left": 1, "right": 2}
    for e in range(ENDPOINTS):
        raw = {f"body.field{f:03d}": changed for f in range(FIELDS)}
        store.add(Record(id=f"r{e}", endpoint=f"GET /endpoint/{e:04d}", raw=raw, noise={}))
        if e % 100 == 99:
            await store.flush()
    await store.close()


def _poller(api: str, every: float, stop: threading.Event, sizes: list[int],
            took: list[float]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        for path in ("/api/1/overview", "/api/1/endpoints/GET%20%2Fendpoint%2F0000/stats"):
            with urllib.request.urlopen(api + path, timeout=60) as r:
                sizes.append(len(r.read()))
        took.append(time.monotonic() - started)
        stop.wait(max(0.0, every - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--poll", type=float, default=3.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    asyncio.run(_fill(work / "proxy" / "results.sqlite"))
    body = work / "body.json"
    body.write_text(json.dumps({"ok": True, "items": list(range(20))}))
    ports = [free_port() for _ in range(3)]
    pairs = []
    with running([sys.executable, "-m", "bench.sleepserver", str(ports[0]), "0", str(body),
                  *map(str, ports[1:])], work / "backends.log", cwd=REPO) as backend:
        for port in ports:
            wait_for_port(port, backend, 15, work / "backends.log")
        with diffproxy_run.diffproxy(sys.executable, work / "proxy", *ports) as dp:
            url = f"http://127.0.0.1:{dp.proxy_port}/get"
            api = f"http://127.0.0.1:{dp.http_port}"
            wrk.run(url, 2, args.connections, 2, work)  # warm-up
            for _ in range(args.rounds):
                alone = wrk.run(url, args.duration, args.connections, 2, work)
                stop, sizes, took = threading.Event(), [], []
                poller = threading.Thread(target=_poller, args=(api, args.poll, stop, sizes, took))
                poller.start()
                try:
                    polled = wrk.run(url, args.duration, args.connections, 2, work)
                finally:
                    stop.set()
                    poller.join(120)
                pairs.append((alone, polled, sizes, took))
    print(f"store at the caps: {ENDPOINTS} endpoints x {FIELDS} fields; load average "
          f"{os.getloadavg()[0]:.2f}")
    ratios = []
    for n, (alone, polled, sizes, took) in enumerate(pairs, 1):
        ratio = polled.p99_ms / alone.p99_ms if alone.p99_ms else float("inf")
        ratios.append(ratio)
        print(f"round {n}: alone {alone.rps:6.0f} req/s p50 {alone.p50_ms:5.2f} ms "
              f"p99 {alone.p99_ms:6.2f} ms | polled {polled.rps:6.0f} req/s p50 "
              f"{polled.p50_ms:5.2f} ms p99 {polled.p99_ms:6.2f} ms ({len(took)} polls, overview "
              f"{max(sizes[::2] or [0]) / 1e6:.2f} MB, slowest poll {max(took or [0]):.2f} s) "
              f"ratio {ratio:.2f}")
    print(f"p99 ratio, median of {len(ratios)}: {statistics.median(ratios):.2f} "
          "(promise: within 2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
