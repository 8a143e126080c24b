"""Real processes for tests: httpbin / candidate under gunicorn, and the diff proxy.

Everything listens on 127.0.0.1 on ports picked by `free_port()`, runs in its own process
group (so gunicorn's workers go too) and logs to a file that failures print. Use:

    primary = start_httpbin()                 # plain httpbin
    candidate = start_candidate()             # candidate.app:app
    proxy = start_diffproxy(primary=primary.address, secondary=primary.address,
                            candidate=candidate.address, store_path=tmp / "s.sqlite")
    httpx.get(proxy.proxy_url + "/json"); httpx.get(proxy.api_url + "/api/1/endpoints")
    for p in (proxy, candidate, primary): p.stop()

`run_diffproxy(args)` runs `python -m diffproxy ARGS` to completion (CLI error tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from toolbox import procs, ready
from toolbox.ports import free_port

REPO = Path(__file__).resolve().parents[2]
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable
HOST = "127.0.0.1"


class ProcessFailed(RuntimeError):
    """A process exited or never became ready; the message carries the tail of its log."""


@dataclass
class Proc:
    """One started process (group) and where its output goes."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def wait_until(self, url: str, ok: Iterable[int] = (200,), timeout: float = 20.0) -> None:
        """Poll `url` until it answers with a status in `ok`; fail early if the process dies."""
        ok = tuple(ok)
        outcome = ready.poll(lambda: ready.http_status(url, timeout=1.0) in ok, timeout,
                             died=lambda: not self.alive())
        if outcome == "ready":
            return
        if outcome == "died":
            raise ProcessFailed(f"{self.name} exited with {self.popen.returncode}:\n{self.log()}")
        self.stop()
        raise ProcessFailed(f"{self.name} not ready at {url} within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM to the whole group, SIGKILL if it has not gone within `timeout`."""
        procs.stop_group(self.popen, timeout)
        return self.popen.returncode

    def kill(self) -> int:
        """kill -9, no chance to clean up (crash-durability tests)."""
        procs.signal_group(self.popen.pid, signal.SIGKILL)
        return self.popen.wait(5)


def _log_dir(log_dir: str | os.PathLike | None) -> Path:
    path = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix="procs-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def spawn(name: str, cmd: list[str], port: int, log_dir: str | os.PathLike | None = None,
          env: Mapping[str, str] | None = None) -> Proc:
    """Start `cmd` in a new process group, cwd = repo root, output to `<log_dir>/<name>.log`."""
    log_path = _log_dir(log_dir) / f"{name}-{port}.log"
    popen = procs.start(cmd, log_path, cwd=REPO, env={**os.environ, **(env or {})}, append=False)
    return Proc(name=name, popen=popen, log_path=log_path, port=port)


def start_gunicorn(app: str, port: int | None = None, workers: int = 2,
                   log_dir: str | os.PathLike | None = None, ready_path: str = "/get",
                   timeout: float = 30.0, wait: bool = True) -> Proc:
    """`gunicorn -b 127.0.0.1:PORT APP` and wait until `ready_path` answers 200.

    With `wait=False` it returns at once; call `proc.wait_until(proc.url + "/get")` later
    (start several, then wait for all: they boot in parallel)."""
    port = port or free_port()
    cmd = [PYTHON, "-m", "gunicorn", "-b", f"{HOST}:{port}", "-w", str(workers),
           "--graceful-timeout", "2", "--timeout", "30", app]
    proc = spawn(app.split(":")[0].replace(".", "-"), cmd, port, log_dir)
    if wait:
        proc.wait_until(proc.url + ready_path, timeout=timeout)
    return proc


def start_httpbin(port: int | None = None, **kwargs) -> Proc:
    return start_gunicorn("httpbin:app", port, **kwargs)


def start_candidate(port: int | None = None, **kwargs) -> Proc:
    """The demo's candidate: httpbin with `GET /json`'s slideshow author changed."""
    return start_gunicorn("candidate.app:app", port, **kwargs)


@dataclass
class DiffProxyProc(Proc):
    """A running `python -m diffproxy`; `port` is its proxy port."""

    http_port: int = 0
    admin_port: int = 0
    args: list[str] = field(default_factory=list)

    def flag(self, key: str) -> str | None:
        """The value this proxy was started with for `-key`, if any."""
        for arg in self.args:
            name, _, value = arg.lstrip("-").partition("=")
            if name == key:
                return value
        return None

    @property
    def proxy_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def admin_url(self) -> str:
        return f"http://{HOST}:{self.admin_port}"


def diffproxy_args(primary: str, secondary: str, candidate: str,
                   store_path: str | os.PathLike | None, proxy_port: int, http_port: int,
                   admin_port: int, extra: Iterable[str] = ()) -> list[str]:
    """Diffy-style flags for a loopback proxy; `store_path` None: the store is in `extra`
    (`-store.url=...`) or the environment (DIFFPROXY_STORE_URL)."""
    store = [] if store_path is None else [f"-store.path={store_path}"]
    return [f"-candidate={candidate}", f"-master.primary={primary}",
            f"-master.secondary={secondary}", "-service.protocol=http", "-serviceName=httpbin",
            f"-proxy.port={HOST}:{proxy_port}", f"-admin.port={HOST}:{admin_port}",
            f"-http.port={HOST}:{http_port}", *store, *extra]


def start_diffproxy(primary: str, secondary: str, candidate: str,
                    store_path: str | os.PathLike | None,
                    extra: Iterable[str] = (), log_dir: str | os.PathLike | None = None,
                    env: Mapping[str, str] | None = None, ports: tuple[int, int, int] | None = None,
                    timeout: float = 20.0) -> DiffProxyProc:
    """`python -m diffproxy` with the given targets and flags; waits for /readyz.

    `ports` = (proxy, http, admin); fresh free ports when omitted."""
    proxy_port, http_port, admin_port = ports or (free_port(), free_port(), free_port())
    args = diffproxy_args(primary, secondary, candidate, store_path, proxy_port, http_port,
                          admin_port, extra)
    base = spawn("diffproxy", [PYTHON, "-m", "diffproxy", *args], proxy_port, log_dir, env)
    proc = DiffProxyProc(name=base.name, popen=base.popen, log_path=base.log_path,
                         port=proxy_port, http_port=http_port, admin_port=admin_port, args=args)
    proc.wait_until(proc.admin_url + "/readyz", timeout=timeout)
    return proc


def run_diffproxy(args: Iterable[str], timeout: float = 30.0,
                  env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m diffproxy ARGS` to completion, capturing text stdout/stderr."""
    return subprocess.run([PYTHON, "-m", "diffproxy", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)
