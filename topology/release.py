"""What a mirrored release is made of, as plain data: the user's Service, the candidate, the
diff proxy, the optional relay and the mirror rule.

`MirroredReleaseArgs` is what the Pulumi component `MirroredRelease` takes and what
`topology.kube.release_objects` builds Kubernetes objects from; the demo is one such release
(`topology.kube.demo_release`). `check()` runs before anything is registered, so a bad
argument fails `pulumi preview` with a message that starts with the argument's name.

Values are plain Python, never Pulumi Outputs: every check needs the value at preview time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from topology.model import LatencyThresholds, Thresholds, TopologyError
from topology.monitoring import Monitoring

# Service names must be RFC 1035 labels (a letter first); the release's name prefixes them.
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FLAG = re.compile(r"^-[A-Za-z][A-Za-z0-9.]*(=.*)?$", re.DOTALL)
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
STORAGE_KINDS = ("emptyDir", "pvc")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# Any Kubernetes quantity, CPU's milli (500m) and exponents (1e3) included.
_RESOURCE_QUANTITY = re.compile(
    r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][-+]?[0-9]+)?$")
_DNS_1123_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?"
                                 r"(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# The longest suffix a derived object name gets: `<name>-diffproxy-results` (the PVC).
_LONGEST_SUFFIX = len("-diffproxy-results")
# Flags the component sets from its own arguments; extra_args may not set them again.
MANAGED_FLAGS = ("candidate", "master.primary", "master.secondary", "service.protocol",
                 "serviceName", "proxy.port", "admin.port", "http.port", "rootUrl",
                 "threshold.relative", "threshold.absolute", "store.path", "store.url",
                 "ignore.fields", "ignore.headers", "redact.headers", "redact.fields",
                 "latency.relative", "latency.absolute", "latency.minSamples",
                 "allowHttpSideEffects")


@dataclass(frozen=True)
class ServicePort:
    port: int
    name: str = "http"
    target_port: int | str | None = None  # None: the same number as `port`
    app_protocol: str = ""

    @property
    def target(self) -> int | str:
        return self.port if self.target_port is None else self.target_port


@dataclass(frozen=True)
class ExistingService:
    """The user's Service as it is deployed. The release reads it and never writes it."""

    name: str
    namespace: str
    selector: Mapping[str, str]  # its spec.selector
    ports: tuple[ServicePort, ...]

    @classmethod
    def from_manifest(cls, obj: Mapping) -> ExistingService:
        """From the Service's own YAML/dict (`kubectl get svc NAME -o yaml`)."""
        meta, spec = obj["metadata"], obj["spec"]
        return cls(
            name=meta["name"], namespace=meta.get("namespace", "default"),
            selector=dict(spec.get("selector") or {}),
            ports=tuple(ServicePort(port=p["port"], name=p.get("name", ""),
                                    target_port=p.get("targetPort"),
                                    app_protocol=p.get("appProtocol", ""))
                        for p in spec.get("ports", ())))

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True)
class SecretKeyRef:
    """An env value read from key `key` of the user's Secret `name` (in the candidate's
    namespace): the Deployment names the Secret, so the value itself is in neither the
    Deployment, `manifests/` nor the Pulumi state."""

    name: str
    key: str


@dataclass(frozen=True)
class Candidate:
    """The release under test, run from the user's image next to production."""

    image: str
    port: int = 8080  # the container port it listens on
    command: tuple[str, ...] = ()  # empty: the image's entrypoint
    args: tuple[str, ...] = ()
    # A value is a string or a SecretKeyRef (the MirroredRelease component also takes a
    # pulumi.Output, e.g. config.require_secret(...), which stays encrypted in the state).
    env: Mapping[str, str | SecretKeyRef] = field(default_factory=dict)
    # {"requests": {...}, "limits": {...}}; None or {}: the demo's gunicorn sizing
    # (topology.kube.RESOURCES).
    resources: Mapping | None = None
    labels: Mapping[str, str] | None = None  # None: {"app": <candidate Deployment name>}
    container_name: str = "candidate"
    pull_policy: str = "IfNotPresent"
    security_context: Mapping | None = None  # None: non-root UID 10001, no privileges


@dataclass(frozen=True)
class Primary:
    """The pods the diff proxy calls primary (and secondary). Defaults: the production pods,
    through a Service of the release's own (the user's Service host would be mirrored again)."""

    namespace: str | None = None  # None: the user's Service's namespace
    selector: Mapping[str, str] | None = None  # None: the Service's selector + production_labels
    port: int | None = None  # None: the mirrored port
    target_port: int | str | None = None  # None: that port's targetPort
    labels: Mapping[str, str] | None = None  # of the Service object; None: {"app": its name}


@dataclass(frozen=True)
class SharedStore:
    """One PostgreSQL that every diff proxy replica writes its results to, so each replica's
    API and the report gate see all of them (`diffproxy.replicas` > 1 needs one).

    `url_secret` set: the user's own database; the Secret of that name (in the diff proxy's
    namespace) holds the whole `postgresql://...` URL under `url_key`. Unset: the release
    deploys a PostgreSQL of its own (a StatefulSet `<diffproxy>-store` with a volume) whose
    password is key `password` of Secret `password_secret` (None: `<diffproxy>-store`,
    generated by the Pulumi component; with plain manifests, created by the user)."""

    url_secret: str | None = None
    url_key: str = "url"
    password_secret: str | None = None
    image: str = "docker.io/library/postgres:17.2-alpine"
    pull_policy: str = "IfNotPresent"
    storage_size: str = "1Gi"
    storage_class: str = ""  # "": the cluster's default StorageClass

    @property
    def deployed(self) -> bool:
        return self.url_secret is None


@dataclass(frozen=True)
class DiffProxy:
    image: str = "diffproxy:0.1.0"
    pull_policy: str = "IfNotPresent"
    service_label: str | None = None  # -serviceName; None: the user's Service name
    thresholds: Thresholds = field(default_factory=Thresholds)
    latency: LatencyThresholds = field(default_factory=LatencyThresholds)  # candidate slower?
    ignore_fields: tuple[str, ...] = ()
    ignore_headers: tuple[str, ...] = ()
    redact_headers: tuple[str, ...] = ()
    redact_fields: tuple[str, ...] = ()
    # Diffy's -allowHttpSideEffects: compare every method, not only GET/HEAD/OPTIONS/TRACE.
    allow_http_side_effects: bool = False
    # Any other diff proxy flag, `-name=value`, appended last (latency and gate settings...).
    extra_args: tuple[str, ...] = ()
    proxy_port: int = 8880
    admin_port: int = 8881
    console_port: int = 8888
    storage: str = "emptyDir"  # or "pvc": results survive a pod restart
    storage_size: str = "1Gi"
    storage_class: str = ""  # "": the cluster's default StorageClass
    # Scaling out (README "Scaling out"): more than one replica needs a shared store.
    replicas: int = 1
    store: SharedStore | None = None  # None: each pod's own SQLite file (`storage`)
    max_replicas: int = 0  # > replicas: a HorizontalPodAutoscaler on CPU, up to this many
    cpu_target: int = 70  # the autoscaler's target, percent of the CPU request


@dataclass(frozen=True)
class Relay:
    """An nginx in front of the diff proxy, mirrored to as a subset of the user's Service (the
    original demo's shape). Its pods carry the Service's selector, so they are endpoints of
    the user's Service: callers outside the mesh may reach them (they answer with primary's
    response, through the diff proxy)."""

    image: str = "docker.io/library/nginx:1.27.3-alpine"
    pull_policy: str = "IfNotPresent"
    subset: str = "relay"
    labels: Mapping[str, str] = field(default_factory=lambda: {"mirror-diff/role": "relay"})


@dataclass(frozen=True)
class ReleaseNames:
    """Kubernetes object names; None derives one from the release's name."""

    candidate: str | None = None  # Deployment
    candidate_service: str | None = None
    primary_service: str | None = None
    diffproxy: str | None = None  # Deployment and Service
    relay: str | None = None  # Deployment
    relay_config: str | None = None  # ConfigMap
    rule: str | None = None  # DestinationRule and VirtualService

    def resolve(self, name: str) -> ReleaseNames:
        return ReleaseNames(
            candidate=self.candidate or f"{name}-candidate",
            candidate_service=self.candidate_service or f"{name}-candidate",
            primary_service=self.primary_service or f"{name}-primary",
            diffproxy=self.diffproxy or f"{name}-diffproxy",
            relay=self.relay or f"{name}-relay",
            relay_config=self.relay_config or f"{name}-relay",
            rule=self.rule or f"{name}-mirror",
        )


@dataclass(frozen=True)
class MirroredReleaseArgs:
    service: ExistingService
    port: int  # the Service port whose traffic is mirrored
    candidate: Candidate
    # Labels that set production pods apart within the Service's selector (e.g. version: v1);
    # needed with a relay, whose pods the Service also selects.
    production_labels: Mapping[str, str] = field(default_factory=dict)
    production_subset: str = "production"
    diff_namespace: str | None = None  # candidate and diff proxy; None: the Service's namespace
    primary: Primary = field(default_factory=Primary)
    diffproxy: DiffProxy = field(default_factory=DiffProxy)
    relay: Relay | None = None  # None: Istio mirrors straight to the diff proxy
    mirror_percentage: float = 100.0
    # Name of the user's own VirtualService for this host, to patch instead of creating a
    # second one (docs/cluster.md "Try your own release" explains the trade-off).
    adopt_virtual_service: str | None = None
    names: ReleaseNames = field(default_factory=ReleaseNames)
    # Prometheus and Grafana (issue 14): off, scrape annotations, or Prometheus Operator objects.
    monitoring: Monitoring = field(default_factory=Monitoring)

    # Derived ----------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        return self.diff_namespace or self.service.namespace

    @property
    def service_port(self) -> ServicePort:
        return next(p for p in self.service.ports if p.port == self.port)

    @property
    def production_selector(self) -> dict[str, str]:
        return {**self.service.selector, **self.production_labels}

    @property
    def primary_namespace(self) -> str:
        return self.primary.namespace or self.service.namespace

    @property
    def primary_selector(self) -> dict[str, str]:
        return dict(self.primary.selector or self.production_selector)

    @property
    def primary_port(self) -> int:
        return self.primary.port or self.port

    @property
    def primary_target_port(self) -> int | str:
        if self.primary.target_port is not None:
            return self.primary.target_port
        return self.service_port.target

    def candidate_labels(self, names: ReleaseNames) -> dict[str, str]:
        return dict(self.candidate.labels or {"app": names.candidate})

    @property
    def relay_labels(self) -> dict[str, str]:
        return {**self.service.selector, **(self.relay.labels if self.relay else {})}


def host(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local"


# Checks -----------------------------------------------------------------------------------


def check(name: str, a: MirroredReleaseArgs) -> None:
    """TopologyError whose message starts with the offending argument, or nothing."""
    _label("name", name, _DNS_1035)
    if len(name) > 63 - _LONGEST_SUFFIX:
        raise TopologyError(f"name must be at most {63 - _LONGEST_SUFFIX} characters so "
                            f"'{name}-diffproxy-results' stays a DNS label, got {name!r}")
    svc = a.service
    _label("service.name", svc.name, _DNS_1035)
    _label("service.namespace", svc.namespace, _DNS_1123)
    _labels("service.selector", svc.selector)
    if not svc.selector:
        raise TopologyError(f"service.selector must not be empty: Service {svc.namespace}/"
                            f"{svc.name} must select its production pods by label")
    _port("port", a.port)
    known = ", ".join(f"{p.name or '(unnamed)'} {p.port}" for p in svc.ports) or "none"
    if a.port not in {p.port for p in svc.ports}:
        raise TopologyError(f"port {a.port} is not a port of Service {svc.namespace}/"
                            f"{svc.name} (its ports: {known})")
    sp = a.service_port
    # Istio's protocol selection: appProtocol, else the port name's `<protocol>[-suffix]`.
    protocol = sp.app_protocol or sp.name.split("-", 1)[0]
    if protocol not in ("http", "http2"):
        raise TopologyError(
            f"port {a.port} of Service {svc.namespace}/{svc.name} is named {sp.name!r} without "
            "appProtocol http: Istio mirrors only HTTP ports (name it http or http-*)")
    if a.diff_namespace is not None:
        _label("diff_namespace", a.diff_namespace, _DNS_1123)
    if not isinstance(a.mirror_percentage, (int, float)) or isinstance(a.mirror_percentage, bool) \
            or not math.isfinite(a.mirror_percentage) or not 0 <= a.mirror_percentage <= 100:
        raise TopologyError(
            f"mirror_percentage must be a number from 0 to 100, got {a.mirror_percentage!r}")
    _label("production_subset", a.production_subset, _DNS_1123)
    _labels("production_labels", a.production_labels)

    c = a.candidate
    _image("candidate.image", c.image)
    _port("candidate.port", c.port)
    _choice("candidate.pull_policy", c.pull_policy, PULL_POLICIES)
    _label("candidate.container_name", c.container_name, _DNS_1123)
    _env("candidate.env", c.env)
    _resources("candidate.resources", c.resources)
    for key, values in (("candidate.command", c.command), ("candidate.args", c.args)):
        if isinstance(values, str) or not all(isinstance(v, str) for v in values):
            raise TopologyError(f"{key} must be a tuple of strings, got {values!r}")

    names = a.names.resolve(name)
    for role in ("candidate", "candidate_service", "primary_service", "diffproxy", "relay",
                 "relay_config", "rule"):
        _label(f"names.{role}", getattr(names, role), _DNS_1035)
    services = [(a.primary_namespace, names.primary_service),
                (a.namespace, names.candidate_service), (a.namespace, names.diffproxy)]
    deployments = [(a.namespace, names.candidate), (a.namespace, names.diffproxy)]
    if a.relay is not None:
        deployments.append((svc.namespace, names.relay))
    for kind, objects in (("Service", services), ("Deployment", deployments)):
        if len(set(objects)) < len(objects):
            raise TopologyError(f"names: two {kind}s of the release would be called the same, "
                                f"{sorted(objects)}")
    if (svc.namespace, svc.name) in services:
        raise TopologyError(f"names: a Service of the release would replace the user's "
                            f"Service {svc.namespace}/{svc.name}")
    if a.namespace == svc.namespace and _selects(svc.selector, a.candidate_labels(names)):
        raise TopologyError(
            f"candidate.labels {a.candidate_labels(names)} match Service {svc.name}'s selector "
            f"{dict(svc.selector)}: the candidate would serve live traffic")
    if a.namespace == svc.namespace and _selects(svc.selector, {"app": names.diffproxy}):
        raise TopologyError(f"names.diffproxy {names.diffproxy!r}: Service {svc.name}'s selector "
                            "would pick the diff proxy's pods")

    if a.primary.namespace is not None:
        _label("primary.namespace", a.primary.namespace, _DNS_1123)
    if not a.primary_selector:
        raise TopologyError("primary.selector must not be empty")
    _port("primary.port", a.primary_port)

    d = a.diffproxy
    _image("diffproxy.image", d.image)
    _choice("diffproxy.pull_policy", d.pull_policy, PULL_POLICIES)
    seen: dict[int, str] = {}
    for key in ("proxy_port", "admin_port", "console_port"):
        port = getattr(d, key)
        _port(f"diffproxy.{key}", port)
        if port in seen:
            raise TopologyError(f"diffproxy.{key} {port} is also diffproxy.{seen[port]}")
        seen[port] = key
    for key in ("relative", "absolute"):
        value = getattr(d.thresholds, key)
        if not math.isfinite(value) or value < 0:
            raise TopologyError(f"diffproxy.thresholds.{key} must be a finite number >= 0, "
                                f"got {value!r}")
    d.latency.check("diffproxy.latency")
    for key in ("ignore_fields", "ignore_headers", "redact_headers", "redact_fields"):
        values = getattr(d, key)
        if isinstance(values, str) or any(not v or "," in v for v in values):
            raise TopologyError(f"diffproxy.{key} must be a tuple of non-empty names without "
                                f"commas, got {values!r}")
    if isinstance(d.extra_args, str):
        raise TopologyError(f"diffproxy.extra_args must be a tuple of flags, got {d.extra_args!r}")
    for arg in d.extra_args:
        if not isinstance(arg, str) or not _FLAG.match(arg):
            raise TopologyError(f"diffproxy.extra_args: {arg!r} is not a -name=value flag")
        flag = arg[1:].split("=", 1)[0]
        if flag == "config":
            raise TopologyError("diffproxy.extra_args: -config names a file inside the pod, "
                                "which the release cannot check; pass the flags themselves")
        if flag in MANAGED_FLAGS:
            raise TopologyError(f"diffproxy.extra_args: -{flag} is set by the release itself; "
                                "use its own argument")
    _choice("diffproxy.storage", d.storage, STORAGE_KINDS)
    if not QUANTITY.match(d.storage_size):
        raise TopologyError(f"diffproxy.storage_size must be a Kubernetes quantity such as 1Gi, "
                            f"got {d.storage_size!r}")
    _check_scaling(names.diffproxy, d)

    if a.relay is not None:
        r = a.relay
        _image("relay.image", r.image)
        _choice("relay.pull_policy", r.pull_policy, PULL_POLICIES)
        _label("relay.subset", r.subset, _DNS_1123)
        if r.subset == a.production_subset:
            raise TopologyError(f"relay.subset {r.subset!r} is also production_subset")
        if not r.labels:
            raise TopologyError("relay.labels must not be empty: they tell relay pods apart")
        if not a.production_labels or _selects(a.production_labels, a.relay_labels):
            raise TopologyError(
                "production_labels must set production pods apart from the relay's pods "
                f"(which carry {a.relay_labels}); e.g. {{'version': 'v1'}}")
    if a.adopt_virtual_service is not None:
        _label("adopt_virtual_service", a.adopt_virtual_service, _DNS_1123)
    a.monitoring.check("monitoring")
    if a.monitoring.dashboard_namespace is not None:
        _label("monitoring.dashboard_namespace", a.monitoring.dashboard_namespace, _DNS_1123)


def _check_scaling(diffproxy: str, d: DiffProxy) -> None:
    for key in ("replicas", "max_replicas", "cpu_target"):
        value = getattr(d, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < (key == "replicas"):
            raise TopologyError(f"diffproxy.{key} must be a whole number >= "
                                f"{int(key == 'replicas')}, got {value!r}")
    if d.max_replicas and d.max_replicas <= d.replicas:
        raise TopologyError(f"diffproxy.max_replicas {d.max_replicas} must be more than "
                            f"diffproxy.replicas {d.replicas} (or 0: no autoscaler)")
    if d.max_replicas and not 1 <= d.cpu_target <= 100:
        raise TopologyError(f"diffproxy.cpu_target must be a percentage from 1 to 100, "
                            f"got {d.cpu_target!r}")
    if d.store is None:
        if d.replicas > 1 or d.max_replicas:
            raise TopologyError(
                f"diffproxy.replicas {max(d.replicas, d.max_replicas)} needs diffproxy.store: "
                "each replica would keep its own SQLite file and see only its share of results")
        return
    if d.storage == "pvc":
        raise TopologyError("diffproxy.storage pvc is the SQLite file's volume; with "
                            "diffproxy.store the results are in PostgreSQL (leave it emptyDir)")
    st = d.store
    if st.deployed:
        # A StatefulSet's pods add a revision-hash label of the name + 11 characters (<= 63).
        store = f"{diffproxy}-store"
        if len(store) > 52:
            raise TopologyError(f"names.diffproxy: the store's StatefulSet {store!r} would be "
                                "longer than 52 characters")
        _image("diffproxy.store.image", st.image)
        _choice("diffproxy.store.pull_policy", st.pull_policy, PULL_POLICIES)
        if not QUANTITY.match(st.storage_size):
            raise TopologyError(f"diffproxy.store.storage_size must be a Kubernetes quantity "
                                f"such as 1Gi, got {st.storage_size!r}")
        if st.password_secret is not None:
            _label("diffproxy.store.password_secret", st.password_secret, _DNS_1123)
    else:
        _label("diffproxy.store.url_secret", st.url_secret, _DNS_1123)
        if not isinstance(st.url_key, str) or not re.fullmatch(r"[-._a-zA-Z0-9]+", st.url_key):
            raise TopologyError(f"diffproxy.store.url_key must be a Secret key, got {st.url_key!r}")


def _env(key: str, env: object) -> None:
    if not isinstance(env, Mapping):
        raise TopologyError(f"{key} must be a mapping of variable name to value, "
                            f"got {type(env).__name__}")
    for name, value in env.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise TopologyError(f"{key}: {name!r} is not a valid environment variable name")
        if isinstance(value, SecretKeyRef):
            if not isinstance(value.name, str) or not _DNS_1123_SUBDOMAIN.match(value.name):
                raise TopologyError(f"{key}: {name}'s SecretKeyRef.name must be a Secret's "
                                    f"name, got {value.name!r}")
            if not isinstance(value.key, str) or not _SECRET_KEY.match(value.key):
                raise TopologyError(f"{key}: {name}'s SecretKeyRef.key must be a Secret key, "
                                    f"got {value.key!r}")
        elif not isinstance(value, str):
            # The type only: the value may be a secret.
            raise TopologyError(f"{key}: {name}'s value must be a string or a SecretKeyRef, "
                                f"got {type(value).__name__}")


def _resources(key: str, resources: object) -> None:
    """A typo (`request`) or a bad quantity would otherwise pass the preview and be dropped
    or refused by the API server at `pulumi up`."""
    if resources is None:
        return
    if not isinstance(resources, Mapping) or set(resources) - {"requests", "limits"}:
        raise TopologyError(f"{key} must be a mapping with requests and/or limits, "
                            f"got {resources!r}")
    for part, amounts in resources.items():
        if not isinstance(amounts, Mapping):
            raise TopologyError(f"{key}.{part} must be a mapping such as {{'cpu': '500m'}}, "
                                f"got {amounts!r}")
        for resource, amount in amounts.items():
            text = amount if isinstance(amount, str) else (
                str(amount) if isinstance(amount, int) and not isinstance(amount, bool) else "")
            if not isinstance(resource, str) or not resource or \
                    not _RESOURCE_QUANTITY.match(text):
                raise TopologyError(f"{key}.{part}.{resource} must be a Kubernetes quantity "
                                    f"such as 500m or 256Mi, got {amount!r}")


def _labels(key: str, labels: object) -> None:
    if not isinstance(labels, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise TopologyError(f"{key} must be a mapping of label name to value (strings), "
                            f"got {labels!r}")


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _label(key: str, value: object, pattern: re.Pattern) -> None:
    if not isinstance(value, str) or not pattern.match(value):
        what = "starting with a letter, " if pattern is _DNS_1035 else ""
        raise TopologyError(f"{key} must be a DNS label (lower-case letters, digits and '-', "
                            f"{what}at most 63), got {value!r}")


def _port(key: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise TopologyError(f"{key} must be a port number from 1 to 65535, got {value!r}")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TopologyError(f"{key} must be {' or '.join(allowed)}, got {value!r}")


def _image(key: str, image: object) -> None:
    if not isinstance(image, str) or not image.strip():
        raise TopologyError(f"{key} must not be empty")
    if any(ch.isspace() for ch in image):
        raise TopologyError(f"{key} must not contain spaces, got {image!r}")
    last = image.rsplit("/", 1)[-1]
    if not re.split(r"[:@]", last, maxsplit=1)[0]:
        raise TopologyError(f"{key} must name a repository before its tag or digest, "
                            f"got {image!r}")
    if "@" not in image and (":" not in last or last.endswith(":latest")):
        raise TopologyError(f"{key} must be pinned to a tag or digest, never :latest, "
                            f"got {image!r}")
