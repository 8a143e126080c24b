"""The lean HTTP/1.1 client on real loopback sockets: gunicorn httpbin, and raw servers that
do what frameworks will not (close idle connections, lie, reset, stream past caps)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import ssl
import subprocess

import pytest

from diffproxy.h1client import ClientSettings, H1Client
from diffproxy.model import Target
from diffproxy.transport import ClientError, encode_headers
from tests.support.procs import free_port


def idle_connections(client: H1Client, target: Target) -> int:
    pool = client._pools.get((target.scheme, target.host, target.port))
    return 0 if pool is None else sum(1 for c in pool.idle if not c.closed)


def open_connections(client: H1Client, target: Target) -> int:
    pool = client._pools.get((target.scheme, target.host, target.port))
    return 0 if pool is None else pool.open


@contextlib.asynccontextmanager
async def raw_server(reply, keep_alive: bool = True):
    """Runs `reply(head, reader, writer)` per request; yields (target, connection count)."""
    accepted: list[int] = []

    async def handle(reader, writer):
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length) if length else b""
                if await reply(head, body, writer) is False or not keep_alive:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield Target("http", "127.0.0.1", server.sockets[0].getsockname()[1]), accepted
    finally:
        server.close()


def answer(body: bytes = b"ok", extra: bytes = b"", status: bytes = b"200 OK"):
    async def reply(head, req_body, writer):
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n" % len(body)
                     + extra + b"\r\n" + body)
        await writer.drain()
    return reply


def raw(data: bytes, then_close: bool = True):
    async def reply(head, req_body, writer):
        writer.write(data)
        await writer.drain()
        return not then_close
    return reply


@contextlib.asynccontextmanager
async def client(**overrides):
    c = H1Client(ClientSettings(**{"max_response_size": 1000, "max_header_size": 1024,
                                   **overrides}))
    try:
        yield c
    finally:
        await c.close()


async def get(c: H1Client, target: Target, method: str = "GET", path: str = "/",
              headers=(), body: bytes = b""):
    return await asyncio.wait_for(
        c.request(target, method, path, target.authority, encode_headers(headers), body), 5)


@pytest.fixture(scope="module")
def httpbin(backends):
    return Target("http", "127.0.0.1", backends.primary.port)


async def test_httpbin_round_trip_keeps_headers_and_body_raw(httpbin):
    async with client(max_response_size=100_000) as c:
        r = await get(c, httpbin, "POST", "/post?x=1", [("X-Mixed-Case", "v"),
                                                        ("Content-Type", "text/plain")], b"hi")
        echoed = json.loads(r.body)
        assert (r.status, echoed["data"], echoed["headers"]["X-Mixed-Case"]) == (200, "hi", "v")
        names = [k for k, _ in r.headers]
        assert "Content-Type" in names and "content-type" not in names
        z = await get(c, httpbin, path="/gzip", headers=[("Accept-Encoding", "gzip")])
        assert dict(z.headers)["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(z.body))["gzipped"] is True
        assert (await get(c, httpbin, path="/status/204")).body == b""
        head = await get(c, httpbin, "HEAD", "/get")
        assert (head.status, head.body) == (200, b"")
        assert int(dict(head.headers)["Content-Length"]) > 0
        streamed = await get(c, httpbin, path="/stream/3")  # no Content-Length
        assert [json.loads(line)["id"] for line in streamed.body.splitlines()] == [0, 1, 2]


async def test_keep_alive_reuses_one_connection():
    async with raw_server(answer()) as (target, accepted), client() as c:
        for _ in range(3):
            assert (await get(c, target)).body == b"ok"
        assert len(accepted) == 1 and idle_connections(c, target) == 1


@pytest.mark.parametrize("data", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil-eof",
    b"HTTP/1.0 200 OK\r\n\r\nuntil-eof",
])
async def test_body_delimited_by_close(data):
    async with raw_server(raw(data)) as (target, accepted), client() as c:
        assert (await get(c, target)).body == b"until-eof"
        assert (await get(c, target)).body == b"until-eof"
        assert len(accepted) == 2 and open_connections(c, target) == 0


async def test_chunked_and_interim_responses():
    data = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
            b"X-A: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    async with raw_server(raw(data, then_close=False)) as (target, accepted), client() as c:
        r = await get(c, target)
        assert (r.status, r.body) == (200, b"abcde")
        assert r.headers == (("Transfer-Encoding", "chunked"), ("X-A", "1"))
        assert (await get(c, target)).body == b"abcde" and len(accepted) == 1


async def test_closed_idle_connection_is_not_reused():
    async def once(head, body, writer):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        return False  # keep-alive announced, then closed while idle

    async with raw_server(once) as (target, accepted), client() as c:
        assert (await get(c, target)).body == b"ok"
        await asyncio.sleep(0.05)
        assert (await get(c, target, "POST", body=b"x")).body == b"ok"
        assert len(accepted) == 2


async def test_stale_pooled_connection_is_retried_for_idempotent_requests_only():
    # Each connection answers its first request and hangs up on the second: what a client
    # sees when the target closes an idle keep-alive connection just as it is reused.
    async def serve(reader, writer):
        accepted.append(1)
        try:
            for n in range(2):
                await reader.readuntil(b"\r\n\r\n")
                if n == 0:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    accepted: list[int] = []
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    target = Target("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        async with client() as c:
            assert (await get(c, target)).body == b"ok"
            assert (await get(c, target)).body == b"ok"  # stale one, then a fresh one
            assert len(accepted) == 2
            with pytest.raises(ClientError) as info:  # a POST must not be sent twice
                await get(c, target, "POST", body=b"x")
            assert info.value.kind == "reset" and len(accepted) == 2
    finally:
        server.close()


@pytest.mark.parametrize("reply, kind", [
    (answer(b"x" * 5000), "too_large"),
    (answer(extra=b"X-Big: " + b"y" * 4000 + b"\r\n"), "too_large"),
    (raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         + b"190\r\n" + b"z" * 400 + b"\r\n" * 1 + b"190\r\n" + b"z" * 400 + b"\r\n"
         + b"190\r\n" + b"z" * 400 + b"\r\n0\r\n\r\n"), "too_large"),
    (raw(b"HELLO THERE\r\n\r\n"), "bad_response"),
    (raw(b"HTTP/1.1 twohundred OK\r\nContent-Length: 2\r\n\r\nok"), "bad_response"),
    (raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly this"), "reset"),
    (raw(b""), "reset"),
])
async def test_failures_have_their_kind(reply, kind):
    async with raw_server(reply) as (target, _), client() as c:
        with pytest.raises(ClientError) as info:
            await get(c, target)
        assert info.value.kind == kind
        assert open_connections(c, target) == 0


async def test_body_cap_keeps_status_and_headers():
    async with raw_server(answer(b"x" * 5000, b"X-A: 1\r\n")) as (target, _), client() as c:
        with pytest.raises(ClientError) as info:
            await get(c, target)
    assert (info.value.status, ("X-A", "1") in info.value.headers) == (200, True)


async def test_refused_and_reset():
    async with client() as c:
        with pytest.raises(ClientError) as refused:
            await get(c, Target("http", "127.0.0.1", free_port()))
    assert refused.value.kind == "refused"

    async def hang_up(head, body, writer):
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        writer.transport.abort()
        return False

    async with raw_server(hang_up) as (target, _), client() as c:
        with pytest.raises(ClientError) as reset:
            await get(c, target)
    assert reset.value.kind == "reset"


async def test_pool_is_bounded_and_cancelled_requests_close_their_connection():
    busy = 0
    peak = 0

    async def slow(head, body, writer):
        nonlocal busy, peak
        busy += 1
        peak = max(peak, busy)
        await asyncio.sleep(0.05)
        busy -= 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with raw_server(slow) as (target, accepted), client(max_connections_per_target=2) as c:
        answers = await asyncio.gather(*(get(c, target) for _ in range(6)))
        assert [a.body for a in answers] == [b"ok"] * 6
        assert peak == 2 and len(accepted) == 2
        task = asyncio.create_task(get(c, target, path="/late"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert open_connections(c, target) == 1 and idle_connections(c, target) == 1


def test_headers_that_could_split_the_head_are_refused():
    assert encode_headers([("A", "1"), ("B", "2")]) == b"A: 1\r\nB: 2\r\n"
    for bad in ([("A", "1\r\nX: y")], [("A\n", "1")], [("A", "\u20ac")]):
        with pytest.raises(ValueError):
            encode_headers(bad)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem")],
                   check=True, capture_output=True)
    return tmp / "cert.pem", tmp / "key.pem"


async def test_https_target(tls_files):
    cert, key = tls_files
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)

    async def handle(reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecure")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    target = Target("https", "127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        async with client(ssl_context=ssl.create_default_context(cafile=str(cert))) as c:
            assert (await get(c, target)).body == b"secure"
        async with client() as c:  # the system CAs do not know this certificate
            with pytest.raises(ClientError) as info:
                await get(c, target)
        assert info.value.kind == "tls"
    finally:
        server.close()
