"""The mirrored service: v1 (httpbin) and, unless `relay` is off, v2, the nginx relay that
hands Istio's mirrored copies to the diff proxy."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.objects import create_all, dependencies
from topology import Topology
from topology.kube import ClusterSettings, app_objects


@dataclass(frozen=True)
class RelayArgs:
    topology: Topology
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


class Relay(pulumi.ComponentResource):
    def __init__(self, name: str, args: RelayArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:Relay", name, None, opts)
        t = args.topology
        self.resources = create_all(app_objects(t, args.cluster), self, dependencies(opts))
        self.service_host = t.service_host
        self.register_outputs({"serviceHost": self.service_host, "relay": t.relay})
