"""Istio's DestinationRule (subsets by `version`) and the VirtualService that mirrors."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.objects import create, dependencies
from topology import Topology
from topology.kube import mirror_destination, mirror_rule_objects


@dataclass(frozen=True)
class MirrorRuleArgs:
    topology: Topology


class MirrorRule(pulumi.ComponentResource):
    def __init__(self, name: str, args: MirrorRuleArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:MirrorRule", name, None, opts)
        deps = dependencies(opts)
        rule, service = mirror_rule_objects(args.topology)
        self.destination_rule = create(rule, pulumi.ResourceOptions(parent=self, depends_on=deps))
        # A VirtualService naming subsets before its DestinationRule exists makes Envoy answer 503.
        self.virtual_service = create(
            service, pulumi.ResourceOptions(parent=self, depends_on=[*deps, self.destination_rule]))
        destination = mirror_destination(args.topology)
        self.mirror_target = f"{destination['host']}:{destination['port']['number']}"
        self.register_outputs({"mirrorTarget": self.mirror_target,
                               "mirrorPercentage": args.topology.mirror_percentage})
