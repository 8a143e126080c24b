"""Unprivileged nginx instances: the fixed-body backends and the `mirror` fan-out baseline."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.bodies import nginx_literal
from bench.procs import BenchError, running, wait_for_port

NGINX = "/usr/sbin/nginx"
# Debian's libnginx-mod-http-echo: `echo_sleep` parks the request on a timer inside the
# event loop, so one worker holds thousands of sleeping requests at once.
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")


@dataclass(frozen=True)
class Backend:
    name: str
    port: int
    body: str = ""
    delay_ms: int = 0   # 0: answer at once
    root: Path | None = None  # serve files from here instead of `body`


def echo_module_available() -> bool:
    return ECHO_MODULE.exists()


def _main_block(prefix: Path, workers: int, modules: str = "") -> str:
    # Every path the binary would default to under /var or /run is redirected into prefix,
    # so nginx runs as an ordinary user next to other instances.
    return f"""{modules}daemon off;
master_process on;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
    # wrk keeps its connections for the whole run; the default of 1000 requests would make
    # every connection reconnect mid-measurement.
    keepalive_requests 10000000;
    keepalive_timeout 75s;
"""


def render_backends(prefix: Path, backends: list[Backend], workers: int) -> str:
    slow = any(b.delay_ms for b in backends)
    if slow and not echo_module_available():
        raise BenchError(f"{ECHO_MODULE} is missing; delayed backends go to bench.sleepserver instead")
    modules = f"load_module {ECHO_MODULE};\n" if slow else ""
    servers = []
    for b in backends:
        if b.root is not None:
            handler = f"default_type application/json;\n            root {b.root};"
        elif b.delay_ms:
            handler = (f"default_type application/json;\n"
                       f"            echo_sleep {b.delay_ms / 1000:.3f};\n"
                       f"            echo -n {nginx_literal(b.body)};")
        else:
            handler = f"default_type application/json;\n            return 200 {nginx_literal(b.body)};"
        servers.append(f"""    server {{
        listen 127.0.0.1:{b.port} reuseport backlog=4096;
        location / {{
            {handler}
        }}
    }}  # {b.name}
""")
    return _main_block(prefix, workers, modules) + "".join(servers) + "}\n"


def render_mirror(prefix: Path, listen: int, primary: int, secondary: int, candidate: int,
                  workers: int) -> str:
    """nginx doing the diff proxy's fan-out without the comparison: the C baseline."""
    upstreams = "".join(
        f"    upstream {name} {{ server 127.0.0.1:{port}; keepalive 256; }}\n"
        for name, port in (("primary", primary), ("secondary", secondary), ("candidate", candidate)))
    keep = "proxy_http_version 1.1;\n            proxy_set_header Connection \"\";"
    return _main_block(prefix, workers) + upstreams + f"""    server {{
        listen 127.0.0.1:{listen} reuseport backlog=4096;
        location / {{
            mirror /_mirror_secondary;
            mirror /_mirror_candidate;
            proxy_pass http://primary;
            {keep}
        }}
        location = /_mirror_secondary {{
            internal;
            proxy_pass http://secondary$request_uri;
            {keep}
        }}
        location = /_mirror_candidate {{
            internal;
            proxy_pass http://candidate$request_uri;
            {keep}
        }}
    }}
}}
"""


@contextlib.contextmanager
def nginx(prefix: Path, conf: str, ports: list[int]) -> Iterator[subprocess.Popen]:
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    log = prefix / "stderr.log"
    check = subprocess.run([NGINX, "-t", "-q", "-p", str(prefix), "-c", str(conf_path),
                            "-e", str(prefix / "error.log")], capture_output=True, text=True)
    if check.returncode != 0:
        raise BenchError(f"nginx rejected {conf_path}: {check.stderr.strip()}")
    with running([NGINX, "-p", str(prefix), "-c", str(conf_path), "-e", str(prefix / "error.log")],
                 log) as proc:
        for port in ports:
            wait_for_port(port, proc, timeout=10, log=prefix / "error.log")
        yield proc


def version() -> str:
    out = subprocess.run([NGINX, "-v"], capture_output=True, text=True)
    return (out.stderr or out.stdout).strip().removeprefix("nginx version: ").removeprefix("nginx/")
