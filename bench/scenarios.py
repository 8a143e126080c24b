"""The scenarios themselves: what is started, what is loaded, what is read before and after."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from bench import diffproxy_run, envoy, machine, nginx, profile, shared_store, wrk
from bench.bodies import MixDocument, candidate_body, mix_documents, primary_body
from bench.diffproxy_run import Counts, ProxyUnderTest
from bench.procs import BenchError, running, usage, wait_for_port
from bench.results import MB, TITLES, Comparisons, MemoryResult, ProfileResult, RunResult, ScenarioResult
from bench.settings import REPO, BenchSettings
from toolbox.ports import free_port

ONE_MILLION = 1_000_000


@dataclass(frozen=True)
class Backends:
    """Loopback ports of every backend, and the processes serving them."""
    primary: int
    secondary: int
    candidate_same: int
    candidate_diff: int
    slow_primary: int
    slow_secondary: int
    slow_candidate: int
    mix_primary: int
    mix_secondary: int
    mix_candidate: int
    mix_paths: tuple[str, ...]
    fast_pid: int
    slow_pid: int
    slow_kind: str   # how the delay is produced, for the report


# Every served file gets this modification time, so Last-Modified and ETag differ only where
# the bytes do (ETag is mtime and size).
_MTIME = 1_700_000_000


def _write_mix(root: Path, docs: list[MixDocument]) -> tuple[Path, Path]:
    """The mix's files: one tree for the primary and the secondary, one for the candidate."""
    trees = (root / "primary", root / "candidate")
    for tree in trees:
        (tree / "mix").mkdir(parents=True, exist_ok=True)
    # Run as root, nginx's workers read files as `nobody`: the scratch directory (mkdtemp's
    # 0700) and the trees must be searchable by others.
    for d in (root.parent, root, *trees, *(t / "mix" for t in trees)):
        d.chmod(0o755)
    for doc in docs:
        for tree, body in zip(trees, (doc.primary, doc.candidate)):
            path = tree / "mix" / doc.name
            path.write_bytes(body)
            os.utime(path, (_MTIME, _MTIME))
    return trees


@contextlib.contextmanager
def backends(s: BenchSettings, work: Path) -> Iterator[Backends]:
    fast = {name: free_port() for name in ("primary", "secondary", "candidate_same", "candidate_diff")}
    slow = {name: free_port() for name in ("slow_primary", "slow_secondary", "slow_candidate")}
    mix = {name: free_port() for name in ("mix_primary", "mix_secondary", "mix_candidate")}
    body, other = primary_body(), candidate_body()
    specs = [nginx.Backend(n, p, other if n == "candidate_diff" else body) for n, p in fast.items()]
    docs = mix_documents(s.mix_documents)
    same_tree, candidate_tree = _write_mix(work / "mix", docs)
    specs += [nginx.Backend(n, p, root=candidate_tree if n == "mix_candidate" else same_tree)
              for n, p in mix.items()]
    mix_paths = tuple(f"/mix/{d.name}" for d in docs)
    with contextlib.ExitStack() as stack:
        if nginx.echo_module_available():
            specs += [nginx.Backend(n, p, body, s.slow_delay_ms) for n, p in slow.items()]
            proc = stack.enter_context(nginx.nginx(
                work / "backends", nginx.render_backends(work / "backends", specs, s.backend_workers),
                [b.port for b in specs]))
            slow_pid, kind = proc.pid, f"nginx echo_sleep {s.slow_delay_ms} ms"
        else:
            proc = stack.enter_context(nginx.nginx(
                work / "backends", nginx.render_backends(work / "backends", specs, s.backend_workers),
                [b.port for b in specs]))
            body_file = work / "body.json"
            body_file.write_text(body)
            sleeper = stack.enter_context(running(
                [s.python, "-m", "bench.sleepserver", *map(str, [slow["slow_primary"], s.slow_delay_ms,
                 body_file, slow["slow_secondary"], slow["slow_candidate"]])],
                work / "sleepserver.log", cwd=REPO))
            for port in slow.values():
                wait_for_port(port, sleeper, 15, work / "sleepserver.log")
            slow_pid, kind = sleeper.pid, f"aiohttp+uvloop asyncio.sleep {s.slow_delay_ms} ms"
        yield Backends(**fast, **slow, **mix, mix_paths=mix_paths, fast_pid=proc.pid,
                       slow_pid=slow_pid, slow_kind=kind)


def _comparisons(before: Counts, after: Counts, drained: bool, drain_s: float) -> Comparisons:
    d = after.minus(before)
    return Comparisons(int(d.requests), int(d.queued), int(d.completed), int(d.dropped),
                       int(d.failed), drained, round(drain_s, 2))


def _measure(key: str, under_test: str, processes: int, url: str, sut_pid: int, backend_pid: int,
             conns: int, s: BenchSettings, work: Path, proxy: ProxyUnderTest | None = None,
             reference: dict[str, float] | None = None,
             path_list: tuple[str, ...] = ()) -> ScenarioResult:
    rss_before = usage(sut_pid).rss
    if s.warmup > 0:
        wrk.run(url, s.warmup, conns, s.threads, work, path_list=path_list)
    counts_before = proxy.drain(s.drain_timeout)[0] if proxy else None
    cpu0, bcpu0 = usage(sut_pid).cpu_s, usage(backend_pid).cpu_s
    rss_max = [rss_before]

    def sample() -> bool:  # the memory ceiling under load; never stops the run
        rss_max.append(usage(sut_pid).rss)
        return False

    w = wrk.run(url, s.duration, conns, s.threads, work, stop_when=sample, path_list=path_list)
    comparisons = None
    if proxy is not None and counts_before is not None:
        # The comparison happens after the response went out, so its CPU belongs to this
        # window too: read the clocks only once the queue is empty.
        after, drain_s, drained = proxy.drain(s.drain_timeout)
        comparisons = _comparisons(counts_before, after, drained, drain_s)
    end = usage(sut_pid)
    rss_max.append(end.rss)
    cpu = end.cpu_s - cpu0
    per_1k = 1000.0 / w.requests if w.requests else 0.0
    return ScenarioResult(
        key=key, title=TITLES[key], under_test=under_test, processes=processes, connections=conns,
        requests=w.requests, duration_s=round(w.duration_s, 3), rps=round(w.rps, 1),
        p50_ms=w.p50_ms, p90_ms=w.p90_ms, p99_ms=w.p99_ms, errors=w.errors,
        cpu_s=round(cpu, 2), cpu_s_per_1k=round(cpu * per_1k, 4),
        backend_cpu_s_per_1k=round((usage(backend_pid).cpu_s - bcpu0) * per_1k, 4),
        rss_before_mb=round(rss_before / MB, 1), rss_after_mb=round(end.rss / MB, 1),
        rss_max_mb=round(max(rss_max) / MB, 1), comparisons=comparisons,
        reference_p50_ms=max(reference.values()) if reference else None,
        reference=reference or {},
    )


def _backend_direct(s: BenchSettings, b: Backends, work: Path) -> ScenarioResult:
    return _measure("a", "backend nginx", s.backend_workers, f"http://127.0.0.1:{b.primary}/",
                    b.fast_pid, b.fast_pid, s.connections, s, work / "a")


def _nginx_mirror(s: BenchSettings, b: Backends, work: Path) -> ScenarioResult:
    port = free_port()
    conf = nginx.render_mirror(work / "b" / "nginx", port, b.primary, b.secondary,
                               b.candidate_same, s.workers)
    with nginx.nginx(work / "b" / "nginx", conf, [port]) as proc:
        return _measure("b", "nginx mirror", s.workers, f"http://127.0.0.1:{port}/", proc.pid,
                        b.fast_pid, s.connections, s, work / "b")


def _envoy_mirror(s: BenchSettings, b: Backends, work: Path) -> ScenarioResult:
    port = free_port()
    with envoy.envoy(work / "f" / "envoy", port, b.primary, b.secondary, b.candidate_same,
                     s.workers) as proc:
        # The translator's virtual host answers the Service's address, as a sidecar would.
        return _measure("f", "Envoy mirror", s.workers, f"http://127.0.0.1:{port}/", proc.pid,
                        b.fast_pid, s.connections, s, work / "f")


def _proxied(key: str, s: BenchSettings, b: Backends, work: Path) -> ScenarioResult:
    if key == "e":
        # The slowest backend sets the floor the proxy is held to, each measured alone at
        # the same concurrency the proxy will see.
        reference = {}
        for name, port in (("primary", b.slow_primary), ("secondary", b.slow_secondary),
                           ("candidate", b.slow_candidate)):
            r = wrk.run(f"http://127.0.0.1:{port}/", max(1.0, s.duration / 3), s.slow_connections,
                        s.threads, work / "e")
            reference[name] = r.p50_ms
        ports = (b.slow_primary, b.slow_secondary, b.slow_candidate)
        backend_pid, conns = b.slow_pid, s.slow_connections
    elif key == "g":
        ports, backend_pid, conns, reference = ((b.mix_primary, b.mix_secondary, b.mix_candidate),
                                                b.fast_pid, s.connections, None)
    else:
        candidate = b.candidate_same if key == "c" else b.candidate_diff
        ports, backend_pid, conns, reference = (b.primary, b.secondary, candidate), b.fast_pid, s.connections, None
    with diffproxy_run.diffproxy(s.python, work / key / "diffproxy", *ports,
                                 workers=s.workers) as dp:
        return _measure(key, "diff proxy", s.workers, dp.url, dp.pid, backend_pid, conns, s,
                        work / key, proxy=dp, reference=reference,
                        path_list=b.mix_paths if key == "g" else ())


def _late_slope(samples: list[tuple[int, float]]) -> float:
    """MB per request over the second half of the run (least squares); 0 with too few points."""
    late = samples[len(samples) // 2:]
    if len(late) < 3:
        return 0.0
    xs, ys = [x for x, _ in late], [y for _, y in late]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0


def _memory(s: BenchSettings, b: Backends, work: Path) -> MemoryResult:
    with diffproxy_run.diffproxy(s.python, work / "memory" / "diffproxy",
                                 b.primary, b.secondary, b.candidate_diff,
                                 workers=s.workers) as dp:
        rss0 = usage(dp.pid).rss
        base = dp.counts()
        samples: list[tuple[int, float]] = [(0, round(rss0 / MB, 2))]
        start = time.monotonic()

        def enough() -> bool:
            seen = int(dp.counts().requests - base.requests)
            samples.append((seen, round(usage(dp.pid).rss / MB, 2)))
            return seen >= s.memory_requests or time.monotonic() - start >= s.memory_max_seconds

        w = wrk.run(dp.url, s.memory_max_seconds, s.memory_connections, s.threads, work / "memory",
                    paths=s.memory_paths, stop_when=enough)
        after, drain_s, drained = dp.drain(s.drain_timeout)
        rss1 = usage(dp.pid).rss
        samples.append((int(after.requests - base.requests), round(rss1 / MB, 2)))
        growth = (rss1 - rss0) / MB
        remaining = max(0, ONE_MILLION - w.requests)
        projected = growth + max(0.0, _late_slope(samples)) * remaining
        return MemoryResult(
            requests=w.requests, target_requests=s.memory_requests, paths=s.memory_paths,
            connections=w.connections, duration_s=round(w.duration_s, 2), rps=round(w.rps, 1),
            errors=w.errors, rss_before_mb=round(rss0 / MB, 1), rss_after_mb=round(rss1 / MB, 1),
            growth_mb=round(growth, 1), projected_growth_1m_mb=round(projected, 1),
            endpoints=dp.endpoints(), comparisons=_comparisons(base, after, drained, drain_s),
            samples=samples,
        )


PROFILED = ("c", "d", "g")


def _profile(key: str, s: BenchSettings, b: Backends, work: Path) -> ProfileResult:
    if key == "g":
        ports, paths = (b.mix_primary, b.mix_secondary, b.mix_candidate), b.mix_paths
    else:
        ports, paths = (b.primary, b.secondary, b.candidate_same if key == "c" else b.candidate_diff), ()
    with diffproxy_run.diffproxy(s.python, work / f"profile-{key}" / "diffproxy", *ports,
                                 workers=s.workers) as dp:
        if s.warmup > 0:
            wrk.run(dp.url, s.warmup, s.connections, s.threads, work / f"profile-{key}",
                    path_list=paths)
        dp.drain(s.drain_timeout)
        raw = work / f"profile-{key}" / "py-spy.txt"
        spy = profile.start(dp.pid, raw, s.profile_seconds)
        time.sleep(0.5)  # py-spy attaches before the load starts
        w = wrk.run(dp.url, s.profile_seconds - 1, s.connections, s.threads, work / f"profile-{key}",
                    path_list=paths)
        out, _ = spy.communicate(timeout=s.profile_seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            raise BenchError(f"py-spy failed ({spy.returncode}): {out.strip()[-500:]}")
        p = profile.summarise(raw.read_text())
        (work / f"profile-{key}.md").write_text(profile.render(TITLES[key], p))
        return ProfileResult(key, round(w.rps, 1), p.samples, p.by_area_pct, p.self_pct,
                             p.inclusive_pct)


def _attempt(run: RunResult, name: str, fn: Callable[[], object], log: Callable[[str], None]):
    """One scenario failing (a process that would not start) must not cost the others."""
    log(f"bench: {name} ...")
    t0 = time.monotonic()
    try:
        value = fn()
    except (BenchError, RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
        run.failures[name] = f"{type(e).__name__}: {e}"
        log(f"bench: {name} FAILED: {e}")
        traceback.print_exc(file=sys.stderr)
        return None
    log(f"bench: {name} done in {time.monotonic() - t0:.1f}s")
    return value


def run_all(s: BenchSettings, work: Path, log: Callable[[str], None] = print) -> RunResult:
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()}
    run = RunResult(started=datetime.now().astimezone().isoformat(timespec="seconds"),
                    settings=settings, machine=machine.describe())
    with backends(s, work) as b:
        run.notes.append(f"20 ms backends: {b.slow_kind}")
        steps: dict[str, Callable[[], object]] = {
            "a": lambda: _backend_direct(s, b, work),
            "b": lambda: _nginx_mirror(s, b, work),
            "c": lambda: _proxied("c", s, b, work),
            "d": lambda: _proxied("d", s, b, work),
            "e": lambda: _proxied("e", s, b, work),
            "f": lambda: _envoy_mirror(s, b, work),
            "g": lambda: _proxied("g", s, b, work),
        }
        for key, step in steps.items():
            if key in s.scenarios:
                result = _attempt(run, TITLES[key], step, log)
                if result is not None:
                    run.scenarios[key] = result
        if "memory" in s.scenarios:
            run.memory = _attempt(run, TITLES["memory"], lambda: _memory(s, b, work), log)
        if "shared" in s.scenarios:
            run.shared_store = _attempt(run, TITLES["shared"], lambda: shared_store.run(
                s, (b.primary, b.secondary, b.candidate_diff), work / "shared"), log)
        if s.profile:
            # (c) and (d) always (the request path and the deepdiff path); (g) when it ran
            for key in (k for k in PROFILED if k in ("c", "d") or k in s.scenarios):
                p = _attempt(run, f"profile {key}", lambda k=key: _profile(k, s, b, work), log)
                if p is not None:
                    run.profiles[key] = p
    return run
