"""The e2e suite's backends: one set of test bodies, meshes from `--backend`.

A test module asks `open_mesh(mirror_percentage=..., host_form=...)` for a mesh and gets a
`MeshUnderTest`, whichever backend runs it:

- local: `localmesh.LocalMesh`, real processes on loopback, one per module;
- kind:  one kind cluster, the Pulumi program through the Automation API (stack
  `kind-e2e`), re-applied with each module's mirror percentage; the Host form is the
  installed Istio's.

The kind set-up (cluster, two image builds, Istio, `pulumi up`) takes longer than one test
may, so kind tests are timed by pytest-timeout on their function only (`func_only`), and
the set-up has its own limit, `--kind-setup-timeout`. Whatever it fails on, the cluster
and the stack are removed again (unless `--keep-cluster`). The suite manages the cluster
and the console port-forward itself (localmesh.kind), not through pytest-kind: that one's
port-forward restarts kubectl ten times whether or not it works, gives it an environment
with nothing but KUBECONFIG, and nothing brings it back when the pod restarts.
"""

from __future__ import annotations

import contextlib
import subprocess
import warnings
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from localmesh import LocalMesh, MeshSettings
from localmesh import kind as kindmesh
from localmesh.sidecar import HOST_FORMS
from topology import DEFAULT

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)
            params = getattr(item, "callspec", None)
            if params is not None and params.params.get("backend_name") == "kind":
                # Session fixtures are set up inside the first test; on kind that set-up has
                # its own limit (kind_mesh), the per-test limit covers the test body.
                item.add_marker(pytest.mark.timeout(func_only=True))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        # Unasked, run both: kind wherever its tools exist, a one-line skip elsewhere.
        choice = metafunc.config.getoption("backend") or "all"
        names = ["local", "kind"] if choice == "all" else [choice]
        metafunc.parametrize("backend_name", names, indirect=True, scope="session")


class MeshUnderTest:
    """What a test sees of one mesh: the caller's side, the backends' logs, the diff API."""

    def __init__(self, mesh: Any) -> None:
        self.mesh = mesh
        self.backend: str = mesh.backend
        self._http = httpx.Client(timeout=10.0)

    def close(self) -> None:
        self._http.close()

    def __getattr__(self, name: str) -> Any:
        # The caller's side and the backends' logs are the mesh's own, with one interface on
        # both backends (LocalMesh, KindMesh): mirror_percentage, host_form, entry_host,
        # send, send_paths, received, relay_hosts, kill_candidate, api_url.
        return getattr(self.mesh, name)

    # The diff proxy's API ----------------------------------------------------------------

    def api(self, path: str, **params: str) -> Any:
        response = self._http.get(self.api_url + path, params=params)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text[:200]}"
        return response.json()

    def clear(self) -> None:
        response = self._http.post(self.api_url + "/api/1/clear")
        assert response.json() == {"success": "Diffs cleared"}

    def overview(self) -> dict:
        return self.api("/api/1/overview")

    def results(self, endpoint: str, field: str) -> list[dict]:
        path = f"/api/1/endpoints/{quote(endpoint, safe='')}/fields/{quote(field, safe='')}/results"
        return self.api(path, include_request="true")["requests"]

    def wait_for(self, read: Callable[[], Any], done: Callable[[Any], bool],
                 timeout: float = 20.0) -> Any:
        """Mirroring is fire-and-forget: poll (bounded) until `done`, then once more to make
        sure nothing else trickles in; returns the last reading either way."""
        deadline = time.monotonic() + timeout
        value = read()
        while time.monotonic() < deadline:
            if done(value):
                time.sleep(0.3)
                again = read()
                if again == value:
                    return value
                value = again
                continue
            time.sleep(0.1)
            value = read()
        return value

    def wait_totals(self, expected: int, timeout: float = 20.0) -> dict:
        return self.wait_for(self.overview,
                             lambda o: sum(e["total"] for e in o.values()) >= expected, timeout)

    def fresh_run(self, paths: list[str]) -> tuple[list, dict]:
        """Clear the results, send `paths`, wait until every mirrored copy is compared."""
        # Copies from an earlier test may still be in flight; clearing under them would
        # let their late results land in this run.
        self.wait_for(lambda: (self.received().v2, sum(e["total"] for e in self.overview().values())),
                      lambda _state: True)
        self.clear()
        before = self.received().v2
        replies = self.send_paths(paths)
        mirrored = self.wait_for(lambda: self.received().v2 - before, lambda n: n >= len(paths))
        return replies, self.wait_totals(mirrored)

    def report(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "diffproxy", "report", "--url", self.api_url, *args],
                              capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)


class Backend:
    def __init__(self, name: str, opener: Callable[[float, str | None], contextlib.AbstractContextManager],
                 host_forms: Callable[[], list[str]]) -> None:
        self.name = name
        self._opener = opener
        self.host_forms = host_forms

    @contextlib.contextmanager
    def open(self, mirror_percentage: float = 100.0, host_form: str | None = None) -> Iterator[MeshUnderTest]:
        with self._opener(mirror_percentage, host_form) as mesh:
            view = MeshUnderTest(mesh)
            try:
                yield view
            finally:
                view.close()


@pytest.fixture(scope="session")
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def backend(backend_name: str, request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Backend:
    if backend_name == "local":
        @contextlib.contextmanager
        def open_local(mirror_percentage: float, host_form: str | None) -> Iterator[LocalMesh]:
            form = host_form or "plain"
            run_dir = tmp_path_factory.mktemp(f"mesh-{mirror_percentage:g}-{form}")
            settings = MeshSettings(topology=DEFAULT.with_(mirror_percentage=mirror_percentage),
                                    host_form=form, run_dir=run_dir)
            with LocalMesh(settings) as mesh:
                yield mesh

        return Backend("local", open_local, lambda: list(HOST_FORMS))

    kind: kindmesh.KindMesh = request.getfixturevalue("kind_mesh")

    @contextlib.contextmanager
    def open_kind(mirror_percentage: float, _host_form: str | None) -> Iterator[kindmesh.KindMesh]:
        # One cluster for the session: each module re-applies the stack with its percentage;
        # the Host form is whatever the installed Istio does.
        kind.apply(mirror_percentage)
        try:
            yield kind
        finally:
            if kind.candidate_killed:
                kind.restore_candidate()

    return Backend("kind", open_kind, lambda: [kind.host_form])


@pytest.fixture(scope="session")
def kind_mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    config = request.config
    missing = kindmesh.missing_tools()
    if missing:
        kind_missing = kindmesh.missing_line(missing)
        if config.getoption("backend") == "kind":
            pytest.fail(kind_missing, pytrace=False)
        pytest.skip(kind_missing)

    # The state lives with the cluster: kept (--keep-cluster), both are reused next time.
    settings = kindmesh.KindSettings(
        cluster_name=config.getoption("cluster_name"), stack_name=kindmesh.E2E_STACK,
        state_dir=Path(config.getoption("kind_state_dir")).resolve(),
        run_dir=tmp_path_factory.mktemp("kind"))
    mesh = kindmesh.KindMesh(settings, kindmesh.find_tools())
    limit = config.getoption("kind_setup_timeout")
    try:
        with kindmesh.time_limit(limit, "the kind e2e set-up (cluster, images, Istio, pulumi up)"):
            mesh.prepare()
            mesh.apply(100.0)
            mesh.port_forward_console()
        yield mesh
    finally:
        mesh.stop()
        if not config.getoption("keep_cluster"):
            _remove(mesh)


def _remove(mesh: kindmesh.KindMesh) -> None:
    """Stack first (Pulumi's state must not outlive its resources), then the cluster; each
    step runs even when the one before failed, and a failure is reported, not raised over
    the set-up's own error."""
    steps = [("pulumi destroy", lambda: mesh.stack_exists() and mesh.destroy()),
             ("pulumi stack rm", lambda: mesh.stack_exists() and mesh.forget_stack()),
             ("kind delete cluster", mesh.delete_cluster)]
    for what, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - every clean-up step must get its turn
            warnings.warn(f"kind e2e clean-up: {what} failed: {exc}", stacklevel=1)


@pytest.fixture(scope="session")
def open_mesh(backend: Backend):
    return backend.open
