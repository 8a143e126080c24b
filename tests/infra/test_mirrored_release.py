"""MirroredRelease, the reusable component, under Pulumi's mock engine and the schemas."""

from __future__ import annotations

import copy
import dataclasses
import re

import kubernetes_validate
import pulumi
import pytest
from pulumi.runtime import rpc

from components import (
    Candidate,
    DiffProxy,
    ExistingService,
    MirroredRelease,
    MirroredReleaseArgs,
    Relay,
    ReleaseNames,
    SecretKeyRef,
    ServicePort,
    SharedStore,
)
from components.mirrored_release import TYPE
from diffproxy import settings as cli
from tests.infra.harness import ProgramRun, object_id, run_function
from tests.infra.test_manifests import KUBERNETES_VERSIONS, validate_istio
from topology import DEFAULT, Thresholds
from topology.kube import (
    ClusterSettings,
    demo_release,
    groups,
    release_diffproxy_args,
    release_objects,
)
from topology.model import LatencyThresholds
from topology.monitoring import Monitoring
from topology.release import check

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
DR = "kubernetes:networking.istio.io/v1:DestinationRule"
VS = "kubernetes:networking.istio.io/v1:VirtualService"
VS_PATCH = "kubernetes:networking.istio.io/v1:VirtualServicePatch"

CHECKOUT = ExistingService(name="checkout", namespace="shop", selector={"app": "checkout"},
                           ports=(ServicePort(port=8080), ServicePort(port=9090, name="metrics")))
PAYMENTS = ExistingService(name="payments", namespace="shop", selector={"app": "payments"},
                           ports=(ServicePort(port=80, name="http-api", target_port=8000),))


def _checkout(**changes) -> MirroredReleaseArgs:
    base = MirroredReleaseArgs(service=CHECKOUT, port=8080,
                               candidate=Candidate(image="registry.example.com/checkout:2.4.0"))
    return dataclasses.replace(base, **changes)


def _payments(**changes) -> MirroredReleaseArgs:
    base = MirroredReleaseArgs(service=PAYMENTS, port=80,
                               candidate=Candidate(image="registry.example.com/payments:7.1", port=8000))
    return dataclasses.replace(base, **changes)


def _run(*releases: tuple[str, MirroredReleaseArgs], preview: bool = False,
         into: ProgramRun | None = None) -> ProgramRun:
    def program() -> None:
        for name, args in releases:
            MirroredRelease(name, args)

    return run_function(program, preview=preview, into=into)


def _children(run: ProgramRun, release: str) -> list:
    component = next(r for r in run.resources if r.type == TYPE and r.name == release)
    return [r for r in run.resources if r.parent == component.urn]


def _kube_id(r) -> tuple[str, str]:
    return r.inputs.get("kind", r.type), object_id(r)


def _args_of(run: ProgramRun, ident: str) -> list[str]:
    container, = run.kube(DEPLOYMENT, ident).inputs["spec"]["template"]["spec"]["containers"]
    return container["args"]


# Two releases in one stack ------------------------------------------------------------------


@pytest.fixture(scope="module")
def two() -> ProgramRun:
    return _run(("checkout-next", _checkout()), ("payments-next", _payments()))


def test_two_releases_each_create_their_full_set(two):
    for release in ("checkout-next", "payments-next"):
        kinds = sorted(r.type.split(":")[-1] for r in _children(two, release))
        # Primary, candidate and diff proxy Services; candidate and diff proxy Deployments.
        assert kinds == ["Deployment", "Deployment", "DestinationRule", "Service", "Service",
                         "Service", "VirtualService"], release
        # Children are named from the release and parented to it.
        assert all(r.name.startswith(f"{release}-") for r in _children(two, release))
    assert {object_id(r) for r in two.of_type(DEPLOYMENT)} == {
        "shop/checkout-next-candidate", "shop/checkout-next-diffproxy",
        "shop/payments-next-candidate", "shop/payments-next-diffproxy"}


def test_two_releases_share_no_name(two):
    urns = [r.urn for r in two.resources if r.type != "pulumi:pulumi:Stack"]
    assert len(urns) == len(set(urns)) == 2 + 14
    kube = [_kube_id(r) for r in two.resources if r.custom]
    assert len(kube) == len(set(kube)) == 14


def test_two_releases_with_every_option_share_no_name():
    # Relay, shared store (Secret, StatefulSet, generated password), scaling and monitoring
    # add children; the dashboards share one namespace.
    every = {"relay": Relay(), "production_labels": {"track": "stable"},
             "monitoring": Monitoring(mode="operator", dashboard_namespace="monitoring"),
             "diffproxy": DiffProxy(replicas=2, max_replicas=4, store=SharedStore())}
    run = _run(("checkout-next", _checkout(**every)), ("payments-next", _payments(**every)))
    urns = [r.urn for r in run.resources if r.type != "pulumi:pulumi:Stack"]
    assert len(urns) == len(set(urns)) == 2 + 2 * 18  # 17 objects and a generated password
    kube = [_kube_id(r) for r in run.resources if r.type.startswith("kubernetes:")]
    assert len(kube) == len(set(kube)) == 2 * 17
    for release in ("checkout-next", "payments-next"):
        assert all(r.name.startswith(f"{release}-") for r in _children(run, release))
        dashboard = run.kube(CONFIGMAP, f"monitoring/{release}-diffproxy-dashboard")
        assert dashboard.parent == run.one(TYPE, release).urn


def test_each_virtual_service_mirrors_to_its_own_diff_proxy(two):
    for release, service in (("checkout-next", CHECKOUT), ("payments-next", PAYMENTS)):
        vs, = [r for r in _children(two, release) if r.type == VS]
        route, = vs.inputs["spec"]["http"]
        assert vs.inputs["spec"]["hosts"] == [service.host]
        assert route["mirror"] == {"host": f"{release}-diffproxy.shop.svc.cluster.local",
                                   "port": {"number": 8880}}
        proxy = two.kube(SERVICE, f"shop/{release}-diffproxy")
        assert proxy.parent == vs.parent
        assert proxy.urn in vs.dependencies  # copies sent before the target exists are lost
        # ...whose own targets are this release's primary and candidate.
        args = _args_of(two, f"shop/{release}-diffproxy")
        port = service.ports[0].port
        assert f"-master.primary={release}-primary:{port}" in args
        assert f"-candidate={release}-candidate:{8080 if release == 'checkout-next' else 8000}" in args


def test_primary_service_selects_the_production_pods_on_the_same_target_port(two):
    spec = two.kube(SERVICE, "shop/checkout-next-primary").inputs["spec"]
    assert spec["selector"] == {"app": "checkout"}
    assert spec["ports"] == [{"name": "http", "port": 8080, "targetPort": 8080,
                              "protocol": "TCP", "appProtocol": "http"}]
    payments = two.kube(SERVICE, "shop/payments-next-primary").inputs["spec"]
    assert payments["ports"][0]["port"] == 80 and payments["ports"][0]["targetPort"] == 8000


def test_candidate_serves_no_live_traffic(two):
    for release, service in (("checkout-next", CHECKOUT), ("payments-next", PAYMENTS)):
        labels = two.kube(DEPLOYMENT, f"shop/{release}-candidate").inputs["spec"]["template"][
            "metadata"]["labels"]
        assert labels == {"app": f"{release}-candidate"}
        assert not all(labels.get(k) == v for k, v in service.selector.items())


# Nothing of the user's is touched -----------------------------------------------------------


@pytest.mark.parametrize("args", [_checkout(), _checkout(
    relay=Relay(), production_labels={"track": "stable"}), _checkout(adopt_virtual_service="checkout")],
    ids=["plain", "relay", "adopt"])
def test_no_resource_is_the_users_service_or_deployment(args):
    run = _run(("checkout-next", args))
    component = run.one(TYPE, "checkout-next")
    for r in run.resources:
        if r.type in ("pulumi:pulumi:Stack", TYPE):
            continue
        # Everything is the release's child: `pulumi destroy` of it removes just these...
        assert r.parent == component.urn, r.name
        # ...none adopts an existing object (an import would delete it on destroy) or is
        # left behind by it...
        assert not r.import_id and not r.retain_on_delete, r.name
        # ...and none is the user's Service, or a Deployment or patch of theirs.
        assert object_id(r) != "shop/checkout" or r.type == VS_PATCH, r.name
        assert not (r.type.endswith("Patch") and r.type != VS_PATCH), r.name
    for deployment in run.of_type(DEPLOYMENT):
        assert object_id(deployment).startswith("shop/checkout-next-")
        labels = deployment.inputs["spec"]["template"]["metadata"]["labels"]
        selected = all(labels.get(k) == v for k, v in CHECKOUT.selector.items())
        # Only a relay joins the user's Service, and never as production.
        assert not selected or (args.relay and labels["mirror-diff/role"] == "relay")


def test_adopting_patches_only_the_http_routes_of_the_users_virtual_service():
    run = _run(("checkout-next", _checkout(adopt_virtual_service="checkout")))
    assert run.of_type(VS) == []
    patch = run.one(VS_PATCH, "checkout-next-mirror")
    assert patch.inputs["metadata"] == {"name": "checkout", "namespace": "shop",
                                        "annotations": {"pulumi.com/patchForce": "true"}}
    assert set(patch.inputs["spec"]) == {"http"}
    route, = patch.inputs["spec"]["http"]
    assert route["mirror"]["host"] == "checkout-next-diffproxy.shop.svc.cluster.local"
    assert run.one(DR, "checkout-next-mirror").urn in patch.dependencies


def test_without_adoption_the_release_has_its_own_virtual_service():
    run = _run(("checkout-next", _checkout()))
    vs = run.kube(VS, "shop/checkout-next-mirror")
    assert vs.inputs["spec"]["hosts"] == ["checkout.shop.svc.cluster.local"]
    assert run.of_type(VS_PATCH) == []


# What it creates, argument by argument ------------------------------------------------------


def test_candidate_image_env_args_and_resources():
    resources = {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}}
    run = _run(("checkout-next", _checkout(candidate=Candidate(
        image="registry.example.com/checkout@sha256:" + "a" * 64, port=9000,
        args=("--mode", "shadow"), env={"FEATURE_X": "on"}, resources=resources,
        pull_policy="Always"))))
    container, = run.kube(DEPLOYMENT, "shop/checkout-next-candidate").inputs["spec"][
        "template"]["spec"]["containers"]
    assert container["image"].endswith("a" * 64) and container["imagePullPolicy"] == "Always"
    assert container["args"] == ["--mode", "shadow"] and "command" not in container
    assert container["env"] == [{"name": "FEATURE_X", "value": "on"}]
    assert container["resources"] == resources
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert run.kube(SERVICE, "shop/checkout-next-candidate").inputs["spec"]["ports"][0]["port"] == 9000
    assert "-candidate=checkout-next-candidate:9000" in _args_of(run, "shop/checkout-next-diffproxy")


def test_a_secret_env_value_is_never_plain_in_the_deployment_or_the_outputs():
    token = "s3cr3t-token-value"

    def program() -> None:
        release = MirroredRelease("checkout-next", _checkout(candidate=Candidate(
            image="registry.example.com/checkout:2.4.0", env={
                "PLAIN": "on", "FROM_CONFIG": pulumi.Output.secret(token),
                "FROM_SECRET": SecretKeyRef(name="checkout-payments", key="token")})))
        pulumi.export("candidateHost", release.candidate_host)
        pulumi.export("mirrorTarget", release.mirror_target)

    run = run_function(program)
    candidate = run.kube(DEPLOYMENT, "shop/checkout-next-candidate")
    spec = candidate.inputs["spec"]
    # An Output secret reaches the pod as its value, and Pulumi keeps the spec it is in secret
    # (encrypted in the state, masked in diffs)...
    assert spec[rpc._special_sig_key] == rpc._special_secret_sig
    container, = spec["value"]["template"]["spec"]["containers"]
    assert container["env"] == [
        {"name": "PLAIN", "value": "on"}, {"name": "FROM_CONFIG", "value": token},
        # ...and a SecretKeyRef leaves the value in the user's Secret, out of Pulumi entirely.
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "checkout-payments",
                                                                "key": "token"}}}]
    # No other input and no stack output carries the value in the clear.
    others = [r.inputs for r in run.resources if r.urn != candidate.urn]
    assert token not in repr(others) and token not in repr(run.outputs)


@pytest.mark.parametrize("resources", [
    {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": 2, "memory": "1.5Gi"}},
    {"limits": {"cpu": "0.5", "ephemeral-storage": "1e9", "nvidia.com/gpu": 1}}, {}])
def test_resources_take_any_kubernetes_quantity(resources):
    check("checkout-next", _checkout(candidate=Candidate(image="c:1", resources=resources)))


def test_diff_proxy_flags_reach_its_args_and_its_own_parser_accepts_them():
    run = _run(("checkout-next", _checkout(diffproxy=DiffProxy(
        thresholds=Thresholds(relative=5, absolute=0.5), ignore_fields=("body.id", "body.at"),
        ignore_headers=("x-trace",), redact_headers=("x-token",), redact_fields=("body.card",),
        extra_args=("-samples.latest=20", "-target.timeout=10")), mirror_percentage=12.5)))
    args = _args_of(run, "shop/checkout-next-diffproxy")
    parsed = cli.load(args, env={})
    assert parsed.diff.relative_threshold == 5 and parsed.diff.ignore_fields == ("body.id", "body.at")
    assert "-redact.headers=x-token" in args and "-redact.fields=body.card" in args
    assert "-ignore.headers=x-trace" in args
    assert args[-2:] == ["-samples.latest=20", "-target.timeout=10"]
    assert parsed.targets.primary.host == parsed.targets.secondary.host == "checkout-next-primary"
    route, = run.kube(VS, "shop/checkout-next-mirror").inputs["spec"]["http"]
    assert route["mirrorPercentage"] == {"value": 12.5}


def test_latency_and_gate_settings_reach_the_diff_proxy():
    # Latency has arguments of its own; the verdict (gate) flags pass through extra_args.
    run = _run(("checkout-next", _checkout(diffproxy=DiffProxy(
        latency=LatencyThresholds(relative=5, absolute_ms=3, min_samples=50),
        extra_args=("-verdict.minRequests=50", "-verdict.baselineFailures=5")))))
    parsed = cli.load(_args_of(run, "shop/checkout-next-diffproxy"), env={})
    assert (parsed.latency.relative, parsed.latency.absolute_ms, parsed.latency.min_samples) == (
        5, 3, 50)
    assert parsed.diff.min_requests == 50 and parsed.diff.baseline_failure_percent == 5


def test_relay_joins_the_users_service_as_its_own_subset():
    run = _run(("checkout-next", _checkout(relay=Relay(), production_labels={"track": "stable"},
                                           production_subset="stable")))
    relay = run.kube(DEPLOYMENT, "shop/checkout-next-relay")
    labels = relay.inputs["spec"]["template"]["metadata"]["labels"]
    assert labels == {"app": "checkout", "mirror-diff/role": "relay"}
    assert run.kube(SERVICE, "shop/checkout-next-diffproxy").urn in relay.dependencies
    assert run.kube(CONFIGMAP, "shop/checkout-next-relay").urn in relay.dependencies
    conf = run.kube(CONFIGMAP, "shop/checkout-next-relay").inputs["data"]["default.conf"]
    assert "listen 8080;" in conf and "checkout-next-diffproxy.shop.svc.cluster.local:8880" in conf
    dr = run.kube(DR, "shop/checkout-next-mirror").inputs["spec"]
    assert dr["subsets"] == [{"name": "stable", "labels": {"track": "stable"}},
                             {"name": "relay", "labels": {"mirror-diff/role": "relay"}}]
    route, = run.kube(VS, "shop/checkout-next-mirror").inputs["spec"]["http"]
    assert route["route"][0]["destination"]["subset"] == "stable"
    assert route["mirror"] == {"host": "checkout.shop.svc.cluster.local", "subset": "relay",
                               "port": {"number": 8080}}
    # The primary must not include relay pods: it selects production only.
    assert run.kube(SERVICE, "shop/checkout-next-primary").inputs["spec"]["selector"] == {
        "app": "checkout", "track": "stable"}


def test_a_diff_namespace_takes_the_diff_proxy_while_the_primary_stays_with_production():
    run = _run(("checkout-next", _checkout(diff_namespace="diffs")))
    component = run.one(TYPE, "checkout-next")
    assert component.custom is False
    assert run.kube(DEPLOYMENT, "diffs/checkout-next-diffproxy")
    # The primary stays with the production pods (a Service selects in its own namespace).
    assert run.kube(SERVICE, "shop/checkout-next-primary")
    assert "-master.primary=checkout-next-primary.shop.svc.cluster.local:8080" in _args_of(
        run, "diffs/checkout-next-diffproxy")


def test_existing_service_from_its_manifest():
    service = ExistingService.from_manifest({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "checkout", "namespace": "shop"},
        "spec": {"selector": {"app": "checkout"}, "ports": [
            {"name": "web", "port": 80, "targetPort": 8080, "appProtocol": "http"},
            {"name": "metrics", "port": 9090}]}})
    assert service.ports == (ServicePort(port=80, name="web", target_port=8080, app_protocol="http"),
                             ServicePort(port=9090, name="metrics"))
    # appProtocol makes a port named otherwise mirrorable; the primary targets 8080.
    run = _run(("checkout-next", _checkout(service=service, port=80)))
    assert run.kube(SERVICE, "shop/checkout-next-primary").inputs["spec"]["ports"][0][
        "targetPort"] == 8080


def test_the_demo_is_one_release():
    name, args = demo_release(DEFAULT, ClusterSettings())
    demo = [o for group in groups(DEFAULT).values() for o in group]
    assert all(o in demo for o in release_objects(name, args).all())


@pytest.mark.parametrize("topology", [DEFAULT, DEFAULT.with_(allow_http_side_effects=True)],
                         ids=["default", "side-effects"])
def test_the_demo_release_runs_the_diff_proxy_the_topology_describes(topology):
    # One source: the cluster's diff proxy gets what the local stack's gets, but addresses
    # (the order differs: a release appends extra_args last).
    assert sorted(release_diffproxy_args(*demo_release(topology, ClusterSettings()))) == \
        sorted(topology.cluster_diffproxy_args())


def test_side_effects_are_the_release_arguments_choice_off_by_default():
    off = release_diffproxy_args("checkout-next", _checkout())
    on = release_diffproxy_args("checkout-next", _checkout(
        diffproxy=DiffProxy(allow_http_side_effects=True)))
    assert not any(a.startswith("-allowHttpSideEffects") for a in off)
    assert set(on) - set(off) == {"-allowHttpSideEffects=true"}


# Schemas ----------------------------------------------------------------------------------


_VARIANTS = {
    "plain": _checkout(),
    "relay": _checkout(relay=Relay(), production_labels={"track": "stable"}),
    "full": _payments(diff_namespace="diffs", mirror_percentage=0.5, candidate=Candidate(
        image="r.example/p:1", port=8000, command=("/app/run",), args=("-x",), env={"A": "1"}),
        diffproxy=DiffProxy(storage="pvc", storage_class="fast", extra_args=("-workers=2",))),
}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("variant", _VARIANTS)
def test_release_objects_match_the_schemas_strictly(variant, version):
    objects = release_objects("rel", _VARIANTS[variant]).all()
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("networking.istio.io/"):
            validate_istio(copy.deepcopy(obj))
        else:
            kubernetes_validate.validate(obj, version, strict=True)


# Bad input fails the preview, naming the argument ---------------------------------------------


_BAD = [
    ("port", _checkout(port=8443)),
    ("port", _checkout(port=9090)),  # in the Service, but not an HTTP port
    ("candidate.image", _checkout(candidate=Candidate(image=""))),
    ("candidate.image", _checkout(candidate=Candidate(image="checkout:latest"))),
    ("mirror_percentage", _checkout(mirror_percentage=150)),
    ("mirror_percentage", _checkout(mirror_percentage=-0.5)),
    ("mirror_percentage", _checkout(mirror_percentage=float("nan"))),
    ("service.name", _checkout(service=dataclasses.replace(CHECKOUT, name="Checkout"))),
    ("service.namespace", _checkout(service=dataclasses.replace(CHECKOUT, namespace="my_shop"))),
    ("candidate.port", _checkout(candidate=Candidate(image="c:1", port=70000))),
    ("candidate.env", _checkout(candidate=Candidate(image="c:1", env={"BAD NAME": "x"}))),
    ("candidate.labels", _checkout(candidate=Candidate(image="c:1", labels={"app": "checkout"}))),
    ("diffproxy.extra_args", _checkout(diffproxy=DiffProxy(extra_args=("-candidate=x:1",)))),
    ("diffproxy.extra_args", _checkout(diffproxy=DiffProxy(extra_args=("-no.such.flag=1",)))),
    ("diffproxy.extra_args", _checkout(diffproxy=DiffProxy(extra_args=("workers=2",)))),
    ("diffproxy.extra_args", _checkout(diffproxy=DiffProxy(
        extra_args=("-allowHttpSideEffects=true",)))),
    ("diffproxy.thresholds.relative", _checkout(diffproxy=DiffProxy(thresholds=Thresholds(-1, 0)))),
    ("diffproxy.latency.relative", _checkout(diffproxy=DiffProxy(
        latency=LatencyThresholds(relative=-1)))),
    ("diffproxy.latency.min_samples", _checkout(diffproxy=DiffProxy(
        latency=LatencyThresholds(min_samples=0)))),
    ("production_labels", _checkout(relay=Relay())),
    ("adopt_virtual_service", _checkout(adopt_virtual_service="Checkout VS")),
    ("names", _checkout(names=ReleaseNames(primary_service="checkout"))),
    ("names", _checkout(names=ReleaseNames(candidate_service="same", diffproxy="same"))),
    ("port", _checkout(service=dataclasses.replace(CHECKOUT, ports=(
        ServicePort(port=8080, name="tcp-main"),)))),
    ("port", _checkout(port="8080")),
    ("mirror_percentage", _checkout(mirror_percentage="50")),
    ("mirror_percentage", _checkout(mirror_percentage=float("inf"))),
    ("candidate.image", _checkout(candidate=Candidate(image="registry.example.com/c:1 "))),
    ("candidate.image", _checkout(candidate=Candidate(image=":1"))),
    ("candidate.env", _checkout(candidate=Candidate(image="c:1", env="A=1"))),
    ("candidate.env", _checkout(candidate=Candidate(image="c:1", env={"A": None}))),
    ("candidate.env", _checkout(candidate=Candidate(image="c:1", env={
        "A": SecretKeyRef(name="Bad_Name", key="k")}))),
    ("candidate.resources", _checkout(candidate=Candidate(image="c:1", resources={
        "request": {"cpu": "1"}}))),
    ("candidate.resources.requests.cpu", _checkout(candidate=Candidate(image="c:1", resources={
        "requests": {"cpu": "one"}}))),
    ("service.selector", _checkout(service=dataclasses.replace(CHECKOUT, selector="app=checkout"))),
    ("production_labels", _checkout(production_labels={"track": 1})),
]


@pytest.mark.parametrize(("argument", "args"), _BAD, ids=[f"{a}-{i}" for i, (a, _) in enumerate(_BAD)])
def test_bad_input_fails_the_preview_naming_the_argument(argument, args):
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as caught:
        _run(("checkout-next", args), preview=True, into=run)
    assert re.match(rf"invalid MirroredRelease 'checkout-next': {re.escape(argument)}[ :]",
                    str(caught.value)), str(caught.value)
    # Nothing registered, not even the component.
    assert [r for r in run.resources if r.type != "pulumi:pulumi:Stack"] == []


@pytest.mark.parametrize("name", ["Checkout", "checkout_next", "1checkout", "-x", "a" * 46])
def test_a_name_that_is_not_a_dns_label_fails(name):
    with pytest.raises(pulumi.RunError, match=r"^invalid MirroredRelease .*: name "):
        _run((name, _checkout()), preview=True)


# issue 14: Prometheus and Grafana for any release -------------------------------------------


def test_a_release_with_operator_monitoring_gets_its_servicemonitor_rule_and_dashboard():
    run = _run(("checkout-next", _checkout(monitoring=Monitoring(
        mode="operator", labels={"release": "kube-prometheus-stack"}))),
        ("payments-next", _payments()))
    kinds = sorted(r.inputs.get("kind", r.type.split(":")[-1])
                   for r in _children(run, "checkout-next"))
    for kind in ("ServiceMonitor", "PrometheusRule", "ConfigMap"):
        assert kind in kinds, kinds
    monitor = next(r for r in _children(run, "checkout-next") if r.inputs.get("kind") == "ServiceMonitor")
    assert monitor.inputs["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor.inputs["spec"]["selector"]["matchLabels"] == {"app": "checkout-next-diffproxy"}
    rule = next(r for r in _children(run, "checkout-next") if r.inputs.get("kind") == "PrometheusRule")
    exprs = " ".join(rule_["expr"] for g in rule.inputs["spec"]["groups"] for rule_ in g["rules"])
    assert 'app="checkout-next-diffproxy"' in exprs and 'namespace="shop"' in exprs
    # The other release in the stack was not asked for monitoring: nothing of it.
    assert not [r for r in _children(run, "payments-next")
                if r.inputs.get("kind") in ("ServiceMonitor", "PrometheusRule", "ConfigMap")]


def test_a_bad_monitoring_mode_fails_the_preview_naming_it():
    with pytest.raises(Exception, match="monitoring.mode"):
        _run(("checkout-next", _checkout(monitoring=Monitoring(mode="grafana"))), preview=True)
