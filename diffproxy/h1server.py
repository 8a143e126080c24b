"""The proxy port's HTTP/1.1 server: asyncio Protocols, requests parsed by llhttp
(`httptools`), replies written as bytes.

Why not aiohttp's server (the API and admin ports still use it): a proxy must pass on what
it was given and answer every request it took. aiohttp re-encoded non-ASCII response
header bytes as UTF-8, dropped a HEAD reply's Content-Length, routed a path holding `%0A`
to 404 before the handler saw it, accepted HTTP/0.9 request lines, sent `100 Continue`
before the size check, logged the raw line of a request it could not parse (secrets
included), dropped pipelined requests after a half-close (175 of 200 answered), and had
no header or body read timeout (slowloris sockets stayed open). Here:

- requests on one connection are answered in order, one at a time; while one is handled
  the next are parsed and queued (reading pauses beyond `PIPELINE_DEPTH`); after the
  caller's half-close (EOF) everything queued is still answered, then the connection closes;
- a request head must arrive within `header_timeout` of its first byte, a body within
  `body_timeout` of its head, the next request within `idle_timeout`: else `408` (or, idle,
  a plain close) and the connection closes;
- a declared body over `max_body` gets `413` at once, without `100 Continue`;
- malformed input gets `400` with llhttp's reason (fixed text, never the input) and nothing
  is logged;
- a reply's headers are written as the Latin-1 strings they were read as (the bytes the
  target sent); HEAD and 304 replies keep the Content-Length they were given.

Not slower for it: `python -m bench --duration 5 --warmup 1 --scenarios b,c,d`, run
alternately against this server and the aiohttp one (2 cores, load average 5-6 from other
work, so throughput is noise), CPU per 1,000 requests of the diff proxy: identical bodies
0.217-0.266 s here vs 0.269-0.292 s, differing bodies 0.468-0.657 s vs 0.580-0.775 s;
RSS 111 MB vs 123 MB.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

log = logging.getLogger("diffproxy.receive")

PIPELINE_DEPTH = 32  # parsed requests queued per connection before reading pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Smaller bodies are joined to their head (one copy, cheaper than a writev of two buffers);
# larger ones are written after it without the copy.
_JOIN_BELOW = 64 * 1024
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


@dataclass(frozen=True)
class ServerSettings:
    max_line: int            # longest request-target
    max_field: int           # longest header line (name + value)
    max_body: int            # largest request body (413 beyond)
    header_timeout: float    # first byte of a request -> end of its head
    body_timeout: float      # end of the head -> end of the body
    idle_timeout: float      # an idle keep-alive connection is closed after this
    max_headers: int = 200   # Envoy forwards at most 100 by default
    # the whole head; each line is bounded by `max_field` too
    max_head_bytes: int = 0  # 0: 8 x max_field

    @property
    def head_limit(self) -> int:
        return self.max_head_bytes or 8 * self.max_field


@dataclass(slots=True)
class Request:
    method: str
    target: str                          # the raw request-target, Latin-1
    headers: list[tuple[str, str]]       # as received: case, order, Latin-1
    version: str                         # "1.0" or "1.1"
    body: bytes = b""
    keep_alive: bool = True
    expect_continue: bool = False
    continue_sent: bool = False
    reply: Reply | None = None           # set when the server answers it itself
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0


@dataclass(slots=True)
class Reply:
    status: int
    headers: Sequence[tuple[str, str]] = ()  # without Content-Length (added) except for HEAD/304
    body: bytes = b""
    close: bool = False


Handler = Callable[[Request], Awaitable[Reply]]
Rejected = Callable[[str], None]  # called with the reason of each request the server refuses


def json_reply(status: int, message: str, close: bool = False, **extra) -> Reply:
    body = json.dumps({"error": message, **extra}).encode()
    return Reply(status, (("Content-Type", "application/json"),
                          ("X-Content-Type-Options", "nosniff")), body, close)


_HTTP09 = json_reply(400, "the request line has no HTTP version (HTTP/0.9 is not supported): "
                          "send HTTP/1.1", True)


class _Refuse(Exception):
    """Raised in a parser callback: the request is answered by `reply`, then the connection
    closes (what follows on it cannot be framed, or is not wanted)."""

    def __init__(self, reply: Reply, reason: str) -> None:
        self.reply = reply
        self.reason = reason


class _Connection(asyncio.Protocol):
    def __init__(self, server: ProxyServer) -> None:
        self.server = server
        self.settings = server.settings
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Request] = deque()
        self.current: Request | None = None  # being parsed
        self.task: asyncio.Task | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.url = b""
        self.headers: list[tuple[str, str]] = []
        self.head_bytes = 0
        self.in_head = False   # between a request's first byte and the end of its head
        self.reading = True    # False: nothing more is parsed on this connection
        self.paused = False    # reading paused for the pipeline depth
        self.eof = False
        self.closed = False
        self.can_write: asyncio.Future | None = None

    # asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        self._arm(self.settings.idle_timeout, self._idle_expired)

    def data_received(self, data: bytes) -> None:
        if not self.reading:
            return
        if not self.in_head and self.current is None:
            # An HTTP/0.9 line ("GET /path" CRLF) has no version; llhttp would wait for
            # headers a 0.9 client never sends.
            end = data.find(b"\n")
            if end != -1 and data[:end].strip() and b" HTTP/" not in data[:end]:
                self._refuse(_HTTP09, "malformed")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # What follows is another protocol (or CONNECT's tunnel), which we do not
            # speak: answer the request (the head is all of it), then close.
            pending = self.current
            self._stop_reading()
            if pending is not None:
                self._enqueue(pending)
            elif self.task is None and not self.queue:
                self.transport.close()
        except httptools.HttpParserCallbackError as exc:
            refuse = exc.__context__ if isinstance(exc.__context__, _Refuse) else None
            if refuse is None:
                raise
            self._refuse(refuse.reply, refuse.reason)
        except _Refuse as exc:  # httptools re-raises some callback errors as they are
            self._refuse(exc.reply, exc.reason)
        except httptools.HttpParserError as exc:
            # llhttp's reason is fixed text; the input (a secret, maybe) is never echoed.
            reason = " ".join(str(exc).split())[:100] or "malformed request"
            self._refuse(json_reply(400, f"malformed request: {reason}", True), "malformed")

    def eof_received(self) -> bool:
        self.eof = True
        self.reading = False
        if self.task is None and not self.queue:
            return False  # nothing owed: close
        return True  # half-close: answer what was asked, then close

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reading = False
        self._disarm()
        self.server.connections.discard(self)
        if self.can_write is not None and not self.can_write.done():
            self.can_write.set_result(None)

    def pause_writing(self) -> None:
        if self.can_write is None or self.can_write.done():
            self.can_write = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.can_write is not None and not self.can_write.done():
            self.can_write.set_result(None)

    # httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []
        self.head_bytes = 0
        self.current = None
        self.in_head = True
        if self.task is None:  # busy: the caller is waiting for us, not we for it
            self._arm(self.settings.header_timeout, self._slow_client)

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.settings.max_line:
            raise _Refuse(json_reply(414, "request-target longer than the line limit "
                                          f"({self.settings.max_line} bytes)", True), "too_large")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self.head_bytes += size
        s = self.settings
        if size > s.max_field or self.head_bytes > s.head_limit or len(self.headers) >= s.max_headers:
            raise _Refuse(json_reply(431, f"request header fields too large (a line at most "
                                          f"{s.max_field} bytes, at most {s.max_headers} "
                                          f"lines, {s.head_limit} bytes in all)", True),
                          "too_large")
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.in_head = False
        parser = self.parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            status = 400 if version < "1.0" else 505
            raise _Refuse(json_reply(status, f"HTTP/{version} is not supported: send "
                                             "HTTP/1.1 or HTTP/1.0", True), "malformed")
        request = Request(parser.get_method().decode("latin-1"), self.url.decode("latin-1"),
                          self.headers, version)
        length = None
        chunked = False
        for name, value in self.headers:
            lower = name.lower()
            if lower == "content-length":
                length = int(value)  # llhttp has checked it is a number, and only one
            elif lower == "transfer-encoding":
                chunked = True
            elif lower == "expect" and value.strip().lower() == "100-continue":
                request.expect_continue = True
        limit = self.settings.max_body
        if length is not None and length > limit:
            # Before a byte of the body, and without `100 Continue`: the caller need not send it.
            raise _Refuse(json_reply(413, f"request body larger than -maxRequestSize ({limit} "
                                          "bytes)", True, limit=limit), "too_large")
        self.current = request
        if chunked or length:
            if self.task is None:
                self._arm(self.settings.body_timeout, self._slow_client)
            if request.expect_continue and self.task is None and not self.queue:
                self._continue(request)
        else:
            request.expect_continue = False

    def on_body(self, data: bytes) -> None:
        request = self.current
        request.size += len(data)
        if request.size > self.settings.max_body:
            limit = self.settings.max_body
            raise _Refuse(json_reply(413, f"request body larger than -maxRequestSize ({limit} "
                                          "bytes)", True, limit=limit), "too_large")
        request.chunks.append(data)

    def on_message_complete(self) -> None:
        request = self.current
        self.current = None
        if request is None:
            return
        chunks = request.chunks
        if chunks:
            request.body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            request.chunks = []
        request.keep_alive = self.parser.should_keep_alive()
        self._enqueue(request)

    # -----------------------------------------------------------------------------------

    def _enqueue(self, request: Request) -> None:
        self.queue.append(request)
        if self.task is None:
            self._disarm()
            self.task = self.loop.create_task(self._process())
        if len(self.queue) >= PIPELINE_DEPTH and not self.paused and self.reading:
            self.paused = True
            self.transport.pause_reading()

    def _refuse(self, reply: Reply, reason: str) -> None:
        self.server.on_rejected(reason)
        self._stop_reading()
        request = self.current or Request("GET", "/", [], "1.1")
        self.current = None
        request.reply = reply
        self._enqueue(request)

    def _stop_reading(self) -> None:
        self.reading = False
        self.current = None
        self.in_head = False
        if not self.closed:
            self.transport.pause_reading()

    def _continue(self, request: Request) -> None:
        request.continue_sent = True
        if not self.closed:
            self.transport.write(_CONTINUE)

    async def _process(self) -> None:
        try:
            while self.queue:
                request = self.queue.popleft()
                if self.paused and len(self.queue) < PIPELINE_DEPTH // 2:
                    self.paused = False
                    if self.reading and not self.closed:
                        self.transport.resume_reading()
                reply = request.reply
                if reply is None:
                    try:
                        reply = await self.server.handler(request)
                    except Exception:
                        log.exception("handling a %s request failed", request.method[:16])
                        reply = json_reply(500, "internal error (logged)")
                close = reply.close or not request.keep_alive or (
                    not self.queue and not self.reading and self.current is None)
                if self.closed:
                    continue  # the caller is gone; what it asked is still forwarded and compared
                head, body = self._serialise(request, reply, close)
                if len(body) < _JOIN_BELOW:
                    self.transport.write(head + body)
                else:  # one writev, the body not copied into a joined buffer
                    self.transport.writelines((head, body))
                if close:
                    self.transport.close()
                    self.queue.clear()
                    return
                if self.can_write is not None and not self.can_write.done():
                    await self.can_write
        finally:
            self.task = None
        if self.closed:
            return
        pending = self.current
        if self.in_head:  # a request is arriving: its head, or its body
            self._arm(self.settings.header_timeout, self._slow_client)
        elif pending is not None:
            if pending.expect_continue and not pending.continue_sent:
                self._continue(pending)
            self._arm(self.settings.body_timeout, self._slow_client)
        elif self.eof:
            self.transport.close()
        else:
            self._arm(self.settings.idle_timeout, self._idle_expired)

    @staticmethod
    def _serialise(request: Request, reply: Reply, close: bool) -> tuple[bytes, bytes]:
        """The head, and the body to send after it (empty when the reply has none)."""
        status = reply.status
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
        bodiless = request.method == "HEAD" or status in (204, 304) or status < 200
        keep_length = request.method == "HEAD" or status == 304
        for name, value in reply.headers:
            if name.lower() == "content-length" and not keep_length:
                continue
            head.append(f"{name}: {value}\r\n".encode("latin-1", "replace"))
        if not bodiless:
            head.append(b"Content-Length: %d\r\n" % len(reply.body))
        elif keep_length and not any(n.lower() == "content-length" for n, _ in reply.headers) \
                and reply.body:
            head.append(b"Content-Length: %d\r\n" % len(reply.body))
        if close:
            head.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        return b"".join(head), b"" if bodiless else reply.body

    # timers ----------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _idle_expired(self) -> None:
        self.timer = None
        if self.task is None and not self.queue and not self.closed:
            self.transport.close()

    def _slow_client(self) -> None:
        self.timer = None
        if self.closed or self.task is not None:
            return
        if self.current is None and not self.in_head:
            self.transport.close()
            return
        self._refuse(json_reply(408, "the request did not arrive in time (head within "
                                     f"{self.settings.header_timeout:g}s, body within "
                                     f"{self.settings.body_timeout:g}s)", True), "slow_client")

    def close_if_idle(self) -> bool:
        if self.task is None and not self.queue and not self.closed:
            self.transport.close()
            return True
        return False


class ProxyServer:
    """Listens, serves, and on `close` stops listening, lets requests in flight finish
    (bounded), then closes every connection."""

    def __init__(self, handler: Handler, settings: ServerSettings,
                 on_rejected: Rejected = lambda _reason: None) -> None:
        self.handler = handler
        self.settings = settings
        self.on_rejected = on_rejected
        self.connections: set[_Connection] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True,
            reuse_port=reuse_port or None, backlog=1024)

    async def close(self, timeout: float) -> None:
        if self._server is not None:
            self._server.close()
        deadline = self.loop.time() + timeout if self.loop else 0
        while self.connections:
            for conn in list(self.connections):
                conn.close_if_idle()
            busy = [c for c in self.connections if c.task is not None]
            if not busy or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()
        if self._server is not None:
            await self._server.wait_closed()
