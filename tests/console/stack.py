"""The real thing on loopback for the console tests and screenshots: three gunicorn
backends (httpbin as primary and secondary, the candidate) and `python -m diffproxy`.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from diffproxy.client import ApiClient
from tests.support import diffapi, procs
from topology.model import DEFAULT

# Request paths the demo's user would send; all GETs, so the proxy forwards every one to
# the three targets without -allowHttpSideEffects.
DEMO_PATHS = ("/json", "/uuid", "/headers", "/get")

XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=1">'


@dataclass(frozen=True)
class Stack:
    proxy_url: str
    console_url: str
    admin_url: str
    primary: str
    secondary: str
    candidate: str

    @property
    def api_url(self) -> str:
        return f"{self.console_url}/api/1"


@contextlib.contextmanager
def running_stack(workdir: Path, ignore_fields: tuple[str, ...] = ()) -> Iterator[Stack]:
    workdir.mkdir(parents=True, exist_ok=True)
    started: list[procs.Proc] = []
    try:
        # One worker each: three backends and the proxy share two cores with other suites.
        for start in (procs.start_httpbin, procs.start_httpbin, procs.start_candidate):
            started.append(start(workers=1, log_dir=workdir, wait=False))
        for proc in started:
            proc.wait_until(proc.url + "/get", timeout=30.0)
        primary, secondary, candidate = started
        # The tests pass no -ignore.fields (the demo ignores body.headers.Host): httpbin's
        # echo of each target's own Host then shows as noise on /headers and /anything,
        # which keeps examples with echoed, attacker-controlled bodies for the XSS test.
        extra = [f"-ignore.fields={','.join(ignore_fields)}"] if ignore_fields else []
        proxy = procs.start_diffproxy(
            primary=primary.address, secondary=secondary.address, candidate=candidate.address,
            store_path=workdir / "results.sqlite", log_dir=workdir,
            extra=[f"-serviceName={DEFAULT.service_label}",
                   f"-threshold.relative={DEFAULT.thresholds.relative:g}",
                   f"-threshold.absolute={DEFAULT.thresholds.absolute:g}", *extra])
        started.append(proxy)
        yield Stack(proxy_url=proxy.proxy_url, console_url=proxy.api_url,
                    admin_url=proxy.admin_url, primary=primary.address,
                    secondary=secondary.address, candidate=candidate.address)
    finally:
        for proc in reversed(started):
            proc.stop()


# Traffic -----------------------------------------------------------------------------------

def send_demo_traffic(stack: Stack, rounds: int = 3, paths: tuple[str, ...] = DEMO_PATHS,
                      interval: float = 0.0) -> int:
    """`interval` seconds between requests: without it the candidate (one sync gunicorn
    worker) queues behind its 80 ms route and every route of it reads as slower."""
    sent = 0
    with httpx.Client(base_url=stack.proxy_url, timeout=10.0) as client:
        for _ in range(rounds):
            for path in paths:
                if sent and interval:
                    time.sleep(interval)
                client.get(path, headers={"Authorization": "Bearer demo-secret-token"}).raise_for_status()
                sent += 1
    # A caller is answered from the primary alone; the other two targets may still be on it.
    diffapi.wait_idle(stack.admin_url, timeout=60.0)
    return sent


def send_hostile_traffic(stack: Stack) -> int:
    """Requests whose echoes put markup into endpoint names, headers and response bodies."""
    host, port = stack.proxy_url.removeprefix("http://").split(":")
    # httpx would percent-encode "<" and ">" in the path; a raw request line keeps them.
    raw_target = f"/anything/{XSS_SCRIPT}"
    request = (f"GET {raw_target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"X-Evil: {XSS_IMG}\r\nX-Evil-Script: {XSS_SCRIPT}\r\nConnection: close\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request.encode())
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    if not reply.startswith(b"HTTP/1.1 200"):
        raise AssertionError(f"raw hostile request failed: {reply[:200]!r}")
    with httpx.Client(base_url=stack.proxy_url, timeout=10.0) as client:
        client.get("/anything", params={"q": XSS_IMG}, headers={"X-Evil": XSS_IMG}).raise_for_status()
    return 2


def settle(stack: Stack) -> dict:
    """Comparisons are recorded asynchronously: wait for all, then the API's endpoint counts."""
    diffapi.wait_idle(stack.admin_url)
    return ApiClient(stack.console_url).endpoints()


def clear(stack: Stack) -> None:
    ApiClient(stack.console_url).clear()
