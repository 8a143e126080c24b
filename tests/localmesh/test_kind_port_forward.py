"""The console port-forward is the project's own: one kubectl while it works, a new one on
the same port when it exits (a pod restart ends `kubectl port-forward`), the caller's whole
environment (HOME: kubectl's cache stays in ~/.kube, not in the working directory).

The stand-in kubectl serves the forwarded port itself and exits on `/exit`.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from localmesh import kind
from localmesh.errors import MeshError
from localmesh.portforward import PortForward

FAKE_KUBECTL = """#!{python}
import json, os, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
args = sys.argv[1:]
with open({starts!r}, "a") as f:
    f.write(json.dumps({{"argv": args, "pid": os.getpid(), "cwd": os.getcwd(),
                        "home": os.environ.get("HOME"), "kubeconfig": os.environ.get("KUBECONFIG")}}) + "\\n")
local = int(args[-1].split(":")[0])

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({{"pid": os.getpid()}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/exit":
            os._exit(1)
    def log_message(self, *a):
        pass

HTTPServer(("127.0.0.1", local), Handler).serve_forever()
"""


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return json.loads(response.read())


def _starts(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def mesh(tmp_path: Path):
    starts = tmp_path / "starts.jsonl"
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable, starts=str(starts)))
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    tools = kind.Tools(docker="docker", kind="kind", kubectl=str(kubectl), pulumi="pulumi")
    settings = kind.KindSettings(cluster_name="demo", state_dir=tmp_path / "state",
                                 run_dir=tmp_path / "run")
    m = kind.KindMesh(settings, tools, log=lambda _line: None)
    try:
        yield m, starts
    finally:
        m.stop()


def test_one_kubectl_with_the_callers_environment(mesh):
    m, starts = mesh
    port = m.port_forward_console()
    assert m.api_url == f"http://127.0.0.1:{port}"
    (start,) = _starts(starts)
    assert start["argv"][-2:] == ["svc/httpbin-diffy", f"{port}:8888"]
    assert start["home"] == os.environ["HOME"]
    assert start["kubeconfig"] == str(m.settings.kubeconfig_path)


def test_a_port_forward_that_exits_is_restarted_on_the_same_port(mesh):
    m, starts = mesh
    port = m.port_forward_console()
    first = _get(port, "/api/1/info")["pid"]
    _get(port, "/exit")  # answered, then kubectl exits: as when the pod goes away
    deadline = time.monotonic() + 30
    second = None
    while time.monotonic() < deadline:
        try:
            second = _get(port, "/api/1/info")["pid"]
            if second != first:
                break
        except OSError:
            time.sleep(0.2)
    assert second is not None and second != first
    assert [s["pid"] for s in _starts(starts)] == [first, second]


def test_stop_ends_it_for_good(mesh):
    m, starts = mesh
    port = m.port_forward_console()
    m.stop()
    time.sleep(2 * 1.0 + 0.5)  # longer than the restart pause
    assert len(_starts(starts)) == 1
    with pytest.raises(OSError):
        _get(port, "/api/1/info")


def test_a_port_forward_that_never_gets_ready_is_restarted_then_fails_with_its_log(tmp_path):
    # kubectl exits at once, as when the service has no ready pod: restarted until the
    # deadline, then one error naming the wait and carrying kubectl's last words.
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\nimport sys\nprint('error: no ready pod')\nsys.exit(1)\n")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    forward = PortForward([str(kubectl)], dict(os.environ), tmp_path / "pf.log", ready=lambda: False)
    with pytest.raises(MeshError, match=r"(?s)not ready after 3s.*no ready pod"):
        forward.start(timeout=3)
    assert forward.starts >= 2
    assert forward._popen.poll() is not None  # stopped: nothing left running
