"""A real PostgreSQL server for tests, from Debian's `postgresql` package.

`initdb` into a fresh temporary folder, `pg_ctl start` on a free loopback port (no Unix
socket, no other address), trust authentication for loopback only, stopped and removed
afterwards. As root (CI) the server runs as the `postgres` user the package creates:
PostgreSQL refuses to run as root.

    with PostgresServer.start() as pg:
        pg.url            # postgresql://postgres@127.0.0.1:PORT/postgres
        pg.create_database("t1")  # -> URL of a new empty database
        pg.stop(); pg.start_again()  # same data, same port (database-lost tests)

The pytest fixtures `postgres` (one server per session) and `pg_url` (a new empty database
per test) live in tests/conftest.py. `missing()` says what is not installed, for a skip
line; under CI a missing server is a failure, not a skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from toolbox.ports import free_port

HOST = "127.0.0.1"
SUPERUSER = "postgres"


def bin_dir() -> Path | None:
    """Debian keeps the server's programs out of PATH, in /usr/lib/postgresql/<major>/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    majors = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                    key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(majors[-1]).parent if majors else None


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if bin_dir() is None:
        return "PostgreSQL server not installed (scripts/system-deps.sh postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return "running as root and no 'postgres' user to run PostgreSQL as"
    return None


def _as_server_user(cmd: list[str]) -> tuple[list[str], dict | None]:
    if os.geteuid() != 0:
        return cmd, None
    user = pwd.getpwnam(SUPERUSER)

    def demote() -> None:  # runs in the child before exec
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return cmd, {"preexec_fn": demote}


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    cmd, extra = _as_server_user(cmd)
    return subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"},
                          **(extra or {}), **kwargs)


@dataclass
class PostgresServer:
    root: Path
    port: int
    bin: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{name}"

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    @classmethod
    def start(cls, port: int | None = None) -> PostgresServer:
        problem = missing()
        if problem:
            raise RuntimeError(problem)
        # Not under pytest's tmp_path: that is mode 0700 of root, unreadable for `postgres`.
        root = Path(tempfile.mkdtemp(prefix="diffproxy-pg-"))
        os.chmod(root, 0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SUPERUSER)
            os.chown(root, user.pw_uid, user.pw_gid)
        server = cls(root=root, port=port or free_port(), bin=bin_dir())
        init = _run([str(server.bin / "initdb"), "-D", str(server.data), "-U", SUPERUSER,
                     "--auth=trust", "--encoding=UTF8", "--no-sync"], timeout=120)
        if init.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
        # Loopback only, trust only for loopback. fsync off (test data is thrown away; only an
        # OS crash would lose commits); synchronous_commit stays on, so a stop -m immediate
        # keeps every commit, as a real database crash does.
        (server.data / "pg_hba.conf").write_text(
            "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n")
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '{HOST}'\nunix_socket_directories = ''\n"
                       "fsync = off\nfull_page_writes = off\n"
                       "max_connections = 200\nshared_buffers = 64MB\n")
        server.start_again()
        return server

    def start_again(self, timeout: float = 60.0) -> None:
        """Start (or restart after `stop`) the server on the same port and data."""
        result = _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path),
                       "-o", f"-p {self.port}", "-w", "-t", str(int(timeout)), "start"],
                      timeout=timeout + 10)
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed ({result.returncode}): "
                               f"{result.stderr[-1000:]}\n{self.log()}")
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = _run([str(self.bin / "pg_isready"), "-h", HOST, "-p", str(self.port)],
                         timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL not ready on {HOST}:{self.port}:\n{self.log()}")

    def stop(self, mode: str = "fast") -> None:
        """`fast`: disconnect clients, shut down cleanly; `immediate`: like a crash."""
        _run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"],
             timeout=60)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with the server's own client; returns its unaligned output."""
        result = _run([str(self.bin / "psql"), "-h", HOST, "-p", str(self.port), "-U", SUPERUSER,
                       "-d", database, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql], timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name: str | None = None) -> str:
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc) -> None:
        self.destroy()
