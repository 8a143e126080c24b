"""candidate/Dockerfile agrees with the pins, the topology and the objects that run it.

No Docker engine here: these check the recipe's facts, not a build.
"""

from __future__ import annotations

import importlib.metadata
import json
import re

from packaging.requirements import Requirement

from tests.infra.harness import ROOT
from topology import DEFAULT
from topology.kube import NON_ROOT_UID, ClusterSettings, backend_objects

DOCKERFILE = (ROOT / "candidate" / "Dockerfile").read_text()
IGNORE = (ROOT / "candidate" / "Dockerfile.dockerignore").read_text()


def _grepped_packages() -> set[str]:
    pattern = re.search(r"grep -E '\^\(([^)]*)\)==' /tmp/req/requirements.txt", DOCKERFILE)
    assert pattern, "the pin-extracting grep is gone"
    return set(pattern.group(1).split("|"))


def _pinned() -> dict[str, str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


def test_every_grepped_package_is_pinned_in_requirements():
    assert _grepped_packages() <= _pinned().keys()


def test_the_image_installs_every_runtime_dependency_of_httpbin():
    needed = set()
    for spec in importlib.metadata.requires("httpbin") or []:
        requirement = Requirement(spec)
        # greenlet: declared, never imported by the sync worker (requirements-nodeps.txt).
        if requirement.marker is None and requirement.name != "greenlet":
            needed.add(requirement.name.lower())
    assert needed <= {name.lower() for name in _grepped_packages()}
    assert "gunicorn" in {name.lower() for name in _grepped_packages()}
    assert "httpbin==" in (ROOT / "requirements-nodeps.txt").read_text()
    assert "--no-deps -r /tmp/req/requirements-nodeps.txt" in DOCKERFILE


def test_image_user_port_and_app_match_the_topology():
    assert re.search(rf"^USER {NON_ROOT_UID}$", DOCKERFILE, re.M)
    assert re.search(rf"useradd --uid {NON_ROOT_UID}\b", DOCKERFILE)
    assert re.search(rf"^EXPOSE {DEFAULT.ports.backend}$", DOCKERFILE, re.M)
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M).group(1))
    candidate = next(o for o in backend_objects(DEFAULT, ClusterSettings())
                     if o["metadata"]["name"] == "httpbin-v2")
    container, = candidate["spec"]["template"]["spec"]["containers"]
    # The cluster sets the same command explicitly; the CMD only serves `docker run`.
    assert cmd == container["command"]


def test_image_copies_the_candidate_and_the_build_context_allows_it():
    copied = re.search(r"^COPY (candidate/\S+ candidate/\S+) /app/candidate/$", DOCKERFILE, re.M)
    assert copied
    allowed = {line[1:] for line in IGNORE.splitlines() if line.startswith("!")}
    assert set(copied.group(1).split()) <= allowed
    assert {"requirements.txt", "requirements-nodeps.txt"} <= allowed
    for path in allowed:
        assert (ROOT / path).is_file(), path


def test_base_image_is_pinned():
    base = re.search(r"^FROM (\S+)$", DOCKERFILE, re.M).group(1)
    assert ":" in base.rsplit("/", 1)[-1] and not base.endswith(":latest")
