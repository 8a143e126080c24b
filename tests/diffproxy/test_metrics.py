"""The Prometheus text exposition of the proxy's metrics."""

from __future__ import annotations

import pytest

from diffproxy.metrics import Counter, Histogram, Metrics
from tests.support.diffapi import metric, parse_metrics


def test_render_parses_and_has_every_series():
    m = Metrics()
    m.requests.inc(method="GET")
    m.blocked.inc(method="POST")
    m.target_errors.inc(target="candidate", kind="refused")
    m.target_latency.observe(0.02, target="primary", endpoint="GET /json")
    m.target_latency.observe(7.0, target="primary", endpoint="GET /json")
    m.target_latency.observe(60.0, target="primary", endpoint="GET /json")
    m.dropped.inc()
    text = m.render()
    values = parse_metrics(text)
    assert metric(values, "diffproxy_requests_total", method="GET") == 1
    assert metric(values, "diffproxy_blocked_side_effects_total", method="POST") == 1
    assert metric(values, "diffproxy_target_errors_total", target="candidate", kind="refused") == 1
    assert metric(values, "diffproxy_comparisons_dropped_total") == 1
    series = {"target": "primary", "endpoint": "GET /json"}
    assert metric(values, "diffproxy_target_latency_seconds_bucket", **series, le="0.025") == 1
    assert metric(values, "diffproxy_target_latency_seconds_bucket", **series, le="10") == 2
    assert metric(values, "diffproxy_target_latency_seconds_bucket", **series, le="+Inf") == 3
    assert metric(values, "diffproxy_target_latency_seconds_count", **series) == 3
    assert metric(values, "diffproxy_target_latency_seconds_sum", **series) == pytest.approx(67.02)
    assert ("diffproxy_comparisons_queued_total", frozenset()) in values  # 0, but present
    for name in ("diffproxy_requests_total", "diffproxy_target_latency_seconds"):
        assert f"# TYPE {name} " in text and f"# HELP {name} " in text
    assert text.endswith("\n")


def test_label_values_are_escaped():
    c = Counter("x_total", "help", ("path",))
    c.inc(path='a"b\\c\nd')
    assert c.render()[-1] == 'x_total{path="a\\"b\\\\c\\nd"} 1'


def test_misuse_is_refused():
    c = Counter("x_total", "help", ("a",))
    with pytest.raises(ValueError):
        c.inc(-1, a="1")
    with pytest.raises(ValueError):
        c.inc(b="1")
    h = Histogram("h", "help", ())
    h.observe(0.001)
    assert h.count() == 1


def test_unknown_methods_share_one_label():
    assert Metrics.method_label("BREW") == "OTHER"
    assert Metrics.method_label("GET") == "GET"


def test_deltas_move_increments_from_a_worker_to_the_owner_exactly_once():
    worker, owner = Metrics(), Metrics()
    bound = worker.requests.series(method="GET")
    latency = worker.target_latency.series(target="primary", endpoint="GET /get")
    for _ in range(3):
        bound.inc()
    latency.observe(0.002)
    latency.observe(3.0)
    worker.dropped.inc()
    owner.requests.inc(method="GET")  # the owner serves the port too
    owner.add_deltas(worker.take_deltas())
    assert owner.requests.get(method="GET") == 4
    assert owner.dropped.get() == 1
    assert owner.target_latency.count(target="primary", endpoint="GET /get") == 2
    # taken means gone: a second message carries only what happened since
    bound.inc()
    latency.observe(0.002)
    owner.add_deltas(worker.take_deltas())
    assert owner.requests.get(method="GET") == 5
    assert owner.target_latency.count(target="primary", endpoint="GET /get") == 3
    assert owner.dropped.get() == 1
    assert worker.take_deltas() == {"counters": {}, "histograms": {}}


def test_latency_by_endpoint_takes_the_three_targets_and_skips_missing_answers():
    m = Metrics()
    m.observe_latency("GET /delay/:id", (4.0, None, 84.0))
    m.observe_latency("GET /delay/:id", (3.0, 5.0, 83.0))
    values = parse_metrics(m.render())
    count = "diffproxy_target_latency_seconds_count"
    assert metric(values, count, target="primary", endpoint="GET /delay/:id") == 2
    assert metric(values, count, target="secondary", endpoint="GET /delay/:id") == 1
    assert metric(values, "diffproxy_target_latency_seconds_bucket", target="candidate",
                  endpoint="GET /delay/:id", le="0.075") == 0
    assert metric(values, "diffproxy_target_latency_seconds_bucket", target="candidate",
                  endpoint="GET /delay/:id", le="0.1") == 2
    m.clear_latency()
    assert "GET /delay/:id" not in m.render()
