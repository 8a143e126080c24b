"""Scaling out: diffproxyReplicas/diffproxyStore under Pulumi's mocks, the rendered overlay
manifests/shared-store, and every object against Kubernetes' schemas in strict mode."""

from __future__ import annotations

import dataclasses

import kubernetes_validate
import pytest
import yaml

from components import MirroredRelease
from diffproxy import settings as cli
from tests.infra.harness import ROOT, run_function, run_program
from tests.infra.test_manifests import KUBERNETES_VERSIONS
from tests.infra.test_mirrored_release import _checkout
from topology import DEFAULT, TopologyError
from topology.kube import ClusterSettings, groups, release_objects
from topology.release import DiffProxy, SharedStore, check
from topology.render import SHARED, apply_patch

OVERLAY = ROOT / "manifests" / "shared-store"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
SECRET = "kubernetes:core/v1:Secret"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
HPA = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"


def _container(deployment: dict) -> dict:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def _shared_objects(s: ClusterSettings) -> list[dict]:
    return groups(DEFAULT, s)["diffproxy"]


SETTINGS = {
    "deployed": SHARED,
    "external": ClusterSettings(diffproxy_replicas=2, diffproxy_store="secret:orders-db"),
}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("which", SETTINGS)
def test_scaled_out_objects_match_the_schema_strictly(which, version):
    objects = _shared_objects(SETTINGS[which])
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)
    kinds = sorted(o["kind"] for o in objects)
    if which == "deployed":
        assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                         "Service", "Service", "StatefulSet"]
    else:
        assert kinds == ["Deployment", "PodDisruptionBudget", "Service"]


def test_every_replica_finds_the_database_from_a_secret_and_keeps_no_file():
    deployment = next(o for o in _shared_objects(SETTINGS["external"]) if o["kind"] == "Deployment")
    container = _container(deployment)
    assert deployment["spec"]["replicas"] == 2
    assert container["env"] == [{"name": "DIFFPROXY_STORE_URL", "valueFrom": {
        "secretKeyRef": {"name": "orders-db", "key": "url"}}}]
    assert not any(a.startswith("-store.path") for a in container["args"])
    assert all(v["name"] != "results" for v in deployment["spec"]["template"]["spec"]["volumes"])
    # The diff proxy's own parser accepts the args with the URL from that environment.
    parsed = cli.load(container["args"], env={"DIFFPROXY_STORE_URL": "postgresql://u@db:5432/x"})
    assert parsed.store.url == "postgresql://u@db:5432/x"


def test_the_deployed_store_is_a_statefulset_with_a_volume_and_a_stable_address():
    objects = _shared_objects(SHARED)
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    service = next(o for o in objects if o["kind"] == "Service"
                   and o["metadata"]["name"] == sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == SHARED.storage_size
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    env = {e["name"]: e for e in _container(deployment)["env"]}
    name = sts["metadata"]["name"]
    assert env["DIFFPROXY_STORE_URL"]["value"].startswith(
        f"postgresql://diffproxy@{name}-0.{name}.{DEFAULT.diffy_namespace}.svc.cluster.local:5432/")
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": name, "key": "password"}
    pg_env = {e["name"]: e for e in _container(sts)["env"]}
    assert pg_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": name,
                                                                        "key": "password"}
    # The autoscaler owns the count, from diffproxyReplicas up to diffproxyMaxReplicas.
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    assert "replicas" not in deployment["spec"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)


def test_the_overlay_is_the_base_plus_the_scaled_out_diff_proxy():
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["..", "store.yaml"]
    (patch,) = kustomization["patches"]
    base = yaml.safe_load_all((ROOT / "manifests" / "diffproxy.yaml").read_text())
    deployment = next(d for d in base if d and d["kind"] == "Deployment")
    assert patch["target"]["name"] == deployment["metadata"]["name"]
    ops = yaml.safe_load((OVERLAY / patch["path"]).read_text())
    patched = apply_patch(deployment, ops)
    scaled = next(o for o in _shared_objects(SHARED) if o["kind"] == "Deployment")
    assert patched == scaled
    added = [d for d in yaml.safe_load_all((OVERLAY / "store.yaml").read_text()) if d]
    for obj in [patched, *added]:
        kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)
    assert "Secret" not in {d["kind"] for d in added}  # the password never lands in git
    assert "create secret generic" in (OVERLAY / "kustomization.yaml").read_text()


@pytest.mark.parametrize("bad, message", [
    (DiffProxy(replicas=3), "needs diffproxy.store"),
    (DiffProxy(max_replicas=4), "needs diffproxy.store"),
    (DiffProxy(replicas=0), "replicas must be a whole number >= 1"),
    (DiffProxy(replicas=3, max_replicas=2, store=SharedStore()), "must be more than"),
    (DiffProxy(replicas=2, storage="pvc", store=SharedStore()), "storage pvc"),
    (DiffProxy(replicas=2, store=SharedStore(url_secret="Bad_Name")), "url_secret"),
    (DiffProxy(replicas=2, store=SharedStore(image="postgres:latest")), "store.image"),
])
def test_bad_scaling_arguments_are_refused_by_name(bad, message):
    with pytest.raises(TopologyError, match=message):
        check("checkout", _checkout(diffproxy=bad))


@pytest.mark.parametrize("config, message", [
    ({"diffproxyReplicas": "2", "diffproxyStore": "sqlite"}, "diffproxyStore sqlite"),
    ({"diffproxyStore": "mongodb"}, "diffproxyStore must be"),
    ({"diffproxyStore": "secret:"}, "diffproxyStore must be"),
    ({"diffproxyReplicas": "0"}, "diffproxyReplicas"),
    ({"diffproxyReplicas": "3", "diffproxyMaxReplicas": "2"}, "diffproxyMaxReplicas"),
])
def test_bad_config_fails_naming_the_key(config, message):
    with pytest.raises(Exception, match=message):
        run_program(config)


def test_program_with_replicas_deploys_a_store_with_a_generated_password():
    run = run_program({"diffproxyReplicas": "3", "diffproxyMaxReplicas": "5"})
    deployment = run.kube(DEPLOYMENT, "diffy/httpbin-diffy")
    assert "replicas" not in deployment.inputs["spec"]
    sts = run.kube(STATEFULSET, "diffy/httpbin-diffy-store")
    secret = run.kube(SECRET, "diffy/httpbin-diffy-store")
    (password,) = run.of_type("random:index/randomPassword:RandomPassword")
    assert password.inputs["length"] >= 24 and password.inputs["special"] is False
    data = secret.inputs["stringData"]
    # Sent to the engine as a secret (Pulumi's secret signature wraps it), never in clear.
    assert "4dabf18193072939515e22adb298388d" in data
    assert password.urn in secret.dependencies  # its value is the generated password
    # The replicas wait for their database; the budget and the autoscaler for the replicas.
    assert sts.urn in deployment.dependencies and secret.urn in sts.dependencies
    assert deployment.urn in run.kube(PDB, "diffy/httpbin-diffy").dependencies
    assert run.kube(HPA, "diffy/httpbin-diffy").inputs["spec"]["maxReplicas"] == 5


def test_program_with_an_external_database_deploys_none():
    run = run_program({"diffproxyReplicas": "2", "diffproxyStore": "secret:orders-db"})
    assert run.of_type(STATEFULSET) == [] and run.of_type(SECRET) == []
    env = _container(run.kube(DEPLOYMENT, "diffy/httpbin-diffy").inputs)["env"]
    assert env[0]["valueFrom"]["secretKeyRef"]["name"] == "orders-db"
    assert run.of_type(HPA) == [] and len(run.of_type(PDB)) == 1


def test_default_program_stays_one_replica_on_sqlite():
    run = run_program()
    deployment = run.kube(DEPLOYMENT, "diffy/httpbin-diffy")
    assert deployment.inputs["spec"]["replicas"] == 1
    assert any(a.startswith("-store.path=") for a in _container(deployment.inputs)["args"])
    assert run.of_type(STATEFULSET) == [] and run.of_type(PDB) == []


def test_two_scaled_out_releases_in_one_stack_keep_their_own_databases():
    store = DiffProxy(replicas=2, store=SharedStore())

    def program() -> None:
        for name in ("checkout", "payments"):
            MirroredRelease(name, dataclasses.replace(
                _checkout(diffproxy=store), names=dataclasses.replace(
                    _checkout().names, diffproxy=f"{name}-diffproxy",
                    candidate=f"{name}-candidate", candidate_service=f"{name}-candidate",
                    primary_service=f"{name}-primary", rule=f"{name}-mirror")))

    run = run_function(program)
    names = sorted(r.inputs["metadata"]["name"] for r in run.of_type(STATEFULSET))
    assert names == ["checkout-diffproxy-store", "payments-diffproxy-store"]
    assert len(run.of_type("random:index/randomPassword:RandomPassword")) == 2
    objects = release_objects("checkout", _checkout(diffproxy=store))
    assert objects.store_secret is not None and "data" not in objects.store_secret
