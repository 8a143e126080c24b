"""The Pulumi program (__main__.py), run whole against Pulumi's mock engine."""

from __future__ import annotations

import pulumi
import pytest

from tests.infra.harness import ProgramRun, object_id, run_program
from topology import DEFAULT
from topology.kube import groups, relay_conf

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
NAMESPACE = "kubernetes:core/v1:Namespace"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
RELEASE = "kubernetes:helm.sh/v3:Release"
DR = "kubernetes:networking.istio.io/v1:DestinationRule"
VS = "kubernetes:networking.istio.io/v1:VirtualService"
APP, DIFFY = DEFAULT.app_namespace, DEFAULT.diffy_namespace


@pytest.fixture(scope="module")
def default() -> ProgramRun:
    return run_program()


def _names(run: ProgramRun, type_: str) -> set[str]:
    return {object_id(r) for r in run.of_type(type_)}


def _pod(run: ProgramRun, name: str) -> dict:
    return run.kube(DEPLOYMENT, name).inputs["spec"]["template"]["spec"]


def _dep_names(run: ProgramRun, urns: list[str]) -> set[str]:
    return {object_id(run.by_urn(u)) for u in urns}


def _key(obj: dict) -> tuple:
    return obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]


# What is created ------------------------------------------------------------------------


def test_creates_exactly_the_objects_manifests_are_rendered_from(default):
    sent = {_key(o): o for o in default.kube_objects()}
    built = {_key(o): o for group in groups(DEFAULT).values() for o in group}
    assert sent.keys() == built.keys()
    for key, obj in built.items():
        assert sent[key] == obj, key


def test_every_resource(default):
    assert _names(default, NAMESPACE) == {APP, DIFFY}
    assert _names(default, DEPLOYMENT) == {
        f"{APP}/mirrorservice-sample-v1", f"{APP}/mirrorservice-sample-v2", f"{APP}/sleep",
        f"{DIFFY}/httpbin-v1", f"{DIFFY}/httpbin-v2", f"{DIFFY}/httpbin-diffy"}
    assert _names(default, SERVICE) == {
        f"{APP}/mirrorservice-sample", f"{DIFFY}/httpbin-master", f"{DIFFY}/httpbin-candidate",
        f"{DIFFY}/httpbin-diffy"}
    assert _names(default, CONFIGMAP) == {f"{APP}/mirrorservice-sample-relay"}
    assert _names(default, PVC) == set()
    assert _names(default, RELEASE) == {"istio-base", "istiod"}
    assert _names(default, DR) == _names(default, VS) == {f"{APP}/mirrorservice-sample"}


def test_components_are_typed_and_parent_their_objects(default):
    components = {r.name: r.type for r in default.resources
                  if r.type.startswith(("mirrordemo:", "mirrordiff:"))}
    assert components == {
        "istio": "mirrordemo:index:IstioInstall", "namespaces": "mirrordemo:index:Namespaces",
        "production": "mirrordemo:index:HttpbinApp", "sleep": "mirrordemo:index:SleepClient",
        "mirrorservice-sample": "mirrordiff:index:MirroredRelease"}
    parent_of = {object_id(r): default.by_urn(r.parent).name for r in default.resources
                 if r.type in (DEPLOYMENT, SERVICE, RELEASE, CONFIGMAP)}
    release = "mirrorservice-sample"
    assert parent_of["istiod"] == "istio"
    # The demo's production app is its own; everything mirroring it is the release's.
    assert {parent_of[f"{APP}/mirrorservice-sample-v1"], parent_of[f"{APP}/mirrorservice-sample"],
            parent_of[f"{DIFFY}/httpbin-v1"]} == {"production"}
    assert {parent_of[f"{DIFFY}/{n}"] for n in (
        "httpbin-v2", "httpbin-master", "httpbin-candidate", "httpbin-diffy")} == {release}
    assert parent_of[f"{APP}/mirrorservice-sample-v2"] == release
    assert parent_of[f"{APP}/mirrorservice-sample-relay"] == release
    for kind in (DR, VS):
        assert default.by_urn(default.kube(kind, f"{APP}/mirrorservice-sample").parent).name == release
    # The release's children are named from the release, whatever their object names.
    children = [r for r in default.resources if r.parent and default.by_urn(r.parent).name == release]
    assert len(children) == 9
    assert all(r.name.startswith(f"{release}-") for r in children)


def test_stacks_made_before_mirrored_release_keep_their_objects(default):
    # Then each manifests/ group was a top-level component and its objects were named
    # "namespace/name"; every moved object carries an alias to that identity.
    before = {"backends": "mirrordemo:index:HttpbinBackends::backends",
              "diffproxy": "mirrordemo:index:DiffProxy::diffproxy",
              "app": "mirrordemo:index:Relay::relay",
              "mirror-rule": "mirrordemo:index:MirrorRule::mirror-rule"}
    moved = 0
    for group, objects in groups(DEFAULT).items():
        for obj in objects:
            meta = obj["metadata"]
            ident = f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]
            r = default.kube(f"kubernetes:{_api(obj)}:{obj['kind']}", ident)
            # (pulumi-kubernetes adds aliases of its own for older API versions' types)
            renamed = [a for a in r.aliases if a[0]]
            if group in before:
                parent = f"urn:pulumi:test::mirror-diff::{before[group]}"
                assert renamed == [(ident, "", parent)], ident
                moved += 1
            else:
                assert renamed == [], ident  # namespaces and sleep never moved
    assert moved == 12


def _api(obj: dict) -> str:
    group_version = obj["apiVersion"]
    return f"core/{group_version}" if "/" not in group_version else group_version


def test_every_kubernetes_resource_uses_the_stack_provider(default):
    provider = default.one("pulumi:providers:kubernetes", "k8s")
    kube = [r for r in default.resources if r.custom and r.type.startswith("kubernetes:")]
    assert kube and all(r.provider.startswith(provider.urn + "::") for r in kube)
    assert "context" not in provider.inputs  # empty kubeContext: the current context


def test_namespaces_have_sidecar_injection(default):
    for ns in default.of_type(NAMESPACE):
        assert ns.inputs["metadata"]["labels"]["istio-injection"] == "enabled"


def test_app_v1_is_httpbin_on_the_demo_port(default):
    container, = _pod(default, f"{APP}/mirrorservice-sample-v1")["containers"]
    assert container["command"][-7:] == [
        "gunicorn", "--access-logfile", "-", "--no-control-socket", "-b", "0.0.0.0:44134", "httpbin:app"]
    assert container["image"] == DEFAULT.images.httpbin
    assert container["ports"] == [{"name": "http", "containerPort": 44134, "protocol": "TCP"}]
    labels = default.kube(DEPLOYMENT, f"{APP}/mirrorservice-sample-v1").inputs["spec"][
        "template"]["metadata"]["labels"]
    assert labels == {"app": "mirrorservice-sample", "version": "v1"}


def test_relay_serves_the_rendered_nginx_conf_from_a_configmap(default):
    data = default.kube(CONFIGMAP, f"{APP}/mirrorservice-sample-relay").inputs["data"]
    assert data == {"default.conf": relay_conf(DEFAULT)}
    conf = data["default.conf"]
    assert "listen 44134;" in conf
    assert "proxy_pass http://httpbin-diffy.diffy.svc.cluster.local:8880;" in conf
    assert "proxy_http_version 1.1;" in conf
    assert "proxy_set_header Host" not in conf
    pod = _pod(default, f"{APP}/mirrorservice-sample-v2")
    assert {"name": "conf", "configMap": {"name": "mirrorservice-sample-relay"}} in pod["volumes"]
    relay, = pod["containers"]
    assert {"name": "conf", "mountPath": "/etc/nginx/conf.d", "readOnly": True} in relay[
        "volumeMounts"]
    assert relay["image"] == DEFAULT.images.relay
    # The relay waits for its ConfigMap.
    assert f"{APP}/mirrorservice-sample-relay" in _dep_names(
        default, default.kube(DEPLOYMENT, f"{APP}/mirrorservice-sample-v2").dependencies)


def test_app_service_port_named_http_selects_both_versions(default):
    spec = default.kube(SERVICE, f"{APP}/mirrorservice-sample").inputs["spec"]
    assert spec["selector"] == {"app": "mirrorservice-sample"}
    assert spec["ports"] == [{"name": "http", "port": 44134, "targetPort": "http",
                              "protocol": "TCP", "appProtocol": "http"}]


def test_backends_behind_master_and_candidate_services(default):
    for service, version in (("httpbin-master", "v1"), ("httpbin-candidate", "v2")):
        spec = default.kube(SERVICE, f"{DIFFY}/{service}").inputs["spec"]
        assert spec["selector"] == {"app": "httpbin", "version": version}
        assert [(p["name"], p["port"]) for p in spec["ports"]] == [("http", 8080)]
        pod_labels = default.kube(DEPLOYMENT, f"{DIFFY}/httpbin-{version}").inputs["spec"][
            "template"]["metadata"]["labels"]
        assert pod_labels == spec["selector"]
    v1, = _pod(default, f"{DIFFY}/httpbin-v1")["containers"]
    v2, = _pod(default, f"{DIFFY}/httpbin-v2")["containers"]
    assert v1["command"][-2:] == ["0.0.0.0:8080", "httpbin:app"]
    assert v2["command"] == ["gunicorn", "--access-logfile", "-", "--no-control-socket", "-b", "0.0.0.0:8080",
                             "candidate.app:app"]
    # Primary and candidate share one image so only the deliberate change differs.
    assert v2["image"] == v1["image"] == DEFAULT.images.candidate == "mirror-demo-httpbin:0.10.2"
    assert v2["imagePullPolicy"] == "IfNotPresent"


def test_diffproxy_deployment(default):
    pod = _pod(default, f"{DIFFY}/httpbin-diffy")
    container, = pod["containers"]
    assert container["args"] == DEFAULT.cluster_diffproxy_args()
    assert container["args"][:3] == ["-candidate=httpbin-candidate:8080",
                                     "-master.primary=httpbin-master:8080",
                                     "-master.secondary=httpbin-master:8080"]
    assert "command" not in container  # the image's entrypoint takes Diffy's flags
    assert container["image"] == "diffproxy:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http-proxy", 8880), ("http-admin", 8881), ("http-console", 8888)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-admin"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-admin"}
    assert "exec" not in container["readinessProbe"] and "exec" not in container["livenessProbe"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["allowPrivilegeEscalation"] is False
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["results"] == "/var/lib/diffproxy"
    assert "-store.path=/var/lib/diffproxy/results.sqlite" in container["args"]
    results = next(v for v in pod["volumes"] if v["name"] == "results")
    assert "emptyDir" in results


def test_diffproxy_answers_its_service_names_and_probes_but_no_other_host(default):
    """The API/admin Host guard (DNS rebinding) is configured from the topology: the
    Service's names pass, the kubelet's probes (Host: pod IP) and port-forwards pass."""
    from diffproxy.edge import AllowedHosts
    from diffproxy.settings import load

    pod = _pod(default, f"{DIFFY}/httpbin-diffy")
    container, = pod["containers"]
    allowed = AllowedHosts(load(container["args"], env={}))
    service = DEFAULT.diffproxy_name
    for host in (service, f"{service}.{DEFAULT.diffy_namespace}:8888", DEFAULT.diffproxy_host,
                 "10.244.1.17:8881", "localhost:8888", "127.0.0.1:8888"):
        assert allowed.allows(host), host
    for host in ("evil.example", f"{service}.evil.example", "localhost.evil.example"):
        assert not allowed.allows(host), host
    probe = container["readinessProbe"]["httpGet"]
    assert "host" not in probe  # so the kubelet sends the pod IP: an IP literal, accepted


def test_diffproxy_service_ports(default):
    spec = default.kube(SERVICE, f"{DIFFY}/httpbin-diffy").inputs["spec"]
    assert spec["selector"] == {"app": "httpbin-diffy"}
    assert [(p["name"], p["port"], p["targetPort"], p["appProtocol"]) for p in spec["ports"]] == [
        ("http-proxy", 8880, "http-proxy", "http"), ("http-admin", 8881, "http-admin", "http"),
        ("http-console", 8888, "http-console", "http")]


def test_sleep_client(default):
    container, = _pod(default, f"{APP}/sleep")["containers"]
    assert container["command"] == ["/bin/sleep", "infinity"]
    assert container["image"] == DEFAULT.images.sleep
    assert "curl" in container["image"]


def test_mirror_rule(default):
    host = "mirrorservice-sample.mirror-demo.svc.cluster.local"
    dr = default.kube(DR, f"{APP}/mirrorservice-sample").inputs
    assert dr["apiVersion"] == "networking.istio.io/v1"
    assert dr["spec"] == {"host": host, "subsets": [
        {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}
    vs = default.kube(VS, f"{APP}/mirrorservice-sample").inputs
    assert vs["apiVersion"] == "networking.istio.io/v1"
    route, = vs["spec"]["http"]
    assert route["route"] == [{"destination": {"host": host, "subset": "v1",
                                               "port": {"number": 44134}}, "weight": 100}]
    assert route["mirror"] == {"host": host, "subset": "v2", "port": {"number": 44134}}
    assert route["mirrorPercentage"] == {"value": 100.0}
    assert "gateways" not in vs["spec"]  # mesh-wide: the caller's sidecar mirrors


def test_relay_starts_after_the_diff_proxy_service(default):
    # nginx resolves proxy_pass's host once at start and exits while it cannot.
    relay = default.kube(DEPLOYMENT, f"{APP}/mirrorservice-sample-v2")
    assert f"{DIFFY}/httpbin-diffy" in {
        object_id(default.by_urn(u)) for u in relay.dependencies if default.by_urn(u).type == SERVICE}
    # ... and still waits for istiod and its namespaces, as every workload does.
    assert "istiod" in _dep_names(default, relay.dependencies)


def test_virtual_service_depends_on_destination_rule(default):
    vs = default.kube(VS, f"{APP}/mirrorservice-sample")
    dr = default.kube(DR, f"{APP}/mirrorservice-sample")
    assert dr.urn in vs.dependencies
    assert vs.urn not in dr.dependencies


def test_istio_from_official_charts_base_then_istiod(default):
    base, istiod = default.one(RELEASE, "istio-base"), default.one(RELEASE, "istiod")
    for release, chart in ((base, "base"), (istiod, "istiod")):
        assert release.inputs["chart"] == chart
        assert release.inputs["name"] == release.name
        assert release.inputs["namespace"] == "istio-system"
        assert release.inputs["version"] == "1.28.1"
        assert release.inputs["repositoryOpts"] == {
            "repo": "https://istio-release.storage.googleapis.com/charts"}
    assert base.inputs["createNamespace"] is True
    assert base.urn in istiod.dependencies


def test_every_workload_and_istio_object_waits_for_istiod(default):
    istiod = default.one(RELEASE, "istiod").urn
    waiting = default.of_type(DEPLOYMENT) + default.of_type(DR) + default.of_type(VS)
    assert len(waiting) == 8
    for resource in waiting:
        assert istiod in resource.dependencies, resource.name
        assert {APP, DIFFY} <= _dep_names(default, resource.dependencies), resource.name


def test_outputs(default):
    out = default.outputs
    assert out["appNamespace"] == APP and out["diffyNamespace"] == DIFFY
    assert out["serviceHost"] == "mirrorservice-sample.mirror-demo.svc.cluster.local"
    assert out["primaryHost"] == "httpbin-master.diffy.svc.cluster.local"
    assert out["candidateHost"] == "httpbin-candidate.diffy.svc.cluster.local"
    assert out["diffProxyHost"] == "httpbin-diffy.diffy.svc.cluster.local"
    assert out["sendTraffic"] == ("kubectl -n mirror-demo exec deploy/sleep -c sleep -- "
                                  "curl -sS http://mirrorservice-sample:44134/headers")
    assert out["consolePortForward"] == "kubectl -n diffy port-forward svc/httpbin-diffy 8888:8888"
    assert out["consoleUrl"] == "http://localhost:8888/"
    assert out["mirrorPercentage"] == 100.0
    assert out["istioVersion"] == "1.28.1"
    # The relay's subset of the demo's Service, as before MirroredRelease.
    assert out["mirrorTarget"] == "mirrorservice-sample.mirror-demo.svc.cluster.local:44134"
    assert sorted(out) == [
        "appNamespace", "candidateHost", "consolePortForward", "consoleUrl", "diffProxyHost",
        "diffyNamespace", "istioCompatibilityVersion", "istioVersion", "mirrorHostForm",
        "mirrorPercentage", "mirrorTarget", "primaryHost", "sendTraffic", "serviceHost"]


def test_no_image_is_latest_or_untagged(default):
    for deployment in default.of_type(DEPLOYMENT):
        for container in deployment.inputs["spec"]["template"]["spec"]["containers"]:
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image
            assert container["imagePullPolicy"] == "IfNotPresent"


# Each config knob -----------------------------------------------------------------------


def test_mirror_percentage_50():
    run = run_program({"mirrorPercentage": "50"})
    route, = run.kube(VS, f"{APP}/mirrorservice-sample").inputs["spec"]["http"]
    assert route["mirrorPercentage"] == {"value": 50.0}
    assert run.outputs["mirrorPercentage"] == 50.0


def test_relay_false_mirrors_straight_to_the_diff_proxy():
    run = run_program({"relay": "false"})
    route, = run.kube(VS, f"{APP}/mirrorservice-sample").inputs["spec"]["http"]
    assert route["mirror"] == {"host": "httpbin-diffy.diffy.svc.cluster.local",
                               "port": {"number": 8880}}
    assert f"{APP}/mirrorservice-sample-v2" not in _names(run, DEPLOYMENT)
    assert _names(run, CONFIGMAP) == set()
    subsets = run.kube(DR, f"{APP}/mirrorservice-sample").inputs["spec"]["subsets"]
    assert [s["name"] for s in subsets] == ["v1"]
    assert run.outputs["mirrorTarget"] == "httpbin-diffy.diffy.svc.cluster.local:8880"
    assert f"{APP}/mirrorservice-sample-v1" in _names(run, DEPLOYMENT)


def test_install_istio_false_creates_no_release_and_no_istiod_dependency():
    run = run_program({"installIstio": "false"})
    assert run.of_type(RELEASE) == []
    assert not [r for r in run.resources if r.type == "mirrordemo:index:IstioInstall"]
    assert "istioVersion" not in run.outputs
    for deployment in run.of_type(DEPLOYMENT):
        assert _dep_names(run, deployment.dependencies) >= {APP, DIFFY}
        assert "istiod" not in _dep_names(run, deployment.dependencies)


def test_istio_version_knob():
    run = run_program({"istioVersion": "1.27.3"})
    assert {r.inputs["version"] for r in run.of_type(RELEASE)} == {"1.27.3"}
    assert run.outputs["mirrorHostForm"] == "shadow"


@pytest.mark.parametrize(("config", "values", "form"), [
    ({}, {}, "plain"),
    ({"istioCompatibilityVersion": "1.27"}, {"compatibilityVersion": "1.27"}, "shadow"),
    ({"istioVersion": "1.29.0", "istioCompatibilityVersion": "1.28"}, {"compatibilityVersion": "1.28"}, "plain"),
])
def test_compatibility_version_reaches_istiod_and_decides_the_mirror_host(config, values, form):
    run = run_program(config)
    istiod = run.one(RELEASE, "istiod")
    got = dict(istiod.inputs.get("values", {}))
    assert {k: got.pop(k) for k in ("resources", "global")}  # the kind CPU budget stays
    assert got == values
    assert run.outputs["mirrorHostForm"] == form
    assert run.outputs["istioCompatibilityVersion"] == config.get("istioCompatibilityVersion", "")


def test_candidate_image_and_app_knobs():
    run = run_program({"candidateImage": "docker.io/kong/httpbin:0.2.3",
                       "candidateApp": "httpbin:app"})
    v2, = _pod(run, f"{DIFFY}/httpbin-v2")["containers"]
    assert v2["image"] == "docker.io/kong/httpbin:0.2.3"
    assert v2["command"][-1] == "httpbin:app"
    v1, = _pod(run, f"{DIFFY}/httpbin-v1")["containers"]
    assert v1["image"] == DEFAULT.images.httpbin


def test_namespace_and_image_knobs():
    run = run_program({"appNamespace": "shop", "diffyNamespace": "diffs",
                       "diffproxyImage": "registry.local/diffproxy:1.2.3",
                       "imagePullPolicy": "Always", "httpbinImage": "docker.io/kong/httpbin:0.2.2",
                       "httpbinLauncher": "pipenv run"})
    assert _names(run, NAMESPACE) == {"shop", "diffs"}
    container, = _pod(run, "diffs/httpbin-diffy")["containers"]
    assert container["image"] == "registry.local/diffproxy:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    v1, = _pod(run, "shop/mirrorservice-sample-v1")["containers"]
    assert v1["image"] == "docker.io/kong/httpbin:0.2.2"
    assert v1["command"][:3] == ["pipenv", "run", "gunicorn"]
    assert "--no-control-socket" not in v1["command"]  # kong/httpbin's gunicorn predates the flag
    conf = run.kube(CONFIGMAP, "shop/mirrorservice-sample-relay").inputs["data"]["default.conf"]
    assert "proxy_pass http://httpbin-diffy.diffs.svc.cluster.local:8880;" in conf
    assert run.outputs["sendTraffic"].startswith("kubectl -n shop exec deploy/sleep")
    assert run.outputs["consolePortForward"].startswith("kubectl -n diffs port-forward")


def test_thresholds_reach_the_diff_proxy_args():
    run = run_program({"thresholdRelative": "10", "thresholdAbsolute": "0.5"})
    container, = _pod(run, f"{DIFFY}/httpbin-diffy")["containers"]
    assert "-threshold.relative=10" in container["args"]
    assert "-threshold.absolute=0.5" in container["args"]


def test_pvc_storage():
    run = run_program({"storage": "pvc", "storageSize": "2Gi", "storageClass": "standard"})
    claim = run.kube(PVC, f"{DIFFY}/httpbin-diffy-results").inputs
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "standard",
                             "resources": {"requests": {"storage": "2Gi"}}}
    deployment = run.kube(DEPLOYMENT, f"{DIFFY}/httpbin-diffy")
    spec = deployment.inputs["spec"]
    results = next(v for v in spec["template"]["spec"]["volumes"] if v["name"] == "results")
    assert results == {"name": "results",
                       "persistentVolumeClaim": {"claimName": "httpbin-diffy-results"}}
    assert spec["strategy"] == {"type": "Recreate"}
    assert f"{DIFFY}/httpbin-diffy-results" in _dep_names(run, deployment.dependencies)


def test_kube_context_selects_the_provider_context_and_shows_in_commands():
    run = run_program({"kubeContext": "kind-mirror"})
    assert run.one("pulumi:providers:kubernetes", "k8s").inputs["context"] == "kind-mirror"
    assert run.outputs["sendTraffic"].startswith("kubectl --context kind-mirror -n mirror-demo")
    assert run.outputs["consolePortForward"].startswith("kubectl --context kind-mirror -n diffy")


@pytest.mark.parametrize(("config", "key"), [
    ({"mirrorPercentage": "150"}, "mirrorPercentage"),
    ({"mirrorPercentage": "-1"}, "mirrorPercentage"),
    ({"mirrorPercentage": "lots"}, "mirrorPercentage"),
    ({"mirrorPercentage": "nan"}, "mirrorPercentage"),
    ({"candidateImage": ""}, "candidateImage"),
    ({"httpbinImage": "  "}, "httpbinImage"),
    ({"diffproxyImage": "diffproxy:latest"}, "diffproxyImage"),
    ({"sleepImage": "curlimages/curl"}, "sleepImage"),
    ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy"),
    ({"appNamespace": "My_Namespace"}, "appNamespace"),
    ({"diffyNamespace": ""}, "diffyNamespace"),
    ({"relay": "maybe"}, "relay"),
    ({"installIstio": "yes please"}, "installIstio"),
    ({"istioVersion": "latest"}, "istioVersion"),
    ({"istioCompatibilityVersion": "1.28"}, "istioCompatibilityVersion"),
    ({"istioCompatibilityVersion": "1.27.3"}, "istioCompatibilityVersion"),
    ({"thresholdRelative": "-5"}, "thresholdRelative"),
    ({"storage": "hostPath"}, "storage"),
    ({"storageSize": "lots"}, "storageSize"),
    ({"candidateApp": "candidate"}, "candidateApp"),
])
def test_bad_values_fail_naming_the_key(config, key):
    run = ProgramRun()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(config, into=run)
    assert f"mirror-diff:{key}" in str(caught.value)
    # The program stops while reading its config, before any resource is registered.
    assert [r for r in run.resources if r.type != "pulumi:pulumi:Stack"] == []


def test_install_istio_false_ignores_istio_version():
    run = run_program({"installIstio": "false", "istioVersion": ""})
    assert run.of_type(RELEASE) == []
