"""Options and markers for the whole test tree.

`--backend` chooses where the e2e suite's meshes run: `local` (default; real processes on
loopback), `kind` (a kind cluster; fails with one line when Docker, kind, kubectl or the
Pulumi CLI is missing) or `all` (both; kind is skipped, with that line, when it cannot run).
"""

from __future__ import annotations

import pytest

BACKEND_CHOICES = ("local", "kind", "all")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backend", choices=BACKEND_CHOICES, default=None,
        help="e2e backend: local (default), kind, or all")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: runs the whole mirroring demo (local processes or kind)")

