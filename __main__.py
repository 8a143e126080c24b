"""Pulumi program: the Istio traffic-mirroring demo on a Kubernetes cluster (docs/cluster.md).

Config -> Topology -> components -> stack outputs. The objects themselves are built in
topology/kube.py, the same dicts `manifests/` is rendered from.
"""

import pulumi
import pulumi_kubernetes as k8s

from components import (
    DiffProxy,
    DiffProxyArgs,
    HttpbinBackends,
    HttpbinBackendsArgs,
    IstioInstall,
    IstioInstallArgs,
    MirrorRule,
    MirrorRuleArgs,
    Namespaces,
    NamespacesArgs,
    Relay,
    RelayArgs,
    SleepClient,
    SleepClientArgs,
)
from components.settings import load
from topology.kube import console_command

settings = load(pulumi.Config())
t, cluster, context = settings.topology, settings.cluster, settings.kube_context

provider = k8s.Provider("k8s", context=context or None)
on_cluster = pulumi.ResourceOptions(providers=[provider])

mesh_ready: list[pulumi.Resource] = []
if settings.install_istio:
    istio = IstioInstall("istio", IstioInstallArgs(version=settings.istio_version), opts=on_cluster)
    # The injection webhook fails closed: no pod before istiod serves it.
    mesh_ready = [istio.istiod]
    pulumi.export("istioVersion", istio.version)

namespaces = Namespaces("namespaces", NamespacesArgs(t), opts=on_cluster)
after = on_cluster.merge(pulumi.ResourceOptions(depends_on=[namespaces, *mesh_ready]))

backends = HttpbinBackends("backends", HttpbinBackendsArgs(t, cluster), opts=after)
diffproxy = DiffProxy("diffproxy", DiffProxyArgs(t, cluster), opts=after)
relay = Relay("relay", RelayArgs(t, cluster), opts=after)
sleep = SleepClient("sleep", SleepClientArgs(t, context), opts=after)
rule = MirrorRule("mirror-rule", MirrorRuleArgs(t), opts=after)

pulumi.export("appNamespace", namespaces.app)
pulumi.export("diffyNamespace", namespaces.diffy)
pulumi.export("serviceHost", relay.service_host)
pulumi.export("primaryHost", backends.primary_host)
pulumi.export("candidateHost", backends.candidate_host)
pulumi.export("diffProxyHost", diffproxy.host)
pulumi.export("mirrorTarget", rule.mirror_target)
pulumi.export("mirrorPercentage", t.mirror_percentage)
pulumi.export("sendTraffic", sleep.traffic_command)
pulumi.export("consolePortForward", console_command(t, context))
pulumi.export("consoleUrl", f"http://localhost:{t.ports.console}/")
