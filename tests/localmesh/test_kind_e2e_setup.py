"""The kind e2e set-up, run by pytest itself against the fake tools (tests/localmesh/fakes.py).

The set-up (cluster, images, Istio, `pulumi up`) is not cut off by pytest-timeout's
per-test limit, has a limit of its own, and removes the cluster whenever it fails. Where a
tool is missing, `--backend=kind` fails and the default run skips, both with one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.localmesh import fakes

ROOT = Path(__file__).resolve().parents[2]
# The whole e2e suite on kind; -x: the first test's set-up failure is the one of interest.
TEST = "tests/e2e"


def _pytest(tmp_path: Path, f: fakes.Fakes, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PATH": f"{f.bin}:/usr/bin:/bin"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-x", "--backend=kind", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "basetemp"), "--cluster-name", "fake-e2e",
         "--kind-state-dir", str(tmp_path / "state"), "--tb=short", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    return done, time.monotonic() - started


def _setup(tmp_path: Path, create_takes: float) -> fakes.Fakes:
    f = fakes.install(tmp_path / "fakes")
    f.rule("kind", "create", "cluster", sleep=create_takes)
    f.rule("docker", "build", exit=1, stderr="boom: the build failed\n")
    f.rule("pulumi", "stack", "ls", stdout="[]")
    return f


def test_set_up_longer_than_the_per_test_timeout_is_not_cut_off(tmp_path):
    f = _setup(tmp_path, create_takes=4)
    done, _ = _pytest(tmp_path, f, "--timeout=2")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    # It ran past the 2 s limit into the image build, and failed there, not on a timeout.
    assert "docker build" in out and "boom: the build failed" in out
    assert "Timeout >" not in out  # pytest-timeout's "Failed: Timeout >2.0s"
    kind_calls = f.calls("kind")
    create = next(i for i, a in enumerate(kind_calls) if a[:2] == ["create", "cluster"])
    delete = next(i for i, a in enumerate(kind_calls) if a[:2] == ["delete", "cluster"])
    assert create < delete and kind_calls[delete] == ["delete", "cluster", "--name", "fake-e2e"]
    # The fixture's stack is the e2e one, in the state folder it was given.
    pulumi = [r for r in f.records() if r["tool"] == "pulumi" and "ls" in r["argv"]]
    assert pulumi and pulumi[0]["env"]["PULUMI_BACKEND_URL"] == (tmp_path / "state").as_uri()


def test_the_set_up_limit_stops_a_hung_create_and_cleans_up(tmp_path):
    f = _setup(tmp_path, create_takes=120)
    done, took = _pytest(tmp_path, f, "--kind-setup-timeout=3")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "did not finish within 3s" in out
    assert took < 100  # the 120 s create was cut short
    assert ["delete", "cluster", "--name", "fake-e2e"] in f.calls("kind")
    assert not any("build" in a for a in f.calls("docker"))


def test_keep_cluster_keeps_it_after_a_failure(tmp_path):
    f = _setup(tmp_path, create_takes=0)
    done, _ = _pytest(tmp_path, f, "--keep-cluster")
    assert done.returncode == 1
    assert not any(a[:1] == ["delete"] for a in f.calls("kind"))


MISSING = "the kind backend cannot run here, missing: kind, the Pulumi CLI"


def _without_kind_and_pulumi(tmp_path: Path) -> tuple[fakes.Fakes, dict[str, str]]:
    f = fakes.install(tmp_path / "fakes")
    for tool in ("kind", "pulumi"):
        (f.bin / tool).unlink()
    return f, {**os.environ, "PATH": str(f.bin)}


def _e2e(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", TEST, "-p", "no:cacheprovider", "-rs", "-q",
         "--basetemp", str(tmp_path / "basetemp"), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def test_asked_for_kind_without_its_tools_fails_with_one_line(tmp_path):
    f, env = _without_kind_and_pulumi(tmp_path)
    done = _e2e(tmp_path, env, "--backend=kind")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    errors = out.count("ERROR at setup of")
    assert errors > 10 and out.count(MISSING) == errors, out
    assert " passed" not in out and "Traceback" not in out
    assert f.calls() == [["info"]]  # docker info, and nothing was created


def test_unasked_the_kind_half_is_skipped_with_that_line(tmp_path):
    _, env = _without_kind_and_pulumi(tmp_path)
    done = _e2e(tmp_path, env, "-k", "kind")  # the local half runs real processes: not here
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert sum(MISSING in line for line in skipped) > 10, out
    assert "error" not in out.lower() and " failed" not in out
