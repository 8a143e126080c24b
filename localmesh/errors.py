"""The one error type the command line turns into a single readable line."""

from __future__ import annotations


class MeshError(RuntimeError):
    """Something the user can fix: a missing tool, a busy port, a process that would not start."""
