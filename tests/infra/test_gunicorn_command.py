"""httpbin's rendered gunicorn command, run for real with a home gunicorn cannot write to.

In the pods HOME is /nonexistent (UID 10001 has no home), and gunicorn 27 puts its control
socket under $HOME/.gunicorn by default, so every pod logged "Control server error". Here
HOME is a regular file: creating the folder fails the same way, even for root.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from topology import DEFAULT
from topology.kube import ClusterSettings, app_objects

ERROR = "Control server error"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _v1_command() -> list[str]:
    v1 = next(o for o in app_objects(DEFAULT, ClusterSettings())
              if o["metadata"]["name"] == f"{DEFAULT.service}-v1")
    container, = v1["spec"]["template"]["spec"]["containers"]
    return container["command"]


def _serve(tmp_path: Path, command: list[str], until: str | None) -> str:
    """Run `command` on a loopback port; stop once a request is answered and, if `until`
    is given, once that text is in the log. Returns the log."""
    port = _free_port()
    argv = [sys.executable, "-m", *command]
    argv[argv.index("-b") + 1] = f"127.0.0.1:{port}"
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(home)
    log = tmp_path / f"gunicorn-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        answered = False
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            if not answered:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/get", timeout=5) as r:
                        answered = r.status == 200
                except OSError:
                    pass
            if answered and (until is None or until in log.read_text()):
                break
            time.sleep(0.1)
        assert answered, log.read_text()
        if until is None:
            time.sleep(1.0)  # the control server starts right after the workers
        return log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_rendered_command_has_no_control_socket_error(tmp_path):
    command = _v1_command()
    assert command[0] == "gunicorn" and "--no-control-socket" in command
    assert ERROR not in _serve(tmp_path, command, until=None)


def test_without_the_flag_the_error_shows(tmp_path):
    # Control: the set-up above reproduces what the pods logged.
    command = [word for word in _v1_command() if word != "--no-control-socket"]
    assert ERROR in _serve(tmp_path, command, until=ERROR)
