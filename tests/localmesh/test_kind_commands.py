"""KindMesh's kubectl conversations, against a recording stand-in for kubectl.

No cluster can run here; this pins the commands and the parsing of their output, which the
kind e2e run depends on.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from localmesh import kind
from topology import DEFAULT

GUNICORN = '10.0.0.7 - - [23/Nov/2026:12:00:00 +0000] "GET /headers HTTP/1.1" 200 321 "-" "curl/8.11.1"'
NGINX = '10.0.0.9 - - [23/Nov/2026:12:00:00 +0000] "GET /headers HTTP/1.1" 200 321 "-" "curl/8.11.1" "-"'


@pytest.fixture
def fake(tmp_path: Path) -> tuple[kind.KindMesh, Path]:
    calls = tmp_path / "calls.jsonl"
    script = tmp_path / "kubectl"
    # Answers by subcommand; every call is appended to calls.jsonl.
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
args = sys.argv[1:]
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps(args) + "\\n")
if "logs" in args:
    deploy = args[args.index("logs") + 1]
    print("\\n".join([{GUNICORN!r}] * 3 if deploy.endswith("-v1") else [{NGINX!r}] * 2))
elif "exec" in args:
    print('{{"ok": 1}}\\n{kind.STATUS_MARK}200\\n{{"ok": 2}}\\n{kind.STATUS_MARK}200')
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    tools = kind.Tools(docker="docker", kind="kind", kubectl=str(script), pulumi="pulumi")
    settings = kind.KindSettings(cluster_name="t", kubeconfig=tmp_path / "kc", run_dir=tmp_path / "run")
    return kind.KindMesh(settings, tools, log=lambda _line: None), calls


def recorded(calls: Path) -> list[list[str]]:
    return [json.loads(line) for line in calls.read_text().splitlines()]


def test_traffic_goes_from_the_sleep_pod_to_the_service(fake):
    mesh, calls = fake
    replies = mesh.send_paths(["/headers", "/uuid"])
    assert [(r.path, r.status, json.loads(r.body)) for r in replies] == [
        ("/headers", 200, {"ok": 1}), ("/uuid", 200, {"ok": 2})]
    (args,) = recorded(calls)
    assert args[:6] == ["-n", DEFAULT.app_namespace, "exec", f"deploy/{DEFAULT.sleep_name}", "-c",
                        DEFAULT.sleep_name]
    script = args[-1]
    assert f"http://{DEFAULT.service}:{DEFAULT.ports.app}/headers" in script
    assert f"http://{DEFAULT.service}:{DEFAULT.ports.app}/uuid" in script


def test_counts_come_from_v1_and_relay_container_logs(fake):
    mesh, calls = fake
    assert mesh.received() == kind.Received(v1=3, v2=2)
    logs = recorded(calls)
    assert ["-n", DEFAULT.app_namespace, "logs", f"deploy/{DEFAULT.service}-v1", "-c", DEFAULT.service,
            "--tail=-1"] in logs
    assert ["-n", DEFAULT.app_namespace, "logs", f"deploy/{DEFAULT.service}-v2", "-c", "relay",
            "--tail=-1"] in logs


def test_killing_the_candidate_scales_it_to_zero_and_waits(fake):
    mesh, calls = fake
    mesh.kill_candidate()
    assert mesh.candidate_killed
    scale, wait = recorded(calls)
    assert scale == ["-n", DEFAULT.diffy_namespace, "scale", "deployment/httpbin-v2", "--replicas=0"]
    assert wait[:5] == ["-n", DEFAULT.diffy_namespace, "wait", "--for=delete", "pod"]
    assert "app=httpbin,version=v2" in wait
