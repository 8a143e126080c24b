"""Forwarding: one request to the three targets at once, whatever happens turned into a
`model.Response`.

Never raises for a target's misbehaviour: refused, timed out, reset, garbage, oversized —
each becomes `Response(error=<kind>)` so it can be compared and counted like any answer.
Requests go through a `transport.Transport` (in production `h1client`, a keep-alive pool
per target); bodies are read raw (no decompression) with a size cap, so what is compared
and what the caller gets is exactly what the target sent. A body that cannot be used as
declared (a gzip bomb, JSON that is not UTF-8) is an error too: see `lift.inspect`, whose
decoded bytes travel on in `Response.decoded`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .h1client import ClientSettings, H1Client
from .headers import NOT_FORWARDED, strip_hop_by_hop, strip_shadow
from .lift import inspect
from .metrics import CounterSeries, Metrics
from .model import Response, Target, TargetHealth
from .settings import ProxySettings
from .transport import ClientError, Transport, encode_headers

log = logging.getLogger("diffproxy.forward")

UNHEALTHY_KINDS = frozenset({"refused", "timeout", "reset", "tls"})


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


class FanOut:
    """The requests of one fan-out, in target order; each ends by the shared deadline."""

    __slots__ = ("tasks", "_timer")

    def __init__(self, tasks: list[asyncio.Task], timer: asyncio.TimerHandle) -> None:
        self.tasks = tasks
        self._timer = timer

    @property
    def done(self) -> bool:
        return all(task.done() for task in self.tasks)

    async def one(self, index: int) -> Response:
        """One target's answer; the others go on (wait for them with `all`)."""
        return await asyncio.shield(self.tasks[index])

    def results(self) -> list[Response]:
        """Every answer, once `done`."""
        self._timer.cancel()
        return [task.result() for task in self.tasks]

    def when_done(self, callback: Callable[[list[Response] | None], None]) -> None:
        """`callback(every answer)` once all have come, or `callback(None)` if a request was
        cancelled by something other than the deadline (the proxy stopping). Callbacks on
        the requests themselves: a task per fan-out to gather them cost a few percent of
        the request path."""
        pending = [task for task in self.tasks if not task.done()]
        left = [len(pending)]

        def finish() -> None:
            try:
                responses = None if any(t.cancelled() for t in self.tasks) else self.results()
            except Exception:  # a bug in _send: said once, and the fan-out is not left pending
                log.exception("a fan-out failed")
                responses = None
            self._timer.cancel()
            callback(responses)

        def one(_task: asyncio.Task) -> None:
            left[0] -= 1
            if not left[0]:
                finish()

        if not pending:
            finish()
        for task in pending:
            task.add_done_callback(one)

    async def all(self) -> list[Response]:
        try:
            return await asyncio.gather(*self.tasks)
        finally:
            if self.done:
                self._timer.cancel()


def new_session(settings: ProxySettings) -> H1Client:
    """One client for all targets: a keep-alive pool per target, nothing added to the
    caller's headers but Host and Content-Length, no decompression."""
    return H1Client(ClientSettings(max_response_size=settings.max_response_size,
                                   max_header_size=settings.max_header_size))


class Forwarder:
    """Sends requests to targets through one shared client; records metrics and health."""

    def __init__(self, settings: ProxySettings, client: Transport,
                 metrics: Metrics, health: dict[str, TargetHealth]) -> None:
        self.settings = settings
        self.client = client
        self.metrics = metrics
        self.health = health
        self._by_target: dict[str, _TargetSeries] = {}

    def start(self, targets: Sequence[tuple[str, Target]], method: str, path_qs: str,
              headers: Iterable[tuple[str, str]], body: bytes,
              caller_host: str | None = None) -> FanOut:
        """Send the request to every target at once; the `FanOut` gives each answer as it
        comes (`one`) or all of them (`all`).

        One timer bounds the whole fan-out (a timeout context per target cost 5-7 % of the
        request path); when it fires, the targets still busy are cancelled and answer
        `timeout`, the others keep their responses."""
        headers = list(headers)
        if caller_host is None:
            caller_host = next((v for k, v in headers if k.lower() == "host"), None)
        common = strip_hop_by_hop(headers, NOT_FORWARDED)
        host = (strip_shadow(caller_host)
                if self.settings.forward_host == "caller" and caller_host else None)
        try:
            block = encode_headers(common)
        except ValueError as exc:
            block = exc  # every target answers `other`: the request cannot be sent as is
        deadline = _Deadline()
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._send(name, target, method, path_qs,
                                             host or target.authority, block, body, deadline))
                 for name, target in targets]
        return FanOut(tasks, loop.call_later(self.settings.timeout, deadline.expire, tasks))

    def _series(self, name: str) -> _TargetSeries:
        series = self._by_target.get(name)
        if series is None:
            m = self.metrics
            series = self._by_target[name] = _TargetSeries(
                m.target_requests.series(target=name))
        return series

    async def _send(self, name: str, target: Target, method: str, path_qs: str,
                    host: str, headers: bytes | ValueError, body: bytes,
                    deadline: _Deadline) -> Response:
        started = time.perf_counter()
        self._series(name).requests.inc()
        try:
            if isinstance(headers, ValueError):
                raise ClientError("other", str(headers))
            if target.headers:  # checked when the flags were read: they encode
                headers += encode_headers(target.headers)
            raw = await self.client.request(target, method, path_qs, host, headers, body)
        except asyncio.CancelledError:
            if not deadline.expired:
                raise
            return self._account(name, self._timed_out(started))
        except ClientError as exc:
            return self._account(name, Response(
                status=exc.status, headers=exc.headers, body=b"", error=exc.kind,
                error_detail=exc.detail, elapsed_ms=(time.perf_counter() - started) * 1000))
        fault, decoded = inspect(raw.headers, raw.body, self.settings.max_response_size)
        if fault is not None:
            kind, detail = fault
            result = Response(status=raw.status, headers=raw.headers, body=b"", error=kind,
                              error_detail=detail,
                              elapsed_ms=(time.perf_counter() - started) * 1000)
        else:
            result = Response(status=raw.status, headers=raw.headers, body=raw.body,
                              elapsed_ms=(time.perf_counter() - started) * 1000,
                              decoded=decoded)
        return self._account(name, result)

    def _timed_out(self, started: float) -> Response:
        return Response(status=None, headers=(), body=b"", error="timeout",
                        error_detail=f"no complete response within {self.settings.timeout:g}s",
                        elapsed_ms=(time.perf_counter() - started) * 1000)

    def _account(self, name: str, result: Response) -> Response:
        if result.error is not None:
            self.metrics.target_errors.inc(target=name, kind=result.error)
        healthy = result.error not in UNHEALTHY_KINDS
        error = None if result.error is None else f"{result.error}: {result.error_detail}"
        health = self.health.get(name)
        if health is not None:
            before = health.healthy
            health.record(healthy, error)
            if health.healthy != before:  # the gauge follows `health` (the probes update it too)
                self.metrics.target_up.set(1 if health.healthy else 0, target=name)
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
    except (TimeoutError, OSError) as exc:
        kind = "timeout" if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) else "refused"
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return f"{kind}: {detail}"
