"""Three diff proxies on one PostgreSQL behind one load-balanced address (README "Scaling out").

Local only: real httpbin primary/secondary and candidate under gunicorn, a real PostgreSQL,
three `python -m diffproxy -store.url=...` processes. The totals case puts them behind the
mesh's own balancing: the caller's Envoy sidecar, configured as istiod would from the
release's DestinationRule and VirtualService, mirrors to the diff proxy's Service whose
pods are the three replicas (Istio's LEAST_REQUEST). The kill -9 case sends straight to
the replicas through Debian's nginx balancing round robin (a request whose replica dies
is retried on the next one, as Envoy's retry-on-connect-failure does), so every request
has a caller that sees its answer. On kind the same shape is `diffproxyReplicas=3`
(tests/infra/test_shared_store.py checks those objects); nothing here claims to have run
there.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from diffproxy.client import ApiClient
from localmesh.errors import MeshError
from localmesh.nginx import NginxInstance, find_nginx
from localmesh.sidecar import EnvoyInstance, envoy_config, find_envoy, local_services, mirror_clusters, mirror_counters
from tests.diffproxy.conftest import demo_flags
from tests.support import diffapi, procs
from toolbox.ports import free_port
from topology import DEFAULT
from topology.istio_xds import Endpoint

pytestmark = pytest.mark.e2e
FLUSH = 0.2  # -store.flushInterval: the documented window a kill -9 may lose
REPLICAS = 3


@pytest.fixture(scope="module", autouse=True)
def _local_only(request):
    if request.config.getoption("--backend") == "kind":
        pytest.skip("three diff proxy processes on one PostgreSQL run on the local backend only")


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    logs = tmp_path_factory.mktemp("replica-targets")
    started = [procs.start_httpbin(log_dir=logs, wait=False),
               procs.start_httpbin(log_dir=logs, wait=False),
               procs.start_candidate(log_dir=logs, wait=False)]
    try:
        for proc in started:
            proc.wait_until(proc.url + "/get", timeout=60)
        yield started
    finally:
        for proc in started:
            proc.stop()


class Cluster:
    def __init__(self, replicas: list[procs.DiffProxyProc], balancer: procs.Proc,
                 access_log) -> None:
        self.replicas = replicas
        self.balancer = balancer
        self.access_log = access_log

    @property
    def url(self) -> str:
        return self.balancer.url

    def alive(self) -> list[procs.DiffProxyProc]:
        return [r for r in self.replicas if r.alive()]

    def answered_by(self) -> list[tuple[float, str, int]]:
        """(time, upstream address, status) of every request nginx passed on, from its log."""
        out = []
        for line in self.access_log.read_text().splitlines():
            m = re.search(r"msec=([\d.]+) up=\"([^\"]*)\" ustatus=\"([^\"]*)\"", line)
            if m:
                out.append((float(m.group(1)), m.group(2), m.group(3)))
        return out


@pytest.fixture
def cluster(targets, postgres, tmp_path):
    try:
        nginx = find_nginx()
    except MeshError as exc:
        pytest.fail(str(exc))
    url = postgres.create_database()
    primary, secondary, candidate = targets
    replicas: list[procs.DiffProxyProc] = []
    balancer = None
    try:
        # Started together: the schema is created once, whichever replica comes first.
        ports = [(free_port(), free_port(), free_port()) for _ in range(REPLICAS)]
        for p in ports:
            args = procs.diffproxy_args(primary.address, secondary.address, candidate.address,
                                        None, *p, [*demo_flags(), f"-store.flushInterval={FLUSH * 1000:g}ms"])
            base = procs.spawn("diffproxy", [procs.PYTHON, "-m", "diffproxy", *args], p[0],
                               tmp_path, env={"DIFFPROXY_STORE_URL": url})
            replicas.append(procs.DiffProxyProc(
                name=base.name, popen=base.popen, log_path=base.log_path, port=p[0],
                http_port=p[1], admin_port=p[2], args=args))
        for r in replicas:
            r.wait_until(r.admin_url + "/readyz", timeout=60)
        listen = free_port()
        inst = NginxInstance(name="replica-balancer", prefix=tmp_path / "nginx", binary=nginx)
        upstreams = "\n".join(f"    server 127.0.0.1:{r.port} max_fails=1 fail_timeout=30s;"
                              for r in replicas)
        inst.write(f"""log_format lb 'msec=$msec up="$upstream_addr" ustatus="$upstream_status" $status';
upstream diffproxy {{
{upstreams}
    keepalive 16;
}}
server {{
    listen 127.0.0.1:{listen};
    access_log {inst.prefix / 'lb.log'} lb;
    location = /__lb_ready {{
        return 204;
    }}
    location / {{
        proxy_pass http://diffproxy;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_next_upstream error timeout http_502;
        proxy_next_upstream_tries {REPLICAS};
    }}
}}
""")
        balancer = procs.spawn("nginx", inst.argv(), listen, tmp_path)
        balancer.wait_until(balancer.url + "/__lb_ready", ok=(204,), timeout=30)
        yield Cluster(replicas, balancer, inst.prefix / "lb.log")
    finally:
        if balancer is not None:
            balancer.stop()
        for r in replicas:
            r.stop()


def _endpoints(replica: procs.DiffProxyProc) -> dict:
    return diffapi.get_json(replica.api_url, "endpoints")


def _totals(replica) -> dict[str, int]:
    return {name: e["total"] for name, e in _endpoints(replica).items()}


def _converged(replicas, timeout: float = 60.0) -> list[dict]:
    """Every replica settled, then the same totals on all of them (each re-reads the
    database's totals within about a second; no time limit is asserted on that)."""
    for r in replicas:
        diffapi.wait_idle(r.admin_url, timeout=timeout)
    deadline = time.monotonic() + timeout
    while True:
        views = [_totals(r) for r in replicas]
        if all(v == views[0] for v in views) or time.monotonic() > deadline:
            return views
        time.sleep(0.2)


def _send(url: str, paths: list[str], workers: int = 6) -> list[int]:
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda p: client.get(url + p).status_code, paths))


PATHS = ["/json", "/get?x=1", "/uuid", "/headers", "/status/404"]


@pytest.fixture
def sidecar(cluster, targets, tmp_path):
    """The caller's Envoy: the app's route to the primary, mirrored to the diff proxy's
    Service with the three replicas as its pods. Yields (its URL, its admin URL, the mirror
    cluster's name)."""
    t = DEFAULT.with_(relay=False)  # Istio mirrors straight to the diff proxy's Service
    app, proxy = local_services(t, targets[0].port, None, cluster.replicas[0].port)
    proxy = dataclasses.replace(proxy, endpoints=tuple(
        Endpoint("127.0.0.1", r.port, t.diffproxy_labels()) for r in cluster.replicas))
    listen, admin = free_port(), free_port()
    try:
        envoy = EnvoyInstance("sidecar", tmp_path / "sidecar", find_envoy())
    except MeshError as exc:
        pytest.fail(str(exc))
    config = envoy_config(t, [app, proxy], listen, admin, str(envoy.access_log))
    (mirror,) = mirror_clusters(config)
    envoy.write(config)
    envoy.validate()
    proc = procs.spawn("sidecar", envoy.argv(), listen, tmp_path)
    try:
        proc.wait_until(f"http://127.0.0.1:{admin}/ready", timeout=60)
        yield proc.url, f"http://127.0.0.1:{admin}", mirror
    finally:
        proc.stop()


def test_every_replica_reports_the_same_totals_equal_to_what_was_mirrored(cluster, sidecar):
    url, admin, mirror = sidecar
    statuses = _send(url, [PATHS[i % len(PATHS)] for i in range(300)])
    assert statuses.count(404) == 60 and statuses.count(200) == 240
    # What the sidecar mirrored, by its own counters, once every copy has finished.
    deadline = time.monotonic() + 60
    while (sent := mirror_counters(admin, [mirror])[mirror])["upstream_rq_completed"] < 300:
        assert time.monotonic() < deadline, sent
        time.sleep(0.2)
    mirrored = sent["upstream_rq_total"]
    assert mirrored == 300 and sent["upstream_cx_connect_fail"] == 0
    views = _converged(cluster.replicas)
    assert views[0] == views[1] == views[2]
    assert sum(views[0].values()) == mirrored
    # The mesh spread the copies: each replica took a share, none of them saw everything
    # it reports.
    served = [diffapi.metric(diffapi.metrics(r.admin_url), "diffproxy_requests_total",
                             method="GET") for r in cluster.replicas]
    assert sum(served) == mirrored and all(0 < n < mirrored for n in served)
    # The candidate's /json differs from primary's: signal the gate sees from any replica.
    for r in cluster.replicas:
        stats = diffapi.stats(r.api_url, "GET /json")
        assert stats["endpoint"]["total"] == 60 and stats["endpoint"]["differences"] == 60
    # A clear on one replica clears them all.
    ApiClient(cluster.replicas[0].api_url, timeout=10).clear()
    assert _converged(cluster.replicas) == [{}, {}, {}]


def test_kill_9_of_one_replica_under_load_loses_at_most_its_window(cluster):
    victim = cluster.replicas[1]
    stop = threading.Event()
    statuses: list[int] = []
    killed_at: list[float] = []

    def load() -> None:
        with httpx.Client(timeout=30) as client:
            for i in range(3000):  # bounded; stops earlier when told
                if stop.is_set():
                    return
                statuses.append(client.get(cluster.url + PATHS[i % len(PATHS)]).status_code)

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(load) for _ in range(4)]
        started = time.monotonic()
        # Long enough that the victim has written many windows before it dies.
        while len(statuses) < 400 or time.monotonic() - started < 4.0:
            time.sleep(0.05)
        killed_at.append(time.time())
        victim.kill()
        count_at_kill = len(statuses)
        while len(statuses) < count_at_kill + 400:
            time.sleep(0.05)
        stop.set()
        for f in running:
            f.result()
    # The callers never noticed: every request was answered (retried on a live replica).
    assert set(statuses) <= {200, 404}
    survivors = cluster.alive()
    assert len(survivors) == REPLICAS - 1
    views = _converged(survivors)
    assert views[0] == views[1]
    recorded = sum(views[0].values())
    lost = len(statuses) - recorded
    victim_addr = f"127.0.0.1:{victim.port}"
    answered_by_victim = [t for t, up, st in cluster.answered_by()
                          if up == victim_addr and st in ("200", "404")]
    # At most what the victim answered in its last flush window before the kill (plus a
    # second for its queue and the clocks of two processes), never another replica's.
    window = [t for t in answered_by_victim if t >= killed_at[0] - FLUSH - 1.0]
    print(f"kill -9: {len(statuses)} answered, {recorded} recorded, {lost} lost; the victim "
          f"answered {len(answered_by_victim)}, {len(window)} in its last window")
    assert 0 <= lost <= len(window), (lost, len(window), len(answered_by_victim))
    assert len(answered_by_victim) > len(window)  # it did serve, and most of it is kept
