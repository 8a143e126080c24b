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


def free_port() -> int:
    """A loopback port nothing listens on right now; the race until the caller's child
    binds it is acceptable on a loopback-only machine."""
    with bound_socket(0) as sock:
        return sock.getsockname()[1]
