"""The e2e suite's backends: one set of test bodies, meshes from `--backend`.

A test module asks `open_mesh(mirror_percentage=..., istio=..., ...)` for a mesh and gets a
`MeshUnderTest`, whichever backend runs it:

- local: `localmesh.LocalMesh`, real processes on loopback (the caller's sidecar is Envoy,
  configured as istiod would for the asked Istio release), one per module;
- kind:  one kind cluster, the Pulumi program through the Automation API (stack
  `kind-e2e`), re-applied with each module's mirror percentage; the Istio release is the
  installed one, and a module asking for what the cluster does not run is skipped, saying so.

The kind set-up (cluster, two image builds, Istio, `pulumi up`) takes longer than one test
may, so kind tests are timed by pytest-timeout on their function only (`func_only`), and
the set-up has its own limit, `--kind-setup-timeout` (a `pulumi up` under way is let finish
first, so its stack is not left locked). Whatever it fails on, the cluster
and the stack are removed again (unless `--keep-cluster`). The suite manages the cluster
and the console port-forward itself (localmesh.kind), not through pytest-kind: that one's
port-forward restarts kubectl ten times whether or not it works, gives it an environment
with nothing but KUBECONFIG, and nothing brings it back when the pod restarts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from diffproxy.client import ApiClient
from localmesh import LocalMesh, MeshSettings
from localmesh import kind as kindmesh
from localmesh.backend import MeshBackend
from topology import DEFAULT, Istio

# The Host behaviours a local mesh can show: istiod 1.28's default, 1.28 told to behave like
# 1.27 (compatibilityVersion), and 1.27 itself.
LOCAL_ISTIO = (Istio("1.28.1"), Istio("1.28.1", "1.27"), Istio("1.27.3"))

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

    def __init__(self, mesh: MeshBackend) -> None:
        assert isinstance(mesh, MeshBackend), f"{type(mesh).__name__} is not a MeshBackend"
        self.mesh = mesh
        self.backend: str = mesh.backend
        self._api = ApiClient(mesh.api_url, timeout=10.0)

    def caller(self, timeout: float = 30.0) -> httpx.Client:
        """A keep-alive client in the caller's place, for requests with headers or a body.
        Only the local backend's entry is reachable from the test process."""
        if self.backend != "local":
            pytest.skip(f"{self.backend}: requests with chosen headers and bodies are local-only")
        return httpx.Client(base_url=self.mesh.entry_url, timeout=timeout,
                            headers={"Host": self.mesh.entry_host})

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

    def fresh_run(self, paths: list[str], interval: float = 0.0) -> tuple[list, dict]:
        """Clear the results, send `paths`, wait until every mirrored copy is compared."""
        # Copies from an earlier test may still be in flight; clearing under them would
        # let their late results land in this run.
        self.wait_for(lambda: (self.received().v2, sum(e["total"] for e in self.overview().values())),
                      lambda _state: True)
        self.clear()
        before = self.received().v2
        replies = self.send_paths(paths, interval=interval)
        mirrored = self.wait_for(lambda: self.received().v2 - before, lambda n: n >= len(paths))
        return replies, self.wait_totals(mirrored)

    def report(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "diffproxy", "report", "--url", self.api_url, *args],
                              capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)


@dataclasses.dataclass(frozen=True)
class MeshAsk:
    """What a module wants of its mesh; `istio` None means "whatever the backend runs"."""

    mirror_percentage: float = 100.0
    istio: Istio | None = None
    relay: bool = True
    allow_http_side_effects: bool = False
    ignore_fields: tuple[str, ...] | None = None  # None: the topology's
    prometheus: bool = False  # local only: a Prometheus scraping the diff proxy and Envoy

    def topology(self):
        changes = {"mirror_percentage": self.mirror_percentage, "relay": self.relay,
                   "allow_http_side_effects": self.allow_http_side_effects}
        if self.istio is not None:
            changes["istio"] = self.istio
        if self.ignore_fields is not None:
            changes["ignore_fields"] = self.ignore_fields
        return DEFAULT.with_(**changes)


class Backend:
    def __init__(self, name: str, opener: Callable[[MeshAsk], contextlib.AbstractContextManager],
                 istio_releases: Callable[[], list[Istio | None]]) -> None:
        self.name = name
        self._opener = opener
        self.istio_releases = istio_releases

    @contextlib.contextmanager
    def open(self, mirror_percentage: float = 100.0, istio: Istio | None = None, relay: bool = True,
             allow_http_side_effects: bool = False,
             ignore_fields: tuple[str, ...] | None = None,
             prometheus: bool = False) -> Iterator[MeshUnderTest]:
        ask = MeshAsk(mirror_percentage, istio, relay, allow_http_side_effects, ignore_fields,
                      prometheus)
        with self._opener(ask) as mesh:
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
        def open_local(ask: MeshAsk) -> Iterator[LocalMesh]:
            topology = ask.topology()
            run_dir = tmp_path_factory.mktemp(
                f"mesh-{ask.mirror_percentage:g}-{topology.istio.version}-{topology.istio.host_form}")
            with LocalMesh(MeshSettings(topology=topology, run_dir=run_dir,
                                        prometheus=ask.prometheus)) as mesh:
                yield mesh

        return Backend("local", open_local, lambda: list(LOCAL_ISTIO))

    kind: kindmesh.KindMesh = request.getfixturevalue("kind_mesh")

    @contextlib.contextmanager
    def open_kind(ask: MeshAsk) -> Iterator[kindmesh.KindMesh]:
        # One cluster for the session: each module re-applies the stack with its percentage;
        # the Host form is whatever the installed Istio does.
        if ask.istio is not None and ask.istio.host_form != kind.host_form:
            pytest.skip(f"kind runs one Istio; {ask.istio.describe()} is not it")
        if ask.prometheus:
            pytest.skip("kind: the e2e stack runs no Prometheus (its rules are checked by "
                        "promtool, its objects by schema)")
        if not ask.relay or ask.allow_http_side_effects or ask.ignore_fields is not None:
            pytest.skip("kind: the session's stack keeps the relay, side effects off and ignored fields")
        kind.apply(ask.mirror_percentage)
        try:
            yield kind
        finally:
            if kind.candidate_killed:
                kind.restore_candidate()

    return Backend("kind", open_kind, lambda: [None])


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
