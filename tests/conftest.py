"""Options and markers for the whole test tree.

`--backend` chooses where the e2e suite's meshes run: `local` (real processes on loopback),
`kind` (a kind cluster; fails with one line when Docker, kind, kubectl or the Pulumi CLI is
missing) or `all` (the default: both, kind skipped with that line when it cannot run).
The kind cluster's options: `--cluster-name`, `--keep-cluster` (cluster and stack stay for
the next run), `--kind-setup-timeout`, `--kind-state-dir`.
"""

from __future__ import annotations

import pytest

BACKEND_CHOICES = ("local", "kind", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend", choices=BACKEND_CHOICES, default=None,
        help="e2e backend: local, kind, or all (default)")
    group = parser.getgroup("kind", "e2e suite on a kind cluster")
    group.addoption("--cluster-name", default="mirror-e2e", help="kind cluster of the e2e suite")
    group.addoption("--keep-cluster", action="store_true",
                    help="keep the kind cluster and its Pulumi stack for the next run")
    group.addoption("--kind-setup-timeout", type=float, default=2400.0,
                    help="seconds for the kind set-up: cluster, images, Istio, pulumi up (default 2400)")
    group.addoption("--kind-state-dir", default=".pulumi-state",
                    help="Pulumi file state folder of the e2e stack kind-e2e (default .pulumi-state)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs the whole mirroring demo (local processes or kind)")



# A real PostgreSQL (toolbox/postgres.py) -------------------------------------------------


@pytest.fixture(scope="session")
def postgres():
    """One server for the session. Missing PostgreSQL skips with one line on a developer's
    machine and fails under CI (`.ci/run` installs it: scripts/system-deps.sh)."""
    import os

    from toolbox.postgres import PostgresServer, missing

    problem = missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres):
    """A new empty database on the session's server, as a postgresql:// URL."""
    return postgres.create_database()
