"""The proxy as a process, between real httpbin/candidate servers, checked through its API."""

from __future__ import annotations

import gzip
import json
import os
import time
import uuid

import httpx
import pytest

from tests.support import diffapi, procs
from tests.support.diffapi import enc, get_json, metric, stats

from .conftest import start_proxy

JSON_EP = "GET /json"
AUTHOR = "body.slideshow.author"
REQUEST_ID = "X-Diffproxy-Request-Id"


def _get(client: httpx.Client, proxy, path: str, n: int = 1, **kwargs) -> list[httpx.Response]:
    return [client.get(proxy.proxy_url + path, **kwargs) for _ in range(n)]


def test_counts_noise_and_signal(proxy, client):
    for r in _get(client, proxy, "/json", 4):
        assert r.status_code == 200
        assert r.json()["slideshow"]["author"] == "Yours Truly"  # the primary's answer
    _get(client, proxy, "/uuid", 4)
    _get(client, proxy, "/headers", 2)
    diffapi.wait_idle(proxy.admin_url)

    endpoints = get_json(proxy.api_url, "endpoints")
    brief = {name: (e["total"], e["differences"], e["verdict"]) for name, e in endpoints.items()}
    assert brief[JSON_EP] == (4, 4, "signal")
    assert brief["GET /uuid"] == (4, 4, "noise")
    assert brief["GET /headers"] == (2, 0, "same")
    assert endpoints[JSON_EP]["failures"] == {"primary": 0, "secondary": 0, "candidate": 0}

    # Diffy's defaults: stats without parameters lists only fields above the thresholds;
    # include_weights adds Diffy's weight (fields differing alongside, summed per request)
    raw = get_json(proxy.api_url, f"endpoints/{diffapi.enc('GET /uuid')}/stats")
    assert raw["fields"] == {} and raw["endpoint"]["verdict"] == "noise"
    weighted = get_json(proxy.api_url, f"endpoints/{diffapi.enc(JSON_EP)}/stats?include_weights=true")
    differing = [f for f in stats(proxy.api_url, JSON_EP)["fields"].values() if f["differences"]]
    assert all(f["differences"] == 4 for f in differing)  # the same fields on every request
    assert weighted["fields"][AUTHOR]["weight"] == 4 * len(differing)
    assert "weight" not in stats(proxy.api_url, JSON_EP)["fields"][AUTHOR]
    assert endpoints[JSON_EP]["latency_verdict"] == "insufficient"  # 4 < -latency.minSamples

    author = stats(proxy.api_url, JSON_EP)["fields"][AUTHOR]
    assert (author["differences"], author["noise"], author["signal"]) == (4, 0, True)
    assert set(stats(proxy.api_url, JSON_EP, exclude_noise=True)["fields"]) == {AUTHOR}

    uuid_field = stats(proxy.api_url, "GET /uuid")["fields"]["body.uuid"]
    assert (uuid_field["differences"], uuid_field["noise"], uuid_field["signal"]) == (4, 4, False)
    assert stats(proxy.api_url, "GET /uuid", exclude_noise=True)["fields"] == {}
    assert "body.headers.Host" not in stats(proxy.api_url, "GET /headers")["fields"]

    overview = get_json(proxy.api_url, "overview")
    assert overview[JSON_EP]["signal"] is True
    assert overview["GET /uuid"]["signal"] is False
    assert overview[JSON_EP]["fields"][AUTHOR]["signal"] is True


def test_results_with_percent_encoded_names(proxy, client):
    ids = {r.headers[REQUEST_ID] for r in _get(client, proxy, "/json", 2)}
    diffapi.wait_idle(proxy.admin_url)

    listed = diffapi.results(proxy.api_url, JSON_EP, AUTHOR)
    assert (listed["endpoint"], listed["path"]) == (JSON_EP, AUTHOR)
    assert {r["id"] for r in listed["requests"]} == ids
    first = listed["requests"][0]
    assert first["differences"][AUTHOR] == {"type": "changed", "left": "Yours Truly",
                                            "right": "Yours Truly, v2"}
    assert first["left"]["body"]["slideshow"]["author"] == "Yours Truly"
    assert first["right"]["body"]["slideshow"]["author"] == "Yours Truly, v2"
    assert first["secondary"]["body"]["slideshow"]["author"] == "Yours Truly"
    assert first["request"]["method"] == "GET" and first["request"]["uri"] == "/json"

    brief = diffapi.results(proxy.api_url, JSON_EP, AUTHOR, include_request=False)["requests"][0]
    assert "request" not in brief and "left" not in brief and AUTHOR in brief["differences"]

    one = get_json(proxy.api_url, f"endpoints/{enc(JSON_EP)}/fields/{enc(AUTHOR)}/results/0")
    assert one["id"] == first["id"] and one["right"] == first["right"]
    by_id = get_json(proxy.api_url, f"requests/{first['id']}")
    assert by_id["id"] == first["id"] and by_id["request"]["uri"] == "/json"

    # %2F inside the endpoint segment, and a client that did not encode the slash at all
    for raw in ("GET%20%2Fjson", "GET%20/json"):
        status, headers, body = diffapi.fetch(f"{proxy.api_url}/api/1/endpoints/{raw}/stats")
        assert status == 200, body
        assert json.loads(body)["endpoint"]["total"] == 2


@pytest.mark.parametrize("path, status", [
    ("endpoints/GET%20%2Fnope/stats", 404),
    (f"endpoints/{enc(JSON_EP)}/fields/body.nope/results", 404),
    ("requests/does-not-exist", 404),
    ("no/such/thing", 404),
])
def test_api_errors_are_json(proxy, path, status):
    got, headers, body = diffapi.fetch(f"{proxy.api_url}/api/1/{path}")
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert headers["x-content-type-options"] == "nosniff"
    assert "error" in json.loads(body)


def test_api_bad_index_and_method(proxy, client):
    _get(client, proxy, "/json")
    diffapi.wait_idle(proxy.admin_url)
    base = f"{proxy.api_url}/api/1/endpoints/{enc(JSON_EP)}/fields/{enc(AUTHOR)}/results"
    assert diffapi.fetch(base + "/x")[0] == 400
    assert diffapi.fetch(base + "/5")[0] == 404
    r = client.delete(f"{proxy.api_url}/api/1/endpoints")
    assert r.status_code == 405 and "error" in r.json() and "GET" in r.headers["allow"]
    for path in ("endpoints", "overview", "info", f"endpoints/{enc(JSON_EP)}/stats"):
        status, headers, _ = diffapi.fetch(f"{proxy.api_url}/api/1/{path}")
        assert status == 200
        assert headers["content-type"].startswith("application/json")
        assert headers["x-content-type-options"] == "nosniff"


def test_endpoint_templating(proxy, client):
    _get(client, proxy, "/anything/123")
    _get(client, proxy, "/anything/456")
    diffapi.wait_idle(proxy.admin_url)
    endpoints = get_json(proxy.api_url, "endpoints")
    assert endpoints["GET /anything/:id"]["total"] == 2
    assert not [name for name in endpoints if "123" in name or "456" in name]


# An allow-list: everything but GET/HEAD/OPTIONS/TRACE, WebDAV and cache methods included,
# CalDAV, and binding methods most proxies never heard of.
BLOCKED = ("POST", "PUT", "PATCH", "DELETE", "MKCOL", "PURGE", "PROPPATCH", "PROPFIND", "MOVE",
           "COPY", "LOCK", "UNLOCK", "LINK", "UNLINK", "REPORT", "SEARCH", "MKCALENDAR", "BIND")


def test_blocked_side_effects(proxy, client):
    before = diffapi.wait_idle(proxy.admin_url)
    for method in BLOCKED:
        r = client.request(method, proxy.proxy_url + "/anything/side-effect", content=b'{"a": 1}',
                           headers={"Content-Type": "application/json"})
        assert r.status_code == 403, method
        assert "-allowHttpSideEffects" in r.json()["error"] and r.json()["method"] == method
    after = diffapi.wait_idle(proxy.admin_url)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert metric(after, "diffproxy_blocked_side_effects_total", method=method) == \
            metric(before, "diffproxy_blocked_side_effects_total", method=method) + 1
    others = len(BLOCKED) - 4  # one bounded label for every unlisted method
    assert metric(after, "diffproxy_blocked_side_effects_total", method="OTHER") == \
        metric(before, "diffproxy_blocked_side_effects_total", method="OTHER") + others
    for target in ("primary", "secondary", "candidate"):  # nothing was forwarded
        assert metric(after, "diffproxy_target_requests_total", target=target) == \
            metric(before, "diffproxy_target_requests_total", target=target)
    assert metric(after, "diffproxy_comparisons_queued_total") == \
        metric(before, "diffproxy_comparisons_queued_total")
    assert get_json(proxy.api_url, "endpoints") == {}


def test_fan_out_is_concurrent(proxy, client):
    # Each target sleeps 3 s; one after the other that would be 9 s. The bound leaves 4 s
    # over the ideal for a loaded machine (a timing check, so the margin is wide).
    started = time.monotonic()
    r = client.get(proxy.proxy_url + "/delay/3", timeout=30)
    elapsed = time.monotonic() - started
    assert r.status_code == 200
    assert elapsed < 7.0, f"the three 3 s calls did not overlap ({elapsed:.2f}s)"


def test_istio_host_forms(proxy, client, backends):
    hosts = ("httpbin", "httpbin-shadow", "httpbin-shadow:8000", "httpbin:8000")
    for host in hosts:
        r = client.get(proxy.proxy_url + "/headers", headers={"Host": host})
        assert r.status_code == 200
        # by default each target gets its own host, whatever the caller used
        assert r.json()["headers"]["Host"] == backends.primary.address
        assert client.get(proxy.proxy_url + "/uuid", headers={"Host": host}).status_code == 200
    diffapi.wait_idle(proxy.admin_url)
    endpoints = get_json(proxy.api_url, "endpoints")
    assert endpoints["GET /headers"]["total"] == endpoints["GET /uuid"]["total"] == len(hosts)
    recorded = diffapi.results(proxy.api_url, "GET /uuid", "body.uuid")["requests"]
    seen = {r["request"]["headers"]["host"] for r in recorded}
    assert seen == {"httpbin", "httpbin:8000"}  # -shadow stripped in what is recorded


def test_gzip_passes_through_unchanged(proxy, client):
    with client.stream("GET", proxy.proxy_url + "/gzip",
                       headers={"Accept-Encoding": "gzip"}) as r:
        raw = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["gzipped"] is True


def test_metrics_and_health(proxy, client):
    _get(client, proxy, "/json")
    m = diffapi.wait_idle(proxy.admin_url)
    for name in ("diffproxy_requests_total", "diffproxy_differences_total",
                 "diffproxy_noise_total", "diffproxy_comparisons_dropped_total",
                 "diffproxy_comparisons_completed_total", "diffproxy_blocked_side_effects_total",
                 "diffproxy_target_latency_seconds_bucket", "diffproxy_target_up"):
        assert any(key[0] == name for key in m), name
    status, headers, body = diffapi.fetch(proxy.admin_url + "/metrics")
    assert headers["content-type"].startswith("text/plain")
    lines = body.decode().splitlines()
    buckets = [float(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith('diffproxy_target_latency_seconds_bucket{target="primary",endpoint="GET /json"')]
    assert buckets == sorted(buckets) and buckets[-1] >= 1
    count = [line for line in lines
             if line.startswith('diffproxy_target_latency_seconds_count{target="primary",endpoint="GET /json"')]
    assert float(count[0].rsplit(" ", 1)[1]) == buckets[-1]
    assert diffapi.fetch(proxy.admin_url + "/healthz")[0] == 200
    assert json.loads(diffapi.fetch(proxy.admin_url + "/readyz")[2]) == {"status": "ready"}
    info = get_json(proxy.api_url, "info")
    assert info["name"] == "httpbin" and info["protocol"] == "http"
    assert all(t["healthy"] for t in info["targets"].values())


# Proxies with their own flags -----------------------------------------------------------------


def test_down_candidate_is_recorded_and_proxy_keeps_serving(backends, tmp_path, client):
    closed = f"127.0.0.1:{procs.free_port()}"
    proxy = start_proxy(backends, tmp_path / "down.sqlite", candidate=closed, log_dir=tmp_path)
    try:
        for r in _get(client, proxy, "/json", 2):
            assert r.status_code == 200 and r.json()["slideshow"]["author"] == "Yours Truly"
        m = diffapi.wait_idle(proxy.admin_url)
        error = stats(proxy.api_url, JSON_EP)["fields"]["error"]
        assert (error["differences"], error["noise"]) == (2, 0)
        example = diffapi.results(proxy.api_url, JSON_EP, "error")["requests"][0]
        assert example["differences"]["error"] == {"type": "error", "left": None, "right": "refused"}
        info = get_json(proxy.api_url, "info")
        assert info["targets"]["candidate"]["healthy"] is False
        assert "refused" in info["targets"]["candidate"]["last_error"]
        assert info["targets"]["primary"]["healthy"] is True
        assert metric(m, "diffproxy_target_errors_total", target="candidate", kind="refused") == 2
        assert metric(m, "diffproxy_target_up", target="candidate") == 0
        assert diffapi.fetch(proxy.admin_url + "/readyz")[0] == 200
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def lenient_proxy(backends, tmp_path_factory):
    """Side effects allowed, the caller's Host forwarded, a small request limit, and a
    candidate deployed under another base path (`/anything`): a real server whose answers
    differ in status from the primary's (`/status/418` -> 418 there, 200 here)."""
    tmp = tmp_path_factory.mktemp("lenient")
    proxy = start_proxy(backends, tmp / "lenient.sqlite", log_dir=tmp,
                        candidate=f"{backends.candidate.url}/anything",
                        extra=["-allowHttpSideEffects", "-forward.host=caller",
                               "-maxRequestSize=1KB"])
    yield proxy
    proxy.stop()


def test_redaction_in_api_and_file(lenient_proxy, client):
    # The candidate under /anything answers every path differently from the primary, so
    # each request is kept as an example, and both sides echo the secret headers back.
    proxy = lenient_proxy
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {secret}", "Cookie": f"session={secret}"}
    for path in (f"/headers?access_token={secret}", "/cookies"):
        assert client.get(proxy.proxy_url + path, headers=headers).status_code == 200
    diffapi.wait_idle(proxy.admin_url)

    answers = [get_json(proxy.api_url, p) for p in ("endpoints", "overview", "info")]
    result_ids = []
    for endpoint in answers[0]:
        fields = stats(proxy.api_url, endpoint)["fields"]
        answers.append(fields)
        for path in fields:
            listed = diffapi.results(proxy.api_url, endpoint, path)
            answers.append(listed)
            result_ids += [r["id"] for r in listed["requests"]]
    answers += [get_json(proxy.api_url, f"requests/{i}") for i in result_ids]
    text = json.dumps(answers)
    assert len(set(result_ids)) == 2, "examples missing: the checks below would prove little"
    assert secret not in text
    docs = [get_json(proxy.api_url, f"requests/{i}") for i in set(result_ids)]
    echoed = next(d for d in docs if d["request"]["uri"].startswith("/headers"))
    assert echoed["request"]["headers"]["authorization"] == "<redacted>"
    assert echoed["request"]["headers"]["cookie"] == "<redacted>"
    assert echoed["request"]["uri"] == "/headers?access_token=<redacted>"
    assert echoed["primary"]["body"]["headers"]["Authorization"] == "<redacted>"

    store = proxy.flag("store.path")
    blob = b"".join(open(p, "rb").read() for p in (store, store + "-wal") if os.path.exists(p))
    assert result_ids[0].encode() in blob  # the examples are in the file...
    assert secret.encode() not in blob     # ...without the secret


def test_status_change_is_reported(lenient_proxy, client):
    for r in _get(client, lenient_proxy, "/status/418", 2):
        assert r.status_code == 418  # the primary's
    diffapi.wait_idle(lenient_proxy.admin_url)
    status = stats(lenient_proxy.api_url, "GET /status/:id")["fields"]["status"]
    assert (status["differences"], status["noise"], status["signal"]) == (2, 0, True)
    example = diffapi.results(lenient_proxy.api_url, "GET /status/:id", "status")["requests"][0]
    assert example["differences"]["status"] == {"type": "changed", "left": 418, "right": 200}


def test_side_effects_forwarded_when_allowed(lenient_proxy, client):
    r = client.post(lenient_proxy.proxy_url + "/post", json={"order": 42})
    assert r.status_code == 200 and r.json()["json"] == {"order": 42}
    diffapi.wait_idle(lenient_proxy.admin_url)
    assert get_json(lenient_proxy.api_url, "endpoints")["POST /post"]["total"] == 1

    too_big = client.post(lenient_proxy.proxy_url + "/post", content=b"x" * 2048)
    assert too_big.status_code == 413 and "maxRequestSize" in too_big.json()["error"]


def test_caller_host_forwarded_without_shadow(lenient_proxy, client):
    for host in ("httpbin-shadow:8000", "httpbin:8000"):
        r = client.get(lenient_proxy.proxy_url + "/headers", headers={"Host": host})
        assert r.json()["headers"]["Host"] == "httpbin:8000"


def test_results_survive_stop_and_kill(backends, tmp_path, client):
    store = tmp_path / "durable.sqlite"
    proxy = start_proxy(backends, store, log_dir=tmp_path)
    try:
        _get(client, proxy, "/json", 3)
        _get(client, proxy, "/uuid", 2)
        diffapi.wait_idle(proxy.admin_url)
        before = get_json(proxy.api_url, "endpoints")
        before_stats = stats(proxy.api_url, JSON_EP)
    finally:
        assert proxy.stop() == 0

    proxy = start_proxy(backends, store, log_dir=tmp_path)
    try:
        assert get_json(proxy.api_url, "endpoints") == before
        assert stats(proxy.api_url, JSON_EP) == before_stats
        assert len(diffapi.results(proxy.api_url, JSON_EP, AUTHOR)["requests"]) == 3
        _get(client, proxy, "/json")
        diffapi.wait_idle(proxy.admin_url)
        time.sleep(1.0)  # the documented durability window: at most the last second
    finally:
        proxy.kill()

    proxy = start_proxy(backends, store, log_dir=tmp_path)
    try:
        after = get_json(proxy.api_url, "endpoints")
        assert diffapi.counts(after)[JSON_EP] == {"total": 4, "differences": 4}
        assert after["GET /uuid"] == before["GET /uuid"]
    finally:
        proxy.stop()


def test_real_httpbin_brotli_streamed_and_cache_validators(proxy, client):
    """httpbin's /brotli (brotli-encoded JSON) and /stream/n (one JSON object per line
    under `application/json`) are compared field by field and record by record: the Host
    each target saw differs (noise), nothing is compared by hash."""
    for path in ("/brotli", "/stream/3", "/cache"):
        assert all(r.status_code == 200 for r in _get(client, proxy, path, 2))
    diffapi.wait_idle(proxy.admin_url)
    entries = get_json(proxy.api_url, "endpoints")
    # /cache sends a new ETag and Last-Modified each time with the same body: validators
    # alone are where a file lives, not what it says (compared when the body differs)
    assert (entries["GET /cache"]["differences"], entries["GET /cache"]["verdict"]) == (0, "same")
    # decoded, the bodies differ only in body.headers.Host, which the demo ignores (by
    # hash of the compressed bytes they differed)
    assert (entries["GET /brotli"]["differences"], entries["GET /brotli"]["verdict"]) == (0, "same")
    streamed = stats(proxy.api_url, "GET /stream/:id")["fields"]
    assert {p.split(".", 1)[1] for p in streamed} == {"url", "headers.Host"}, streamed
    assert {p.split(".", 1)[0] for p in streamed} == {"body[0]", "body[1]", "body[2]"}
    assert entries["GET /stream/:id"]["verdict"] == "noise"
