"""Options and markers for the whole test tree.

`--backend` chooses where the e2e suite's meshes run: `local` (real processes on loopback),
`kind` (a kind cluster; fails with one line when Docker, kind, kubectl or the Pulumi CLI is
missing) or `all` (the default: both, kind skipped with that line when it cannot run).
"""

from __future__ import annotations

import pytest

BACKEND_CHOICES = ("local", "kind", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend", choices=BACKEND_CHOICES, default=None,
        help="e2e backend: local, kind, or all (default)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs the whole mirroring demo (local processes or kind)")

