"""examples/mirror-your-service: a second Pulumi project using MirroredRelease, run whole."""

from __future__ import annotations

import re
import subprocess
import sys

import kubernetes_validate
import pulumi
import pytest
import yaml

from components.mirrored_release import TYPE
from diffproxy import settings as cli
from tests.infra.harness import ROOT, ProgramRun, object_id, run_function, run_program
from tests.infra.test_manifests import KUBERNETES_VERSIONS, validate_istio

EXAMPLE = ROOT / "examples" / "mirror-your-service"
PROJECT = yaml.safe_load((EXAMPLE / "Pulumi.yaml").read_text())
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
SERVICE = "kubernetes:core/v1:Service"
VS = "kubernetes:networking.istio.io/v1:VirtualService"


@pytest.fixture(scope="module")
def example() -> ProgramRun:
    return run_program(project_dir=EXAMPLE)


def test_project_file():
    assert PROJECT["name"] == "mirror-your-service"
    assert PROJECT["runtime"] == {"name": "python", "options": {"virtualenv": "../../.venv"}}
    assert PROJECT["backend"] == {"url": "file://./.pulumi-state"}
    source = (EXAMPLE / "__main__.py").read_text()
    read = set(re.findall(r'config\.get(?:_float)?\("(\w+)"', source))
    assert read == set(PROJECT["config"])


def test_declared_defaults_give_the_same_stack_as_none(example):
    # The CLI passes Pulumi.yaml's defaults as config; under mocks the program's own apply.
    explicit = run_program({k: d["default"] for k, d in PROJECT["config"].items()},
                           project_dir=EXAMPLE)

    def summary(run):
        return sorted((r.type, r.name, repr(r.inputs)) for r in run.resources
                      if r.type != "pulumi:pulumi:Stack")

    assert summary(explicit) == summary(example)
    assert explicit.outputs == example.outputs


def test_mirrors_checkout_in_shop_to_its_own_diff_proxy(example):
    assert [r.name for r in example.of_type(TYPE)] == ["checkout-next"]
    vs = example.kube(VS, "shop/checkout-next-mirror")
    route, = vs.inputs["spec"]["http"]
    assert vs.inputs["spec"]["hosts"] == ["checkout.shop.svc.cluster.local"]
    assert route["route"][0]["destination"]["port"] == {"number": 8080}
    assert route["mirror"] == {"host": "checkout-next-diffproxy.shop.svc.cluster.local",
                               "port": {"number": 8880}}
    assert route["mirrorPercentage"] == {"value": 10.0}
    assert example.outputs == {
        "serviceHost": "checkout.shop.svc.cluster.local",
        "candidateHost": "checkout-next-candidate.shop.svc.cluster.local",
        "diffProxyHost": "checkout-next-diffproxy.shop.svc.cluster.local",
        "mirrorTarget": "checkout-next-diffproxy.shop.svc.cluster.local:8880",
        "mirrorPercentage": 10.0,
        "consolePortForward": "kubectl -n shop port-forward svc/checkout-next-diffproxy 8888:8888",
    }


def test_the_diff_proxy_accepts_its_flags(example):
    container, = example.kube(DEPLOYMENT, "shop/checkout-next-diffproxy").inputs["spec"][
        "template"]["spec"]["containers"]
    parsed = cli.load(container["args"], env={})
    assert parsed.targets.primary.host == "checkout-next-primary"
    assert parsed.targets.candidate.host == "checkout-next-candidate"
    assert parsed.diff.ignore_fields == ("body.orderId", "body.createdAt")


def test_the_candidate_reads_its_token_from_checkouts_secret(example):
    container, = example.kube(DEPLOYMENT, "shop/checkout-next-candidate").inputs["spec"][
        "template"]["spec"]["containers"]
    assert container["env"] == [
        {"name": "CHECKOUT_PAYMENTS_URL", "value": "http://payments-sandbox.shop:8080"},
        {"name": "CHECKOUT_PAYMENTS_TOKEN",
         "valueFrom": {"secretKeyRef": {"name": "checkout-payments", "key": "token"}}}]


def test_checkout_itself_is_never_a_resource(example):
    component = example.one(TYPE, "checkout-next")
    provider = example.one("pulumi:providers:kubernetes", "k8s")
    for r in example.resources:
        if r.type in ("pulumi:pulumi:Stack", TYPE) or r is provider:
            continue
        assert r.parent == component.urn and not r.import_id, r.name
        assert object_id(r) != "shop/checkout" and not r.type.endswith("Patch"), r.name
        assert r.provider.startswith(provider.urn + "::")
    primary = example.kube(SERVICE, "shop/checkout-next-primary").inputs["spec"]
    assert primary["selector"] == {"app": "checkout"}  # reads production; is not checkout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_matches_the_schemas_strictly(example, version):
    objects = example.kube_objects()
    assert len(objects) == 7
    for obj in objects:
        if obj["apiVersion"].startswith("networking.istio.io/"):
            validate_istio(obj)
        else:
            kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(("config", "argument"), [
    ({"mirrorPercentage": "150"}, "mirror_percentage"),
    ({"candidateImage": ""}, "candidate.image"),
    ({"diffproxyImage": "diffproxy:latest"}, "diffproxy.image"),
])
def test_bad_config_fails_the_preview_naming_the_argument(config, argument):
    run = ProgramRun()
    with pytest.raises(pulumi.RunError, match=rf"^invalid MirroredRelease 'checkout-next': "
                                              rf"{re.escape(argument)} "):
        run_program(config, into=run, project_dir=EXAMPLE, preview=True)
    assert not [r for r in run.resources if r.type.startswith("kubernetes:networking")]


# The README's "Try your own release": what a user copies must work as written ---------------

README = (ROOT / "README.md").read_text()


def _readme_section(title: str) -> str:
    section, = re.findall(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    return section


def test_readme_shows_the_demo_and_your_own_service():
    assert "make demo" in _readme_section("Running on a real cluster")
    own = _readme_section("Try your own release")
    assert "`examples/mirror-your-service/`" in own and EXAMPLE.is_dir()
    assert "(#try-your-own-release)" in README  # the pieces table links the section


def test_readme_snippet_is_a_release_that_passes_its_checks():
    import components

    snippet, = re.findall(r"```python\n(.*?)```", _readme_section("Try your own release"), re.S)
    run = run_function(lambda: exec(snippet, vars(components).copy()))
    vs = run.kube(VS, "shop/checkout-next-mirror")
    route, = vs.inputs["spec"]["http"]
    assert route["mirror"]["host"] == "checkout-next-diffproxy.shop.svc.cluster.local"
    assert route["mirrorPercentage"] == {"value": 10.0}


def test_readme_report_command_runs_from_the_example_directory():
    block, = [b for b in re.findall(r"```sh\n(.*?)```", _readme_section("Try your own release"),
                                    re.S) if "cd examples/mirror-your-service" in b]
    line, = [ln for ln in block.splitlines() if "-m diffproxy report" in ln]
    interpreter = re.search(r"(\S*/bin/python) -m", line).group(1)
    # The virtualenv `make` creates, reached from the example's directory...
    assert (EXAMPLE / interpreter).resolve(strict=False) == (ROOT / ".venv/bin/python").resolve(
        strict=False)
    # ...finds the diff proxy package there (it is not installed into the virtualenv).
    command = line.split("#")[0].replace(interpreter, sys.executable)
    command = command[:command.index(" report") + len(" report")] + " --help"
    done = subprocess.run(["bash", "-c", command], cwd=EXAMPLE, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m diffproxy report" in done.stdout
