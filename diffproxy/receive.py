"""Receiving: the proxy port. Take a mirrored request (refusing side effects and oversized
bodies), have the forwarder fan it out to the three targets, queue the three answers on
the comparison pipeline, and answer the caller as -responseMode says.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
from collections.abc import Iterable

from .forward import FanOut, Forwarder
from .h1server import ProxyServer, Reply, Request, ServerSettings, json_reply
from .headers import strip_hop_by_hop
from .metrics import KNOWN_METHODS, Metrics
from .model import TARGET_ORDER, Job, Response
from .pipeline import Pipeline
from .settings import Settings

# An allow-list: any other method (POST, PUT, WebDAV's MKCOL/PROPPATCH/MOVE/LOCK, a
# cache's PURGE, whatever a client invents) may change data on the targets.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
REQUEST_ID_HEADER = "X-Diffproxy-Request-Id"
_TRACE_HEADERS = ("x-request-id", "x-b3-traceid", "traceparent", "x-cloud-trace-context")


def json_error(status: int, message: str, **extra) -> Reply:
    return json_reply(status, message, **extra)


_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
MAX_TRACE_ID = 128


def trace_id(headers: Iterable[tuple[str, str]], fallback: str) -> str:
    """The caller's trace id, from the first tracing header present; the request id when
    none is usable. Bounded: a W3C traceparent must be well formed (32 hex digits, not all
    zero), any other id is cut to `MAX_TRACE_ID` characters."""
    found: dict[str, str] = {}
    for name, value in headers:
        lower = name.lower()
        if lower in _TRACE_HEADERS and lower not in found:
            found[lower] = value
    for name in _TRACE_HEADERS:
        value = found.get(name)
        if not value:
            continue
        if name == "traceparent":  # version-traceid-spanid-flags
            match = _TRACEPARENT.match(value.strip().lower())
            if match is None or match.group(1) == "0" * 32:
                continue
            return match.group(1)
        value = value.split("/")[0].strip()[:MAX_TRACE_ID]
        if value:
            return value
    return fallback


# RFC 9110 7.2 / RFC 3986 3.2.2: reg-name or IP literal, then an optional port; ASCII only.
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+(?:%25[0-9A-Za-z._~-]+)?\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)"
                   r"(?::[0-9]{0,5})?$")


def valid_host(value: str) -> bool:
    return bool(value) and _HOST.match(value) is not None


def _path_qs(raw: str) -> str:
    if "://" in raw.split("?", 1)[0]:  # absolute-form request target, as sent to a forward proxy
        after = raw.split("://", 1)[1]
        slash = after.find("/")
        raw = after[slash:] if slash >= 0 else "/"
    return raw if raw.startswith("/") else "/" + raw


class RequestIds:
    """Unique ids without uuid4's cost per request: a random prefix per process (ids must not
    repeat across restarts: the store keys results by id) and a counter."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):016x}"


class ProxyHandler:
    """Every request on the proxy port."""

    def __init__(self, settings: Settings, forwarder: Forwarder, pipeline: Pipeline,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.forwarder = forwarder
        self.pipeline = pipeline
        self.metrics = metrics
        self._targets = tuple((name, getattr(settings.targets, name)) for name in TARGET_ORDER)
        self._requests = {label: metrics.requests.series(method=label)
                          for label in (*KNOWN_METHODS, "OTHER")}
        self._ids = RequestIds()
        mode = settings.proxy.response_mode
        self._chosen = None if mode == "empty" else TARGET_ORDER.index(mode)
        # Fan-outs whose caller was answered before every target was (see `_finish`).
        self._background: set[FanOut] = set()
        self._max_background = settings.proxy.queue_size

    async def handle(self, request: Request) -> Reply:
        method = request.method.upper()
        self._requests[Metrics.method_label(method)].inc()
        proxy = self.settings.proxy
        if method not in SAFE_METHODS and not proxy.allow_http_side_effects:
            self.metrics.blocked.inc(method=Metrics.method_label(method))
            self.metrics.rejected.inc(reason="side_effect")
            return json_error(
                403, f"{method} requests are not forwarded: they could change data on the "
                     "targets. Start diffproxy with -allowHttpSideEffects to forward them.",
                flag="-allowHttpSideEffects", method=method[:32])

        headers = request.headers
        hosts = [v for k, v in headers if k.lower() == "host"]
        caller_host = hosts[0] if hosts else None
        if proxy.forward_host == "caller" and (len(hosts) > 1 or (hosts and not valid_host(hosts[0]))):
            # It would be sent on to the targets: only a well-formed ASCII host[:port].
            self.metrics.rejected.inc(reason="malformed")
            return json_error(400, "invalid Host header: want one host[:port] in ASCII "
                                   "(-forward.host=caller sends it to the targets)")

        path_qs = _path_qs(request.target)
        epoch = self.pipeline.epoch
        fan = self.forwarder.start(self._targets, method, path_qs, headers, request.body,
                                   caller_host)
        job_id = self._ids.next()
        job = (job_id, trace_id(headers, job_id), int(time.time() * 1000), method, path_qs,
               tuple(headers), request.body, epoch)
        if len(self._background) >= self._max_background:
            # Targets slower than the caller's pace: answered early, their fan-outs would pile
            # up without bound. So this caller waits for all three, as a bound on memory.
            await fan.all()
        if self._chosen is None:
            self._finish(fan, job)
            return Reply(200, ((REQUEST_ID_HEADER, job_id),))
        chosen = await fan.one(self._chosen)
        self._finish(fan, job)
        if chosen.error is not None:
            mode = proxy.response_mode
            status = 504 if chosen.error == "timeout" else 502
            return json_error(status, f"the {mode} target failed: {chosen.error}",
                              target=mode, kind=chosen.error, detail=chosen.error_detail)
        return self._to_caller(chosen, job_id)

    def _finish(self, fan: FanOut, job: tuple) -> None:
        """Queue the comparison once every target has answered: now if they have, else off
        the caller's path (each target within -target.timeout)."""
        if fan.done:
            self._submit(job, fan.results())
            return
        self._background.add(fan)

        def done(responses: list[Response] | None) -> None:
            self._background.discard(fan)
            if responses is not None:  # None: the proxy is stopping
                self._submit(job, responses)

        fan.when_done(done)

    def _submit(self, job: tuple, responses: list[Response]) -> None:
        job_id, trace, stamp, method, path_qs, headers, body, epoch = job
        primary, secondary, candidate = responses
        self.pipeline.submit(Job(
            id=job_id, trace_id=trace, timestamp_msec=stamp, method=method, path_qs=path_qs,
            headers=headers, body=body, primary=primary, secondary=secondary,
            candidate=candidate, epoch=epoch))

    @property
    def pending(self) -> int:
        """Fan-outs whose comparison is not queued yet (their caller was answered)."""
        return len(self._background)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) for fan-outs still running off the callers' paths."""
        if self._background:
            await asyncio.wait([t for fan in self._background for t in fan.tasks], timeout=timeout)
            await asyncio.sleep(0)  # the fan-outs' own callbacks (submitting) run first anyway

    @staticmethod
    def _to_caller(response: Response, job_id: str) -> Reply:
        # Content-Length stays: the server drops it (and frames the body itself) except
        # for HEAD and 304, whose length describes a body that is not sent.
        headers = strip_hop_by_hop(response.headers)
        headers.append((REQUEST_ID_HEADER, job_id))
        return Reply(response.status or 502, headers, response.body)


def proxy_server(handler: ProxyHandler, settings: Settings, metrics: Metrics) -> ProxyServer:
    """The proxy port's server (the owner's and every worker's)."""
    limit = max(8190, settings.proxy.max_header_size)
    edge = settings.edge
    return ProxyServer(handler.handle, ServerSettings(
        max_line=limit, max_field=limit, max_body=settings.proxy.max_request_size,
        header_timeout=edge.header_timeout, body_timeout=edge.body_timeout,
        idle_timeout=edge.idle_timeout), on_rejected=lambda reason: metrics.rejected.inc(reason=reason))
