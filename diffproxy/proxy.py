"""The proxy port: fan each request out to the three targets at once, answer the caller,
and queue the three answers for comparison off the request path.

The queue is bounded; when it is full the comparison is dropped and counted, never making
the caller wait. One background worker takes queued jobs in batches, names the endpoints
and compares them (in a thread, so a big deepdiff never stalls the event loop), and hands
each record to the store; the redacted document of a record is built later, and only if
the store keeps it as an example.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import itertools
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from . import compare
from .compare import CompareSettings, Comparator, Response
from .endpoints import EndpointNamer
from .forward import Forwarder, strip_hop_by_hop, strip_shadow
from .metrics import KNOWN_METHODS, Metrics
from .redact import Redactor
from .settings import Settings
from .store import Record

log = logging.getLogger("diffproxy.proxy")

SIDE_EFFECT_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TARGET_ORDER = ("primary", "secondary", "candidate")
REQUEST_ID_HEADER = "X-Diffproxy-Request-Id"
MAX_STORED_REQUEST_BODY = 64 * 1024
BATCH_SIZE = 256  # comparisons per executor call
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


@dataclass(frozen=True)
class Job:
    """One request and what the three targets answered, waiting to be compared."""

    id: str
    trace_id: str
    timestamp_msec: int
    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    primary: Response
    secondary: Response
    candidate: Response


class RecordSink(Protocol):
    """Where finished comparisons go: the store, or in a worker process, the channel to
    the owner (`worker.ResultSink`)."""

    def add(self, record: Record) -> None: ...

    def known_endpoints(self) -> list[str]: ...


class Comparisons:
    """The bounded queue and its worker."""

    def __init__(self, settings: Settings, store: RecordSink, metrics: Metrics,
                 endpoint_cap: bool = True) -> None:
        diff = settings.diff
        # False in a worker process: it names endpoints, the owner applies -max.endpoints.
        self.endpoint_cap = endpoint_cap
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.proxy.queue_size)
        self.comparator = Comparator(CompareSettings(
            ignore_headers=diff.ignore_headers, ignore_fields=diff.ignore_fields,
            exclude_headers=diff.exclude_headers))
        self.redactor = Redactor(extra_headers=diff.redact_headers, fields=diff.redact_fields)
        self.namer = self._new_namer()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffproxy-compare")
        self._worker: asyncio.Task | None = None
        metrics.queue_depth.callback = self.queue.qsize

    def _new_namer(self) -> EndpointNamer:
        return EndpointNamer(self.settings.diff.resource_mappings,
                             self.settings.diff.max_endpoints,
                             known=self.store.known_endpoints())

    def reset(self) -> None:
        """After the store was cleared: endpoint names start from scratch too."""
        self.namer = self._new_namer()

    def submit(self, job: Job) -> bool:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.dropped.inc()
            return False
        self.metrics.queued.inc()
        return True

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="diffproxy-compare")

    async def _run(self) -> None:
        # Jobs are taken in batches: one executor round trip per job costs a full event-loop
        # iteration, which under load (milliseconds each) capped comparisons at ~150/s.
        loop = asyncio.get_running_loop()
        queue = self.queue
        while True:
            jobs = [await queue.get()]
            while len(jobs) < BATCH_SIZE and not queue.empty():
                jobs.append(queue.get_nowait())
            try:
                named: list[tuple[Job, str | None]] = []
                name = self.namer.name if self.endpoint_cap else self.namer.candidate
                for job in jobs:
                    try:
                        named.append((job, name(job.method, job.path_qs, CIMultiDict(job.headers))))
                    except Exception:  # noqa: BLE001 - one bad request must not stop the worker
                        self._failed(job)
                        named.append((job, None))
                outcomes = await loop.run_in_executor(self._executor, self._analyse_batch, named)
                for (job, endpoint), outcome in zip(named, outcomes):
                    if endpoint is None:
                        continue
                    if isinstance(outcome, BaseException):
                        self._failed(job, outcome)
                        continue
                    try:
                        self.store.add(outcome)
                    except Exception as exc:  # noqa: BLE001
                        self._failed(job, exc)
                        continue
                    self.metrics.completed.inc()
                    if outcome.raw:
                        self.metrics.differences.inc()
                    if outcome.noise:
                        self.metrics.noise.inc()
            finally:
                for _ in jobs:
                    queue.task_done()

    def _failed(self, job: Job, exc: BaseException | None = None) -> None:
        self.metrics.failed.inc()
        log.error("comparing %s %s failed", job.method, self.redactor.text(job.path_qs),
                  exc_info=exc if exc is not None else True)

    def _analyse_batch(self, named: list[tuple[Job, str | None]]) -> list[Record | BaseException | None]:
        out: list[Record | BaseException | None] = []
        for job, endpoint in named:
            if endpoint is None:
                out.append(None)
                continue
            try:
                out.append(self.analyse(job, endpoint))
            except Exception as exc:  # noqa: BLE001 - reported per job by the caller
                out.append(exc)
        return out

    def analyse(self, job: Job, endpoint: str) -> Record:
        """Compare, then redact everything that will be stored. Runs in the worker thread."""
        result = self.comparator.compare(job.primary, job.secondary, job.candidate)
        if result.identical or not (result.raw or result.noise):
            return Record(id=job.id, endpoint=endpoint, raw={}, noise={})
        r = self.redactor
        raw = {p: _difference(d) for p, d in r.differences(result.raw).items()}
        noise = {p: _difference(d) for p, d in r.differences(result.noise).items()}
        return Record(id=job.id, endpoint=endpoint, raw=raw, noise=noise,
                      build=partial(self._document, job, endpoint, raw, noise))

    def _document(self, job: Job, endpoint: str, raw: dict, noise: dict) -> str:
        """The stored result, redacted and serialised; built only for kept examples."""
        r = self.redactor
        doc = {
            "id": job.id,
            "trace_id": job.trace_id,
            "timestamp_msec": job.timestamp_msec,
            "endpoint": endpoint,
            "method": job.method,
            "uri": r.text(job.path_qs),
            "differences": raw,
            "noise": noise,
            "request": self._request(job),
            "primary": r.lifted(self.comparator.lift(job.primary)),
            "secondary": r.lifted(self.comparator.lift(job.secondary)),
            "candidate": r.lifted(self.comparator.lift(job.candidate)),
        }
        return json.dumps(doc, separators=(",", ":"))

    def _request(self, job: Job) -> dict:
        headers: dict[str, str] = {}
        for name, value in job.headers:
            lower = name.lower()
            if lower == "host":
                value = strip_shadow(value)
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        body = job.body
        if body:
            body_value = compare.parse_body(body[:MAX_STORED_REQUEST_BODY],
                                            headers.get("content-type", ""),
                                            headers.get("content-encoding", ""),
                                            MAX_STORED_REQUEST_BODY)
        else:
            body_value = ""
        return self.redactor.lifted({"method": job.method, "uri": job.path_qs,
                                     "headers": headers, "body": body_value})

    async def drain(self, timeout: float) -> None:
        """Finish what is queued (bounded wait), then stop the worker."""
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except asyncio.TimeoutError:
            log.warning("stopping with %d comparisons not done", self.queue.qsize())
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)


def _difference(d: compare.Difference) -> dict:
    return {"type": d.type, "left": d.left, "right": d.right}


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

    def __init__(self, settings: Settings, forwarder: Forwarder, comparisons: Comparisons,
                 metrics: Metrics) -> None:
        self.settings = settings
        self.forwarder = forwarder
        self.comparisons = comparisons
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
        self.comparisons.submit(Job(
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
