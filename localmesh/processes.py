"""Start, watch and stop the mesh's processes, each in its own process group.

Every process writes stdout and stderr to one log file in the run folder; stopping a
process signals its whole group, so gunicorn workers and nginx workers go with their master.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

from localmesh.errors import MeshError

PROBE_USER_AGENT = "localmesh-readiness"
"""Readiness probes carry this User-Agent so access-log counts can leave them out."""


def stop_group(popen: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process's group, SIGKILL it after `grace`, and always sweep the group:
    a gunicorn or nginx worker may outlive a master that has already exited."""
    if popen.poll() is None:
        _signal_group(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(popen.pid, signal.SIGKILL)
    try:
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process ignoring SIGKILL
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Managed:
    name: str
    argv: tuple[str, ...]
    log: Path
    popen: subprocess.Popen = field(repr=False)
    _group_killed: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal_group(self, sig: int) -> None:
        # After SIGKILL to the group its id may be reused by an unrelated session.
        if self._group_killed:
            return
        if sig == signal.SIGKILL:
            self._group_killed = True
        _signal_group(self.popen.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        if not self._group_killed:
            stop_group(self.popen, grace)
            self._group_killed = True

    def kill(self) -> None:
        """Abrupt death, the way a crashed pod disappears."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)


def _die_with_parent() -> None:
    """Linux: SIGTERM this child when its parent dies, even by SIGKILL; each child runs in
    its own session, so nothing else would stop it."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


_PR_SET_PDEATHSIG = 1


class Supervisor:
    """Owns the processes it started; `stop_all` ends them in reverse start order."""

    def __init__(self, run_dir: Path, env: Mapping[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self._env = dict(env if env is not None else os.environ)
        self.processes: dict[str, Managed] = {}

    def start(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> Managed:
        if name in self.processes:
            raise MeshError(f"process {name!r} is already running")
        log = self.run_dir / f"{name}.log"
        with open(log, "ab") as out:
            try:
                popen = subprocess.Popen(
                    list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=cwd, env=self._env, start_new_session=True, preexec_fn=_die_with_parent)
            except OSError as exc:
                raise MeshError(f"cannot start {name} ({argv[0]}): {exc.strerror}") from None
        managed = Managed(name, tuple(argv), log, popen)
        self.processes[name] = managed
        return managed

    def stop_all(self) -> None:
        for managed in reversed(list(self.processes.values())):
            managed.stop()

    def dead(self) -> list[Managed]:
        return [m for m in self.processes.values() if not m.alive()]


def _port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    request = urllib.request.Request(url, headers={"User-Agent": PROBE_USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_ready(port: int) -> Callable[[], bool]:
    return lambda: _port_accepts(port)


def http_ready(url: str) -> Callable[[], bool]:
    return lambda: _http_ok(url)


def wait_ready(managed: Managed, ready: Callable[[], bool], timeout: float, port: int) -> None:
    """Poll `ready` until true; a process that exits first fails with its log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not managed.alive():
            tail = managed.log_tail()
            hint = ""
            if "Address already in use" in tail or "Address in use" in tail or "address already in use" in tail:
                hint = f" (port {port} is already in use)"
            raise MeshError(f"{managed.name} exited with code {managed.popen.returncode} before "
                            f"it was ready{hint}; log {managed.log}:\n{tail}")
        if ready():
            return
        time.sleep(0.05)
    raise MeshError(f"{managed.name} was not ready on port {port} after {timeout:g}s; "
                    f"log {managed.log}:\n{managed.log_tail()}")
