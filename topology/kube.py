"""The demo's Kubernetes objects as plain dicts, built from a Topology.

Both roads to a cluster start here: the Pulumi components hand these dicts' `metadata` and
`spec` to typed resources, and `python -m topology.render` writes the same dicts to
`manifests/`. Nothing else spells out a Kubernetes object of the demo.
"""

from __future__ import annotations

import copy
import hashlib
import posixpath
import re
from dataclasses import dataclass

from topology.istio import Istio
from topology.model import Topology, TopologyError
from topology.relay import render_relay_conf

ISTIO_API = "networking.istio.io/v1"
PART_OF = {"app.kubernetes.io/part-of": "mirror-diff"}
INJECTION = {"istio-injection": "enabled"}
# One numeric UID for every workload: kubelet can only prove runAsNonRoot for numeric users,
# and our images create UID 10001.
NON_ROOT_UID = 10001
STORE_FLAG = "-store.path="
STORAGE_KINDS = ("emptyDir", "pvc")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")

RESOURCES = {
    "httpbin": {"requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"}},
    "relay": {"requests": {"cpu": "25m", "memory": "32Mi"},
              "limits": {"cpu": "250m", "memory": "128Mi"}},
    "diffproxy": {"requests": {"cpu": "100m", "memory": "128Mi"},
                  "limits": {"cpu": "1", "memory": "512Mi"}},
    "sleep": {"requests": {"cpu": "10m", "memory": "16Mi"},
              "limits": {"cpu": "100m", "memory": "64Mi"}},
}

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

    def __post_init__(self) -> None:
        if self.storage not in STORAGE_KINDS:
            raise TopologyError(f"storage must be emptyDir or pvc, got {self.storage!r}")
        if not _QUANTITY.match(self.storage_size):
            raise TopologyError(
                f"storageSize must be a Kubernetes quantity such as 1Gi, got {self.storage_size!r}")
        if not self.candidate_app.strip() or ":" not in self.candidate_app:
            raise TopologyError(
                f"candidateApp must be a WSGI target module:callable, got {self.candidate_app!r}")


# Names derived from the topology -------------------------------------------------------


def app_deployment(t: Topology, version: str) -> str:
    return f"{t.service}-{version}"


def backend_deployment(t: Topology, version: str) -> str:
    return f"{t.backend_labels(version)['app']}-{version}"


def relay_configmap(t: Topology) -> str:
    return f"{t.service}-relay"


def results_claim(t: Topology) -> str:
    return f"{t.diffproxy_name}-results"


def relay_upstream(t: Topology) -> str:
    return f"{t.diffproxy_host}:{t.ports.proxy}"


def relay_conf(t: Topology) -> str:
    return render_relay_conf(t.ports.app, relay_upstream(t))


def store_dir(t: Topology) -> str:
    """The results volume's mount point: wherever the diff proxy's args put the store."""
    for arg in t.cluster_diffproxy_args():
        if arg.startswith(STORE_FLAG):
            return posixpath.dirname(arg[len(STORE_FLAG):])
    raise TopologyError("cluster_diffproxy_args has no -store.path")


def mirror_destination(t: Topology) -> dict:
    """Where Istio sends the copies: the relay subset, or the diff proxy itself."""
    if t.relay:
        return {"host": t.service_host, "subset": "v2", "port": {"number": t.ports.app}}
    return {"host": t.diffproxy_host, "port": {"number": t.ports.proxy}}


def traffic_command(t: Topology, context: str = "") -> str:
    return (f"kubectl {_context_flag(context)}-n {t.app_namespace} exec deploy/{t.sleep_name} "
            f"-c {t.sleep_name} -- curl -sS http://{t.service}:{t.ports.app}/headers")


def console_command(t: Topology, context: str = "") -> str:
    return (f"kubectl {_context_flag(context)}-n {t.diffy_namespace} port-forward "
            f"svc/{t.diffproxy_name} {t.ports.console}:{t.ports.console}")


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


def _service(name: str, namespace: str, selector: dict, ports: list[tuple[str, int]],
             labels: dict | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, namespace, labels or selector),
        "spec": {
            "selector": dict(selector),
            # Named http* with appProtocol so Istio applies L7 routing and mirroring.
            "ports": [{"name": port_name, "port": port, "targetPort": port_name,
                       "protocol": "TCP", "appProtocol": "http"}
                      for port_name, port in ports],
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
    probe = {"tcpSocket": {"port": "http"}, "periodSeconds": 5}
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": pull_policy,
        "command": command,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {**probe, "initialDelaySeconds": 2},
        "resources": copy.deepcopy(RESOURCES["httpbin"]),
        # pipenv and gunicorn write caches and worker heartbeats next to the code.
        "securityContext": _container_security(read_only_root=False),
    }


# Component groups -------------------------------------------------------------------------


def namespace_objects(t: Topology) -> list[dict]:
    names = dict.fromkeys((t.app_namespace, t.diffy_namespace))  # one object if they coincide
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, None, INJECTION)}
            for ns in names]


def backend_objects(t: Topology, s: ClusterSettings) -> list[dict]:
    """httpbin-v1 behind the primary Service, the candidate behind the candidate Service."""
    port, img = t.ports.backend, t.images
    v1 = _wsgi_container("httpbin", img.httpbin, img.pull_policy,
                         _gunicorn(s.httpbin_launcher, port, "httpbin:app"), port)
    v2 = _wsgi_container("httpbin", img.candidate, img.pull_policy,
                         _gunicorn((), port, s.candidate_app), port)
    ns = t.diffy_namespace
    return [
        _deployment(backend_deployment(t, "v1"), ns, t.backend_labels("v1"), [v1]),
        _service(t.primary_service, ns, t.backend_labels("v1"), [("http", port)]),
        _deployment(backend_deployment(t, "v2"), ns, t.backend_labels("v2"), [v2]),
        _service(t.candidate_service, ns, t.backend_labels("v2"), [("http", port)]),
    ]


def diffproxy_objects(t: Topology, s: ClusterSettings) -> list[dict]:
    p, ns, labels = t.ports, t.diffy_namespace, t.diffproxy_labels()
    objects: list[dict] = []
    if s.storage == "pvc":
        claim_spec: dict = {"accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": s.storage_size}}}
        if s.storage_class:
            claim_spec["storageClassName"] = s.storage_class
        claim_meta = _meta(results_claim(t), ns, labels)
        # kind's default class binds on first consumer; Pulumi must not wait for "Bound" first.
        claim_meta["annotations"] = {"pulumi.com/skipAwait": "true"}
        objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "metadata": claim_meta, "spec": claim_spec})
        results = {"name": "results", "persistentVolumeClaim": {"claimName": results_claim(t)}}
    else:
        results = {"name": "results", "emptyDir": {"sizeLimit": s.storage_size}}

    def admin_probe(path: str, period: int) -> dict:
        return {"httpGet": {"path": path, "port": "http-admin"}, "periodSeconds": period,
                "timeoutSeconds": 2, "failureThreshold": 3}

    container = {
        "name": "diffproxy",
        "image": t.images.diffproxy,
        "imagePullPolicy": t.images.pull_policy,
        "args": t.cluster_diffproxy_args(),
        "ports": [
            {"name": "http-proxy", "containerPort": p.proxy, "protocol": "TCP"},
            {"name": "http-admin", "containerPort": p.admin, "protocol": "TCP"},
            {"name": "http-console", "containerPort": p.console, "protocol": "TCP"},
        ],
        "readinessProbe": admin_probe("/readyz", 5),
        "livenessProbe": {**admin_probe("/healthz", 10), "initialDelaySeconds": 5},
        "resources": copy.deepcopy(RESOURCES["diffproxy"]),
        "securityContext": _container_security(read_only_root=True),
        "volumeMounts": [{"name": "results", "mountPath": store_dir(t)},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    # The proxy dials its targets at once; without this it may start before its sidecar can.
    annotations = {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'}
    objects.append(_deployment(
        t.diffproxy_name, ns, labels, [container],
        volumes=[results, {"name": "tmp", "emptyDir": {}}],
        annotations=annotations, recreate=s.storage == "pvc"))
    objects.append(_service(t.diffproxy_name, ns, labels, [
        ("http-proxy", p.proxy), ("http-admin", p.admin), ("http-console", p.console)]))
    return objects


def app_objects(t: Topology, s: ClusterSettings) -> list[dict]:
    """The mirrored service: v1 is httpbin; v2, with the relay on, the nginx relay."""
    port, img, ns = t.ports.app, t.images, t.app_namespace
    v1 = _wsgi_container(t.service, img.httpbin, img.pull_policy,
                         _gunicorn(s.httpbin_launcher, port, "httpbin:app"), port)
    objects = [_deployment(app_deployment(t, "v1"), ns, t.app_labels("v1"), [v1])]
    if t.relay:
        conf = relay_conf(t)
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": _meta(relay_configmap(t), ns, t.app_labels("v2")),
                        "data": {"default.conf": conf}})
        relay = {
            "name": "relay",
            "image": img.relay,
            "imagePullPolicy": img.pull_policy,
            "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5},
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
        volumes = [{"name": "conf", "configMap": {"name": relay_configmap(t)}},
                   {"name": "cache", "emptyDir": {}}, {"name": "run", "emptyDir": {}},
                   {"name": "tmp", "emptyDir": {}}]
        # Pods roll when the relay's config changes, not only when the image does.
        digest = hashlib.sha256(conf.encode()).hexdigest()[:16]
        objects.append(_deployment(app_deployment(t, "v2"), ns, t.app_labels("v2"), [relay],
                                   volumes=volumes,
                                   annotations={"mirror-diff/relay-conf": digest}))
    objects.append(_service(t.service, ns, {"app": t.service}, [("http", port)]))
    return objects


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
    subsets = ["v1", "v2"] if t.relay else ["v1"]
    destination_rule = {
        "apiVersion": ISTIO_API,
        "kind": "DestinationRule",
        "metadata": _meta(t.service, t.app_namespace, {"app": t.service}),
        "spec": {
            "host": t.service_host,
            "subsets": [{"name": v, "labels": {"version": t.app_labels(v)["version"]}}
                        for v in subsets],
        },
    }
    virtual_service = {
        "apiVersion": ISTIO_API,
        "kind": "VirtualService",
        "metadata": _meta(t.service, t.app_namespace, {"app": t.service}),
        "spec": {
            "hosts": [t.service_host],
            "http": [{
                "route": [{"destination": {"host": t.service_host, "subset": "v1",
                                           "port": {"number": t.ports.app}},
                           "weight": 100}],
                "mirror": mirror_destination(t),
                "mirrorPercentage": {"value": float(t.mirror_percentage)},
            }],
        },
    }
    return [destination_rule, virtual_service]


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
