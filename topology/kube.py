"""The demo's Kubernetes objects as plain dicts, built from a Topology.

Both roads to a cluster start here: the Pulumi components hand these dicts' `metadata` and
`spec` to typed resources, and `python -m topology.render` writes the same dicts to
`manifests/`. Nothing else spells out a Kubernetes object of the demo.

Most of the demo is one mirrored release (`release_objects`: the objects the Pulumi
component `MirroredRelease` creates for any user's Service); `demo_release` says which.
The rest is the demo's own: namespaces, the httpbin "production" app and the sleep client.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import posixpath
from dataclasses import dataclass

from topology.istio import Istio
from topology.model import STORE_PATH, STORE_URL_ENV, Topology, TopologyError, diffproxy_args, service_names
from topology.monitoring import Monitoring, Scope, dashboard_json, rule_groups
from topology.relay import render_relay_conf
from topology.release import (
    QUANTITY,
    STORAGE_KINDS,
    Candidate,
    DiffProxy,
    ExistingService,
    MirroredReleaseArgs,
    Primary,
    Relay,
    ReleaseNames,
    SecretKeyRef,
    SharedStore,
    host,
)

ISTIO_API = "networking.istio.io/v1"
PART_OF = {"app.kubernetes.io/part-of": "mirror-diff"}
INJECTION = {"istio-injection": "enabled"}
# One numeric UID for every workload: kubelet can only prove runAsNonRoot for numeric users,
# and our images create UID 10001.
NON_ROOT_UID = 10001

RESOURCES = {
    "httpbin": {"requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"}},
    "relay": {"requests": {"cpu": "25m", "memory": "32Mi"},
              "limits": {"cpu": "250m", "memory": "128Mi"}},
    # The limit sits above the RSS ceiling measured at the default flags (docs/diffproxy.md,
    # "RSS ceiling": ~770 MiB with 16 callers sending answers near -maxResponseSize).
    "diffproxy": {"requests": {"cpu": "100m", "memory": "128Mi"},
                  "limits": {"cpu": "1", "memory": "1Gi"}},
    "sleep": {"requests": {"cpu": "10m", "memory": "16Mi"},
              "limits": {"cpu": "100m", "memory": "64Mi"}},
    "postgres": {"requests": {"cpu": "100m", "memory": "128Mi"},
                 "limits": {"cpu": "1", "memory": "512Mi"}},
}
# The shared store's database, user and port: the release's own PostgreSQL is made with them.
STORE_DATABASE = "diffproxy"
STORE_USER = "diffproxy"
STORE_PORT = 5432
# UID of `postgres` in the official Alpine image: its entrypoint expects to own PGDATA.
POSTGRES_UID = 70
STORE_KINDS = ("", "sqlite", "postgres", "secret:<name>")

# Sized for one kind node in a 2-CPU Docker VM, where kind's own control plane already
# requests 950m (apiserver 250m, controller-manager 200m, scheduler 100m, etcd 100m, two
# CoreDNS 100m, kindnet 100m). Istio's defaults would add 500m for istiod and 100m for each
# of the six sidecars, and pods would stay Pending. Requests only place pods; the limits
# stay Istio's, so a busy sidecar still gets the CPU it needs.
SIDECAR_CPU_REQUEST = "10m"
ISTIOD_CPU_REQUEST = "100m"
# Per pod, for clusters whose Istio was installed without the values below.
SIDECAR_ANNOTATIONS = {"sidecar.istio.io/proxyCPU": SIDECAR_CPU_REQUEST}


def istiod_values(istio: Istio | None = None) -> dict:
    """Helm values of the istiod chart (1.28): its own requests, every sidecar's, and the
    compatibility profile of the Istio model (which decides the mirror Host form)."""
    values = {"resources": {"requests": {"cpu": ISTIOD_CPU_REQUEST}},
              "global": {"proxy": {"resources": {"requests": {"cpu": SIDECAR_CPU_REQUEST}}}}}
    return {**values, **(istio.istiod_values() if istio else {})}


@dataclass(frozen=True)
class ClusterSettings:
    """How the topology is laid onto a cluster; error messages name the Pulumi config key."""

    storage: str = "emptyDir"  # or "pvc": results survive a pod restart
    storage_size: str = "1Gi"
    storage_class: str = ""  # "": the cluster's default StorageClass
    # Words before `gunicorn`: ("pipenv", "run") for kong/httpbin, which keeps gunicorn in a
    # pipenv virtualenv; our image has it on PATH.
    httpbin_launcher: tuple[str, ...] = ()
    candidate_app: str = "candidate.app:app"
    prometheus: str = "off"  # off | annotations | operator (Pulumi config `prometheus`)
    # Scaling out the diff proxy (README "Scaling out").
    diffproxy_replicas: int = 1
    # "": SQLite with one replica, the release's own PostgreSQL with more; "sqlite";
    # "postgres" (deploy one); "secret:NAME" (the user's database, URL in Secret NAME, key url).
    diffproxy_store: str = ""
    diffproxy_max_replicas: int = 0  # > diffproxy_replicas: a CPU autoscaler up to this many

    def shared_store(self, image: str, pull_policy: str) -> SharedStore | None:
        kind = self.diffproxy_store
        if kind == "sqlite" or (kind == "" and self.diffproxy_replicas == 1
                                and not self.diffproxy_max_replicas):
            return None
        if kind.startswith("secret:"):
            return SharedStore(url_secret=kind.removeprefix("secret:"))
        return SharedStore(image=image, pull_policy=pull_policy, storage_size=self.storage_size,
                           storage_class=self.storage_class)

    def __post_init__(self) -> None:
        if self.prometheus not in ("off", "annotations", "operator"):
            raise TopologyError(f"prometheus must be off, annotations or operator, "
                                f"got {self.prometheus!r}")
        if self.storage not in STORAGE_KINDS:
            raise TopologyError(f"storage must be emptyDir or pvc, got {self.storage!r}")
        if not QUANTITY.match(self.storage_size):
            raise TopologyError(
                f"storageSize must be a Kubernetes quantity such as 1Gi, got {self.storage_size!r}")
        if not self.candidate_app.strip() or ":" not in self.candidate_app:
            raise TopologyError(
                f"candidateApp must be a WSGI target module:callable, got {self.candidate_app!r}")
        store = self.diffproxy_store
        if store not in STORE_KINDS[:3] and not (store.startswith("secret:") and store[7:]):
            raise TopologyError(f"diffproxyStore must be empty, sqlite, postgres or "
                                f"secret:<Secret name>, got {store!r}")
        for key, value, least in (("diffproxyReplicas", self.diffproxy_replicas, 1),
                                  ("diffproxyMaxReplicas", self.diffproxy_max_replicas, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise TopologyError(f"{key} must be a whole number >= {least}, got {value!r}")
        if self.diffproxy_max_replicas and self.diffproxy_max_replicas <= self.diffproxy_replicas:
            raise TopologyError(f"diffproxyMaxReplicas must be more than diffproxyReplicas "
                                f"({self.diffproxy_replicas}) or 0 (no autoscaler), got "
                                f"{self.diffproxy_max_replicas}")
        if store == "sqlite" and (self.diffproxy_replicas > 1 or self.diffproxy_max_replicas):
            raise TopologyError(f"diffproxyStore sqlite keeps one file per pod: "
                                f"diffproxyReplicas must be 1, got {self.diffproxy_replicas}")


# Names derived from the topology -------------------------------------------------------


def app_deployment(t: Topology, version: str) -> str:
    return f"{t.service}-{version}"


def backend_deployment(t: Topology, version: str) -> str:
    return f"{t.backend_labels(version)['app']}-{version}"


def relay_configmap(t: Topology) -> str:
    return f"{t.service}-relay"


def relay_upstream(t: Topology) -> str:
    return f"{t.diffproxy_host}:{t.ports.proxy}"


def relay_conf(t: Topology) -> str:
    return render_relay_conf(t.ports.app, relay_upstream(t))


def store_dir(t: Topology) -> str:  # `t` unused: every release stores in one place
    """The results volume's mount point: where the diff proxy's args put the store."""
    return posixpath.dirname(STORE_PATH)


def traffic_command(t: Topology, context: str = "") -> str:
    return (f"kubectl {_context_flag(context)}-n {t.app_namespace} exec deploy/{t.sleep_name} "
            f"-c {t.sleep_name} -- curl -sS http://{t.service}:{t.ports.app}/headers")


def console_command(t: Topology, context: str = "") -> str:
    return port_forward_command(t.diffy_namespace, t.diffproxy_name, t.ports.console, context)


def port_forward_command(namespace: str, service: str, port: int, context: str = "") -> str:
    return (f"kubectl {_context_flag(context)}-n {namespace} port-forward "
            f"svc/{service} {port}:{port}")


def _context_flag(context: str) -> str:
    return f"--context {context} " if context else ""


# Building blocks --------------------------------------------------------------------------


def _meta(name: str, namespace: str | None = None, labels: dict | None = None) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = {**(labels or {}), **PART_OF}
    return meta


def _container_security(read_only_root: bool) -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": NON_ROOT_UID,
        "runAsGroup": NON_ROOT_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": read_only_root,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _deployment(name: str, namespace: str, labels: dict, containers: list[dict],
                volumes: list[dict] | None = None, annotations: dict | None = None,
                recreate: bool = False) -> dict:
    template_meta: dict = {"labels": dict(labels),
                           "annotations": {**SIDECAR_ANNOTATIONS, **(annotations or {})}}
    pod: dict = {
        "securityContext": {"fsGroup": NON_ROOT_UID},
        "containers": containers,
    }
    if volumes:
        pod["volumes"] = volumes
    spec: dict = {
        "replicas": 1,
        "selector": {"matchLabels": dict(labels)},
        "template": {"metadata": template_meta, "spec": pod},
    }
    if recreate:
        # A ReadWriteOnce claim cannot be mounted by the old and the new pod at once.
        spec["strategy"] = {"type": "Recreate"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(name, namespace, labels), "spec": spec}


def _service(name: str, namespace: str, selector: dict,
             ports: list[tuple[str, int]] | list[tuple[str, int, int | str]],
             labels: dict | None = None) -> dict:
    """`ports`: (name, port) targets the container port of that name; (name, port, target)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels or selector),
        "spec": {
            "selector": dict(selector),
            # Named http* with appProtocol so Istio applies L7 routing and mirroring.
            "ports": [{"name": port[0], "port": port[1],
                       "targetPort": port[2] if len(port) > 2 else port[0],
                       "protocol": "TCP", "appProtocol": "http"}
                      for port in ports],
        },
    }


def _gunicorn(launcher: tuple[str, ...], port: int, app: str) -> list[str]:
    # Our image's gunicorn (27, pinned) opens a control socket under $HOME, which is
    # /nonexistent for UID 10001: an error in every pod's log. Another image's gunicorn
    # (a launcher is set) may predate the flag (gunicorn 25.1), so it is left as it is.
    quiet = [] if launcher else ["--no-control-socket"]
    return [*launcher, "gunicorn", "--access-logfile", "-", *quiet, "-b", f"0.0.0.0:{port}", app]


def _wsgi_container(name: str, image: str, pull_policy: str, command: list[str],
                    port: int) -> dict:
    # pipenv and gunicorn write caches and worker heartbeats next to the code: the default
    # candidate security context leaves the root filesystem writable.
    return _candidate_container(Candidate(image=image, port=port, command=tuple(command),
                                          container_name=name, pull_policy=pull_policy))


def _candidate_container(c: Candidate) -> dict:
    container: dict = {"name": c.container_name, "image": c.image,
                       "imagePullPolicy": c.pull_policy}
    if c.command:
        container["command"] = list(c.command)
    if c.args:
        container["args"] = list(c.args)
    if c.env:
        container["env"] = [
            {"name": k, "valueFrom": {"secretKeyRef": {"name": v.name, "key": v.key}}}
            if isinstance(v, SecretKeyRef) else {"name": k, "value": v}
            for k, v in c.env.items()]
    container.update({
        "ports": [{"name": "http", "containerPort": c.port, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5,
                           "initialDelaySeconds": 2},
        "resources": copy.deepcopy(dict(c.resources or RESOURCES["httpbin"])),
        "securityContext": (copy.deepcopy(dict(c.security_context)) if c.security_context
                            else _container_security(read_only_root=False)),
    })
    return container


# A mirrored release ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseObjects:
    """Everything one MirroredRelease creates. None of it is the user's Service or pods."""

    primary_service: dict
    candidate: list[dict]  # Deployment, Service
    diffproxy: list[dict]  # [PersistentVolumeClaim,] Deployment, Service
    relay: list[dict]  # ConfigMap, Deployment; empty without a relay
    destination_rule: dict
    # With adopt_virtual_service: the patch of the user's VirtualService (spec.http only).
    virtual_service: dict
    # ServiceMonitor, PrometheusRule (monitoring "operator"), the Grafana dashboard ConfigMap.
    monitoring: list[dict] = dataclasses.field(default_factory=list)
    # With diffproxy.store: the PodDisruptionBudget [, HorizontalPodAutoscaler] of the
    # replicas, and the release's own PostgreSQL (headless Service, StatefulSet), if deployed.
    scaling: list[dict] = dataclasses.field(default_factory=list)
    store: list[dict] = dataclasses.field(default_factory=list)
    # The deployed PostgreSQL's password Secret, without its data: the Pulumi component
    # fills it with a generated password; manifests leave it to the user (never rendered).
    store_secret: dict | None = None

    def all(self) -> list[dict]:
        return [self.primary_service, *self.candidate, *self.store, *self.diffproxy,
                *self.scaling, *self.relay, self.destination_rule, self.virtual_service,
                *self.monitoring]


def release_hosts(name: str, a: MirroredReleaseArgs) -> dict[str, str]:
    n = a.names.resolve(name)
    return {"primary": host(n.primary_service, a.primary_namespace),
            "candidate": host(n.candidate_service, a.namespace),
            "diffproxy": host(n.diffproxy, a.namespace)}


def release_mirror_destination(name: str, a: MirroredReleaseArgs) -> dict:
    """Where Istio sends the copies: the relay subset, or the diff proxy itself."""
    if a.relay is not None:
        return {"host": a.service.host, "subset": a.relay.subset, "port": {"number": a.port}}
    return {"host": release_hosts(name, a)["diffproxy"],
            "port": {"number": a.diffproxy.proxy_port}}


def release_diffproxy_args(name: str, a: MirroredReleaseArgs) -> list[str]:
    n, d = a.names.resolve(name), a.diffproxy
    # Diffy's short host:port form within the diff proxy's namespace, the FQDN across.
    primary = (n.primary_service if a.primary_namespace == a.namespace
               else release_hosts(name, a)["primary"])
    args = diffproxy_args(
        primary=f"{primary}:{a.primary_port}", secondary=f"{primary}:{a.primary_port}",
        candidate=f"{n.candidate_service}:{a.candidate.port}",
        service_label=d.service_label or a.service.name, proxy_port=d.proxy_port,
        admin_port=d.admin_port, console_port=d.console_port, thresholds=d.thresholds,
        store_path=STORE_PATH if d.store is None else None, ignore_fields=d.ignore_fields,
        latency=d.latency, allow_http_side_effects=d.allow_http_side_effects,
        allowed_hosts=service_names(n.diffproxy, a.namespace))
    for flag, values in (("ignore.headers", d.ignore_headers),
                         ("redact.headers", d.redact_headers),
                         ("redact.fields", d.redact_fields)):
        if values:
            args.append(f"-{flag}={','.join(values)}")
    return args + list(d.extra_args)


def release_objects(name: str, a: MirroredReleaseArgs) -> ReleaseObjects:
    """The release's objects; run `topology.release.check(name, a)` first."""
    n, ns = a.names.resolve(name), a.namespace
    candidate_labels = a.candidate_labels(n)
    primary_labels = dict(a.primary.labels or {"app": n.primary_service})
    store = a.diffproxy.store
    deployed = store is not None and store.deployed
    return ReleaseObjects(
        primary_service=_service(n.primary_service, a.primary_namespace, a.primary_selector,
                                 [("http", a.primary_port, a.primary_target_port)],
                                 labels=primary_labels),
        candidate=[
            _deployment(n.candidate, ns, candidate_labels, [_candidate_container(a.candidate)]),
            _service(n.candidate_service, ns, candidate_labels, [("http", a.candidate.port)]),
        ],
        diffproxy=_diffproxy_objects(n.diffproxy, ns, a.diffproxy,
                                     release_diffproxy_args(name, a), a.monitoring),
        relay=_relay_objects(name, a) if a.relay is not None else [],
        destination_rule=_destination_rule(n.rule, a),
        virtual_service=_virtual_service(name, n.rule, a),
        monitoring=monitoring_objects(name, a),
        scaling=_scaling_objects(n.diffproxy, ns, a.diffproxy) if store is not None else [],
        store=_store_objects(n.diffproxy, ns, store) if deployed else [],
        store_secret=_store_secret(n.diffproxy, ns, store) if deployed else None,
    )


def store_name(diffproxy: str) -> str:
    """The release's own PostgreSQL: StatefulSet, headless Service and password Secret."""
    return f"{diffproxy}-store"


def store_password_secret(diffproxy: str, store: SharedStore) -> str:
    return store.password_secret or store_name(diffproxy)


def _store_env(diffproxy: str, ns: str, store: SharedStore) -> list[dict]:
    """How every replica finds the shared database; no secret ever goes into the args."""
    if not store.deployed:
        return [{"name": STORE_URL_ENV, "valueFrom": {"secretKeyRef": {
            "name": store.url_secret, "key": store.url_key}}}]
    # The URL names no password: libpq's PGPASSWORD (asyncpg reads it) comes from the Secret.
    # The StatefulSet's first pod by its stable name: the headless Service has no clusterIP.
    url = (f"postgresql://{STORE_USER}@{store_name(diffproxy)}-0.{store_name(diffproxy)}."
           f"{ns}.svc.cluster.local:{STORE_PORT}/{STORE_DATABASE}")
    return [{"name": STORE_URL_ENV, "value": url},
            {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
                "name": store_password_secret(diffproxy, store), "key": "password"}}}]


def _store_secret(diffproxy: str, ns: str, store: SharedStore) -> dict | None:
    if store.password_secret is not None:
        return None  # the user's own Secret
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": _meta(store_name(diffproxy), ns, {"app": store_name(diffproxy)}),
            "type": "Opaque"}


def _store_objects(diffproxy: str, ns: str, store: SharedStore) -> list[dict]:
    name = store_name(diffproxy)
    labels = {"app": name}
    service = {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns, labels),
        "spec": {
            "clusterIP": "None",  # headless: the StatefulSet's pod gets a stable DNS name
            "selector": dict(labels),
            # tcp-*: Istio treats it as opaque TCP (PostgreSQL's protocol is not HTTP).
            "ports": [{"name": "tcp-postgres", "port": STORE_PORT, "targetPort": "tcp-postgres",
                       "protocol": "TCP"}],
        },
    }
    probe = {"exec": {"command": ["pg_isready", "-h", "127.0.0.1", "-U", STORE_USER,
                                  "-d", STORE_DATABASE]},
             "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}
    security = _container_security(read_only_root=True)
    security.update(runAsUser=POSTGRES_UID, runAsGroup=POSTGRES_UID)
    container = {
        "name": "postgres",
        "image": store.image,
        "imagePullPolicy": store.pull_policy,
        "env": [
            {"name": "POSTGRES_USER", "value": STORE_USER},
            {"name": "POSTGRES_DB", "value": STORE_DATABASE},
            {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {
                "name": store_password_secret(diffproxy, store), "key": "password"}}},
            # A subfolder: a fresh volume's root may hold lost+found, which initdb refuses.
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        "ports": [{"name": "tcp-postgres", "containerPort": STORE_PORT, "protocol": "TCP"}],
        "readinessProbe": probe,
        "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 10},
        "resources": copy.deepcopy(RESOURCES["postgres"]),
        "securityContext": security,
        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"},
                         {"name": "run", "mountPath": "/var/run/postgresql"},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    claim: dict = {"accessModes": ["ReadWriteOnce"],
                   "resources": {"requests": {"storage": store.storage_size}}}
    if store.storage_class:
        claim["storageClassName"] = store.storage_class
    statefulset = {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": _meta(name, ns, labels),
        "spec": {
            "serviceName": name,
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels),
                             "annotations": dict(SIDECAR_ANNOTATIONS)},
                "spec": {
                    "securityContext": {"fsGroup": POSTGRES_UID},
                    # Time for a clean shutdown (a checkpoint) before the kubelet kills it.
                    "terminationGracePeriodSeconds": 60,
                    "containers": [container],
                    "volumes": [{"name": "run", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": dict(labels)},
                                      "spec": claim}],
        },
    }
    return [service, statefulset]


def _scaling_objects(diffproxy: str, ns: str, d: DiffProxy) -> list[dict]:
    labels = {"app": diffproxy}
    # One pod at a time may be drained: the others keep taking the mirrored copies.
    objects = [{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": _meta(diffproxy, ns, labels),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": dict(labels)}}}]
    if d.max_replicas:
        objects.append({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _meta(diffproxy, ns, labels),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "name": diffproxy},
                "minReplicas": d.replicas, "maxReplicas": d.max_replicas,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": d.cpu_target}}}],
            },
        })
    return objects


def _diffproxy_objects(name: str, ns: str, d: DiffProxy, args: list[str],
                       monitoring: Monitoring | None = None) -> list[dict]:
    labels = {"app": name}
    claim = f"{name}-results"
    objects: list[dict] = []
    if d.store is not None:
        results = None  # no file: the results are in the shared PostgreSQL
    elif d.storage == "pvc":
        claim_spec: dict = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": d.storage_size}}}
        if d.storage_class:
            claim_spec["storageClassName"] = d.storage_class
        claim_meta = _meta(claim, ns, labels)
        # kind's default class binds on first consumer; Pulumi must not wait for "Bound" first.
        claim_meta["annotations"] = {"pulumi.com/skipAwait": "true"}
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": claim_meta, "spec": claim_spec})
        results = {"name": "results", "persistentVolumeClaim": {"claimName": claim}}
    else:
        results = {"name": "results", "emptyDir": {"sizeLimit": d.storage_size}}

    def admin_probe(path: str, period: int) -> dict:
        return {"httpGet": {"path": path, "port": "http-admin"}, "periodSeconds": period,
                "timeoutSeconds": 2, "failureThreshold": 3}

    container = {
        "name": "diffproxy",
        "image": d.image,
        "imagePullPolicy": d.pull_policy,
        "args": args,
        "ports": [
            {"name": "http-proxy", "containerPort": d.proxy_port, "protocol": "TCP"},
            {"name": "http-admin", "containerPort": d.admin_port, "protocol": "TCP"},
            {"name": "http-console", "containerPort": d.console_port, "protocol": "TCP"},
        ],
        "readinessProbe": admin_probe("/readyz", 5),
        "livenessProbe": {**admin_probe("/healthz", 10), "initialDelaySeconds": 5},
        "resources": copy.deepcopy(RESOURCES["diffproxy"]),
        "securityContext": _container_security(read_only_root=True),
        "volumeMounts": [{"name": "results", "mountPath": posixpath.dirname(STORE_PATH)},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes = [results, {"name": "tmp", "emptyDir": {}}]
    if results is None:
        container["env"] = _store_env(name, ns, d.store)
        container["volumeMounts"] = container["volumeMounts"][1:]
        volumes = volumes[1:]
    # The proxy dials its targets at once; without this it may start before its sidecar can.
    annotations = {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'}
    if monitoring is not None and monitoring.mode == "annotations":
        # Istio's sidecar injection moves these to its merged-metrics port (15020), which
        # serves the diff proxy's /metrics and Envoy's own together.
        annotations.update({"prometheus.io/scrape": "true",
                            "prometheus.io/port": str(d.admin_port),
                            "prometheus.io/path": "/metrics"})
    deployment = _deployment(name, ns, labels, [container], volumes=volumes,
                             annotations=annotations, recreate=d.storage == "pvc")
    if d.max_replicas:
        # The autoscaler owns the count; a replicas field would reset it at every apply.
        del deployment["spec"]["replicas"]
    else:
        deployment["spec"]["replicas"] = d.replicas
    objects.append(deployment)
    objects.append(_service(name, ns, labels, [
        ("http-proxy", d.proxy_port), ("http-admin", d.admin_port),
        ("http-console", d.console_port)]))
    return objects


def _relay_objects(name: str, a: MirroredReleaseArgs) -> list[dict]:
    """nginx in the user's namespace, an endpoint of the user's Service as subset `relay.subset`."""
    assert a.relay is not None
    n, ns, r = a.names.resolve(name), a.service.namespace, a.relay
    target = a.service_port.target
    # The Service reaches the relay the way it reaches production: by port name or number.
    port_name, listen = (target, a.port) if isinstance(target, str) else ("http", target)
    conf = render_relay_conf(listen, f"{release_hosts(name, a)['diffproxy']}:"
                                     f"{a.diffproxy.proxy_port}")
    labels = a.relay_labels
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": _meta(n.relay_config, ns, labels),
                 "data": {"default.conf": conf}}
    relay = {
        "name": "relay",
        "image": r.image,
        "imagePullPolicy": r.pull_policy,
        "ports": [{"name": port_name, "containerPort": listen, "protocol": "TCP"}],
        "readinessProbe": {"tcpSocket": {"port": port_name}, "periodSeconds": 5},
        "resources": copy.deepcopy(RESOURCES["relay"]),
        "securityContext": _container_security(read_only_root=True),
        # An unprivileged nginx master needs writable cache and pid directories.
        "volumeMounts": [
            {"name": "conf", "mountPath": "/etc/nginx/conf.d", "readOnly": True},
            {"name": "cache", "mountPath": "/var/cache/nginx"},
            {"name": "run", "mountPath": "/run"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    volumes = [{"name": "conf", "configMap": {"name": n.relay_config}},
               {"name": "cache", "emptyDir": {}}, {"name": "run", "emptyDir": {}},
               {"name": "tmp", "emptyDir": {}}]
    # Pods roll when the relay's config changes, not only when the image does.
    digest = hashlib.sha256(conf.encode()).hexdigest()[:16]
    return [configmap, _deployment(n.relay, ns, labels, [relay], volumes=volumes,
                                   annotations={"mirror-diff/relay-conf": digest})]


def _destination_rule(rule: str, a: MirroredReleaseArgs) -> dict:
    subsets = [{"name": a.production_subset,
                "labels": dict(a.production_labels or a.service.selector)}]
    if a.relay is not None:
        subsets.append({"name": a.relay.subset, "labels": dict(a.relay.labels)})
    return {
        "apiVersion": ISTIO_API,
        "kind": "DestinationRule",
        "metadata": _meta(rule, a.service.namespace, {"app": a.service.name}),
        "spec": {"host": a.service.host, "subsets": subsets},
    }


def _virtual_service(name: str, rule: str, a: MirroredReleaseArgs) -> dict:
    http = [{
        "route": [{"destination": {"host": a.service.host, "subset": a.production_subset,
                                   "port": {"number": a.port}},
                   "weight": 100}],
        "mirror": release_mirror_destination(name, a),
        "mirrorPercentage": {"value": float(a.mirror_percentage)},
    }]
    if a.adopt_virtual_service is not None:
        # Server-side apply of spec.http alone; the user's hosts, gateways and metadata stay.
        # Istio's lists are atomic, so this replaces the user's http routes while it exists.
        return {"apiVersion": ISTIO_API, "kind": "VirtualService",
                "metadata": {"name": a.adopt_virtual_service, "namespace": a.service.namespace,
                             "annotations": {"pulumi.com/patchForce": "true"}},
                "spec": {"http": http}}
    return {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _meta(rule, a.service.namespace, {"app": a.service.name}),
        "spec": {"hosts": [a.service.host], "http": http},
    }


# The demo -----------------------------------------------------------------------------------


def demo_service(t: Topology) -> dict:
    """mirrorservice-sample: selects v1 (production) and, with the relay, v2."""
    return _service(t.service, t.app_namespace, {"app": t.service}, [("http", t.ports.app)])


def demo_release(t: Topology, s: ClusterSettings) -> tuple[str, MirroredReleaseArgs]:
    """The demo as one MirroredRelease of mirrorservice-sample, under the original demo's names.

    Its primary is not production itself but the demo's own httpbin replica in the diff
    proxy's namespace (`httpbin-v1`, part of the demo's production app), as in the article.
    """
    port = t.ports.backend
    store = s.shared_store(t.images.postgres, t.images.pull_policy)
    return t.service, MirroredReleaseArgs(
        service=ExistingService.from_manifest(demo_service(t)),
        port=t.ports.app,
        production_labels={"version": t.app_labels("v1")["version"]},
        production_subset="v1",
        diff_namespace=t.diffy_namespace,
        candidate=Candidate(
            image=t.images.candidate, port=port, command=tuple(_gunicorn((), port, s.candidate_app)),
            labels=t.backend_labels("v2"), container_name="httpbin",
            pull_policy=t.images.pull_policy),
        primary=Primary(namespace=t.diffy_namespace, selector=t.backend_labels("v1"),
                        port=port, target_port="http", labels=t.backend_labels("v1")),
        diffproxy=DiffProxy(
            image=t.images.diffproxy, pull_policy=t.images.pull_policy,
            service_label=t.service_label, thresholds=t.thresholds, latency=t.latency,
            ignore_fields=t.ignore_fields, proxy_port=t.ports.proxy, admin_port=t.ports.admin,
            console_port=t.ports.console,
            allow_http_side_effects=t.allow_http_side_effects,
            # With a shared store, storage* describe the PostgreSQL's volume, not a file's.
            storage=s.storage if store is None else "emptyDir",
            storage_size=s.storage_size, storage_class=s.storage_class,
            replicas=s.diffproxy_replicas, max_replicas=s.diffproxy_max_replicas, store=store),
        relay=(Relay(image=t.images.relay, pull_policy=t.images.pull_policy, subset="v2",
                     labels={"version": t.app_labels("v2")["version"]})
               if t.relay else None),
        mirror_percentage=t.mirror_percentage,
        monitoring=Monitoring(mode=s.prometheus),
        names=ReleaseNames(
            candidate=backend_deployment(t, "v2"), candidate_service=t.candidate_service,
            primary_service=t.primary_service, diffproxy=t.diffproxy_name,
            relay=app_deployment(t, "v2"), relay_config=relay_configmap(t), rule=t.service),
    )


def _demo_release_objects(t: Topology, s: ClusterSettings) -> ReleaseObjects:
    return release_objects(*demo_release(t, s))


def production_objects(t: Topology, s: ClusterSettings) -> dict[str, list[dict]]:
    """The demo's "production": mirrorservice-sample v1 and its Service, and the httpbin
    replica behind the diff proxy's primary. By group, as manifests/ files hold them."""
    v1 = _wsgi_container(t.service, t.images.httpbin, t.images.pull_policy,
                         _gunicorn(s.httpbin_launcher, t.ports.app, "httpbin:app"), t.ports.app)
    port = t.ports.backend
    replica = _wsgi_container("httpbin", t.images.httpbin, t.images.pull_policy,
                              _gunicorn(s.httpbin_launcher, port, "httpbin:app"), port)
    return {
        "backends": [_deployment(backend_deployment(t, "v1"), t.diffy_namespace,
                                 t.backend_labels("v1"), [replica])],
        "app": [_deployment(app_deployment(t, "v1"), t.app_namespace, t.app_labels("v1"), [v1]),
                demo_service(t)],
    }


def namespace_objects(t: Topology) -> list[dict]:
    names = dict.fromkeys((t.app_namespace, t.diffy_namespace))  # one object if they coincide
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, None, INJECTION)}
            for ns in names]


def backend_objects(t: Topology, s: ClusterSettings) -> list[dict]:
    """httpbin-v1 behind the primary Service, the candidate behind the candidate Service."""
    release = _demo_release_objects(t, s)
    return [*production_objects(t, s)["backends"], release.primary_service, *release.candidate]


def diffproxy_objects(t: Topology, s: ClusterSettings) -> list[dict]:
    """The diff proxy and, scaled out, its shared PostgreSQL, disruption budget, autoscaler."""
    release = _demo_release_objects(t, s)
    return [*release.store, *release.diffproxy, *release.scaling]


def app_objects(t: Topology, s: ClusterSettings) -> list[dict]:
    """The mirrored service: v1 is httpbin; v2, with the relay on, the nginx relay."""
    v1, service = production_objects(t, s)["app"]
    return [v1, *_demo_release_objects(t, s).relay, service]


def sleep_objects(t: Topology) -> list[dict]:
    labels = {"app": t.sleep_name}
    container = {
        "name": t.sleep_name,
        "image": t.images.sleep,
        "imagePullPolicy": t.images.pull_policy,
        "command": ["/bin/sleep", "infinity"],
        "resources": copy.deepcopy(RESOURCES["sleep"]),
        "securityContext": _container_security(read_only_root=True),
    }
    deployment = _deployment(t.sleep_name, t.app_namespace, labels, [container])
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 0
    return [deployment]


def mirror_rule_objects(t: Topology) -> list[dict]:
    """The demo's DestinationRule and VirtualService (`release_objects` builds any release's)."""
    release = _demo_release_objects(t, ClusterSettings())
    return [release.destination_rule, release.virtual_service]


def groups(t: Topology, s: ClusterSettings | None = None) -> dict[str, list[dict]]:
    """Every object, by component, in the order a cluster should receive them."""
    s = s or ClusterSettings()
    # Deep copies: no two objects share a nested dict a consumer could mutate or YAML alias.
    return copy.deepcopy({
        "namespaces": namespace_objects(t),
        "backends": backend_objects(t, s),
        "diffproxy": diffproxy_objects(t, s),
        "app": app_objects(t, s),
        "sleep": sleep_objects(t),
        "mirror-rule": mirror_rule_objects(t),
    })


# Monitoring ---------------------------------------------------------------------------------


def release_scope(name: str, a: MirroredReleaseArgs) -> Scope:
    """The labels a Prometheus puts on this release's diff proxy series (namespace, app)."""
    return Scope(app=a.names.resolve(name).diffproxy, namespace=a.namespace,
                 service=a.diffproxy.service_label or a.service.name)


MONITORING_API = "monitoring.coreos.com/v1"


def monitoring_objects(name: str, a: MirroredReleaseArgs) -> list[dict]:
    """What the release's `monitoring` asks for: with "operator" a ServiceMonitor (the
    admin port's /metrics) and a PrometheusRule (topology.monitoring's rules); with either
    mode on, the Grafana dashboard in a ConfigMap for Grafana's dashboard sidecar."""
    m = a.monitoring
    if not m.on:
        return []
    n, ns, scope = a.names.resolve(name), a.namespace, release_scope(name, a)
    labels = {"app": n.diffproxy, **m.labels}
    objects: list[dict] = []
    if m.mode == "operator":
        objects.append({
            "apiVersion": MONITORING_API, "kind": "ServiceMonitor",
            "metadata": _meta(n.diffproxy, ns, labels),
            "spec": {
                "selector": {"matchLabels": {"app": n.diffproxy}},
                "namespaceSelector": {"matchNames": [ns]},
                # The rules and the dashboard select the series by the pods' app label.
                "podTargetLabels": ["app"],
                # The proxy's own `endpoint` label (the API endpoint) must win over the
                # operator's (the Service port's name).
                "endpoints": [{"port": "http-admin", "path": "/metrics",
                               "interval": m.scrape_interval, "honorLabels": True}],
            },
        })
        objects.append({
            "apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": _meta(n.diffproxy, ns, labels),
            "spec": {"groups": rule_groups(scope, a.diffproxy.thresholds, a.diffproxy.latency)},
        })
    if m.dashboard:
        objects.append({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(f"{n.diffproxy}-dashboard", m.dashboard_namespace or ns,
                              {"app": n.diffproxy, **m.dashboard_labels}),
            "data": {f"{n.diffproxy}.json": dashboard_json(scope)},
        })
    return objects
