"""What one benchmark run does: durations, load shape, where results go."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

SCENARIOS = ("a", "b", "c", "d", "e", "f", "g", "memory", "shared")
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class BenchSettings:
    duration: float = 15.0          # seconds of measured load per scenario
    warmup: float = 2.0             # unmeasured load first: connection pools, caches, JIT-free but lazy imports
    connections: int = 64
    threads: int = 2                # wrk threads; the machine has 2 cores shared with everything else
    # The 20 ms scenario measures latency, not throughput: enough connections to keep the
    # proxy busy without queueing in front of it (offered load = connections / 20 ms).
    slow_connections: int = 8
    slow_delay_ms: int = 20
    memory_requests: int = 100_000  # the target is stated for 1,000,000
    memory_paths: int = 10_000
    memory_max_seconds: float = 240.0
    memory_connections: int = 32
    drain_timeout: float = 30.0     # bound on waiting for queued comparisons after load stops
    # Processes doing a fan-out, the same on each side so CPU and throughput compare like for
    # like: nginx mirror's worker_processes, Envoy's --concurrency, the diff proxy's -workers.
    workers: int = 2
    backend_workers: int = 1        # the backends' (and the shared-store balancer's) nginx
    # (g): documents from 200 B to 50 KB, every tenth differing, one in a hundred of 1 MB
    mix_documents: int = 100
    out_dir: Path = REPO / "bench" / "results"
    docs: bool = True               # rewrite docs/bench.md's results section and docs/img/bench.png
    docs_path: Path = REPO / "docs" / "bench.md"
    readme_path: Path = REPO / "README.md"  # shows the latest table too
    chart_path: Path = REPO / "docs" / "img" / "bench.png"
    scenarios: tuple[str, ...] = SCENARIOS
    profile: bool = False           # extra py-spy runs of (c) and (d) after the measured ones
    profile_seconds: float = 20.0
    python: str = str(REPO / ".venv" / "bin" / "python")
    smoke: bool = False


def smoke_settings(base: BenchSettings) -> BenchSettings:
    """A run that only proves the plumbing: every scenario, a second each, nothing published."""
    return replace(
        base, duration=1.0, warmup=0.0, connections=4, threads=1, slow_connections=2,
        memory_requests=600, memory_paths=200, memory_max_seconds=10.0, memory_connections=4,
        drain_timeout=5.0, docs=False, profile=False, profile_seconds=2.0, smoke=True,
    )


def _positive(kind: type):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _scenarios(text: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in names if s not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown) or '(none)'}; choose from {','.join(SCENARIOS)}")
    return names


def parse_args(argv: list[str] | None = None) -> BenchSettings:
    d = BenchSettings()
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput, latency, CPU and memory of the diff proxy next to nginx, in one run.")
    p.add_argument("--duration", type=_positive(float), default=d.duration, help="seconds per scenario (%(default)s)")
    p.add_argument("--warmup", type=float, default=d.warmup,
                   help="unmeasured seconds before each scenario (%(default)s)")
    p.add_argument("--connections", "-c", type=_positive(int), default=d.connections,
                   help="wrk connections (%(default)s)")
    p.add_argument("--threads", "-t", type=_positive(int), default=d.threads, help="wrk threads (%(default)s)")
    p.add_argument("--slow-connections", type=_positive(int), default=d.slow_connections,
                   help="wrk connections for the 20 ms scenario (%(default)s)")
    p.add_argument("--memory-requests", type=_positive(int), default=d.memory_requests,
                   help="requests in the memory scenario (%(default)s)")
    p.add_argument("--memory-paths", type=_positive(int), default=d.memory_paths,
                   help="distinct paths in the memory scenario (%(default)s)")
    p.add_argument("--memory-max-seconds", type=_positive(float), default=d.memory_max_seconds,
                   help="stop the memory scenario after this long even if short of requests (%(default)s)")
    p.add_argument("--drain-timeout", type=_positive(float), default=d.drain_timeout,
                   help="seconds to wait for queued comparisons after the load stops (%(default)s)")
    p.add_argument("--workers", type=_positive(int), default=d.workers,
                   help="processes on each side of a fan-out: nginx mirror worker_processes, "
                        "Envoy --concurrency, diff proxy -workers (%(default)s)")
    p.add_argument("--backend-workers", type=_positive(int), default=d.backend_workers,
                   help="worker_processes of the backends' nginx (%(default)s)")
    p.add_argument("--out", type=Path, default=d.out_dir, help="results root; a dated directory is made inside")
    p.add_argument("--scenarios", type=_scenarios, default=d.scenarios,
                   help=f"comma list out of {','.join(SCENARIOS)} (all)")
    p.add_argument("--no-docs", action="store_true", help="do not rewrite docs/bench.md and docs/img/bench.png")
    p.add_argument("--profile", action="store_true", help="also profile the proxy with py-spy under (c) and (d)")
    p.add_argument("--profile-seconds", type=_positive(float), default=d.profile_seconds)
    p.add_argument("--smoke", action="store_true", help="tiny run for tests: 1 s each, nothing published")
    a = p.parse_args(argv)
    if a.warmup < 0:
        p.error("--warmup must not be negative")
    s = replace(
        d, duration=a.duration, warmup=a.warmup, connections=a.connections, threads=a.threads,
        slow_connections=a.slow_connections, memory_requests=a.memory_requests,
        memory_paths=a.memory_paths, memory_max_seconds=a.memory_max_seconds,
        workers=a.workers, backend_workers=a.backend_workers, drain_timeout=a.drain_timeout,
        out_dir=a.out, scenarios=a.scenarios,
        docs=not a.no_docs, profile=a.profile, profile_seconds=a.profile_seconds,
    )
    if a.smoke:
        s = replace(smoke_settings(s), out_dir=a.out, scenarios=a.scenarios)
    return s
