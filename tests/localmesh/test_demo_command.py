"""`python -m localmesh demo` (what `make demo` runs), end to end on loopback."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from diffproxy.client import ApiClient
from localmesh import traffic
from toolbox import ready
from topology import DEFAULT

ROUNDS = traffic.demo_rounds(DEFAULT.latency.min_samples)
SENT = ROUNDS * len(traffic.DEMO_PATHS)

ROOT = Path(__file__).resolve().parents[2]


class Output:
    """Collects a child's stdout on a thread; select() cannot see what a text stream buffered."""

    def __init__(self, stream) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.text = ""
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def until(self, marker: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while marker not in self.text and time.monotonic() < deadline:
            try:
                self.text += self.lines.get(timeout=0.2)
            except queue.Empty:
                pass
        return self.text

    def drain(self) -> str:
        while True:
            try:
                self.text += self.lines.get_nowait()
            except queue.Empty:
                return self.text


def processes_mentioning(fragment: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmdline and str(os.getpid()) != proc.name:
            found.append(cmdline)
    return found


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_demo_starts_everything_shows_results_and_stops_on_ctrl_c(tmp_path):
    run_dir = tmp_path / "run"
    state = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-m", "localmesh", "demo", "--run-dir", str(run_dir),
                             "--istio-compatibility-version", "1.27", "--state", str(state)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = Output(proc.stdout)
        out = output.until("Press Ctrl-C", timeout=60)
        assert "Press Ctrl-C" in out, out
        assert f"v1 served {SENT}, v2 (the relay) received {SENT} mirrored copies" in out
        # Envoy's own counters for the copies, next to the diff proxy's report.
        assert re.search(rf"Envoy mirrored to outbound\|44134\|v2\|\S+: {SENT} copies, {SENT} answered 2xx", out), out
        assert "Istio 1.28.1 (compatibilityVersion 1.27): copies go to host-shadow" in out
        urls = json.loads(state.read_text())
        assert set(urls) >= {"mesh_entry", "console", "api", "diffproxy_admin", "envoy_admin", "v1",
                             "relay", "master", "candidate", "prometheus"}
        with urllib.request.urlopen(urls["prometheus"] + "/-/ready", timeout=5) as response:
            assert response.status == 200
        assert f"Prometheus              {urls['prometheus']}/alerts" in out
        # The latency verdicts: the candidate's deliberate +80 ms, and nothing else slower.
        slower = re.findall(r"^(GET \S+)\s+SLOWER\s", out, re.M)
        assert slower == ["GET /delay/:id"], out
        for role in ("v1", "master", "candidate"):
            with urllib.request.urlopen(urls[role] + "/status/200", timeout=5) as response:
                assert response.status == 200
        with urllib.request.urlopen(urls["envoy_admin"] + "/ready", timeout=5) as response:
            assert response.read().strip() == b"LIVE"
        with urllib.request.urlopen(urls["diffproxy_admin"] + "/healthz", timeout=5) as response:
            assert response.status == 200
        with urllib.request.urlopen(urls["api"] + "/info", timeout=5) as response:
            assert json.loads(response.read())["name"] == "httpbin"
        console = re.search(r"console \(diff results\)\s+(http://127\.0\.0\.1:(\d+))/", out)
        entry = re.search(r"mesh entry\s+(http://127\.0\.0\.1:(\d+))", out)
        assert console and entry, out
        assert urls["console"] == console[1] and urls["mesh_entry"] == entry[1]
        assert re.search(rf"GET /json\s+{ROUNDS}\s+{ROUNDS}\s+SIGNAL", out), out

        sent = subprocess.run([sys.executable, "-m", "localmesh", "traffic", "--url", entry[1], "-n", "7", "-q"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr
        assert "7 requests sent" in sent.stdout and "7 answered 2xx/3xx" in sent.stdout
        api = ApiClient(console[1], timeout=5)
        ready.poll(lambda: api.total() >= SENT + 7, 10, interval=0.1)
        assert api.total() == SENT + 7
        assert processes_mentioning(str(run_dir))

        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        rest = output.until("stopped", timeout=5)
    finally:
        if proc.poll() is None:  # a failed assertion above: let the demo stop its children
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, rest
    assert "stopped 7 processes" in rest  # Prometheus is the seventh
    assert processes_mentioning(str(run_dir)) == []
    assert port_is_free(int(console[2])) and port_is_free(int(entry[2]))
    assert (run_dir / "v1.access.log").is_file() and (run_dir / "diffproxy.log").is_file()


def test_demo_with_a_busy_port_says_which_and_starts_nothing(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "localmesh", "demo", "--run-dir", str(tmp_path / "r"),
                               "--console-port", str(port)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(f"localmesh: port {port} (console) is already in use")
    assert processes_mentioning(str(tmp_path / "r")) == []


@pytest.mark.parametrize("argv, message", [
    (["demo", "--mirror-percentage", "150"], "must be between 0 and 100"),
    (["demo", "--istio-host-form", "shadow"], "unrecognized arguments"),
    (["demo", "--istio-compatibility-version", "1.28"], "istioCompatibilityVersion must be below istioVersion"),
    (["demo", "--istio-version", "latest"], "istioVersion must look like 1.28.1"),
    (["traffic", "--url", "http://127.0.0.1:1", "-n", "1"], "request to http://127.0.0.1:1/headers failed"),
])
def test_bad_input_is_one_clear_line(argv, message):
    done = subprocess.run([sys.executable, "-m", "localmesh", *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr


def test_kind_demo_without_its_tools_names_them(tmp_path):
    # An empty PATH stands for a machine without Docker, kind, kubectl and Pulumi.
    env = {**os.environ, "PATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "localmesh", "demo", "--backend", "kind",
                           "--run-dir", str(tmp_path / "r"), "--state-dir", str(tmp_path / "s")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "localmesh: the kind backend cannot run here, missing: docker (CLI and a running engine), "
        "kind, kubectl, the Pulumi CLI")


def test_a_process_that_will_not_start_stops_the_others(tmp_path):
    from localmesh import LocalMesh, MeshError, MeshSettings

    run_dir = tmp_path / "run"
    # /bin/false "is" nginx here: the relay exits at once, after the backends have started.
    mesh = LocalMesh(MeshSettings(run_dir=run_dir, nginx="/bin/false", ready_timeout=20))
    with pytest.raises(MeshError, match=r"^relay exited with code 1 before it was ready"):
        mesh.start()
    assert processes_mentioning(str(run_dir)) == []
    assert (run_dir / "v1.log").is_file()
