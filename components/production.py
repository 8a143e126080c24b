"""The demo's "production": what a user of MirroredRelease already runs before they start.

mirrorservice-sample v1 (httpbin) and its Service, plus the httpbin replica in the diff
proxy's namespace that the demo's release calls primary (topology.kube.demo_release).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.objects import create_all, dependencies, key, logical_name
from topology import Topology
from topology.kube import ClusterSettings, groups, production_objects

# Until MirroredRelease, each manifests/ group was a component of its own at the stack's top.
_PREVIOUS_COMPONENTS = {"backends": ("mirrordemo:index:HttpbinBackends", "backends"),
                        "diffproxy": ("mirrordemo:index:DiffProxy", "diffproxy"),
                        "app": ("mirrordemo:index:Relay", "relay"),
                        "mirror-rule": ("mirrordemo:index:MirrorRule", "mirror-rule")}


def previous_aliases(t: Topology, cluster: ClusterSettings) -> dict[str, list[pulumi.Alias]]:
    """The demo's objects' Pulumi identities before MirroredRelease, by `key()`: with these
    aliases a stack made then adopts its objects instead of creating them again."""
    aliases: dict[str, list[pulumi.Alias]] = {}
    for group, objects in groups(t, cluster).items():
        if group not in _PREVIOUS_COMPONENTS:
            continue
        type_, name = _PREVIOUS_COMPONENTS[group]
        parent = f"urn:pulumi:{pulumi.get_stack()}::{pulumi.get_project()}::{type_}::{name}"
        for obj in objects:
            aliases[key(obj)] = [pulumi.Alias(name=logical_name(obj), parent=parent)]
    return aliases


@dataclass(frozen=True)
class HttpbinAppArgs:
    topology: Topology
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


class HttpbinApp(pulumi.ComponentResource):
    def __init__(self, name: str, args: HttpbinAppArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:HttpbinApp", name, None, opts)
        t = args.topology
        objects = [o for group in production_objects(t, args.cluster).values() for o in group]
        self.resources = create_all(objects, self, dependencies(opts),
                                    aliases=previous_aliases(t, args.cluster))
        self.service_host = t.service_host
        self.register_outputs({"serviceHost": self.service_host})
