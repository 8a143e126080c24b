"""Sending one request to one target, and turning whatever happens into a `compare.Response`.

Never raises for a target's misbehaviour: refused, timed out, reset, garbage, oversized —
each becomes `Response(error=<kind>)` so it can be compared and counted like any answer.
Bodies are read raw (no decompression) with a size cap, so what is compared and what the
caller gets is exactly what the target sent. A body that cannot be used as declared (a
gzip bomb, JSON that is not UTF-8) is an error too: see `compare.content_fault`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import aiohttp
from aiohttp import http_exceptions
from yarl import URL

from .compare import Response, content_fault
from .metrics import CounterSeries, HistogramSeries, Metrics
from .settings import ProxySettings, Target

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
# Not hop-by-hop, but recomputed for the re-sent body, or meaningless once it is read.
_NOT_FORWARDED = frozenset({"host", "content-length", "expect"})
SHADOW_SUFFIX = "-shadow"
UNHEALTHY_KINDS = frozenset({"refused", "timeout", "reset", "tls"})


def strip_hop_by_hop(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers, `Proxy-*`, and every header the Connection header names."""
    headers = list(headers)
    named = {token.strip().lower() for k, v in headers if k.lower() == "connection"
             for token in v.split(",") if token.strip()}
    return [(k, v) for k, v in headers
            if (lower := k.lower()) not in HOP_BY_HOP and lower not in named
            and not lower.startswith("proxy-")]


def strip_shadow(host: str) -> str:
    """Istio (before 1.28) mirrors with `host-shadow` or `host-shadow:port`; undo that."""
    host = host.strip()
    if host.startswith("["):  # IPv6 literal: never shadowed
        return host
    name, sep, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if name.lower().endswith(SHADOW_SUFFIX):
        name = name[: -len(SHADOW_SUFFIX)]
    return f"{name}{sep}{port}"


def classify_error(exc: BaseException) -> tuple[str, str]:
    """(one of compare.ERROR_KINDS, one-line detail) for an exception from aiohttp."""
    detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError, aiohttp.ServerFingerprintMismatch)):
        return "tls", detail
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused", detail
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timeout", detail
    if isinstance(exc, (aiohttp.ServerDisconnectedError, ConnectionResetError,
                        aiohttp.ClientConnectionResetError, BrokenPipeError)):
        return "reset", detail
    if isinstance(exc, aiohttp.ClientPayloadError):
        cause = exc.__cause__
        if isinstance(cause, http_exceptions.ContentLengthError) or "not completed" in str(exc):
            return "reset", detail
        return "bad_response", detail
    if isinstance(exc, aiohttp.ClientResponseError):
        # aiohttp re-wraps its parser's LineTooLong; the message is what survives.
        if isinstance(exc.__cause__, http_exceptions.LineTooLong) or "Got more than" in str(exc):
            return "too_large", "a response header is larger than -maxHeaderSize"
        return "bad_response", detail
    if isinstance(exc, aiohttp.ClientOSError):
        return "reset", detail
    return "other", detail


class _TooLarge(Exception):
    pass


class _Deadline:
    """Shared by the requests of one fan-out: tells a deadline's cancellation from any other."""

    __slots__ = ("expired",)

    def __init__(self) -> None:
        self.expired = False

    def expire(self, tasks: Sequence[asyncio.Task]) -> None:
        self.expired = True
        for task in tasks:
            if not task.done():
                task.cancel()


@dataclass(frozen=True, slots=True)
class _TargetSeries:
    requests: CounterSeries
    latency: HistogramSeries


@dataclass
class TargetHealth:
    """Last known state of one target: from real traffic, and from probes while idle."""

    address: str
    healthy: bool | None = None  # None: not contacted yet
    last_error: str | None = None
    last_change_msec: int | None = None
    last_seen: float = field(default=0.0)

    def record(self, healthy: bool, error: str | None) -> None:
        if healthy != self.healthy:
            self.last_change_msec = int(time.time() * 1000)
        self.healthy = healthy
        if error is not None:
            self.last_error = error
        self.last_seen = time.monotonic()

    def as_json(self) -> dict:
        return {"address": self.address, "healthy": self.healthy, "last_error": self.last_error}


def new_session(settings: ProxySettings) -> aiohttp.ClientSession:
    """One pooled session for all targets. No cookie jar (one caller's cookies must never
    reach the next), no auto headers (only the caller's are forwarded), no decompression."""
    connector = aiohttp.TCPConnector(limit=300, limit_per_host=100, keepalive_timeout=30,
                                     enable_cleanup_closed=False)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        max_line_size=settings.max_header_size,
        max_field_size=settings.max_header_size,
        timeout=aiohttp.ClientTimeout(total=None),
    )


class Forwarder:
    """Sends requests to targets through one shared session; records metrics and health."""

    def __init__(self, settings: ProxySettings, session: aiohttp.ClientSession,
                 metrics: Metrics, health: dict[str, TargetHealth]) -> None:
        self.settings = settings
        self.session = session
        self.metrics = metrics
        self.health = health
        self._by_target: dict[str, _TargetSeries] = {}

    async def send(self, name: str, target: Target, method: str, path_qs: str,
                   headers: Iterable[tuple[str, str]], body: bytes,
                   caller_host: str | None = None) -> Response:
        return (await self.fan_out(((name, target),), method, path_qs, headers, body,
                                   caller_host))[0]

    async def fan_out(self, targets: Sequence[tuple[str, Target]], method: str, path_qs: str,
                      headers: Iterable[tuple[str, str]], body: bytes,
                      caller_host: str | None = None) -> list[Response]:
        """The same request to every target at once, one `Response` each, in order.

        One timer bounds the whole fan-out (a timeout context per target cost 5-7 % of the
        request path); when it fires, the targets still busy are cancelled and answer
        `timeout`, the others keep their responses."""
        headers = list(headers)
        if caller_host is None:
            caller_host = next((v for k, v in headers if k.lower() == "host"), None)
        common = [(k, v) for k, v in strip_hop_by_hop(headers) if k.lower() not in _NOT_FORWARDED]
        host = (strip_shadow(caller_host)
                if self.settings.forward_host == "caller" and caller_host else None)
        deadline = _Deadline()
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._send(name, target, method, path_qs,
                                             [*common, ("Host", host or target.authority)],
                                             body, deadline))
                 for name, target in targets]
        timer = loop.call_later(self.settings.timeout, deadline.expire, tasks)
        try:
            return await asyncio.gather(*tasks)
        finally:
            timer.cancel()

    def _series(self, name: str) -> _TargetSeries:
        series = self._by_target.get(name)
        if series is None:
            m = self.metrics
            series = self._by_target[name] = _TargetSeries(
                m.target_requests.series(target=name), m.target_latency.series(target=name))
        return series

    async def _send(self, name: str, target: Target, method: str, path_qs: str,
                    out_headers: list[tuple[str, str]], body: bytes,
                    deadline: _Deadline) -> Response:
        url = URL(target.base_url + path_qs, encoded=True)
        started = time.perf_counter()
        status: int | None = None
        raw_headers: tuple[tuple[str, str], ...] = ()
        self._series(name).requests.inc()
        try:
            async with self.session.request(
                    method, url, headers=out_headers, data=body or None,
                    allow_redirects=False, compress=None) as resp:
                status = resp.status
                raw_headers = tuple((k.decode("latin-1"), v.decode("latin-1"))
                                    for k, v in resp.raw_headers)
                data = await self._read_capped(resp)
            fault = content_fault(raw_headers, data, self.settings.max_response_size)
            if fault is not None:
                kind, detail = fault
                result = Response(status=status, headers=raw_headers, body=b"", error=kind,
                                  error_detail=detail,
                                  elapsed_ms=(time.perf_counter() - started) * 1000)
            else:
                result = Response(status=status, headers=raw_headers, body=data,
                                  elapsed_ms=(time.perf_counter() - started) * 1000)
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            result = self._timed_out(started)
        except _TooLarge as exc:
            result = Response(status=status, headers=raw_headers, body=b"", error="too_large",
                              error_detail=str(exc),
                              elapsed_ms=(time.perf_counter() - started) * 1000)
        except Exception as exc:  # noqa: BLE001 - every failure is an outcome to compare
            kind, detail = classify_error(exc)
            if kind == "timeout":
                return self._account(name, self._timed_out(started))
            result = Response(status=None, headers=(), body=b"", error=kind,
                              error_detail=detail,
                              elapsed_ms=(time.perf_counter() - started) * 1000)
        return self._account(name, result)

    def _timed_out(self, started: float) -> Response:
        return Response(status=None, headers=(), body=b"", error="timeout",
                        error_detail=f"no complete response within {self.settings.timeout:g}s",
                        elapsed_ms=(time.perf_counter() - started) * 1000)

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_response_size
        declared = resp.content_length
        if declared is not None and declared > limit:
            raise _TooLarge(f"Content-Length {declared} exceeds -maxResponseSize {limit}")
        if declared is not None:  # within the limit: one read, no chunk loop
            return await resp.content.readexactly(declared) if declared else b""
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise _TooLarge(f"body exceeds -maxResponseSize {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _account(self, name: str, result: Response) -> Response:
        self._series(name).latency.observe(result.elapsed_ms / 1000.0)
        if result.error is not None:
            self.metrics.target_errors.inc(target=name, kind=result.error)
        healthy = result.error not in UNHEALTHY_KINDS
        error = None if result.error is None else f"{result.error}: {result.error_detail}"
        health = self.health.get(name)
        if health is not None:
            changed = health.healthy != healthy
            health.record(healthy, error)
            if changed:  # the gauge follows `health`, which the probe loop updates too
                self.metrics.target_up.set(1 if healthy else 0, target=name)
        return result


async def probe(target: Target, timeout: float) -> str | None:
    """Can a TCP connection be opened? None if so, else why not (one line)."""
    try:
        async with asyncio.timeout(timeout):
            _reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return None
    except (OSError, asyncio.TimeoutError) as exc:
        kind = "timeout" if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) else "refused"
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return f"{kind}: {detail}"
