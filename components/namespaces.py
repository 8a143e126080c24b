"""The app namespace and the diff proxy's namespace, both with sidecar injection."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.objects import create_all, dependencies
from topology import Topology
from topology.kube import namespace_objects


@dataclass(frozen=True)
class NamespacesArgs:
    topology: Topology


class Namespaces(pulumi.ComponentResource):
    def __init__(self, name: str, args: NamespacesArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:Namespaces", name, None, opts)
        self.resources = create_all(namespace_objects(args.topology), self, dependencies(opts))
        self.app = args.topology.app_namespace
        self.diffy = args.topology.diffy_namespace
        self.register_outputs({"app": self.app, "diffy": self.diffy})
