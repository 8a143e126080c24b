"""Waiting until something is ready: one poll loop, and the usual checks."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Literal

PROBE_USER_AGENT = "localmesh-readiness"
"""Readiness probes carry this User-Agent so access-log counts can leave them out."""

Outcome = Literal["ready", "died", "timeout"]


def poll(ready: Callable[[], bool], timeout: float, died: Callable[[], bool] = lambda: False,
         interval: float = 0.05) -> Outcome:
    """Call `ready` until it is true ("ready"), `died` is true first ("died"), or `timeout`
    seconds pass ("timeout"). The caller words the error: it knows what it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if died():
            return "died"
        if ready():
            return "ready"
        time.sleep(interval)
    return "timeout"


def accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """Does something accept TCP connections on host:port?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status of a GET (error statuses included), or None when nothing answers."""
    request = urllib.request.Request(url, headers={"User-Agent": PROBE_USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError, ValueError):
        return None
