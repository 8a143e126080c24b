"""`make demo BACKEND=kind` asks for no system package; the local demo only for nginx and
Prometheus.

The script runs with a PATH of fake tools (an `id` that says non-root, an `apt-get` that
records its arguments), so nothing is installed and the real machine's tools do not count.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "system-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"


def _tool(folder: Path, name: str, body: str = "exit 0") -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(tmp_path: Path, *tools: str, uid: int = 1000, present: tuple[str, ...] = ()):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _tool(bin_dir, "id", f"echo {uid}")
    _tool(bin_dir, "apt-get", f'echo "$@" >> {tmp_path}/apt.log')
    for name in present:
        _tool(bin_dir, name)
    done = subprocess.run([BASH, str(SCRIPT), *tools], capture_output=True, text=True,
                          env={"PATH": str(bin_dir), "SYSTEM_DEPS_ROOT": str(tmp_path)},
                          timeout=30)
    apt = tmp_path / "apt.log"
    return done, apt.read_text() if apt.exists() else ""


def _make_n(*args: str) -> str:
    return subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True,
                          text=True, timeout=30, check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_kind_demo_asks_for_no_system_package():
    assert "system-deps.sh" not in _make_n("demo", "BACKEND=kind")
    assert "scripts/system-deps.sh nginx prometheus\n" in _make_n("demo", "BACKEND=local")
    assert "scripts/system-deps.sh nginx wrk postgresql\n" in _make_n("bench")


def test_only_the_asked_tool_counts_for_a_non_root_user(tmp_path):
    # chromium and wrk are missing too, but the local demo does not use them.
    done, _ = _run(tmp_path, "nginx", present=("nginx",))
    assert done.returncode == 0, done.stderr


def test_a_missing_asked_tool_is_named_alone(tmp_path):
    done, apt = _run(tmp_path, "nginx")
    assert done.returncode == 1
    assert "nginx-light" in done.stderr
    assert "chromium" not in done.stderr and "wrk" not in done.stderr
    assert apt == ""


def test_root_installs_only_what_is_missing(tmp_path):
    done, apt = _run(tmp_path, uid=0, present=("chromium",))
    assert done.returncode == 0, done.stderr
    install = [line for line in apt.splitlines() if line.startswith("install")]
    assert install == ["install -y -qq --no-install-recommends nginx-light wrk prometheus postgresql"]


def test_an_installed_postgresql_server_is_found_off_path(tmp_path):
    # Debian's server programs live in /usr/lib/postgresql/<major>/bin, never on PATH.
    server_bin = tmp_path / "usr" / "lib" / "postgresql" / "15" / "bin"
    server_bin.mkdir(parents=True)
    _tool(server_bin, "pg_ctl")
    done, apt = _run(tmp_path, "postgresql", uid=0)
    assert done.returncode == 0, done.stderr
    assert apt == ""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done, apt = _run(elsewhere, "postgresql", uid=0)
    assert done.returncode == 0, done.stderr
    assert "install -y -qq --no-install-recommends postgresql" in apt


def test_unknown_tool_is_an_error(tmp_path):
    done, _ = _run(tmp_path, "docker")
    assert done.returncode == 2
    assert "unknown tool docker" in done.stderr


def test_prometheus_and_promtool_come_from_one_package_installed_once(tmp_path):
    done, apt = _run(tmp_path, "prometheus", "promtool", uid=0)
    assert done.returncode == 0, done.stderr
    install = [line for line in apt.splitlines() if line.startswith("install")]
    assert install == ["install -y -qq --no-install-recommends prometheus"]
