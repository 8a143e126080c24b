"""The diff proxy's targets: httpbin (primary, also secondary) and the candidate."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.objects import create_all, dependencies
from topology import Topology
from topology.kube import ClusterSettings, backend_objects


@dataclass(frozen=True)
class HttpbinBackendsArgs:
    topology: Topology
    cluster: ClusterSettings = field(default_factory=ClusterSettings)


class HttpbinBackends(pulumi.ComponentResource):
    def __init__(self, name: str, args: HttpbinBackendsArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:HttpbinBackends", name, None, opts)
        t = args.topology
        self.resources = create_all(backend_objects(t, args.cluster), self, dependencies(opts))
        self.primary_host = t.host(t.primary_service, t.diffy_namespace)
        self.candidate_host = t.host(t.candidate_service, t.diffy_namespace)
        self.register_outputs({"primaryHost": self.primary_host,
                               "candidateHost": self.candidate_host,
                               "candidateImage": t.images.candidate})
