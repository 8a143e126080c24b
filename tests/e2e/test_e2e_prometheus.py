"""Prometheus watching the demo (issue 14): the local stack's Prometheus sees the mirrored
requests (Envoy's mirror cluster and the diff proxy agree) and the candidate's deliberate
latency change on GET /delay/:id, through the rules rendered from the topology; every
dashboard query returns data; the diff proxy's own latency verdict agrees."""

from __future__ import annotations

import re
import time

import pytest

from candidate.app import LATENCY_ADDED
from localmesh import traffic
from localmesh.prometheus import query
from localmesh.stack import local_scope
from topology import DEFAULT
from topology.monitoring import dashboard_queries

SLOW = "GET /delay/:id"
ROUNDS = DEFAULT.latency.min_samples + 5


@pytest.fixture(scope="module")
def watched(open_mesh, backend_name):
    with open_mesh(prometheus=True) as mesh:
        paths = list(traffic.expand(traffic.DEMO_PATHS, ROUNDS * len(traffic.DEMO_PATHS)))
        _, overview = mesh.fresh_run(paths, interval=traffic.DEMO_INTERVAL)
        assert sum(e["total"] for e in overview.values()) == len(paths)
        yield mesh, len(paths)


def _prometheus(mesh) -> str:
    url = mesh.mesh.endpoints.prometheus_url
    assert url, "the local mesh was asked for a Prometheus"
    return url


def _eventually(read, done, timeout: float = 90.0):
    """Prometheus scrapes every second and evaluates rules every second: poll, bounded."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(1.0)
        value = read()
    return value


def _scalar(url: str, promql: str) -> float | None:
    result = query(url, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_sees_every_mirrored_copy_on_both_sides(watched):
    mesh, sent = watched
    url = _prometheus(mesh)
    scope = local_scope(DEFAULT)
    sel = f'namespace="{scope.namespace}",app="{scope.app}"'
    cluster = next(iter(mesh.envoy_mirror_counters()))  # Envoy's name of the mirror cluster
    # Envoy's Prometheus output keeps the name up to its first dot in envoy_cluster_name.
    name = re.escape(cluster.split(".", 1)[0]).replace("\\", "\\\\")
    # Envoy counts each request also as external (or internal): the plain counter alone.
    envoy = (f'sum({{__name__=~"envoy_cluster_.*upstream_rq_completed",'
             f'__name__!~".*_(external|internal)_upstream_rq_completed",'
             f'envoy_cluster_name=~"{name}.*"}})')
    proxy = f"sum(diffproxy_requests_total{{{sel}}})"
    compared = f"sum(diffproxy_comparisons_completed_total{{{sel}}})"
    seen = _eventually(lambda: (_scalar(url, envoy), _scalar(url, proxy), _scalar(url, compared)),
                       lambda v: v[0] is not None and v[0] >= sent and v[1] == v[0] == v[2])
    assert seen[0] is not None and seen[0] >= sent, f"Envoy's mirror counter in Prometheus: {seen}"
    assert seen[1] == seen[0] == seen[2], f"Envoy sent / proxy received / compared: {seen}"


def test_prometheus_shows_the_candidates_latency_change_and_fires_the_alert(watched):
    mesh, _ = watched
    url = _prometheus(mesh)
    scope = local_scope(DEFAULT)
    sel = f'namespace="{scope.namespace}",app="{scope.app}",endpoint="{SLOW}"'
    p50 = "diffproxy:target_latency_seconds:p50"
    delta = (f'{p50}{{{sel},target="candidate"}} - ignoring(target) '
             f'{p50}{{{sel},target="primary"}}')
    added = _eventually(lambda: _scalar(url, delta), lambda v: v is not None and v >= 0.05)
    # Histogram buckets interpolate; 80 ms added shows as at least 50 ms at the median.
    assert added is not None and added >= 0.05, f"candidate - primary p50 on {SLOW}: {added}"
    assert added >= LATENCY_ADDED * 0.6
    firing = _eventually(
        lambda: query(url, f'ALERTS{{alertname="DiffProxyCandidateSlower",alertstate="firing",'
                           f'endpoint="{SLOW}"}}'),
        lambda result: bool(result))
    assert firing, "DiffProxyCandidateSlower did not fire for the slow endpoint"
    assert {r["metric"]["quantile"] for r in firing} >= {"p50"}


def test_the_diff_proxy_calls_only_the_changed_route_slower(watched):
    mesh, _ = watched
    listed = mesh.api("/api/1/endpoints")
    verdicts = {name: entry["latency_verdict"] for name, entry in listed.items()}
    assert verdicts[SLOW] == "slower"
    assert [n for n, v in verdicts.items() if v == "slower"] == [SLOW], verdicts
    assert all(v != "insufficient" for v in verdicts.values()), verdicts
    slow = mesh.api("/api/1/endpoints/GET%20%2Fdelay%2F%3Aid/latency")
    assert slow["candidate"]["p50_ms"] - slow["primary"]["p50_ms"] >= LATENCY_ADDED * 1000 * 0.8
    report = mesh.report("--fail-on-latency")
    assert report.returncode == 1 and SLOW in report.stderr
    assert "SLOWER" in report.stdout


def test_every_dashboard_query_returns_data(watched):
    mesh, _ = watched
    url = _prometheus(mesh)
    queries = [q for qs in dashboard_queries(local_scope(DEFAULT)).values() for q in qs]
    results = _eventually(lambda: {q: query(url, q) for q in queries},
                          lambda r: all(r.values()), timeout=60.0)
    empty = [q for q, r in results.items() if not r]
    assert not empty, f"dashboard queries without data: {empty}"
