"""Receiving: the proxy port. Take a mirrored request (refusing side effects and oversized
bodies), have the forwarder fan it out to the three targets, queue the three answers on
the comparison pipeline, and answer the caller as -responseMode says.
"""

from __future__ import annotations

import itertools
import json
import secrets
import time

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from .forward import Forwarder
from .headers import strip_hop_by_hop
from .metrics import KNOWN_METHODS, Metrics
from .model import TARGET_ORDER, Job, Response
from .pipeline import Pipeline
from .settings import Settings

SIDE_EFFECT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUEST_ID_HEADER = "X-Diffproxy-Request-Id"
_TRACE_HEADERS = ("x-request-id", "x-b3-traceid", "traceparent", "x-cloud-trace-context")


def json_error(status: int, message: str, **extra) -> web.Response:
    return web.Response(status=status, text=json.dumps({"error": message, **extra}),
                        content_type="application/json",
                        headers={"X-Content-Type-Options": "nosniff"})


def trace_id(headers: CIMultiDictProxy[str] | CIMultiDict[str], fallback: str) -> str:
    for name in _TRACE_HEADERS:
        value = headers.get(name)
        if value:
            if name == "traceparent":  # version-traceid-spanid-flags
                parts = value.split("-")
                return parts[1] if len(parts) >= 2 else value
            return value.split("/")[0].strip()[:128]
    return fallback


def _path_qs(request: web.Request) -> str:
    raw = request.raw_path
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
    """The only route on the proxy port."""

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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method = request.method.upper()
        self._requests[Metrics.method_label(method)].inc()
        proxy = self.settings.proxy
        if method in SIDE_EFFECT_METHODS and not proxy.allow_http_side_effects:
            self.metrics.blocked.inc(method=method)
            self.metrics.rejected.inc(reason="side_effect")
            return json_error(
                403, f"{method} requests are not forwarded: they could change data on the "
                     "targets. Start diffproxy with -allowHttpSideEffects to forward them.",
                flag="-allowHttpSideEffects", method=method)

        body = await self._read_body(request, proxy.max_request_size)
        if body is None:
            self.metrics.rejected.inc(reason="too_large")
            rejected = json_error(413, f"request body larger than -maxRequestSize "
                                       f"({proxy.max_request_size} bytes)",
                                  limit=proxy.max_request_size)
            # The rest of the body is unread: close rather than make the caller send (and
            # us swallow) all of it before the connection could be used again.
            rejected.force_close()
            return rejected

        path_qs = _path_qs(request)
        headers = tuple((k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers)
        caller_host = request.headers.get("Host")
        responses = await self.forwarder.fan_out(self._targets, method, path_qs, headers, body,
                                                 caller_host)
        primary, secondary, candidate = responses

        job_id = self._ids.next()
        self.pipeline.submit(Job(
            id=job_id, trace_id=trace_id(request.headers, job_id),
            timestamp_msec=int(time.time() * 1000), method=method, path_qs=path_qs,
            headers=headers, body=body, primary=primary, secondary=secondary,
            candidate=candidate))

        if proxy.response_mode == "empty":
            return web.Response(status=200, body=b"", headers={REQUEST_ID_HEADER: job_id})
        chosen = dict(zip(TARGET_ORDER, responses))[proxy.response_mode]
        if chosen.error is not None:
            status = 504 if chosen.error == "timeout" else 502
            return json_error(status, f"the {proxy.response_mode} target failed: {chosen.error}",
                              target=proxy.response_mode, kind=chosen.error,
                              detail=chosen.error_detail)
        return self._to_caller(chosen, job_id)

    @staticmethod
    async def _read_body(request: web.Request, limit: int) -> bytes | None:
        """The whole request body, or None when it is larger than `limit`."""
        if request.content_length is not None and request.content_length > limit:
            return None
        if not request.body_exists:  # most mirrored traffic: GETs without a body
            return b""
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _to_caller(response: Response, job_id: str) -> web.Response:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in strip_hop_by_hop(response.headers):
            if name.lower() != "content-length":  # aiohttp frames the body itself
                headers.add(name, value)
        headers[REQUEST_ID_HEADER] = job_id
        return web.Response(status=response.status or 502, body=response.body, headers=headers)


def proxy_runner(handler: ProxyHandler, max_header_size: int) -> web.AppRunner:
    """The proxy port's server (the owner's and every worker's): one catch-all route."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler.handle)
    header_limit = max(8190, max_header_size)
    return web.AppRunner(app, access_log=None, handle_signals=False,
                         max_line_size=header_limit, max_field_size=header_limit)
