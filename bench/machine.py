"""What the numbers were measured on: hardware, kernel, load, versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from bench import envoy, nginx, wrk
from bench.settings import REPO


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


def _dist(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def _git_commit() -> str:
    out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def _diffproxy_version() -> str:
    init = REPO / "diffproxy" / "__init__.py"
    for line in init.read_text().splitlines() if init.exists() else ():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    return "unknown"


def describe() -> dict:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "mem_total_mb": _mem_total_mb(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "versions": {
            "python": platform.python_version(),
            "diffproxy": _diffproxy_version(),
            "aiohttp": _dist("aiohttp"),
            "uvloop": _dist("uvloop"),
            "httptools": _dist("httptools"),
            "deepdiff": _dist("deepdiff"),
            "nginx": nginx.version(),
            "envoy": envoy.version(),
            "wrk": wrk.version(),
            "git": _git_commit(),
        },
    }
