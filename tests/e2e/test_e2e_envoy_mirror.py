"""What the caller's Envoy promises about mirroring: the copy is off the caller's path (a slow
or dead mirror target changes nothing for the caller, on one keep-alive connection), the
caller's x-request-id travels with the copy, and a POST body arrives whole."""

from __future__ import annotations

import json
import time
import uuid

import pytest

REQUESTS = 5
SLOW_SECONDS = 2.0


@pytest.fixture(scope="module")
def mesh(open_mesh):
    with open_mesh(mirror_percentage=100.0) as m:
        yield m


def mirror_sent(mesh) -> tuple[int, int]:
    """Envoy's own count of copies it finished (any outcome), and of those that failed."""
    counters = list(mesh.envoy_mirror_counters().values())
    assert len(counters) == 1, counters
    c = counters[0]
    return c["upstream_rq_completed"], c["upstream_rq_5xx"]


@pytest.mark.parametrize("fault", ["slow", "dead"])
def test_a_slow_or_dead_mirror_target_never_holds_up_or_fails_the_caller(mesh, fault):
    if not hasattr(mesh.mesh, "mirror_target_fault"):
        pytest.skip(f"{mesh.backend}: cannot make the mirror target slow or dead")
    mesh.mirror_target_fault(fault, delay=SLOW_SECONDS)
    try:
        sent_before, failed_before = mirror_sent(mesh)
        with mesh.caller() as client:
            start = time.monotonic()
            statuses = [client.get("/status/200").status_code for _ in range(REQUESTS)]
            elapsed = time.monotonic() - start
            # One connection throughout: nginx's mirror would hold each next request on it.
            assert client.get("/status/200").status_code == 200
        assert statuses == [200] * REQUESTS
        # A copy waiting on the target would add 2 s per request (10 s); allow a busy machine
        # everything short of two such waits.
        assert elapsed < 2 * SLOW_SECONDS, f"{REQUESTS} requests took {elapsed:.2f}s with a {fault} mirror"
        print(f"{fault} mirror target: {REQUESTS} sequential keep-alive requests in {elapsed:.3f}s")
        sent = mesh.wait_for(lambda: mirror_sent(mesh)[0] - sent_before, lambda n: n >= REQUESTS + 1,
                             timeout=30)
        assert sent == REQUESTS + 1, "Envoy must still have mirrored every request"
        if fault == "dead":
            failed = mesh.wait_for(lambda: mirror_sent(mesh)[1] - failed_before,
                                   lambda n: n >= REQUESTS + 1)
            assert failed == REQUESTS + 1
    finally:
        mesh.mirror_target_fault(None)
    # The relay is back: copies flow again.
    before = mesh.received().v2
    mesh.send("/status/200", 2)
    assert mesh.wait_for(lambda: mesh.received().v2 - before, lambda n: n >= 2) == 2


def test_the_callers_request_id_is_the_trace_id_of_the_record(mesh):
    mesh.fresh_run([])
    ids = [str(uuid.uuid4()) for _ in range(3)]
    with mesh.caller() as client:
        for rid in ids:
            response = client.get("/json", headers={"x-request-id": rid})
            assert response.status_code == 200
        # v1 saw the same id (httpbin shows it only with show_env).
        echoed = client.get("/headers?show_env=1", headers={"x-request-id": ids[0]}).json()["headers"]
    assert echoed["X-Request-Id"] == ids[0]
    mesh.wait_totals(4)
    records = mesh.results("GET /json", "body.slideshow.author")
    assert sorted(r["trace_id"] for r in records) == sorted(ids)
    for record in records:
        assert record["request"]["headers"]["x-request-id"] == record["trace_id"]


@pytest.fixture(scope="module")
def writable(open_mesh):
    # Side effects on; body.url not ignored, so the targets' differing URLs keep an example of
    # every POST (only differing fields keep examples).
    with open_mesh(mirror_percentage=100.0, allow_http_side_effects=True, ignore_fields=()) as m:
        yield m


def test_a_post_body_reaches_the_diff_proxy_and_its_targets_intact(writable):
    writable.fresh_run([])
    document = {"order": 17, "items": ["a", "b" * 2000], "note": "ünïcødé ✓", "nested": {"x": [1.5, None, True]}}
    raw = json.dumps(document).encode()
    rid = str(uuid.uuid4())
    with writable.caller() as client:
        response = client.post("/anything/orders", content=raw,
                               headers={"content-type": "application/json", "x-request-id": rid})
    assert response.status_code == 200
    assert response.json()["json"] == document  # v1 got it whole
    overview = writable.wait_totals(1)
    endpoint, = overview
    assert endpoint.startswith("POST /anything/")
    record, = [r for r in writable.results(endpoint, "body.url") if r["trace_id"] == rid]
    assert record["request"]["body"] == document
    for target in ("primary", "secondary", "candidate"):
        echoed = record[target]["body"]
        assert echoed["json"] == document, target
        assert echoed["data"] == raw.decode(), target


def test_relay_off_mirrors_straight_to_the_diff_proxy(open_mesh):
    with open_mesh(mirror_percentage=100.0, relay=False) as direct:
        assert direct.relay_hosts() is None  # no v2 at all
        replies, overview = direct.fresh_run(["/json"] * 3 + ["/uuid"] * 3)
        assert [r.status for r in replies] == [200] * 6
        assert {n: e["total"] for n, e in overview.items()} == {"GET /json": 3, "GET /uuid": 3}
        assert overview["GET /json"]["signal"] is True and overview["GET /uuid"]["signal"] is False
        if hasattr(direct.mesh, "envoy_mirror_counters"):
            counters = direct.envoy_mirror_counters()
            assert list(counters) == [f"outbound|{direct.mesh.settings.topology.ports.proxy}||"
                                      f"{direct.mesh.settings.topology.diffproxy_host}"]
