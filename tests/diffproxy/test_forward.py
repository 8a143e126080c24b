"""Forwarding to one target over real loopback sockets, including targets that misbehave."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket

import pytest

from diffproxy.forward import Forwarder, new_session, probe
from diffproxy.headers import strip_hop_by_hop, strip_shadow
from diffproxy.metrics import Metrics
from diffproxy.model import Target, TargetHealth
from diffproxy.settings import ProxySettings
from tests.support.procs import free_port


@contextlib.asynccontextmanager
async def raw_server(reply):
    """A TCP server running `reply(reader, writer)` per connection; yields its Target.
    The request head each connection sent is collected in `target_requests`."""
    seen: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            seen.append(head)
            await reply(head, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Target("http", "127.0.0.1", port), seen
    finally:
        server.close()


def http_reply(status: str = "200 OK", headers: tuple[str, ...] = (), body: bytes = b"ok"):
    async def reply(head, reader, writer):
        lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *headers, "", ""]
        writer.write("\r\n".join(lines).encode() + body)
        await writer.drain()
    return reply


async def send(fw: Forwarder, name: str, target: Target, method: str, path_qs: str,
               headers, body: bytes):
    """One request to one target: a fan-out of one."""
    return (await fw.start(((name, target),), method, path_qs, headers, body).all())[0]


@contextlib.asynccontextmanager
async def forwarder(**overrides):
    settings = ProxySettings(**{"timeout": 1.0, "max_response_size": 1000,
                                "max_header_size": 1024, **overrides})
    metrics = Metrics(targets=("t",))
    health = {"t": TargetHealth(address="t")}
    session = new_session(settings)
    try:
        yield Forwarder(settings, session, metrics, health)
    finally:
        await session.close()


async def test_forwards_method_path_body_and_own_host():
    async with raw_server(http_reply(headers=("X-Answer: 42",), body=b"hello")) as (target, seen), \
            forwarder() as fw:
        r = await send(fw, "t", target, "PUT", "/a/b?q=%2F", [
            ("Host", "caller-shadow:80"), ("X-Keep", "1"), ("Connection", "keep-alive, X-Drop"),
            ("X-Drop", "x"), ("Keep-Alive", "300"), ("TE", "trailers"), ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic x"), ("Content-Length", "3")], b"abc")
    assert (r.status, r.body, r.error) == (200, b"hello", None)
    assert ("X-Answer", "42") in r.headers
    head = seen[0].decode()
    assert head.startswith("PUT /a/b?q=%2F HTTP/1.1\r\n")
    lower = head.lower()
    assert f"host: {target.authority}\r\n" in lower
    assert "x-keep: 1" in lower and "content-length: 3" in lower
    for dropped in ("x-drop", "keep-alive", "te:", "upgrade", "proxy-authorization",
                    "user-agent", "accept-encoding", "caller"):
        assert dropped not in lower, dropped
    assert fw.health["t"].healthy is True


async def test_caller_host_mode_strips_shadow():
    async with raw_server(http_reply()) as (target, seen), forwarder(forward_host="caller") as fw:
        await send(fw, "t", target, "GET", "/", [("Host", "httpbin-shadow:8000")], b"")
    assert b"Host: httpbin:8000\r\n" in seen[0]


async def test_body_is_not_decompressed():
    packed = gzip.compress(b'{"a": 1}')
    reply = http_reply(headers=("Content-Encoding: gzip", "Content-Type: application/json"),
                       body=packed)
    async with raw_server(reply) as (target, _), forwarder() as fw:
        r = await send(fw, "t", target, "GET", "/", [("Accept-Encoding", "gzip")], b"")
    assert r.body == packed


async def _outcome(reply, **overrides):
    async with raw_server(reply) as (target, _), forwarder(**overrides) as fw:
        result = await send(fw, "t", target, "GET", "/", [], b"")
        return result, fw


async def test_refused_target():
    async with forwarder() as fw:
        r = await send(fw, "t", Target("http", "127.0.0.1", free_port()), "GET", "/", [], b"")
    assert (r.status, r.error) == (None, "refused")
    assert fw.health["t"].healthy is False and "refused" in fw.health["t"].last_error
    assert fw.metrics.target_errors.get(target="t", kind="refused") == 1
    assert fw.metrics.target_up.get(target="t") == 0


async def test_slow_target_times_out():
    async def never(head, reader, writer):
        await asyncio.sleep(5)
    r, _ = await _outcome(never, timeout=0.3)
    assert r.error == "timeout" and "0.3s" in r.error_detail


async def test_reset_target():
    async def hang_up(head, reader, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()
    r, _ = await _outcome(hang_up)
    assert r.error == "reset"


async def test_garbage_answer():
    async def garbage(head, reader, writer):
        writer.write(b"HELLO THERE\r\n\r\n")
        await writer.drain()
    r, _ = await _outcome(garbage)
    assert r.error == "bad_response"


@pytest.mark.parametrize("reply", [
    http_reply(body=b"x" * 5000),                        # declared too large
    http_reply(headers=("X-Big: " + "y" * 4000,)),       # header line too long
])
async def test_too_large_answers(reply):
    r, _ = await _outcome(reply)
    assert r.error == "too_large"


async def test_chunked_body_past_the_cap():
    async def chunked(head, reader, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(5):
            writer.write(b"190\r\n" + b"z" * 400 + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    r, _ = await _outcome(chunked)
    assert (r.status, r.error) == (200, "too_large")


async def test_probe():
    async with raw_server(http_reply()) as (target, _):
        assert await probe(target, 1.0) is None
    assert "refused" in await probe(Target("http", "127.0.0.1", free_port()), 1.0)


def test_hop_by_hop_and_shadow_helpers():
    kept = strip_hop_by_hop([("Connection", "close, X-A"), ("X-A", "1"), ("X-B", "2"),
                             ("Transfer-Encoding", "chunked"), ("Proxy-Foo", "f")])
    assert kept == [("X-B", "2")]
    assert strip_shadow("httpbin-shadow") == "httpbin"
    assert strip_shadow("httpbin-shadow:8000") == "httpbin:8000"
    assert strip_shadow("httpbin.ns.svc.cluster.local-shadow:80") == "httpbin.ns.svc.cluster.local:80"
    assert strip_shadow("httpbin:8000") == "httpbin:8000"
    assert strip_shadow("[::1]:80") == "[::1]:80"
    assert strip_shadow("[::1]-shadow:8000") == "[::1]:8000"
    assert strip_shadow("[::1]-shadow") == "[::1]"
    assert strip_shadow("10.1.2.3-shadow") == "10.1.2.3"


@pytest.mark.parametrize("caller", [
    "httpbin:8000", "httpbin", "svc.ns.svc.cluster.local:8000", "10.1.2.3", "10.1.2.3:80",
    "[::1]:8000", "[::1]", "[fd00::a:1]:44134"])
def test_strip_shadow_undoes_every_form_envoy_sends(caller):
    from topology.istio import shadow_host

    # What Envoy sent with the suffix on (measured: `[::1]:8000` -> `[::1]-shadow:8000`).
    assert strip_shadow(shadow_host(caller)) == caller
    assert strip_shadow(caller) == caller


@pytest.mark.parametrize("reply, kind", [
    # 1 KB limit: 20 KB of JSON gzips to a few dozen bytes on the wire
    (http_reply(headers=("Content-Encoding: gzip", "Content-Type: application/json"),
                body=gzip.compress(b'{"a": "' + b"0" * 20000 + b'"}')), "too_large"),
    (http_reply(headers=("Content-Type: application/json",), body=b'{"a": "\xff"}'),
     "bad_response"),
])
async def test_unusable_bodies_are_errors(reply, kind):
    r, _ = await _outcome(reply)
    assert (r.status, r.error, r.body) == (200, kind, b"")


@pytest.mark.parametrize("headers, body", [
    (("Content-Encoding: gzip", "Content-Type: application/json"), gzip.compress(b'{"a": 1}')),
    (("Content-Type: text/plain",), b"\xff\xfe latin-1 text is fine"),
    (("Content-Type: application/json; charset=latin-1",), b'{"a": "caf\xe9"}'),
    (("Content-Encoding: br",), b"\x0b\x02\x80not-decoded-here"),
])
async def test_usable_bodies_pass_untouched(headers, body):
    r, _ = await _outcome(http_reply(headers=headers, body=body))
    assert (r.error, r.body) == (None, body)


async def test_fan_out_deadline_times_out_only_the_slow_target():
    # One timer bounds the whole fan-out: the target that answered keeps its response.
    # 2 s, not less: the fast target must answer within it on a loaded machine too.
    async def never(head, reader, writer):
        await asyncio.sleep(30)

    async with raw_server(http_reply(body=b"fast")) as (fast, _), \
            raw_server(never) as (slow, _), forwarder(timeout=2.0) as fw:
        fw.health["slow"] = TargetHealth(address="slow")
        ok, late = await fw.start((("t", fast), ("slow", slow)), "GET", "/x", [], b"").all()
    assert (ok.status, ok.body, ok.error) == (200, b"fast", None)
    assert (late.status, late.error) == (None, "timeout") and "within 2s" in late.error_detail
    assert fw.metrics.target_requests.get(target="t") == 1
    assert fw.metrics.target_errors.get(target="slow", kind="timeout") == 1
    assert late.elapsed_ms >= 2000  # the fan-out measured it; the store's sketches take it
    assert fw.health["slow"].healthy is False and fw.health["t"].healthy is True


async def test_cancelling_a_fan_out_cancels_its_requests():
    # A caller that goes away must not leave target requests running (or recorded as timeouts).
    started = asyncio.Event()

    async def never(head, reader, writer):
        started.set()
        await asyncio.sleep(5)

    async with raw_server(never) as (slow, _), forwarder(timeout=5.0) as fw:
        task = asyncio.create_task(fw.start((("t", slow),), "GET", "/", [], b"").all())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fw.metrics.target_errors.get(target="t", kind="timeout") == 0
