"""Mirror your own service: `checkout` in namespace `shop`, release 2.4.0 as the candidate.

Nothing here creates or changes checkout itself: its Deployment and Service stay yours.
The release adds a candidate Deployment, the diff proxy and the Istio rule that copies
`mirrorPercentage` of checkout's requests to it; `pulumi destroy` takes exactly that away.
Edit the constants below for your service (`kubectl -n shop get svc checkout -o yaml`
shows its selector and ports).
"""

import sys
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s

# The component lives in this repository's components/ and topology/.
REPOSITORY = str(Path(__file__).resolve().parents[2])
if REPOSITORY not in sys.path:
    sys.path.insert(0, REPOSITORY)

from components import (  # noqa: E402 - importable once the repository is on the path
    Candidate,
    DiffProxy,
    ExistingService,
    MirroredRelease,
    MirroredReleaseArgs,
    SecretKeyRef,
    ServicePort,
)

config = pulumi.Config()
provider = k8s.Provider("k8s", context=config.get("kubeContext") or None)

checkout = ExistingService(
    name="checkout", namespace="shop", selector={"app": "checkout"},
    ports=(ServicePort(port=8080, name="http", target_port="http"),
           ServicePort(port=9090, name="metrics")))

release = MirroredRelease("checkout-next", MirroredReleaseArgs(
    service=checkout,
    port=8080,
    candidate=Candidate(
        image=config.get("candidateImage", "registry.example.com/shop/checkout:2.4.0"),
        port=8080,
        env={"CHECKOUT_PAYMENTS_URL": "http://payments-sandbox.shop:8080",
             # A secret stays in checkout's own Secret: the Deployment only names it.
             "CHECKOUT_PAYMENTS_TOKEN": SecretKeyRef(name="checkout-payments", key="token")},
        resources={"requests": {"cpu": "100m", "memory": "256Mi"},
                   "limits": {"cpu": "1", "memory": "512Mi"}},
    ),
    diffproxy=DiffProxy(
        image=config.get("diffproxyImage", "registry.example.com/mirror/diffproxy:0.1.0"),
        # Fields that differ on every response, whoever answers.
        ignore_fields=("body.orderId", "body.createdAt"),
        ignore_headers=("x-request-start",),
        redact_headers=("x-customer-token",),
        redact_fields=("body.card.number",),
        extra_args=("-target.timeout=10", "-samples.latest=20"),
    ),
    mirror_percentage=config.get_float("mirrorPercentage", 10.0),
), opts=pulumi.ResourceOptions(providers=[provider]))

pulumi.export("serviceHost", release.service_host)
pulumi.export("candidateHost", release.candidate_host)
pulumi.export("diffProxyHost", release.diffproxy_host)
pulumi.export("mirrorTarget", release.mirror_target)
pulumi.export("mirrorPercentage", release.mirror_percentage)
pulumi.export("consolePortForward", release.console_port_forward)
