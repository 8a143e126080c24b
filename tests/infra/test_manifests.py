"""manifests/: up to date with topology/, and valid against Kubernetes' and Istio's schemas."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.istio.networking import v1 as istio_v1

from tests.infra.harness import ROOT
from topology import DEFAULT
from topology.kube import groups
from topology.render import HEADER, KUSTOMIZATION, main, render, stale, write

MANIFESTS = ROOT / "manifests"
# Istio 1.28 supports Kubernetes 1.30-1.34; kubernetes-validate ships schemas from 1.32 on.
KUBERNETES_VERSIONS = ("1.32.0", "1.34.0")


def _documents() -> list[dict]:
    """Every object, in the order kustomization.yaml lists the files."""
    kustomization = yaml.safe_load((MANIFESTS / KUSTOMIZATION).read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d is not None]
    return docs


def _kube_docs() -> list[dict]:
    return [d for d in _documents() if not d["apiVersion"].startswith("networking.istio.io/")]


def _istio_docs() -> list[dict]:
    return [d for d in _documents() if d["apiVersion"].startswith("networking.istio.io/")]


def _id(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _tree(root) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in root.rglob("*") if p.is_file()}


def test_manifests_are_up_to_date(tmp_path):
    write(tmp_path, render())
    fresh = _tree(tmp_path)
    committed = _tree(MANIFESTS)
    assert committed.keys() == fresh.keys(), "re-render: make manifests"
    for name, text in fresh.items():
        assert committed[name] == text, f"manifests/{name} is out of date: make manifests"


def test_manifests_hold_exactly_the_objects_of_the_default_topology():
    built = [o for group in groups(DEFAULT).values() for o in group]
    assert _documents() == built


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((MANIFESTS / KUSTOMIZATION).read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    files = sorted(p.name for p in MANIFESTS.glob("*.yaml") if p.name != KUSTOMIZATION)
    assert sorted(kustomization["resources"]) == files
    assert kustomization["resources"][0] == "namespaces.yaml"


def test_check_mode_reports_stale_and_foreign_free_directories(tmp_path, capsys):
    assert main([str(MANIFESTS), "--check"]) == 0
    files = render()
    write(tmp_path, files)
    (tmp_path / "sleep.yaml").write_text(files["sleep.yaml"].replace("infinity", "3600"))
    (tmp_path / "old-group.yaml").write_text(HEADER + "---\n{}\n")
    (tmp_path / "mine.yaml").write_text("kind: Mine\n")
    assert stale(tmp_path, files) == ["old-group.yaml", "sleep.yaml"]
    assert main([str(tmp_path), "--check"]) == 1
    assert "sleep.yaml" in capsys.readouterr().err
    write(tmp_path, files)
    assert stale(tmp_path, files) == []
    assert not (tmp_path / "old-group.yaml").exists()  # the renderer's own leftover goes
    assert (tmp_path / "mine.yaml").read_text() == "kind: Mine\n"  # anything else stays


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("doc", _kube_docs(), ids=_id)
def test_kubernetes_objects_match_the_openapi_schema_strictly(doc, version):
    kubernetes_validate.validate(doc, version, strict=True)


def test_strict_kubernetes_validation_rejects_an_unknown_field():
    doc = copy.deepcopy(next(d for d in _kube_docs() if d["kind"] == "Deployment"))
    doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "IfNotPresent"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


def validate_istio(doc: dict) -> None:
    """Istio's published schema, strictly: pydantic drops unknown fields and coerces types,
    so the validated model, dumped back, must equal the input exactly."""
    assert doc["apiVersion"] == "networking.istio.io/v1"
    model = getattr(istio_v1, doc["kind"]).model_validate(doc)
    dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped == doc, f"{_id(doc)}: unknown or coerced fields"


@pytest.mark.parametrize("doc", _istio_docs(), ids=_id)
def test_istio_objects_match_istios_schema_strictly(doc):
    validate_istio(doc)


def test_istio_objects_present():
    assert sorted(d["kind"] for d in _istio_docs()) == ["DestinationRule", "VirtualService"]


def _virtual_service() -> dict:
    return copy.deepcopy(next(d for d in _istio_docs() if d["kind"] == "VirtualService"))


def test_strict_istio_validation_rejects_an_unknown_field():
    doc = _virtual_service()
    doc["spec"]["http"][0]["mirror"]["hostname"] = "typo"
    with pytest.raises(AssertionError, match="unknown or coerced"):
        validate_istio(doc)


def test_strict_istio_validation_rejects_a_coerced_type():
    doc = _virtual_service()
    doc["spec"]["http"][0]["mirrorPercentage"] = {"value": "50"}
    with pytest.raises(AssertionError, match="unknown or coerced"):
        validate_istio(doc)


def test_istio_validation_rejects_a_wrong_type():
    doc = _virtual_service()
    doc["spec"]["http"][0]["mirror"]["port"] = {"number": "not a port"}
    with pytest.raises(Exception, match="number"):
        validate_istio(doc)


def test_every_file_starts_with_the_generated_header():
    for path in (p for p in MANIFESTS.rglob("*") if p.is_file()):
        assert path.read_text().startswith(HEADER), path.name


def test_manifests_directory_holds_only_rendered_files():
    assert set(_tree(MANIFESTS)) == set(render())
    assert [p.name for p in MANIFESTS.iterdir() if not p.is_file()] == ["monitoring"]


# issue 14: the Prometheus Operator objects, in manifests/monitoring/ ------------------------

from cloudcoil.models.prometheus_operator import v1 as monitoring_v1  # noqa: E402

from topology.kube import ClusterSettings, demo_release, release_objects  # noqa: E402


def _monitoring_docs() -> list[dict]:
    folder = MANIFESTS / "monitoring"
    kustomization = yaml.safe_load((folder / KUSTOMIZATION).read_text())
    docs = []
    for name in kustomization["resources"]:
        docs += [d for d in yaml.safe_load_all((folder / name).read_text()) if d is not None]
    return docs


def validate_monitoring(doc: dict) -> None:
    """The Prometheus Operator's published CRD schema (cloudcoil's models of 0.80), strictly,
    as for Istio: validated, dumped back, equal to the input."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    model = getattr(monitoring_v1, doc["kind"]).model_validate(doc)
    dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert dumped == doc, f"{_id(doc)}: unknown or coerced fields"


def test_monitoring_folder_holds_the_operator_objects_of_the_release():
    objects = release_objects(*demo_release(DEFAULT, ClusterSettings(prometheus="operator")))
    assert _documents() == [o for g in groups(DEFAULT).values() for o in g]  # default: none
    assert _monitoring_docs() == objects.monitoring
    assert sorted(d["kind"] for d in _monitoring_docs()) == [
        "ConfigMap", "PrometheusRule", "ServiceMonitor"]


@pytest.mark.parametrize("doc", [d for d in _monitoring_docs()
                                 if d["apiVersion"].startswith("monitoring.coreos.com/")], ids=_id)
def test_operator_objects_match_the_operators_schema_strictly(doc):
    validate_monitoring(doc)


def test_strict_monitoring_validation_rejects_an_unknown_field():
    doc = copy.deepcopy(next(d for d in _monitoring_docs() if d["kind"] == "ServiceMonitor"))
    doc["spec"]["endpoints"][0]["honourLabels"] = True
    with pytest.raises(AssertionError, match="unknown or coerced"):
        validate_monitoring(doc)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_dashboard_configmap_matches_kubernetes_schema(version):
    doc = next(d for d in _monitoring_docs() if d["kind"] == "ConfigMap")
    kubernetes_validate.validate(doc, version, strict=True)
    assert doc["metadata"]["labels"]["grafana_dashboard"] == "1"
    board = json.loads(next(iter(doc["data"].values())))
    assert board["panels"] and all(p["targets"] for p in board["panels"])


def test_servicemonitor_scrapes_the_admin_port_and_keeps_the_proxys_endpoint_label():
    sm = next(d for d in _monitoring_docs() if d["kind"] == "ServiceMonitor")
    service = next(d for d in _documents() if d["kind"] == "Service"
                   and d["metadata"]["name"] == sm["spec"]["selector"]["matchLabels"]["app"])
    assert "http-admin" in [p["name"] for p in service["spec"]["ports"]]
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    assert sm["spec"]["podTargetLabels"] == ["app"]


def test_annotations_mode_marks_the_diff_proxy_pods_for_scraping():
    objects = release_objects(*demo_release(DEFAULT, ClusterSettings(prometheus="annotations")))
    deployment = next(o for o in objects.diffproxy if o["kind"] == "Deployment")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8881"
    assert [o["kind"] for o in objects.monitoring] == ["ConfigMap"]  # no CRDs needed
    off = release_objects(*demo_release(DEFAULT, ClusterSettings()))
    assert off.monitoring == []
    assert "prometheus.io/scrape" not in next(
        o for o in off.diffproxy if o["kind"] == "Deployment")["spec"]["template"]["metadata"]["annotations"]
