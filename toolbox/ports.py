"""Loopback ports."""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"


def bound_socket(port: int, host: str = LOOPBACK) -> socket.socket:
    """A TCP socket bound to `port` (0: any free one); OSError when it cannot be."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Without SO_REUSEADDR a port that just left TIME_WAIT would look busy to us but not
    # to nginx/gunicorn/aiohttp, which all set it.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on right now, and not handed out before by this
    process: with SO_REUSEADDR the kernel may give `bind(0)` the port it just released, so
    two calls in a row (one process's proxy and http ports) could get the same one. The
    race until the caller's child binds it is acceptable on a loopback-only machine."""
    for _ in range(100):
        with bound_socket(0) as sock:
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    return port
