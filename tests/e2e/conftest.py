"""The e2e suite's backends: one set of test bodies, meshes from `--backend`.

A test module asks `open_mesh(mirror_percentage=..., host_form=...)` for a mesh and gets a
`MeshUnderTest`, whichever backend runs it:

- local: `localmesh.LocalMesh`, real processes on loopback, one per module;
- kind:  one kind cluster (pytest-kind), the Pulumi program through the Automation API,
  re-applied with each module's mirror percentage; the Host form is the installed Istio's.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from diffproxy.client import ApiClient
from localmesh import LocalMesh, MeshSettings
from localmesh import kind as kindmesh
from localmesh.backend import MeshBackend
from localmesh.sidecar import HOST_FORMS
from topology import DEFAULT

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend_name" in metafunc.fixturenames:
        # Unasked, run both: kind wherever its tools exist, a one-line skip elsewhere.
        choice = metafunc.config.getoption("backend") or "all"
        names = ["local", "kind"] if choice == "all" else [choice]
        metafunc.parametrize("backend_name", names, indirect=True, scope="session")


class MeshUnderTest:
    """What a test sees of one mesh: the caller's side, the backends' logs, the diff API."""

    def __init__(self, mesh: MeshBackend) -> None:
        assert isinstance(mesh, MeshBackend), f"{type(mesh).__name__} is not a MeshBackend"
        self.mesh = mesh
        self.backend: str = mesh.backend
        self._api = ApiClient(mesh.api_url, timeout=10.0)

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        # The caller's side and the backends' logs are the mesh's own: `MeshBackend`.
        return getattr(self.mesh, name)

    # The diff proxy's API ----------------------------------------------------------------

    def api(self, path: str) -> Any:
        return self._api.get(path.removeprefix("/api/1/"))

    def clear(self) -> None:
        assert self._api.clear() == {"success": "Diffs cleared"}

    def overview(self) -> dict:
        return self._api.overview()

    def results(self, endpoint: str, field: str) -> list[dict]:
        return self._api.results(endpoint, field)["requests"]

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
    missing = kindmesh.missing_tools()
    if missing:
        kind_missing = kindmesh.missing_line(missing)
        if request.config.getoption("backend") == "kind":
            pytest.fail(kind_missing, pytrace=False)
        pytest.skip(kind_missing)

    from pytest_kind import KindCluster

    tools = kindmesh.find_tools()
    # Explicit tool paths: pytest-kind would otherwise download kind and kubectl.
    cluster = KindCluster(request.config.getoption("cluster_name"),
                          kind_path=Path(tools.kind), kubectl_path=Path(tools.kubectl))
    cluster.create()
    base = tmp_path_factory.mktemp("kind")
    mesh = kindmesh.KindMesh(kindmesh.KindSettings(
        cluster_name=cluster.name, kubeconfig=Path(cluster.kubeconfig_path).resolve(),
        state_dir=base / "pulumi-state", run_dir=base / "run"), tools)
    try:
        mesh.build_images()
        mesh.load_images(cluster.load_docker_image)
        mesh.apply(100.0)
        t = DEFAULT
        with cluster.port_forward(f"svc/{t.diffproxy_name}", t.ports.console, "-n", t.diffy_namespace) as port:
            mesh.use_console_port(port)
            yield mesh
    finally:
        mesh.stop()
        try:
            # Always before the cluster goes: Pulumi's state must not outlive its resources.
            mesh.destroy()
        finally:
            if not request.config.getoption("keep_cluster"):
                cluster.delete()


@pytest.fixture(scope="session")
def open_mesh(backend: Backend):
    return backend.open
