"""`python -m localmesh demo` on the local backend: start, show, wait for Ctrl-C, stop."""

from __future__ import annotations

import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from diffproxy import report
from diffproxy.client import ApiClient, ApiError
from localmesh import traffic
from localmesh.stack import LocalMesh, MeshSettings
from toolbox import ready


def python_cmd() -> str:
    """How to call this interpreter from the current folder (`.venv/bin/python`)."""
    exe = Path(sys.executable)
    try:
        rel = exe.relative_to(Path.cwd())
        return shlex.quote(str(rel))
    except ValueError:
        return shlex.quote(str(exe))


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    """SIGTERM behaves like Ctrl-C, so `finally` blocks stop the children either way
    (they run in their own sessions and would outlive a killed parent).

    Only the first signal interrupts: a second one must not cut short the stop the first
    began. It comes often: `make demo` and the demo share the terminal's process group, and
    make passes on the signal both already got (or the user presses Ctrl-C again)."""
    def handler(_signum, _frame):
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def wait_for_results(api_url: str, expected: int, timeout: float = 10.0) -> int:
    """Mirroring is fire-and-forget: poll until the proxy has compared what was mirrored."""
    total = 0

    def compared_all() -> bool:
        nonlocal total
        try:
            total = ApiClient(api_url, timeout=2).total()
        except ApiError:
            pass
        return total >= expected

    ready.poll(compared_all, timeout, interval=0.2)
    return total


def envoy_counters(mesh: LocalMesh) -> str:
    """Envoy's own view of the copies it sent, next to what the diff proxy compared."""
    lines = []
    for cluster, c in mesh.envoy_mirror_counters().items():
        lines.append(f"Envoy mirrored to {cluster}: {c['upstream_rq_completed']} copies, "
                     f"{c['upstream_rq_2xx']} answered 2xx, {c['upstream_rq_5xx']} 5xx, "
                     f"{c['upstream_cx_connect_fail']} connect failures (admin /stats)")
    return "\n".join(lines) or "Envoy mirrors nothing (mirrorPercentage 0)"


def summary(mesh: LocalMesh) -> str:
    e = mesh.endpoints
    py = python_cmd()
    run = e.run_dir
    try:
        run = run.relative_to(Path.cwd())
    except ValueError:
        pass
    p = e.ports
    if p.relay is not None:
        mirror_row = f"  v2 relay (mirror copy)  http://127.0.0.1:{p.relay}   nginx -> diff proxy {e.proxy_url}\n"
    else:
        mirror_row = f"  mirror target           {e.proxy_url}   the diff proxy itself (relay off)\n"
    if e.prometheus_url:
        prometheus_row = (f"  Prometheus              {e.prometheus_url}/alerts   scrapes the diff proxy and "
                          f"Envoy; rules {run}/prometheus/rules.yml\n")
    else:
        prometheus_row = ""
    host_note = "copies keep the caller's Host" if mesh.host_form == "plain" else "copies go to host-shadow"
    return f"""
The mirroring demo is running on loopback (mirror {mesh.mirror_percentage:g}%, {mesh.istio.describe()}: {host_note}).

  console (diff results)  {e.console_url}/
  mesh entry              {e.entry_url}   <- plays {mesh.entry_host}; the caller's Envoy sidecar
  Envoy admin             {e.envoy_admin_url}/stats   config {run}/sidecar/envoy.json
  v1 (answers callers)    http://127.0.0.1:{p.v1}   httpbin
{mirror_row}  httpbin-master          http://127.0.0.1:{p.master}   primary and secondary
  httpbin-candidate       http://127.0.0.1:{p.candidate}   candidate.app (GET /json changed, GET /delay/:n +80 ms)
  diff proxy admin        {e.admin_url}/metrics
{prometheus_row}
Send more traffic (what the sleep pod does):
  {py} -m localmesh traffic --url {e.entry_url} -n 20
  curl -H 'Host: {mesh.entry_host}' {e.entry_url}/headers
See the report (CI gate; exit 1 on signal, or on an endpoint the candidate made slower):
  {py} -m diffproxy report --url {e.console_url} --fail-on-signal --fail-on-latency
Logs of every process: {run}/

Press Ctrl-C to stop everything.
"""


def run_local(settings: MeshSettings, out: TextIO = sys.stdout, state_file: Path | None = None) -> int:
    mesh = LocalMesh(settings)
    with stop_signals_raise():
        try:
            print("starting httpbin v1, httpbin-master, httpbin-candidate, the diff proxy, "
                  "the relay, the caller's Envoy sidecar"
                  + (" and Prometheus" if settings.prometheus else "") + " ...", file=out, flush=True)
            mesh.start()
            rounds = traffic.demo_rounds(settings.topology.latency.min_samples)
            paths = list(traffic.expand(traffic.DEMO_PATHS, rounds * len(traffic.DEMO_PATHS)))
            replies = mesh.send_paths(paths, interval=traffic.DEMO_INTERVAL)
            statuses = sorted({r.status for r in replies})
            expected = round(len(replies) * mesh.mirror_percentage / 100)
            wait_for_results(mesh.api_url, expected, timeout=30.0)
            got = mesh.received()
            target = "v2 (the relay)" if settings.topology.relay else "the diff proxy"
            print(f"sent {len(replies)} sample requests through the mesh entry (statuses "
                  f"{', '.join(map(str, statuses))}): v1 served {got.v1}, {target} received "
                  f"{got.v2} mirrored copies", file=out)
            print(envoy_counters(mesh), file=out)
            try:
                out.write("\n" + report.render(report.fetch(mesh.api_url, 10.0)))
                out.write(report.render_latency(report.latency_verdicts(mesh.api_url, 10.0)))
            except report.ReportError as exc:
                print(f"(report not available yet: {exc})", file=out)
            if state_file is not None:
                mesh.write_state(state_file)
                print(f"\nURLs of every part written to {state_file}", file=out)
            out.write(summary(mesh))
            out.flush()
            warned: set[str] = set()
            while True:
                time.sleep(1.0)
                for name in mesh.dead_processes():
                    if name not in warned:
                        warned.add(name)
                        print(f"warning: {name} has exited; see {mesh.run_dir / (name + '.log')}",
                              file=out, flush=True)
        except KeyboardInterrupt:
            print("\nstopping ...", file=out, flush=True)
        finally:
            count = len(mesh.processes)
            mesh.stop()
            if count and mesh.started:
                print(f"stopped {count} processes; logs kept in {mesh.endpoints.run_dir}", file=out)
    return 0
