"""Start, watch and stop the mesh's processes, each in its own process group.

Every process writes stdout and stderr to one log file in the run folder; stopping a
process signals its whole group, so gunicorn workers and nginx workers go with their master.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from localmesh.errors import MeshError
from toolbox import procs, ready
from toolbox.procs import stop_group


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
        return procs.log_tail(self.log, lines)

    def signal_group(self, sig: int) -> None:
        # After SIGKILL to the group its id may be reused by an unrelated session.
        if self._group_killed:
            return
        if sig == signal.SIGKILL:
            self._group_killed = True
        procs.signal_group(self.popen.pid, sig)

    def stop(self, grace: float = 5.0) -> None:
        if not self._group_killed:
            stop_group(self.popen, grace)
            self._group_killed = True

    def kill(self) -> None:
        """Abrupt death, the way a crashed pod disappears."""
        self.signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)


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
        try:
            popen = procs.start(argv, log, cwd=cwd, env=self._env)
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


def tcp_ready(port: int) -> Callable[[], bool]:
    return lambda: ready.accepts(port)


def http_ready(url: str) -> Callable[[], bool]:
    return lambda: (status := ready.http_status(url)) is not None and 200 <= status < 300


def wait_ready(managed: Managed, check: Callable[[], bool], timeout: float, port: int) -> None:
    """Poll `check` until true; a process that exits first fails with its log's tail."""
    outcome = ready.poll(check, timeout, died=lambda: not managed.alive())
    if outcome == "ready":
        return
    if outcome == "died":
        tail = managed.log_tail()
        hint = ""
        if "Address already in use" in tail or "Address in use" in tail or "address already in use" in tail:
            hint = f" (port {port} is already in use)"
        raise MeshError(f"{managed.name} exited with code {managed.popen.returncode} before "
                        f"it was ready{hint}; log {managed.log}:\n{tail}")
    raise MeshError(f"{managed.name} was not ready on port {port} after {timeout:g}s; "
                    f"log {managed.log}:\n{managed.log_tail()}")
