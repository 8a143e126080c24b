"""Scenario `shared`: diff proxy replicas on one PostgreSQL, next to one on SQLite.

One nginx balances round robin over N diff proxies (-workers=1 each, candidate differs, so
examples are written too) as the Service's endpoints would be; N = 1 on SQLite, then
N = 1, 2, 3 on one real PostgreSQL (toolbox.postgres, a fresh database per row). Per row:
throughput and latency at the balancer, the replicas' CPU per 1,000 requests, and the
database's cost per comparison: its CPU (the postmaster's whole process tree) and the WAL
bytes it wrote. Every replica runs on the same 2-core machine as the database, the
backends and wrk, so more replicas share the same cores: the rows show what the shared
store costs, not how a cluster of machines would scale.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import diffproxy_run, nginx, wrk
from bench.procs import BenchError, usage
from bench.settings import BenchSettings
from diffproxy.client import ApiClient
from toolbox import prom
from toolbox.ports import free_port
from toolbox.postgres import PostgresServer, missing

CONFIGS = (("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3))


@dataclass(frozen=True)
class SharedStoreRow:
    store: str
    replicas: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    compared: int
    dropped: int               # at the replicas' queues and, on PostgreSQL, at the store
    proxy_cpu_s_per_1k: float  # all replicas together, per 1,000 requests
    db_cpu_ms_per_1k_comparisons: float | None
    db_wal_bytes_per_comparison: float | None
    totals_agree: bool         # every replica's API reports the same totals afterwards


def _balancer_conf(prefix: Path, listen: int, ports: list[int], workers: int) -> str:
    servers = "".join(f"        server 127.0.0.1:{p};\n" for p in ports)
    return nginx._main_block(prefix, workers) + f"""    upstream replicas {{
{servers}        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{listen} reuseport backlog=4096;
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def _postmaster_pid(server: PostgresServer) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


def _wal_lsn(server: PostgresServer, database: str) -> int:
    return int(server.psql("SELECT pg_current_wal_lsn() - '0/0'", database))


def _row(s: BenchSettings, work: Path, store: str, replicas: int, targets: tuple[int, int, int],
         server: PostgresServer | None) -> SharedStoreRow:
    url = database = None
    if store == "postgres":
        assert server is not None
        database = f"bench_{replicas}"
        url = server.create_database(database)
    with contextlib.ExitStack() as stack:
        proxies = [stack.enter_context(diffproxy_run.diffproxy(
            s.python, work / f"{store}-{replicas}" / f"replica-{i}", *targets, workers=1,
            store_url=url)) for i in range(replicas)]
        listen = free_port()
        prefix = work / f"{store}-{replicas}" / "nginx"
        conf = _balancer_conf(prefix, listen, [p.proxy_port for p in proxies], s.backend_workers)
        stack.enter_context(nginx.nginx(prefix, conf, [listen]))
        target = f"http://127.0.0.1:{listen}/"
        if s.warmup > 0:
            wrk.run(target, s.warmup, s.connections, s.threads, work)
        before = [p.drain(s.drain_timeout)[0] for p in proxies]
        cpu0 = sum(usage(p.pid).cpu_s for p in proxies)
        db_pid = _postmaster_pid(server) if server and url else None
        db0 = usage(db_pid).cpu_s if db_pid else 0.0
        wal0 = _wal_lsn(server, database) if db_pid else 0
        w = wrk.run(target, s.duration, s.connections, s.threads, work)
        after = [p.drain(s.drain_timeout)[0] for p in proxies]
        cpu = sum(usage(p.pid).cpu_s for p in proxies) - cpu0
        done = [a.minus(b) for a, b in zip(after, before)]
        compared = int(sum(d.completed for d in done))
        dropped = int(sum(d.dropped for d in done))
        db_cpu = wal = None
        if db_pid:
            dropped += int(sum(_store_dropped(p) for p in proxies))
            db_cpu = (usage(db_pid).cpu_s - db0) * 1000.0
            wal = _wal_lsn(server, database) - wal0
        totals = [_totals(p) for p in proxies]
        if url:  # the others' last flushes show up within a refresh interval
            for _ in range(30):
                if all(t == totals[0] for t in totals):
                    break
                time.sleep(0.2)
                totals = [_totals(p) for p in proxies]
        per_1k = 1000.0 / w.requests if w.requests else 0.0
        per_cmp_k = 1000.0 / compared if compared else 0.0
        return SharedStoreRow(
            store=store, replicas=replicas, requests=w.requests, rps=round(w.rps, 1),
            p50_ms=w.p50_ms, p99_ms=w.p99_ms, errors=sum(w.errors.values()),
            compared=compared, dropped=dropped, proxy_cpu_s_per_1k=round(cpu * per_1k, 4),
            db_cpu_ms_per_1k_comparisons=round(db_cpu * per_cmp_k, 1) if db_cpu is not None else None,
            db_wal_bytes_per_comparison=round(wal / compared, 1) if wal is not None and compared else None,
            totals_agree=all(t == totals[0] for t in totals))


def _totals(p: diffproxy_run.ProxyUnderTest) -> int:
    return ApiClient(f"http://127.0.0.1:{p.http_port}").total()


def _store_dropped(p: diffproxy_run.ProxyUnderTest) -> float:
    return prom.value(prom.parse(p._get(p.admin_port, "/metrics").decode()),
                      "diffproxy_store_dropped_total")


def run(s: BenchSettings, targets: tuple[int, int, int], work: Path) -> list[SharedStoreRow]:
    problem = missing()
    if problem:
        raise BenchError(problem)
    work.mkdir(parents=True, exist_ok=True)
    try:
        server = PostgresServer.start()
    except (RuntimeError, subprocess.SubprocessError) as exc:
        raise BenchError(f"PostgreSQL would not start: {exc}") from None
    try:
        return [_row(s, work, store, n, targets, server if store == "postgres" else None)
                for store, n in CONFIGS]
    finally:
        server.destroy()


def table(rows: list[SharedStoreRow]) -> str:
    out = ["| store | replicas | req/s | p50 ms | p99 ms | compared / dropped "
           "| replicas' CPU s per 1k req | DB CPU ms per 1k comparisons | WAL bytes per comparison "
           "| same totals on every replica |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        db = "–" if r.db_cpu_ms_per_1k_comparisons is None else f"{r.db_cpu_ms_per_1k_comparisons:,.1f}"
        wal = "–" if r.db_wal_bytes_per_comparison is None else f"{r.db_wal_bytes_per_comparison:,.0f}"
        out.append(f"| {r.store} | {r.replicas} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                   f"| {r.compared:,} / {r.dropped:,} | {r.proxy_cpu_s_per_1k:.3f} | {db} | {wal} "
                   f"| {'yes' if r.totals_agree else 'NO'} |")
    return "\n".join(out)
