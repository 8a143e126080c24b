"""Bad input from callers: broken request lines, oversized headers and bodies, raw bytes in
paths, binary bodies, and thousands of distinct paths and header names. Each gets a clear
4xx or is forwarded intact; nothing crashes; caps hold and memory stays bounded."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import string
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from diffproxy.client import ApiClient
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


def exchange(port: int, data: bytes, timeout: float = 30.0) -> bytes:
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


def settled_counts(m) -> tuple[float, float, float]:
    """(queued, dropped, failed) comparisons so far. Every request that reaches the
    comparison queue is either queued or dropped there, never both, never neither."""
    return tuple(metric(m, f"diffproxy_comparisons_{n}_total") for n in ("queued", "dropped", "failed"))


def accounted(before, after, sent: int) -> int:
    """How many of `sent` requests were compared; the rest must be counted as dropped. How
    many drop depends on the machine's load (the queue fills when the worker falls behind),
    so that number is only accounted for, never bounded."""
    queued, dropped, failed = (a - b for a, b in zip(settled_counts(after), settled_counts(before)))
    assert (queued + dropped, failed) == (sent, 0), (queued, dropped, failed)
    # drops happen only at a full queue (-queue.size, 1000 by default): the first 1000 queue
    assert queued >= min(sent, 1000)
    return int(queued)


def still_serving(proxy, client) -> None:
    r = client.get(proxy.proxy_url + "/still-ok")
    assert (r.status_code, r.json()) == (200, {"ok": True})
    assert proxy.alive()


HOST = b"Host: x\r\n"
MALFORMED = {
    "garbage line": b"GARBAGE\r\n\r\n",
    "method only": b"GET\r\n\r\n",
    "HTTP/0.9 request line": b"GET /nine\r\n\r\n",
    "HTTP/0.9 with a query": b"GET /nine?a=1\r\n",
    "unknown version": b"GET / HTTP/1.7\r\n" + HOST + b"\r\n",
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
    diffapi.wait_idle(bad_proxy.admin_url)  # the caller had the primary's answer: the others
    for role in ROLES:                      # may still be on their way
        assert faults.targets(role)[-1] == target
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
    diffapi.wait_idle(bad_proxy.admin_url)
    assert [faults.bodies(role)[-1] for role in ROLES] == [digest] * 3


def test_distinct_paths_and_header_names_stay_capped_and_bounded(bad_proxy, client):
    proxy = bad_proxy
    diffapi.wait_idle(proxy.admin_url)
    ApiClient(proxy.api_url).clear()
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
        m = diffapi.wait_idle(proxy.admin_url, timeout=120)
        header_compared = accounted(start, m, DISTINCT_HEADERS)

        answers = list(pool.map(lambda n: client.get(f"{proxy.proxy_url}/p/{word(n)}").status_code,
                                range(DISTINCT_PATHS)))
        assert answers == [200] * DISTINCT_PATHS
        path_compared = accounted(m, diffapi.wait_idle(proxy.admin_url, timeout=120), DISTINCT_PATHS)
        endpoints = get_json(proxy.api_url, "endpoints")
        assert len(endpoints) == MAX_ENDPOINTS + 1  # the cap, plus the overflow name
        distinct = {n: c for n, c in endpoints.items() if n.startswith("GET /p/")}
        assert endpoints[OVERFLOW_ENDPOINT]["total"] + sum(c["total"] for c in distinct.values()) \
            == path_compared
        assert endpoints["GET /warm-up"]["total"] == 300
        assert endpoints["GET /echo-headers"]["total"] == header_compared
        rss_after = rss_kb(pid)

    fields = stats(proxy.api_url, "GET /echo-headers")["fields"]
    assert len(fields) == MAX_FIELDS + 1
    registered = [p for p in fields if p.startswith("body.headers.X-H-")]
    assert len(registered) + fields[OVERFLOW_FIELD]["differences"] == header_compared
    overflowed = diffapi.results(proxy.api_url, "GET /echo-headers", OVERFLOW_FIELD)["requests"]
    assert overflowed and all(OVERFLOW_FIELD not in r["differences"] for r in overflowed)

    growth_mb = (rss_after - rss_before) / 1024
    print(f"\nproxy VmRSS: {rss_before / 1024:.1f} MB before, {rss_after / 1024:.1f} MB after "
          f"{DISTINCT_PATHS} distinct paths and {DISTINCT_HEADERS} distinct header names "
          f"(+{growth_mb:.1f} MB); comparisons dropped (counted): "
          f"{DISTINCT_HEADERS + DISTINCT_PATHS - header_compared - path_compared}")
    assert growth_mb < RSS_BOUND_MB
    assert get_json(proxy.api_url, f"endpoints/{enc(OVERFLOW_ENDPOINT)}/stats")["endpoint"]["total"] > 0


def read_all(sock: socket.socket) -> bytes:
    """Everything until the proxy closes the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def split_responses(data: bytes) -> list[tuple[bytes, bytes]]:
    """(head, body) of each response in `data`, framed by Content-Length (HEAD: none)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, data[:200]
        lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")]
        n = lengths[0] if lengths and not head.startswith(b"HTTP/1.1 200 OK\r\nX-HEAD") else 0
        out.append((head, rest[:n]))
        data = rest[n:]
    return out


def test_pipelined_requests_then_half_close_are_all_answered_forwarded_and_compared(
        edge_proxy, faults):
    count = 200
    before = diffapi.wait_idle(edge_proxy.admin_url)
    seen = [len(faults.targets(role)) for role in ROLES]
    requests = b"".join(b"GET /pipelined?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i
                        for i in range(count))
    with socket.create_connection(("127.0.0.1", edge_proxy.port), timeout=60) as sock:
        sock.sendall(requests)
        sock.shutdown(socket.SHUT_WR)  # half-close: nothing more to ask, answers still wanted
        answers = split_responses(read_all(sock))
    assert len(answers) == count
    assert all(head.startswith(b"HTTP/1.1 200 ") for head, _ in answers)
    assert [json.loads(body) for _, body in answers] == [{"ok": True}] * count
    after = diffapi.wait_idle(edge_proxy.admin_url, timeout=60)
    for role, n in zip(ROLES, seen):  # forwarded to every target (the primary in order:
        # the caller waits for it; the others may still be busy with one when the next goes)
        got = faults.targets(role)[n:]
        want = [f"/pipelined?n={i}" for i in range(count)]
        assert (got if role == "primary" else sorted(got, key=want.index)) == want
    compared = metric(after, "diffproxy_comparisons_queued_total") - \
        metric(before, "diffproxy_comparisons_queued_total")
    assert compared == count
    endpoints = get_json(edge_proxy.api_url, "endpoints")
    assert endpoints.get("GET /pipelined", {}).get("total") == count, endpoints


def test_response_header_bytes_are_passed_through_as_sent(edge_proxy):
    answer = exchange(edge_proxy.port, b"GET /raw-header-bytes HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer) == 200
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert b"X-Latin1: caf\xe9" in head and b"X-Utf8: caf\xc3\xa9" in head


def test_head_replies_keep_the_content_length(edge_proxy):
    with socket.create_connection(("127.0.0.1", edge_proxy.port), timeout=30) as sock:
        sock.sendall(b"HEAD /head-me HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /head-me HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = read_all(sock)
    # The HEAD's head, then at once (no body in between) the GET's whole answer.
    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    get_body = json.dumps({"ok": True}, sort_keys=True).encode()
    assert b"Content-Length: %d" % len(get_body) in head.split(b"\r\n")
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\n" + get_body)


def test_percent_encoded_newline_in_a_path_is_forwarded_and_counted(edge_proxy, faults):
    answer = exchange(edge_proxy.port, b"GET /line%0Abreak/x%0D%0A HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(answer) == 200
    diffapi.wait_idle(edge_proxy.admin_url)
    for role in ROLES:
        assert faults.targets(role)[-1] == "/line%0Abreak/x%0D%0A"
    counted = {name: c for name, c in get_json(edge_proxy.api_url, "endpoints").items()
               if name.startswith("GET /line")}
    assert sum(c["total"] for c in counted.values()) == 1, counted


def test_expect_continue_over_the_limit_gets_413_without_100_continue(edge_proxy):
    answer = exchange(edge_proxy.port, b"POST /echo-body HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 10485760\r\nExpect: 100-continue\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    assert b"100 Continue" not in answer
    with socket.create_connection(("127.0.0.1", edge_proxy.port), timeout=30) as sock:
        sock.sendall(b"POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        interim = sock.recv(65536)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"  # under the limit: go on
        sock.sendall(b"hello")
        final = read_all(sock)
    assert final.startswith(b"HTTP/1.1 200 ") and final.endswith(b"\r\n\r\nhello")


@pytest.mark.parametrize("traceparent, expected", [
    ("00-" + "ab" * 16 + "-" + "cd" * 8 + "-01", "ab" * 16),
    ("00-" + "a" * 10000 + "-" + "cd" * 8 + "-01", None),  # not a trace id: the request id
    ("00-" + "0" * 32 + "-" + "cd" * 8 + "-01", None),     # all zero is invalid (W3C)
    ("x" * 10000, None),
])
def test_trace_ids_are_validated_and_bounded(edge_proxy, client, traceparent, expected):
    r = client.get(edge_proxy.proxy_url + "/echo-headers", headers={"traceparent": traceparent})
    assert r.status_code == 200
    request_id = r.headers["x-diffproxy-request-id"]
    diffapi.wait_idle(edge_proxy.admin_url)
    stored = get_json(edge_proxy.api_url, f"requests/{enc(request_id)}")
    assert stored["trace_id"] == (expected or request_id)
    long_id = client.get(edge_proxy.proxy_url + "/echo-headers", headers={"x-request-id": "r" * 10000})
    diffapi.wait_idle(edge_proxy.admin_url)
    kept = get_json(edge_proxy.api_url, f"requests/{enc(long_id.headers['x-diffproxy-request-id'])}")
    assert kept["trace_id"] == "r" * 128


@pytest.fixture(scope="module")
def edge_proxy(faults, tmp_path_factory):
    """Short read timeouts, and the caller's Host sent on to the targets."""
    tmp = tmp_path_factory.mktemp("edge")
    proxy = start_fault_proxy(faults, tmp / "edge.sqlite", log_dir=tmp, extra=[
        "-allowHttpSideEffects", "-forward.host=caller", "-receive.headerTimeout=2s",
        "-receive.bodyTimeout=2s", "-receive.idleTimeout=3s"])
    yield proxy
    assert proxy.alive(), proxy.log()
    proxy.stop()


@pytest.mark.parametrize("host", [b"caf\xc3\xa9.example", b"caf\xe9.example", b"a b",
                                  b"x/y", b"x@y", b"h:port", b"[::1"])
def test_invalid_caller_host_is_refused_when_it_would_be_forwarded(edge_proxy, faults, host):
    before = [len(faults.targets(role)) for role in ROLES]
    answer = exchange(edge_proxy.port, b"GET /hosted HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert status_of(answer) == 400 and b"Host" in answer
    assert [len(faults.targets(role)) for role in ROLES] == before


def test_repeated_caller_host_is_refused_and_a_valid_one_passes(edge_proxy):
    answer = exchange(edge_proxy.port, b"GET /hosted HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
    assert status_of(answer) == 400
    for host in (b"shop.example:8080", b"[::1]:80", b"10.1.2.3", b"shop-shadow"):
        answer = exchange(edge_proxy.port, b"GET /hosted HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert status_of(answer) == 200, host


SLOW = {  # what a slowloris sends, and stops
    "head trickling": b"GET /slow HTTP/1.1\r\nHost: x\r\nX-A: ",
    "body never finished": b"POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123",
    "chunked body stalled": b"POST /echo-body HTTP/1.1\r\nHost: x\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
}


def test_slow_clients_get_408_and_are_closed(edge_proxy, client):
    before = diffapi.metrics(edge_proxy.admin_url)
    socks = []
    try:
        for data in SLOW.values():
            for _ in range(5):
                sock = socket.create_connection(("127.0.0.1", edge_proxy.port), timeout=60)
                sock.sendall(data)
                socks.append(sock)
        idle = [socket.create_connection(("127.0.0.1", edge_proxy.port), timeout=60)
                for _ in range(5)]  # connect, send nothing
        socks += idle
        trickle = socks[0]
        try:
            for _ in range(6):  # a byte now and then does not keep a head alive
                trickle.sendall(b"a")
                time.sleep(0.5)
        except OSError:
            pass  # already closed: fine
        answers = [read_all(sock) for sock in socks]  # the proxy closes every one
    finally:
        for sock in socks:
            sock.close()
    slow, silent = answers[:-5], answers[-5:]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in slow), [a[:40] for a in slow]
    assert silent == [b""] * 5  # an idle connection is just closed
    after = diffapi.metrics(edge_proxy.admin_url)
    assert metric(after, "diffproxy_requests_rejected_total", reason="slow_client") == \
        metric(before, "diffproxy_requests_rejected_total", reason="slow_client") + len(slow)
    assert client.get(edge_proxy.proxy_url + "/still-ok").json() == {"ok": True}


@pytest.mark.parametrize("data", [
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x85",
    b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n\x00\x00",
])
def test_upgrades_and_connect_are_answered_then_closed(edge_proxy, data):
    with socket.create_connection(("127.0.0.1", edge_proxy.port), timeout=30) as sock:
        sock.sendall(data)
        answer = read_all(sock)  # the proxy closes: it speaks no other protocol
    assert status_of(answer) in (200, 403), answer[:200]


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
