"""A lean HTTP/1.1 client for the three targets: keep-alive pools on asyncio Protocols,
requests serialised by hand, responses parsed by llhttp (`httptools`).

Why not aiohttp's client: on the proxy's request path it was three quarters of the CPU
(per request three `ClientRequest` objects, header merging, connector bookkeeping, several
writes per request). This client does one `transport.write` per request and keeps only what
a proxy needs: the status, the headers exactly as sent (case and order), the raw body.

The real `transport.Transport`. Every failure is a `ClientError` whose `kind` is one of
`model.ERROR_KINDS`; the caller bounds the time (cancelling a request closes its connection, never pools it).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass

import httptools

from .model import RawResponse, Target
from .transport import ClientError

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# RFC 9110 9.3.3/9.3.4: a user agent should send Content-Length with these even when empty.
_BODY_EXPECTED = frozenset({"POST", "PUT", "PATCH"})
_HEAD_LIMIT_LINES = 8  # the whole response head may be this many -maxHeaderSize lines


@dataclass(frozen=True)
class ClientSettings:
    max_response_size: int            # body bytes; more -> too_large without reading on
    max_header_size: int              # longest status or header line
    max_connections_per_target: int = 100
    idle_timeout: float = 30.0        # an idle pooled connection older than this is closed
    ssl_context: ssl.SSLContext | None = None  # for https targets; None: the system CAs


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing; the reason is in `_Conn.fault`."""


class _Conn(asyncio.Protocol):
    """One connection to one target; at most one request in flight."""

    __slots__ = ("transport", "parser", "waiter", "closed", "received", "fault", "status",
                 "headers", "chunks", "size", "head_done", "head_bytes", "length",
                 "chunked", "head_request", "keep_alive", "idle_since", "limits", "reused")

    def __init__(self, limits: ClientSettings) -> None:
        self.limits = limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._reset(False)

    def _reset(self, head_request: bool) -> None:
        self.received = False
        self.fault: ClientError | None = None
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.head_done = False
        self.head_bytes = 0
        self.length: int | None = None
        self.chunked = False
        self.head_request = head_request
        self.keep_alive = False

    # asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # nothing asked: the connection is unusable
            self.close()
            return
        self.received = True
        if not self.head_done:
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_size * _HEAD_LIMIT_LINES:
                self._fail(ClientError("too_large", "the response head is larger than "
                                       f"{_HEAD_LIMIT_LINES} x -maxHeaderSize"))
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            self._fail(self.fault or ClientError("other", "response parser callback failed"))
        except httptools.HttpParserUpgrade:
            self._fail(ClientError("bad_response", "the target switched protocols unasked"))
        except httptools.HttpParserError as exc:
            self._fail(ClientError("bad_response", f"malformed response: {exc}"))

    def eof_received(self) -> bool:
        return False  # close; connection_lost finishes (or fails) the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        if exc is None and self.head_done and self._until_eof():
            self._complete(False)  # a body delimited by the end of the connection
            return
        if exc is None:
            detail = ("the connection closed before a response" if not self.received else
                      "the connection closed before the response was complete")
        else:
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        waiter.set_exception(ClientError("reset", detail))

    # httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) + len(value) + 2 > self.limits.max_header_size:
            self.fault = ClientError("too_large", "a response header is larger than -maxHeaderSize")
            raise _Stop
        lower = name.lower()
        if lower == b"content-length":
            try:
                self.length = int(value)
            except ValueError:
                self.fault = ClientError("bad_response", "invalid Content-Length")
                raise _Stop from None
        elif lower == b"transfer-encoding":
            self.chunked = True
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_status(self, reason: bytes) -> None:
        if len(reason) + 13 > self.limits.max_header_size:
            self.fault = ClientError("too_large", "the status line is larger than -maxHeaderSize")
            raise _Stop

    def on_headers_complete(self) -> None:
        self.head_done = True
        self.status = status = self.parser.get_status_code()
        if status < 200:
            return  # interim (1xx): no body, the real response follows
        if self.head_request:
            self._complete(False)  # no body follows, whatever the head says
            raise _Stop  # the parser would wait for it
        limit = self.limits.max_response_size
        if self.length is not None and self.length > limit and self._has_body():
            self.fault = ClientError(
                "too_large", f"Content-Length {self.length} exceeds -maxResponseSize {limit}",
                status, tuple(self.headers))
            raise _Stop

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limits.max_response_size:
            self.fault = ClientError(
                "too_large", f"body exceeds -maxResponseSize {self.limits.max_response_size} bytes",
                self.status, tuple(self.headers))
            raise _Stop
        self.chunks.append(data)

    def on_message_complete(self) -> None:
        if self.status < 200:
            self._reset(self.head_request)
            self.received = True
            return
        self._complete(self.parser.should_keep_alive())

    # -----------------------------------------------------------------------------------

    def _has_body(self) -> bool:
        return not (self.status in (204, 304) or self.head_request)

    def _until_eof(self) -> bool:
        return self.length is None and not self.chunked and self._has_body()

    def _complete(self, keep_alive: bool) -> None:
        self.keep_alive = keep_alive
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.waiter.set_result(RawResponse(self.status, tuple(self.headers), body))

    def _fail(self, error: ClientError) -> None:
        self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(error)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes, head_request: bool, loop: asyncio.AbstractEventLoop) -> asyncio.Future:
        self._reset(head_request)
        self.waiter = waiter = loop.create_future()
        self.transport.write(data)
        return waiter


class _Pool:
    """Connections to one target: idle ones (newest reused first) and a bound on all."""

    __slots__ = ("idle", "open", "waiters", "limit", "conns")

    def __init__(self, limit: int) -> None:
        self.idle: deque[_Conn] = deque()
        self.open = 0  # connections counted against `limit` (idle, busy or connecting)
        self.waiters: deque[asyncio.Future] = deque()
        self.limit = limit
        self.conns: set[_Conn] = set()

    def wake(self) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def drop(self, conn: _Conn) -> None:
        conn.close()
        if conn in self.conns:
            self.conns.discard(conn)
            self.open -= 1
            self.wake()


class H1Client:
    """Per-target keep-alive pools. `request` returns a `RawResponse` or raises
    `ClientError`; it never pools a connection whose response was not read whole."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    async def request(self, target: Target, method: str, path_qs: str, host: str,
                      headers: bytes, body: bytes) -> RawResponse:
        """`headers`: the block from `encode_headers`, without Host and Content-Length."""
        if self._closed:
            raise ClientError("other", "the client is closed")
        head = f"{method} {target.base_path}{path_qs} HTTP/1.1\r\nHost: {host}\r\n"
        if head.count("\n") != 2 or head.count("\r") != 2:
            raise ClientError("other", "the request target or Host contains CR or LF")
        if body or method in _BODY_EXPECTED:
            head += f"Content-Length: {len(body)}\r\n"
        try:
            data = head.encode("latin-1") + headers + b"\r\n" + body
        except UnicodeEncodeError as exc:
            raise ClientError("other", f"the request target or Host is not Latin-1: {exc}") from None
        key = (target.scheme, target.host, target.port)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self.settings.max_connections_per_target)
        head_request = method == "HEAD"
        conn = await self._acquire(pool, target)
        try:
            return await self._exchange(pool, conn, data, head_request)
        except ClientError as exc:
            # A pooled connection the target had already closed: it never saw the request.
            if not (conn.reused and exc.kind == "reset" and not conn.received
                    and method in IDEMPOTENT):
                raise
        conn = await self._acquire(pool, target, fresh=True)
        return await self._exchange(pool, conn, data, head_request)

    async def _exchange(self, pool: _Pool, conn: _Conn, data: bytes,
                        head_request: bool) -> RawResponse:
        loop = asyncio.get_running_loop()
        try:
            response = await conn.send(data, head_request, loop)
        except BaseException:
            pool.drop(conn)
            raise
        if conn.keep_alive and not conn.closed and not head_request:
            conn.waiter = None
            conn.idle_since = loop.time()
            pool.idle.append(conn)
            self._expire(pool, conn.idle_since)
            pool.wake()
        else:
            pool.drop(conn)
        return response

    def _expire(self, pool: _Pool, now: float) -> None:
        idle = pool.idle
        timeout = self.settings.idle_timeout
        while idle and (idle[0].closed or now - idle[0].idle_since > timeout):
            pool.drop(idle.popleft())

    async def _acquire(self, pool: _Pool, target: Target, fresh: bool = False) -> _Conn:
        while True:
            if not fresh:
                idle = pool.idle
                while idle:
                    conn = idle.pop()
                    if conn.closed or conn.transport.is_closing():
                        pool.drop(conn)
                        continue
                    conn.reused = True
                    return conn
            elif pool.idle and pool.open >= pool.limit:
                pool.drop(pool.idle.popleft())  # make room for the fresh connection
            if pool.open < pool.limit:
                pool.open += 1
                try:
                    return await self._connect(pool, target)
                except BaseException:
                    pool.open -= 1
                    pool.wake()
                    raise
            waiter = asyncio.get_running_loop().create_future()
            pool.waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    pool.wake()  # pass the wake-up on: this request no longer wants it
                raise

    async def _connect(self, pool: _Pool, target: Target) -> _Conn:
        conn = _Conn(self.settings)
        loop = asyncio.get_running_loop()
        tls = target.scheme == "https"
        try:
            await loop.create_connection(
                lambda: conn, target.host, target.port,
                ssl=self._ssl_context() if tls else None,
                server_hostname=target.host if tls else None)
        except ssl.SSLError as exc:
            raise ClientError("tls", _detail(exc)) from None
        except OSError as exc:
            raise ClientError("refused", _detail(exc)) from None
        pool.conns.add(conn)
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:  # built once: loading the CA store costs milliseconds
            self._ssl = self.settings.ssl_context or ssl.create_default_context()
        return self._ssl

    async def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            for conn in list(pool.conns):
                pool.drop(conn)
            pool.idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks


def _detail(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
