"""The diff proxy (`httpbin-diffy`): Deployment, Service and its results volume."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.objects import create_all, dependencies
from topology import Topology
from topology.kube import ClusterSettings, diffproxy_objects


@dataclass(frozen=True)
class DiffProxyArgs:
    topology: Topology
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


class DiffProxy(pulumi.ComponentResource):
    def __init__(self, name: str, args: DiffProxyArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:DiffProxy", name, None, opts)
        t = args.topology
        self.resources = create_all(diffproxy_objects(t, args.cluster), self, dependencies(opts))
        self.host = t.diffproxy_host
        self.proxy_address = f"{t.diffproxy_host}:{t.ports.proxy}"
        self.console_address = f"{t.diffproxy_host}:{t.ports.console}"
        self.register_outputs({"host": self.host, "proxyAddress": self.proxy_address,
                               "consoleAddress": self.console_address})
