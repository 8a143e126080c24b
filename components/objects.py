"""Typed Pulumi resources from the plain dicts of topology.kube.

The dicts' `metadata`, `spec` and `data` are passed through untouched, so what Pulumi
creates is exactly what `manifests/` holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource, CustomResourcePatch
from pulumi_kubernetes.apps.v1 import Deployment
from pulumi_kubernetes.core.v1 import ConfigMap, Namespace, PersistentVolumeClaim, Service

# Objects a workload mounts or needs: created before the Deployments of the same component.
_PREREQUISITES = ("ConfigMap", "PersistentVolumeClaim")
_CORE = {
    ("v1", "Namespace"): Namespace,
    ("v1", "ConfigMap"): ConfigMap,
    ("v1", "PersistentVolumeClaim"): PersistentVolumeClaim,
    ("v1", "Service"): Service,
    ("apps/v1", "Deployment"): Deployment,
}


def logical_name(obj: dict) -> str:
    meta = obj["metadata"]
    scope = f"{meta['namespace']}/" if "namespace" in meta else ""
    return f"{scope}{meta['name']}"


def key(obj: dict) -> str:
    """Unique within a component: a Service and a Deployment may share a logical name."""
    return f"{obj['kind']}/{logical_name(obj)}"


def create(obj: dict, opts: pulumi.ResourceOptions, name: str | None = None,
           patch: bool = False) -> pulumi.CustomResource:
    """`name`: the Pulumi name (default `logical_name`); `patch`: server-side apply the
    object's fields onto an existing one instead of creating it (Istio objects only)."""
    api, kind = obj["apiVersion"], obj["kind"]
    name = name or logical_name(obj)
    if api.startswith(("networking.istio.io/", "monitoring.coreos.com/")):
        cls = CustomResourcePatch if patch else CustomResource
        return cls(name, api_version=api, kind=kind, metadata=obj["metadata"],
                   spec=obj["spec"], opts=opts)
    cls = _CORE.get((api, kind))
    if cls is None or patch:
        raise ValueError(f"no Pulumi resource type for {api} {kind}{' patch' if patch else ''}")
    fields = {f: obj[f] for f in ("metadata", "spec", "data") if f in obj}
    return cls(name, **fields, opts=opts)


def create_all(objects: Iterable[dict], parent: pulumi.Resource,
               depends_on: list[pulumi.Resource],
               aliases: Mapping[str, Sequence[pulumi.Alias]] | None = None,
               ) -> dict[str, pulumi.CustomResource]:
    """Children of `parent`, keyed by `key()`; Deployments wait for their ConfigMaps and PVCs.
    `aliases`: earlier identities of some children, by `key()`."""
    objects = list(objects)
    aliases = aliases or {}
    created: dict[str, pulumi.CustomResource] = {}
    first = [o for o in objects if o["kind"] in _PREREQUISITES]
    for obj in first + [o for o in objects if o["kind"] not in _PREREQUISITES]:
        needs = list(depends_on)
        if obj["kind"] == "Deployment":
            needs += [created[key(o)] for o in first]
        created[key(obj)] = create(obj, pulumi.ResourceOptions(
            parent=parent, depends_on=needs, aliases=list(aliases.get(key(obj), ())) or None))
    return created


def dependencies(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """A component's `depends_on`, for its children: Pulumi does not pass it down by itself."""
    deps = opts.depends_on if opts is not None else None
    if deps is None:
        return []
    if isinstance(deps, pulumi.Resource):
        return [deps]
    return list(deps)
