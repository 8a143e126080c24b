"""Istio from its official Helm charts: `base` (CRDs), then `istiod`.

Why `helm.v3.Release` and not `helm.v4.Chart`: a Release is installed by Helm itself, so it
is the same install Istio documents (`helm ls -n istio-system` shows it, `helm upgrade`
works, chart hooks run as hooks), and Pulumi marks it created only once the chart's
workloads are ready. That readiness is what the demo needs: the sidecar injection webhook
fails closed, so no pod of the demo may be created before istiod serves it. `v4.Chart`
renders the chart client-side into separate resources (finer diffs, no Helm release to
upgrade), and as a provider-side component its children are invisible to unit-test mocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs

from topology import Istio
from topology.kube import istiod_values

ISTIO_CHARTS = "https://istio-release.storage.googleapis.com/charts"
ISTIO_NAMESPACE = "istio-system"


@dataclass(frozen=True)
class IstioInstallArgs:
    version: str
    # istiod's chart value `compatibilityVersion` ("" = the release's own defaults); 1.27 or
    # lower brings back the `-shadow` Host on mirrored copies.
    compatibility_version: str = ""
    repository: str = ISTIO_CHARTS
    namespace: str = ISTIO_NAMESPACE
    timeout_seconds: int = 600  # istiod's image is large for a fresh kind node


class IstioInstall(pulumi.ComponentResource):
    def __init__(self, name: str, args: IstioInstallArgs,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("mirrordemo:index:IstioInstall", name, None, opts)
        common = dict(version=args.version, namespace=args.namespace,
                      repository_opts=RepositoryOptsArgs(repo=args.repository),
                      timeout=args.timeout_seconds)
        self.base = Release(
            "istio-base", name="istio-base", chart="base", create_namespace=True,
            values={"defaultRevision": "default"}, **common,
            opts=pulumi.ResourceOptions(parent=self))
        istio = Istio(args.version, args.compatibility_version)
        self.istiod = Release(
            "istiod", name="istiod", chart="istiod", values=istiod_values(istio), **common,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.base]))
        self.version = args.version
        self.compatibility_version = args.compatibility_version
        self.mirror_host_form = istio.host_form
        self.register_outputs({"version": args.version, "namespace": args.namespace,
                               "compatibilityVersion": args.compatibility_version,
                               "mirrorHostForm": istio.host_form})
