"""Process groups: start a child in its own session (so stopping it stops everything it
forked: gunicorn and nginx workers) that the kernel stops when its parent dies; stop it
with SIGTERM, then SIGKILL, sweeping the group."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from diffproxy.runtime import arm_parent_death_signal


def die_with_parent() -> None:
    """`preexec_fn`: SIGTERM the child when its parent dies, even by SIGKILL; each child runs
    in its own session, so nothing else would stop it."""
    arm_parent_death_signal(signal.SIGTERM)


def start(argv: Sequence[str], log: Path, cwd: Path | str | None = None,
          env: Mapping[str, str] | None = None, append: bool = True) -> subprocess.Popen:
    """`argv` in a new session, stdin from /dev/null, stdout and stderr to `log`. OSError
    when it cannot be started."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab" if append else "wb") as out:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd,
                                env=dict(env) if env is not None else None,
                                start_new_session=True, preexec_fn=die_with_parent)


def signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_group(popen: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process's group, SIGKILL it after `grace`, and always sweep the group:
    a gunicorn or nginx worker may outlive a master that has already exited."""
    if popen.poll() is None:
        signal_group(popen.pid, signal.SIGTERM)
        try:
            popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    signal_group(popen.pid, signal.SIGKILL)
    try:
        popen.wait(timeout=grace)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process ignoring SIGKILL
        pass


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
