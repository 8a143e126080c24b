"""Bad input from callers: broken request lines, oversized headers and bodies, raw bytes in
paths, binary bodies, and thousands of distinct paths and header names. Each gets a clear
4xx or is forwarded intact; nothing crashes; caps hold and memory stays bounded."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import string
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from diffproxy.endpoints import OVERFLOW_ENDPOINT
from diffproxy.store import OVERFLOW_FIELD
from tests.support import diffapi
from tests.support.diffapi import enc, get_json, metric, stats

from .conftest import start_fault_proxy
from .faultserver import ROLES

MAX_ENDPOINTS = 200
MAX_FIELDS = 50
DISTINCT_PATHS = 5000
DISTINCT_HEADERS = 2000
RSS_BOUND_MB = 50


@pytest.fixture(scope="module")
def bad_proxy(faults, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    proxy = start_fault_proxy(faults, tmp / "bad.sqlite", log_dir=tmp, extra=[
        "-allowHttpSideEffects", "-maxRequestSize=64KB", "-maxHeaderSize=16KB",
        f"-max.endpoints={MAX_ENDPOINTS}", f"-max.fields={MAX_FIELDS}"])
    yield proxy
    assert proxy.alive(), proxy.log()
    proxy.stop()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=10.0) as c:
        yield c


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection; the first answer (head and Content-Length
    body), or whatever came before the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                head, sep, body = answer.partition(b"\r\n\r\n")
                length = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if sep and length and len(body) >= length[0]:
                    break
        except ConnectionResetError:
            pass
    return answer


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:200]
    return int(answer.split(b" ", 2)[1])


def word(n: int) -> str:
    """A path segment with no digits, so endpoint naming never templates it away."""
    letters = string.ascii_lowercase
    out = ""
    while True:
        n, r = divmod(n, 26)
        out = letters[r] + out
        if n == 0:
            return out


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def dropped(m) -> float:
    return metric(m, "diffproxy_comparisons_dropped_total")


def still_serving(proxy, client) -> None:
    r = client.get(proxy.proxy_url + "/still-ok")
    assert (r.status_code, r.json()) == (200, {"ok": True})
    assert proxy.alive()


HOST = b"Host: x\r\n"
MALFORMED = {
    "garbage line": b"GARBAGE\r\n\r\n",
    "method only": b"GET\r\n\r\n",
    "tls hello on plain port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + os.urandom(64),
    "raw non-utf8 path": b"GET /caf\xe9/x HTTP/1.1\r\n" + HOST + b"\r\n",
    "raw non-utf8 query": b"GET /q?x=\xff\xfe HTTP/1.1\r\n" + HOST + b"\r\n",
    "control char in path": b"GET /a\x01b HTTP/1.1\r\n" + HOST + b"\r\n",
    "header without colon": b"GET / HTTP/1.1\r\n" + HOST + b"Broken header\r\n\r\n",
    "negative content-length": b"POST /echo-body HTTP/1.1\r\n" + HOST + b"Content-Length: -5\r\n\r\n",
    "two content-lengths": b"POST /echo-body HTTP/1.1\r\n" + HOST
                           + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "bad chunk size": b"POST /echo-body HTTP/1.1\r\n" + HOST
                      + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    "header line over -maxHeaderSize": b"GET / HTTP/1.1\r\n" + HOST
                                       + b"X-Big: " + b"a" * (20 * 1024) + b"\r\n\r\n",
    "thousands of headers in one request": b"GET / HTTP/1.1\r\n" + HOST + b"".join(
        b"X-H-%d: v\r\n" % i for i in range(2000)) + b"\r\n",
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_requests_get_a_clear_4xx(bad_proxy, client, data):
    before = diffapi.metrics(bad_proxy.admin_url)
    assert 400 <= status_of(exchange(bad_proxy.port, data)) < 500
    after = diffapi.metrics(bad_proxy.admin_url)
    for role in ROLES:  # refused before anything reached a target
        assert metric(after, "diffproxy_target_requests_total", target=role) == \
            metric(before, "diffproxy_target_requests_total", target=role)
    still_serving(bad_proxy, client)


def test_headers_under_the_limit_pass(bad_proxy, client, faults):
    r = client.get(bad_proxy.proxy_url + "/echo-headers", headers={"X-Big": "b" * (12 * 1024)})
    assert r.status_code == 200 and r.json()["headers"]["X-Big"] == "b" * (12 * 1024)


def test_percent_encoded_bytes_are_forwarded_verbatim(bad_proxy, client, faults):
    target = "/caf%E9/%FF%FE?q=%FF&x=%C3%A9"
    answer = exchange(bad_proxy.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                                      "Connection: close\r\n\r\n".encode())
    assert status_of(answer) == 200
    for role in ROLES:
        assert faults.targets(role)[-1] == target
    diffapi.wait_idle(bad_proxy.admin_url)
    assert "GET /caf%E9/%FF%FE" in get_json(bad_proxy.api_url, "endpoints")


@pytest.mark.parametrize("how", ["declared", "chunked"])
def test_request_body_over_the_limit_gets_413(bad_proxy, client, how):
    before = diffapi.metrics(bad_proxy.admin_url)
    if how == "declared":  # the 413 comes before the client sends a byte of the body
        answer = exchange(bad_proxy.port, b"POST /echo-body HTTP/1.1\r\nHost: x\r\n"
                                          b"Content-Length: 10485760\r\n\r\n")
        assert status_of(answer) == 413
        body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    else:
        chunks = (b"z" * 8192 for _ in range(16))  # 128 KB, no Content-Length
        r = client.post(bad_proxy.proxy_url + "/echo-body", content=chunks)
        assert r.status_code == 413
        body = r.json()
    assert "-maxRequestSize" in body["error"] and body["limit"] == 64 * 1024
    after = diffapi.metrics(bad_proxy.admin_url)
    assert metric(after, "diffproxy_requests_rejected_total", reason="too_large") == \
        metric(before, "diffproxy_requests_rejected_total", reason="too_large") + 1
    still_serving(bad_proxy, client)


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_binary_bodies_are_forwarded_intact(bad_proxy, client, faults, method):
    payload = bytes(range(256)) * 200 + b"\x00\xff" * 7  # every byte value, 51 KB
    r = client.request(method, bad_proxy.proxy_url + "/echo-body", content=payload,
                       headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.content == payload
    digest = hashlib.sha256(payload).hexdigest()
    assert [faults.bodies(role)[-1] for role in ROLES] == [digest] * 3


def test_distinct_paths_and_header_names_stay_capped_and_bounded(bad_proxy, client):
    proxy = bad_proxy
    diffapi.wait_idle(proxy.admin_url)
    client.post(proxy.api_url + "/api/1/clear").raise_for_status()
    pid = proxy.popen.pid
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: client.get(proxy.proxy_url + "/warm-up"), range(300)))
        start = diffapi.wait_idle(proxy.admin_url)
        rss_before = rss_kb(pid)

        # One new header name per request; the candidate changes every echoed value, so each
        # is a new differing field `body.headers.X-H-...`.
        answers = list(pool.map(
            lambda n: client.get(proxy.proxy_url + "/echo-headers",
                                 headers={f"X-H-{word(n)}": "v"}).status_code,
            range(DISTINCT_HEADERS)))
        assert answers == [200] * DISTINCT_HEADERS
        m = diffapi.wait_idle(proxy.admin_url, timeout=60)
        # a comparison the worker could not keep up with is dropped and counted, not lost
        header_drops = dropped(m) - dropped(start)

        answers = list(pool.map(lambda n: client.get(f"{proxy.proxy_url}/p/{word(n)}").status_code,
                                range(DISTINCT_PATHS)))
        assert answers == [200] * DISTINCT_PATHS
        path_drops = dropped(diffapi.wait_idle(proxy.admin_url, timeout=60)) - dropped(m)
        endpoints = get_json(proxy.api_url, "endpoints")
        assert len(endpoints) == MAX_ENDPOINTS + 1  # the cap, plus the overflow name
        distinct = {n: c for n, c in endpoints.items() if n.startswith("GET /p/")}
        assert endpoints[OVERFLOW_ENDPOINT]["total"] + sum(c["total"] for c in distinct.values()) \
            == DISTINCT_PATHS - path_drops
        assert endpoints["GET /warm-up"]["total"] == 300
        rss_after = rss_kb(pid)

    fields = stats(proxy.api_url, "GET /echo-headers")["fields"]
    assert len(fields) == MAX_FIELDS + 1
    registered = [p for p in fields if p.startswith("body.headers.X-H-")]
    assert len(registered) + fields[OVERFLOW_FIELD]["differences"] == DISTINCT_HEADERS - header_drops
    assert header_drops + path_drops < (DISTINCT_HEADERS + DISTINCT_PATHS) // 10
    overflowed = diffapi.results(proxy.api_url, "GET /echo-headers", OVERFLOW_FIELD)["requests"]
    assert overflowed and all(OVERFLOW_FIELD not in r["differences"] for r in overflowed)

    growth_mb = (rss_after - rss_before) / 1024
    print(f"\nproxy VmRSS: {rss_before / 1024:.1f} MB before, {rss_after / 1024:.1f} MB after "
          f"{DISTINCT_PATHS} distinct paths and {DISTINCT_HEADERS} distinct header names "
          f"(+{growth_mb:.1f} MB); comparisons dropped: {header_drops + path_drops}")
    assert growth_mb < RSS_BOUND_MB
    assert get_json(proxy.api_url, f"endpoints/{enc(OVERFLOW_ENDPOINT)}/stats")["endpoint"]["total"] > 0


@pytest.fixture(scope="module")
def deep_proxy(faults, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deep")
    proxy = start_fault_proxy(faults, tmp / "deep.sqlite", log_dir=tmp)
    yield proxy
    proxy.stop()


@pytest.mark.parametrize("levels", [700, 5000])
def test_deep_json_is_counted_and_compared_by_hash_without_tracebacks(deep_proxy, client, levels):
    bad_proxy = deep_proxy
    before = diffapi.wait_idle(bad_proxy.admin_url)
    r = client.get(f"{bad_proxy.proxy_url}/deep/{levels}")
    assert r.status_code == 200 and r.content.startswith(b"[[[")
    after = diffapi.wait_idle(bad_proxy.admin_url)
    grew = {name: metric(after, name) - metric(before, name) for name in (
        "diffproxy_comparisons_completed_total", "diffproxy_comparisons_failed_total")}
    assert grew == {"diffproxy_comparisons_completed_total": 1,
                    "diffproxy_comparisons_failed_total": 0}
    assert (metric(after, "diffproxy_comparisons_bounded_total", reason="depth")
            > metric(before, "diffproxy_comparisons_bounded_total", reason="depth"))
    (endpoint,) = [e for e in get_json(bad_proxy.api_url, "endpoints") if e.startswith("GET /deep/")]
    assert get_json(bad_proxy.api_url, "endpoints")[endpoint]["differences"] >= 1
    example = diffapi.results(bad_proxy.api_url, endpoint, "body.sha256")["requests"][-1]
    assert "deeper than" in example["candidate"]["body"]["note"]
    log = bad_proxy.log(tail=10**9)
    assert "Traceback" not in log and "RecursionError" not in log
