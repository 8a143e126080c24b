"""Loopback ports: pick free ones, or check that the ones asked for are free."""

from __future__ import annotations

import errno
from contextlib import ExitStack

from localmesh.errors import MeshError
from toolbox.ports import LOOPBACK
from toolbox.ports import bound_socket as _bound_socket


def check_free(port: int, role: str) -> None:
    try:
        _bound_socket(port).close()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise MeshError(f"port {port} ({role}) is already in use on {LOOPBACK}; "
                            f"pick another with the matching --*-port flag, or stop what holds it") from None
        if exc.errno == errno.EACCES:
            raise MeshError(f"port {port} ({role}) needs privileges; use a port above 1023") from None
        raise MeshError(f"cannot use port {port} ({role}): {exc.strerror}") from None


def pick(wanted: dict[str, int | None]) -> dict[str, int]:
    """Fill the `None`s with distinct free ports and check the fixed ones.

    Every probe socket stays open until every role has a port, so no two roles share one;
    a race with another program between here and the real bind is still possible, and then
    shows up as a start failure naming the port.
    """
    fixed = [p for p in wanted.values() if p is not None]
    if len(fixed) != len(set(fixed)):
        raise MeshError(f"the same port is given for two roles: {wanted}")
    chosen: dict[str, int] = {}
    with ExitStack() as stack:
        for role, port in wanted.items():
            if port is not None:
                check_free(port, role)
                stack.enter_context(_bound_socket(port))
                chosen[role] = port
        for role, port in wanted.items():
            if port is None:
                sock = stack.enter_context(_bound_socket(0))
                chosen[role] = sock.getsockname()[1]
    return {role: chosen[role] for role in wanted}
