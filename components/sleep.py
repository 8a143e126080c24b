"""The client pod the demo's traffic comes from (its sidecar does the mirroring)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.objects import create_all, dependencies
from topology import Topology
from topology.kube import sleep_objects, traffic_command


@dataclass(frozen=True)
class SleepClientArgs:
    topology: Topology
    kube_context: str = ""


class SleepClient(pulumi.ComponentResource):
    def __init__(self, name: str, args: SleepClientArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:SleepClient", name, None, opts)
        self.resources = create_all(sleep_objects(args.topology), self, dependencies(opts))
        self.traffic_command = traffic_command(args.topology, args.kube_context)
        self.register_outputs({"trafficCommand": self.traffic_command})
