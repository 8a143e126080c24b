"""The demo's topology as real processes on loopback.

    traffic ──> sidecar stand-in (nginx) ──100%──> v1: httpbin (gunicorn)
                     │ mirror N% (fire-and-forget, Host per Istio version)
                     └──> v2: relay (nginx, the cluster's relay config)
                              └──> diff proxy :proxy ──> httpbin-master  (primary)
                                                    ├──> httpbin-master  (secondary)
                                                    └──> httpbin-candidate (candidate.app)

Names, the mirror percentage, the relay config and the diff proxy's flags come from the
same `Topology` the Pulumi program reads.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path

from localmesh import accesslog, nginx, ports, processes, traffic
from localmesh.errors import MeshError
from localmesh.sidecar import DEFAULT_HOST_FORM, HOST_FORMS, render_sidecar_conf
from topology import DEFAULT, Ports, Topology, render_relay_conf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ports.LOOPBACK


@dataclass(frozen=True)
class LocalPorts:
    """Every loopback port of the local stack; `None` means "pick a free one"."""

    entry: int | None = None  # the sidecar stand-in: the cluster's mirrorservice-sample:44134
    v1: int | None = None
    relay: int | None = None  # v2
    master: int | None = None
    candidate: int | None = None
    proxy: int | None = None
    admin: int | None = None
    console: int | None = None

    def resolve(self) -> LocalPorts:
        return LocalPorts(**ports.pick({f.name: getattr(self, f.name) for f in fields(self)}))


@dataclass(frozen=True)
class MeshSettings:
    topology: Topology = DEFAULT
    host_form: str = DEFAULT_HOST_FORM
    run_dir: Path | None = None  # None: ./run/<timestamp>
    ports: LocalPorts = field(default_factory=LocalPorts)
    nginx: str | None = None
    python: str = sys.executable
    ready_timeout: float = 30.0
    gunicorn_threads: int = 4

    def __post_init__(self) -> None:
        if self.host_form not in HOST_FORMS:
            raise MeshError(f"--istio-host-form must be one of {', '.join(HOST_FORMS)}, got {self.host_form!r}")


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


def default_run_dir(base: Path | None = None) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return (base or Path.cwd() / "run") / stamp


class LocalMesh:
    """Context manager: starts every process, waits until each is ready, stops them all.

    `send`, `received`, `relay_hosts` and `kill_candidate` are the e2e suite's view of a
    mesh; the kind backend offers the same methods.
    """

    backend = "local"

    def __init__(self, settings: MeshSettings | None = None) -> None:
        self.settings = settings or MeshSettings()
        self._supervisor: processes.Supervisor | None = None
        self._endpoints: Endpoints | None = None

    # Lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> LocalMesh:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def start(self) -> Endpoints:
        s = self.settings
        nginx_bin = nginx.find_nginx(s.nginx)
        chosen = s.ports.resolve()
        run_dir = (s.run_dir or default_run_dir()).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        self._endpoints = Endpoints(run_dir, chosen)
        sup = self._supervisor = processes.Supervisor(run_dir)
        try:
            self._start_all(sup, nginx_bin, chosen, run_dir)
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
                "--error-logfile", "-", app]

    def _start_all(self, sup: processes.Supervisor, nginx_bin: str, p: LocalPorts, run_dir: Path) -> None:
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

        relay = nginx.NginxInstance("relay", run_dir / "relay", nginx_bin)
        relay.write(render_relay_conf(p.relay, target(p.proxy), listen_address=LOOPBACK))
        wait.append((sup.start("relay", relay.argv()), processes.tcp_ready(p.relay), p.relay))

        sidecar = nginx.NginxInstance("sidecar", run_dir / "sidecar", nginx_bin)
        sidecar.write(render_sidecar_conf(topo, p.entry, primary=target(p.v1), mirror=target(p.relay),
                                          host_form=s.host_form, listen_address=LOOPBACK))
        wait.append((sup.start("sidecar", sidecar.argv()), processes.tcp_ready(p.entry), p.entry))

        deadline = time.monotonic() + s.ready_timeout
        for managed, ready, port in wait:
            processes.wait_ready(managed, ready, max(0.5, deadline - time.monotonic()), port)

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
    def host_form(self) -> str:
        return self.settings.host_form

    @property
    def run_dir(self) -> Path:
        return self.endpoints.run_dir

    @property
    def processes(self) -> dict[str, processes.Managed]:
        return dict(self._supervisor.processes) if self._supervisor else {}

    def send(self, path: str, n: int = 1) -> list[traffic.Reply]:
        return traffic.send(self.entry_url, traffic.expand([path], n), host=self.entry_host)

    def send_paths(self, paths: list[str]) -> list[traffic.Reply]:
        return traffic.send(self.entry_url, paths, host=self.entry_host)

    def received(self) -> Received:
        """Requests v1 served and mirrored copies v2 (the relay) received, from their access logs."""
        run_dir = self.run_dir
        return Received(v1=len(accesslog.read(run_dir / "v1.access.log")),
                        v2=len(accesslog.read(run_dir / "relay" / "access.log")))

    def relay_hosts(self) -> list[str]:
        return [hit.host or "" for hit in accesslog.read(self.run_dir / "relay" / "access.log")]

    def kill_candidate(self) -> None:
        managed = self.processes.get("candidate")
        if managed is None:
            raise MeshError("the candidate is not running")
        managed.kill()

    def dead_processes(self) -> list[str]:
        return [m.name for m in self._supervisor.dead()] if self._supervisor else []
