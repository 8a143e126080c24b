"""`kubectl port-forward`, kept alive.

A port-forward ends when the pod behind it goes away (a rollout, a crash, the candidate
test's restarts) and nothing brings it back by itself. This one restarts kubectl on the same
local port whenever it exits, until `stop()`. kubectl gets the caller's whole environment
(HOME included, so its discovery cache goes to ~/.kube/cache and not into the working
directory) plus the cluster's KUBECONFIG.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from localmesh.errors import MeshError
from toolbox import procs
from toolbox.ready import poll

RESTART_PAUSE = 1.0  # seconds between an exit and the next start: a pod needs a moment


class PortForward:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path,
                 ready: Callable[[], bool], log: Callable[[str], None] = lambda _line: None) -> None:
        self.argv = list(argv)
        self._env = dict(env)
        self.log_path = log_path
        self._ready = ready
        self._log = log
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._popen: subprocess.Popen | None = None
        self._watcher: threading.Thread | None = None
        self.starts = 0

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._popen.pid if self._popen is not None else None

    def _spawn(self) -> subprocess.Popen:
        try:
            popen = procs.start(self.argv, self.log_path, env=self._env)  # dies with us
        except OSError as exc:
            raise MeshError(f"cannot start kubectl port-forward ({self.argv[0]}): {exc.strerror}") from None
        self.starts += 1
        return popen

    def start(self, timeout: float = 60.0) -> None:
        """Start kubectl and wait until `ready`; from then on it is restarted when it exits."""
        with self._lock:
            self._popen = self._spawn()

        def up() -> bool:
            if self._ready():
                return True
            with self._lock:
                if self._popen.poll() is not None:  # the service may have no ready pod yet
                    time.sleep(RESTART_PAUSE)
                    self._popen = self._spawn()
            return False

        if poll(up, timeout, interval=0.1) != "ready":
            tail = procs.log_tail(self.log_path, 10)
            self.stop()
            raise MeshError(f"kubectl port-forward was not ready after {timeout:g}s; "
                            f"log {self.log_path}:\n{tail}")
        self._watcher = threading.Thread(target=self._watch, name="port-forward", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                popen = self._popen
            if popen is None:
                return
            code = popen.wait()
            if self._stopped.wait(RESTART_PAUSE):
                return
            self._log(f"kubectl port-forward exited (code {code}); restarting it")
            with self._lock:
                if self._stopped.is_set():
                    return
                try:
                    self._popen = self._spawn()
                except MeshError as exc:
                    self._log(str(exc))
                    return

    def stop(self) -> None:
        self._stopped.set()
        with self._lock:
            popen = self._popen
        if popen is not None:
            procs.stop_group(popen)
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(timeout=10)
