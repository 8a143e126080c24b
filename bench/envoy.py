"""Envoy doing the diff proxy's three-way fan-out without the comparison: Istio's own data plane.

The config is what istiod would give a caller's sidecar for a VirtualService that routes to
the primary and `mirrors` to the secondary and the candidate, built by the same translator
the local stack uses (topology/istio_xds.py), with every Service's endpoint one of the
benchmark's loopback backends.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from bench.procs import BenchError, running, wait_for_port
from localmesh.sidecar import find_envoy
from toolbox.ports import free_port
from topology import Istio
from topology.istio_xds import Endpoint, Service, Sidecar, render, sidecar_config

NAMESPACE = "bench"
PORT = 80


def _host(name: str) -> str:
    return f"{name}.{NAMESPACE}.svc.cluster.local"


def fan_out_config(listen: int, admin: int, primary: int, secondary: int, candidate: int) -> dict:
    # Only the primary's Service answers to 127.0.0.1: wrk calls it by that address.
    services = [Service(_host(name), PORT, (Endpoint("127.0.0.1", port),),
                        ("127.0.0.1",) if name == "primary" else ())
                for name, port in (("primary", primary), ("secondary", secondary), ("candidate", candidate))]
    virtual_service = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                       "metadata": {"name": "primary", "namespace": NAMESPACE},
                       "spec": {"hosts": [_host("primary")], "http": [{
                           "route": [{"destination": {"host": _host("primary")}}],
                           "mirrors": [{"destination": {"host": _host("secondary")}},
                                       {"destination": {"host": _host("candidate")}}]}]}}
    # Access logging off: the nginx baseline writes none either.
    sidecar = Sidecar(NAMESPACE, "127.0.0.1", listen, "127.0.0.1", admin, access_log="/dev/null")
    return sidecar_config([], [virtual_service], services, PORT, sidecar, Istio())


@contextlib.contextmanager
def envoy(prefix: Path, listen: int, primary: int, secondary: int, candidate: int,
          workers: int) -> Iterator[subprocess.Popen]:
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "envoy.json"
    conf.write_text(render(fan_out_config(listen, free_port(), primary, secondary, candidate)))
    binary = find_envoy()
    base = [binary, "-c", str(conf), "--disable-hot-restart", "-l", "warning"]
    check = subprocess.run([*base, "--mode", "validate"], capture_output=True, text=True)
    if check.returncode != 0:
        raise BenchError(f"envoy rejected {conf}: {check.stderr.strip()[-500:]}")
    with running([*base, "--concurrency", str(workers)], prefix / "envoy.log") as proc:
        wait_for_port(listen, proc, timeout=20, log=prefix / "envoy.log")
        yield proc


def version() -> str:
    out = subprocess.run([find_envoy(), "--version"], capture_output=True, text=True).stdout
    # "envoy  version: <sha>/1.36.4/Clean/RELEASE/BoringSSL"
    parts = out.split("version:", 1)[-1].strip().split("/")
    return parts[1] if len(parts) > 1 else out.strip()
