"""The demo's "production": what a user of MirroredRelease already runs before they start.

mirrorservice-sample v1 (httpbin) and its Service, plus the httpbin replica in the diff
proxy's namespace that the demo's release calls primary (topology.kube.demo_release).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.objects import create_all, dependencies
from topology import Topology
from topology.kube import ClusterSettings, production_objects


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
        self.resources = create_all(objects, self, dependencies(opts))
        self.service_host = t.service_host
        self.register_outputs({"serviceHost": self.service_host})
