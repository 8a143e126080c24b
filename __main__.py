"""Pulumi program: the Istio traffic-mirroring demo on a Kubernetes cluster (docs/cluster.md).

Config -> Topology -> Istio (optional), the httpbin "production" app, and one
MirroredRelease of `mirrorservice-sample` -> stack outputs. The objects themselves are
built in topology/kube.py, the same dicts `manifests/` is rendered from.
"""

import pulumi
import pulumi_kubernetes as k8s

from components import (
    HttpbinApp,
    HttpbinAppArgs,
    IstioInstall,
    IstioInstallArgs,
    MirroredRelease,
    Namespaces,
    NamespacesArgs,
    SleepClient,
    SleepClientArgs,
)
from components.production import previous_aliases
from components.settings import load
from topology.kube import console_command, demo_release

settings = load(pulumi.Config())
t, cluster, context = settings.topology, settings.cluster, settings.kube_context

provider = k8s.Provider("k8s", context=context or None)
on_cluster = pulumi.ResourceOptions(providers=[provider])

mesh_ready: list[pulumi.Resource] = []
if settings.install_istio:
    istio = IstioInstall("istio", IstioInstallArgs(
        version=settings.istio.version, compatibility_version=settings.istio.compatibility_version),
        opts=on_cluster)
    # The injection webhook fails closed: no pod before istiod serves it.
    mesh_ready = [istio.istiod]
    pulumi.export("istioVersion", istio.version)
    pulumi.export("istioCompatibilityVersion", istio.compatibility_version)
    # How mirrored copies address their target: "plain" (caller's Host) or "shadow" (host-shadow).
    pulumi.export("mirrorHostForm", istio.mirror_host_form)

namespaces = Namespaces("namespaces", NamespacesArgs(t), opts=on_cluster)
after = on_cluster.merge(pulumi.ResourceOptions(depends_on=[namespaces, *mesh_ready]))

production = HttpbinApp("production", HttpbinAppArgs(t, cluster), opts=after)
sleep = SleepClient("sleep", SleepClientArgs(t, context), opts=after)
name, release_args = demo_release(t, cluster)
release = MirroredRelease(name, release_args, opts=after,
                          aliases=previous_aliases(t, cluster))

pulumi.export("appNamespace", namespaces.app)
pulumi.export("diffyNamespace", namespaces.diffy)
pulumi.export("serviceHost", production.service_host)
pulumi.export("primaryHost", release.primary_host)
pulumi.export("candidateHost", release.candidate_host)
pulumi.export("diffProxyHost", release.diffproxy_host)
pulumi.export("mirrorTarget", release.mirror_target)
pulumi.export("mirrorPercentage", t.mirror_percentage)
pulumi.export("sendTraffic", sleep.traffic_command)
pulumi.export("consolePortForward", console_command(t, context))
pulumi.export("consoleUrl", f"http://localhost:{t.ports.console}/")
