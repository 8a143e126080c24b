"""httpbin's rendered gunicorn command, run for real with a home gunicorn cannot write to.

In the pods HOME is /nonexistent (UID 10001 has no home), and gunicorn 27 puts its control
socket under $HOME/.gunicorn by default, so every pod logged "Control server error". Here
HOME is a regular file: creating the folder fails the same way, even for root.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from toolbox import procs, ready
from toolbox.ports import free_port
from topology import DEFAULT
from topology.kube import ClusterSettings, app_objects

ERROR = "Control server error"


def _v1_command() -> list[str]:
    v1 = next(o for o in app_objects(DEFAULT, ClusterSettings())
              if o["metadata"]["name"] == f"{DEFAULT.service}-v1")
    container, = v1["spec"]["template"]["spec"]["containers"]
    return container["command"]


def _serve(tmp_path: Path, command: list[str], until: str | None) -> str:
    """Run `command` on a loopback port; stop once a request is answered and, if `until`
    is given, once that text is in the log. Returns the log."""
    port = free_port()
    argv = [sys.executable, "-m", *command]
    argv[argv.index("-b") + 1] = f"127.0.0.1:{port}"
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(home)
    log = tmp_path / f"gunicorn-{port}.log"
    proc = procs.start(argv, log, env=env)
    answered = False

    def done() -> bool:
        nonlocal answered
        answered = answered or ready.http_status(f"http://127.0.0.1:{port}/get", timeout=5) == 200
        return answered and (until is None or until in log.read_text())

    try:
        outcome = ready.poll(done, 60, died=lambda: proc.poll() is not None, interval=0.1)
        assert outcome == "ready", f"{outcome}:\n{log.read_text()}"
        if until is None:
            time.sleep(1.0)  # the control server starts right after the workers
        return log.read_text()
    finally:
        procs.stop_group(proc, grace=30)


def test_rendered_command_has_no_control_socket_error(tmp_path):
    command = _v1_command()
    assert command[0] == "gunicorn" and "--no-control-socket" in command
    assert ERROR not in _serve(tmp_path, command, until=None)


def test_without_the_flag_the_error_shows(tmp_path):
    # Control: the set-up above reproduces what the pods logged.
    command = [word for word in _v1_command() if word != "--no-control-socket"]
    assert ERROR in _serve(tmp_path, command, until=ERROR)
