"""The demo's topology as plain data: the one place names, ports, labels and the mirror rule live.

Pulumi components, the rendered `manifests/` and the local stack all read these objects;
nothing else spells out a name or a port.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from topology.errors import TopologyError
from topology.istio import Istio

STORE_PATH = "/var/lib/diffproxy/results.sqlite"
# Where every replica of a diff proxy on a shared store finds the database: the diff proxy
# reads it from its environment (a Kubernetes Secret can fill it), never from its args.
STORE_URL_ENV = "DIFFPROXY_STORE_URL"


@dataclass(frozen=True)
class Ports:
    app: int = 44134  # mirrorservice-sample, as in the original demo
    backend: int = 8080  # httpbin-master / httpbin-candidate
    proxy: int = 8880  # diff proxy: mirrored traffic in
    admin: int = 8881  # diff proxy: /healthz /readyz /metrics
    console: int = 8888  # diff proxy: /api/1 and the web console


@dataclass(frozen=True)
class Images:
    # One image (candidate/Dockerfile) serves httpbin v1, the primary and the candidate: PyPI
    # httpbin at the version the local stack runs, plus the candidate's WSGI wrapper. A public
    # httpbin build (kong/httpbin is a fork) would differ from the candidate in more than the
    # one deliberate change, and every such difference would show as false signal.
    httpbin: str = "mirror-demo-httpbin:0.10.2"
    relay: str = "docker.io/library/nginx:1.27.3-alpine"
    sleep: str = "docker.io/curlimages/curl:8.11.1"
    diffproxy: str = "diffproxy:0.1.0"
    candidate: str = "mirror-demo-httpbin:0.10.2"
    # The shared results store that several diff proxy replicas write to (diffproxyStore).
    postgres: str = "docker.io/library/postgres:17.2-alpine"
    pull_policy: str = "IfNotPresent"


@dataclass(frozen=True)
class Thresholds:
    relative: float = 20.0
    absolute: float = 0.03


@dataclass(frozen=True)
class LatencyThresholds:
    """When the candidate counts as slower (or faster) than primary, at p50 and p99: by more
    than the secondary-vs-primary noise plus max(absolute, relative x primary). The diff
    proxy's -latency.relative (percent), -latency.absolute (ms), -latency.minSamples."""

    relative: float = 20.0
    absolute_ms: float = 10.0
    min_samples: int = 20

    def check(self, key: str = "latency") -> None:
        for name, value in (("relative", self.relative), ("absolute_ms", self.absolute_ms)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise TopologyError(f"{key}.{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.min_samples, int) or self.min_samples < 1:
            raise TopologyError(f"{key}.min_samples must be an integer >= 1, "
                                f"got {self.min_samples!r}")

    def flags(self) -> list[str]:
        return [f"-latency.relative={self.relative:g}", f"-latency.absolute={self.absolute_ms:g}",
                f"-latency.minSamples={self.min_samples}"]


@dataclass(frozen=True)
class Topology:
    app_namespace: str = "mirror-demo"
    diffy_namespace: str = "diffy"
    service: str = "mirrorservice-sample"
    primary_service: str = "httpbin-master"
    candidate_service: str = "httpbin-candidate"
    diffproxy_name: str = "httpbin-diffy"
    sleep_name: str = "sleep"
    service_label: str = "httpbin"  # Diffy's -serviceName
    mirror_percentage: float = 100.0
    relay: bool = True  # False: Istio mirrors straight to the diff proxy
    # Which Istio's sidecars do the mirroring; decides the copies' Host (topology/istio.py).
    istio: Istio = field(default_factory=Istio)
    # Diffy's -allowHttpSideEffects: fan out every method, not only GET/HEAD/OPTIONS/TRACE.
    allow_http_side_effects: bool = False
    ports: Ports = field(default_factory=Ports)
    images: Images = field(default_factory=Images)
    thresholds: Thresholds = field(default_factory=Thresholds)
    latency: LatencyThresholds = field(default_factory=LatencyThresholds)
    # httpbin's /headers echoes the Host it was called with. The proxy forwards each
    # target's own host, and primary and secondary share one host while the candidate has
    # another, so the echo would be a difference noise can never cancel.
    # /get and /anything echo the URL they were called with, host included: same story.
    ignore_fields: tuple[str, ...] = ("body.headers.Host", "body.url")

    def __post_init__(self) -> None:
        if not 0.0 <= self.mirror_percentage <= 100.0:
            raise TopologyError(
                f"mirrorPercentage must be between 0 and 100, got {self.mirror_percentage}"
            )
        for key, value in (
            ("appNamespace", self.app_namespace),
            ("diffyNamespace", self.diffy_namespace),
            ("images.httpbin", self.images.httpbin),
            ("images.relay", self.images.relay),
            ("images.sleep", self.images.sleep),
            ("images.diffproxy", self.images.diffproxy),
            ("images.candidate", self.images.candidate),
            ("images.postgres", self.images.postgres),
        ):
            if not value or not str(value).strip():
                raise TopologyError(f"{key} must not be empty")
        if self.images.pull_policy not in ("Always", "IfNotPresent", "Never"):
            raise TopologyError(
                f"imagePullPolicy must be Always, IfNotPresent or Never, got {self.images.pull_policy!r}"
            )
        self.latency.check()
        for key, value in (("thresholds.relative", self.thresholds.relative),
                           ("thresholds.absolute", self.thresholds.absolute)):
            if value < 0:
                raise TopologyError(f"{key} must not be negative, got {value}")

    def with_(self, **changes) -> Topology:
        return replace(self, **changes)

    # Labels -----------------------------------------------------------------

    def app_labels(self, version: str) -> dict[str, str]:
        return {"app": self.service, "version": version}

    def backend_labels(self, version: str) -> dict[str, str]:
        return {"app": "httpbin", "version": version}

    def diffproxy_labels(self) -> dict[str, str]:
        return {"app": self.diffproxy_name}

    # Hosts -------------------------------------------------------------------

    def host(self, name: str, namespace: str) -> str:
        return f"{name}.{namespace}.svc.cluster.local"

    @property
    def service_host(self) -> str:
        return self.host(self.service, self.app_namespace)

    @property
    def diffproxy_host(self) -> str:
        return self.host(self.diffproxy_name, self.diffy_namespace)

    # The diff proxy's command line ------------------------------------------------

    def diffproxy_args(self, primary: str, secondary: str, candidate: str,
                       store_path: str = STORE_PATH,
                       ports: Ports | None = None, listen_host: str = "") -> list[str]:
        """The demo's diff proxy command line; `diffproxy_args()` below spells it out.

        `listen_host` empty binds all interfaces (`:8880`, as in the cluster); the local
        stack passes 127.0.0.1 so the console is not exposed beyond the machine.
        """
        p = ports or self.ports
        return diffproxy_args(
            primary=primary, secondary=secondary, candidate=candidate,
            service_label=self.service_label, proxy_port=p.proxy, admin_port=p.admin,
            console_port=p.console, thresholds=self.thresholds, store_path=store_path,
            ignore_fields=self.ignore_fields, listen_host=listen_host,
            allow_http_side_effects=self.allow_http_side_effects, latency=self.latency,
            allowed_hosts=service_names(self.diffproxy_name, self.diffy_namespace))

    def cluster_diffproxy_args(self) -> list[str]:
        target = lambda svc: f"{svc}:{self.ports.backend}"  # noqa: E731 - Diffy's host:port form
        return self.diffproxy_args(
            primary=target(self.primary_service),
            secondary=target(self.primary_service),
            candidate=target(self.candidate_service),
        )


DEFAULT = Topology()


def service_names(name: str, namespace: str) -> tuple[str, ...]:
    """Every name a Service answers to in the cluster's DNS: what the diff proxy's API and
    admin ports must accept as Host (they refuse others: DNS rebinding)."""
    return (name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
            f"{name}.{namespace}.svc.cluster.local")


def diffproxy_args(*, primary: str, secondary: str, candidate: str, service_label: str,
                   proxy_port: int, admin_port: int, console_port: int, thresholds: Thresholds,
                   store_path: str | None = STORE_PATH, ignore_fields: tuple[str, ...] = (),
                   listen_host: str = "", allow_http_side_effects: bool = False,
                   latency: LatencyThresholds | None = None,
                   allowed_hosts: tuple[str, ...] = ()) -> list[str]:
    """Diffy's flags exactly as the original demo passes them, then ours: every diff proxy
    the project starts (cluster demo, any MirroredRelease, local stack) is configured here.
    `store_path` None: no SQLite file, the replicas share the store named by STORE_URL_ENV."""
    args = [
        f"-candidate={candidate}",
        f"-master.primary={primary}",
        f"-master.secondary={secondary}",
        "-service.protocol=http",
        f"-serviceName={service_label}",
        f"-proxy.port={listen_host}:{proxy_port}",
        f"-admin.port={listen_host}:{admin_port}",
        f"-http.port={listen_host}:{console_port}",
        f"-rootUrl=localhost:{console_port}",
        f"-threshold.relative={thresholds.relative:g}",
        f"-threshold.absolute={thresholds.absolute:g}",
    ]
    if store_path is not None:
        args.append(f"-store.path={store_path}")
    if allow_http_side_effects:
        args.append("-allowHttpSideEffects=true")
    if ignore_fields:
        args.append(f"-ignore.fields={','.join(ignore_fields)}")
    if allowed_hosts:  # loopback names and IP literals (probes, scrapes) need no listing
        args.append(f"-allowedHosts={','.join(allowed_hosts)}")
    return args + (latency or LatencyThresholds()).flags()
