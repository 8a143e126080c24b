"""The demo fits one kind node in a 2-CPU Docker VM: CPU requests, as the program sends them.

Summed from the Pulumi program's own registrations (mock engine): every Deployment's
containers, one sidecar per pod at the request its annotation asks for, and istiod at the
request its Helm values ask for. kind's control plane is added at the figures kubeadm and
kind give their pods (apiserver 250m, controller-manager 200m, scheduler 100m, etcd 100m,
two CoreDNS 100m, kindnet 100m). Istio's own defaults (istiod 500m, 100m per sidecar) came
to ~2.3 CPUs, and pods stayed Pending.
"""

from __future__ import annotations

import pytest

from tests.infra.harness import ProgramRun, run_program
from topology.kube import SIDECAR_ANNOTATIONS

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
RELEASE = "kubernetes:helm.sh/v3:Release"
KIND_CONTROL_PLANE_M = 250 + 200 + 100 + 100 + 2 * 100 + 100
NODE_M = 2000
HEADROOM_M = 400  # for kube-proxy, local-path-provisioner and anything without a request


def millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program()


def test_every_pod_asks_for_a_small_sidecar(run):
    for deployment in run.of_type(DEPLOYMENT):
        annotations = deployment.inputs["spec"]["template"]["metadata"]["annotations"]
        assert annotations["sidecar.istio.io/proxyCPU"] == SIDECAR_ANNOTATIONS["sidecar.istio.io/proxyCPU"]


def test_istiod_values_lower_istiod_and_the_default_sidecar(run):
    values = run.one(RELEASE, "istiod").inputs["values"]
    # The istiod chart's keys (1.28.1 values.yaml): `resources`, `global.proxy.resources`.
    assert millicores(values["resources"]["requests"]["cpu"]) <= 100
    assert millicores(values["global"]["proxy"]["resources"]["requests"]["cpu"]) <= 20
    # Only requests: the chart's limits stay.
    assert "limits" not in values["resources"] and "limits" not in values["global"]["proxy"]["resources"]


def test_the_whole_demo_fits_a_two_cpu_node(run):
    pods = 0
    for deployment in run.of_type(DEPLOYMENT):
        template = deployment.inputs["spec"]["template"]
        replicas = deployment.inputs["spec"].get("replicas", 1)
        containers = sum(millicores(c["resources"]["requests"]["cpu"])
                         for c in template["spec"]["containers"])
        sidecar = millicores(template["metadata"]["annotations"]["sidecar.istio.io/proxyCPU"])
        pods += replicas * (containers + sidecar)
    istiod = millicores(run.one(RELEASE, "istiod").inputs["values"]["resources"]["requests"]["cpu"])
    total = KIND_CONTROL_PLANE_M + pods + istiod
    assert total <= NODE_M - HEADROOM_M, f"{total}m of CPU requested on a {NODE_M}m node"
    assert len(run.of_type(DEPLOYMENT)) == 6  # six sidecars, as counted in the issue
