"""Child processes on loopback and what /proc says about them (CPU time, resident memory)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from toolbox import procs, ready

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The harness could not set up or measure a scenario; the message says which part."""


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float, log: Path | None = None) -> None:
    outcome = ready.poll(lambda: ready.accepts(port, timeout=0.2), timeout,
                         died=lambda: proc.poll() is not None)
    if outcome == "died":
        raise BenchError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}"
                         + _tail(log))
    if outcome == "timeout":
        raise BenchError(f"nothing listening on 127.0.0.1:{port} after {timeout:g}s" + _tail(log))


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    lines = log.read_text(errors="replace").strip().splitlines()[-8:]
    return ("\n  " + "\n  ".join(lines)) if lines else ""


@contextlib.contextmanager
def running(argv: Sequence[str], log: Path, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """A child in its own session, so stopping it also stops everything it forked."""
    proc = procs.start(argv, log, cwd=cwd, env=env)
    try:
        yield proc
    finally:
        procs.stop_group(proc)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces; fields resume after the last ')'.
    return raw[raw.rindex(")") + 2:].split()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    """User+system time of a process tree: live members plus children it already reaped."""
    total = 0
    root = _stat_fields(pid)
    if root is None:
        raise BenchError(f"process {pid} is gone")
    # fields here start at stat's 3rd field: utime=14, stime=15, cutime=16, cstime=17.
    total += sum(int(root[i]) for i in (11, 12, 13, 14))
    for child in descendants(pid):
        f = _stat_fields(child)
        if f is not None:
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident memory of a process tree (shared pages counted once per process)."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except FileNotFoundError:
            continue
    return total


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    rss: int


def usage(pid: int) -> Usage:
    return Usage(cpu_seconds(pid), rss_bytes(pid))
