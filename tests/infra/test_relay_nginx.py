"""The relay's nginx config, as rendered into the ConfigMap, checked by real nginx.

`nginx -t` resolves every proxy_pass host while loading the config, and the cluster name
(httpbin-diffy.diffy.svc.cluster.local) cannot resolve outside a cluster. So the check
takes the exact ConfigMap text and swaps only that host name for 127.0.0.1, after proving
that the swapped text is what `render_relay_conf` makes for a 127.0.0.1 upstream, i.e. the
host is the only difference. Everything else nginx sees is the cluster's text, byte for byte.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from toolbox import ready
from toolbox.ports import free_port
from topology import DEFAULT, render_relay_conf
from topology.kube import ClusterSettings, app_objects, relay_conf

NGINX = "/usr/sbin/nginx"


def _main_conf(root: Path, server_conf: str, daemon: bool = True) -> Path:
    """A minimal nginx.conf around the relay's server block, like the image's own."""
    (root / "conf.d").mkdir()
    (root / "conf.d" / "default.conf").write_text(server_conf)
    temp = "\n".join(f"    {kind}_temp_path {root}/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = root / "nginx.conf"
    main.write_text(f"""{'' if daemon else 'daemon off;'}
pid {root}/nginx.pid;
error_log stderr;
events {{}}
http {{
    access_log off;
{temp}
    include {root}/conf.d/default.conf;
}}
""")
    return main


def _nginx_test(main: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NGINX, "-t", "-p", str(main.parent), "-c", str(main)],
                          capture_output=True, text=True, timeout=30)


def _cluster_conf_as_served() -> str:
    """The default.conf the relay pod mounts: straight from the ConfigMap object."""
    configmap = next(o for o in app_objects(DEFAULT, ClusterSettings()) if o["kind"] == "ConfigMap")
    return configmap["data"]["default.conf"]


def _loopback_twin(conf: str) -> str:
    swapped = conf.replace(DEFAULT.diffproxy_host, "127.0.0.1")
    assert swapped != conf
    assert swapped == render_relay_conf(DEFAULT.ports.app, f"127.0.0.1:{DEFAULT.ports.proxy}")
    return swapped


def test_configmap_text_is_the_rendered_relay_conf():
    assert _cluster_conf_as_served() == relay_conf(DEFAULT)


def test_cluster_relay_conf_passes_nginx_t(tmp_path):
    result = _nginx_test(_main_conf(tmp_path, _loopback_twin(_cluster_conf_as_served())))
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_nginx_t_rejects_a_broken_conf(tmp_path):
    # Control: the check above would notice a broken config.
    broken = _loopback_twin(_cluster_conf_as_served()).replace("proxy_http_version 1.1;",
                                                                "proxy_http_version 1.1")
    result = _nginx_test(_main_conf(tmp_path, broken))
    assert result.returncode != 0


def test_cluster_host_is_why_the_swap_is_needed(tmp_path):
    result = _nginx_test(_main_conf(tmp_path, _cluster_conf_as_served()))
    assert result.returncode != 0
    assert "host not found" in result.stderr


# The relay at work: HTTP/1.1 upstream (Envoy answers HTTP/1.0 with 426), path and query kept.


class _Upstream(BaseHTTPRequestHandler):
    seen: list[dict]

    def do_GET(self):
        self.seen.append({"version": self.request_version, "path": self.path,
                          "host": self.headers.get("Host"), "x": self.headers.get("X-Demo")})
        body = b"relayed"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    outcome = ready.poll(lambda: ready.accepts(port, timeout=0.2), timeout,
                         died=lambda: proc.poll() is not None)
    if outcome == "died":
        raise RuntimeError(f"nginx exited: {proc.stderr.read()}")
    if outcome == "timeout":
        raise TimeoutError(f"nginx did not listen on {port}")


@pytest.fixture
def relay(tmp_path):
    seen: list[dict] = []
    handler = type("Handler", (_Upstream,), {"seen": seen})
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    conf = render_relay_conf(port, f"127.0.0.1:{upstream.server_address[1]}",
                             listen_address="127.0.0.1")
    main = _main_conf(tmp_path, conf, daemon=False)
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(main)],
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for_port(port, proc)
        yield port, seen
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        proc.stderr.close()
        upstream.shutdown()
        upstream.server_close()


def test_relay_forwards_http11_with_path_and_query(relay):
    port, seen = relay
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/anything/1?a=b", headers={"Host": "mirrorservice-sample:44134",
                                                    "X-Demo": "kept"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"relayed")
    conn.close()
    hit, = seen
    assert hit["version"] == "HTTP/1.1"
    assert hit["path"] == "/anything/1?a=b"
    assert hit["x"] == "kept"
    # No Host override: nginx sends the upstream's own name, the one Envoy routes by.
    assert hit["host"].startswith("127.0.0.1:")


@pytest.mark.parametrize("raw", [
    "/anything/a%2Fb//c/../d",           # encoded slash, double slash, dot segment
    "/anything/%7Euser/./x?q=a%20b&q=2",  # encoded unreserved, single dot, query
    "/anything//",
])
def test_relay_forwards_the_raw_path_unchanged(relay, raw):
    # v1 answers the request line as sent; the diff proxy must see the same one.
    port, seen = relay
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.putrequest("GET", raw, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", "mirrorservice-sample:44134")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 200
    response.read()
    conn.close()
    hit, = seen
    assert hit["path"] == raw
