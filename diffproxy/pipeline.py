"""The comparison pipeline: off the request path, take each mirrored request's three
answers from a bounded queue, name its endpoint, compare, redact, build the document of
what may be kept, and hand the record to the store (or, in a worker process, to the
channel to the owner).

The queue is bounded in jobs (-queue.size) and in body bytes (-queue.maxBytes: the request
and the three answers, raw and decoded, counted from submit until the record is stored);
when either is full the comparison is dropped and counted (diffproxy_comparisons_dropped_total
and _dropped_bytes_total), never making the caller wait. One task takes queued jobs in
batches, names the endpoints and compares them in a thread (so a big deepdiff never stalls the event loop).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from multidict import CIMultiDict

from .compare import Comparator, CompareSettings
from .endpoints import EndpointNamer
from .headers import content_headers, strip_shadow
from .lift import LiftSettings, lift, parse_body
from .metrics import Metrics
from .model import Difference, Job, Record, Response
from .redact import Redactor
from .sampling import ExampleSampler
from .settings import Settings

log = logging.getLogger("diffproxy.pipeline")

MAX_STORED_REQUEST_BODY = 64 * 1024
BATCH_SIZE = 256  # comparisons per executor call
MIN_BATCH = 32  # with fewer queued, wait BATCH_WAIT seconds for more first
BATCH_WAIT = 0.002
DOCUMENT_WINDOW = 0.1  # seconds of differing records the sampling policy chooses among
MAX_HELD = 4096  # ... or this many, whichever comes first: bounds memory under load
DRAIN_GRACE = 10.0  # seconds past the drain deadline for the comparison in progress
_NOT_DONE = object()  # an outcome: not compared, the drain deadline had passed


class RecordSink(Protocol):
    """Where finished comparisons go: the store, or in a worker process, the channel to
    the owner (`workers.child.Outbox`)."""

    epoch: int  # bumped by every clear of the results

    def add(self, record: Record) -> bool: ...  # False: the record predates a clear

    def known_endpoints(self) -> list[str]: ...


class Pipeline:
    """The bounded queue and the task that empties it."""

    def __init__(self, settings: Settings, store: RecordSink, metrics: Metrics,
                 endpoint_cap: bool = True) -> None:
        diff = settings.diff
        # False in a worker process: it names endpoints, the owner applies -max.endpoints.
        self.endpoint_cap = endpoint_cap
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.proxy.queue_size)
        self.max_bytes = settings.proxy.queue_max_bytes
        self.bytes = 0  # body bytes of jobs submitted and not yet stored (queued or held)
        self.comparator = Comparator(CompareSettings(
            ignore_headers=diff.ignore_headers, ignore_fields=diff.ignore_fields,
            exclude_headers=diff.exclude_headers, header_values=diff.header_values,
            lift=LiftSettings(untyped_body=diff.untyped_body,
                              json_in_strings=diff.json_in_strings)))
        targets = settings.targets
        self.redactor = Redactor(extra_headers=diff.redact_headers, fields=diff.redact_fields,
                                 target_headers=(*targets.primary.headers, *targets.secondary.headers,
                                                 *targets.candidate.headers))
        self.sampler = ExampleSampler(settings.store.samples_first, settings.store.samples_latest)
        self.namer = self._new_namer()
        # Requests that carry secrets: their redactor with the secrets bound, by job id,
        # from naming until the record is stored (the others use `self.redactor`).
        self._bound: dict[str, Redactor] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffproxy-compare")
        self._worker: asyncio.Task | None = None
        self._deadline: float | None = None  # monotonic; set by drain(): stop comparing then
        metrics.queue_depth.callback = self.queue.qsize

    def _new_namer(self) -> EndpointNamer:
        return EndpointNamer(self.settings.diff.resource_mappings,
                             self.settings.diff.max_endpoints,
                             known=self.store.known_endpoints())

    def reset(self) -> None:
        """After the store was cleared: endpoint names and first examples start from scratch."""
        self.namer = self._new_namer()
        self.sampler.reset()

    @property
    def epoch(self) -> int:
        """Stamped on each request as it arrives (`Job.epoch`)."""
        return self.store.epoch

    def submit(self, job: Job) -> bool:
        size = job_bytes(job)
        try:
            if self.bytes + size > self.max_bytes and self.bytes > 0:
                raise asyncio.QueueFull
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            self.metrics.dropped.inc()
            self.metrics.dropped_bytes.inc(size)
            return False
        self.bytes += size
        self.metrics.queued.inc()
        return True

    def _done(self, jobs) -> None:
        for job in jobs:
            self.bytes -= job_bytes(job)
            self.queue.task_done()

    def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="diffproxy-compare")

    async def _run(self) -> None:
        # Jobs are taken in batches: one executor round trip per job costs a full event-loop
        # iteration, which under load (milliseconds each) capped comparisons at ~150/s.
        # Records with differences are held for one window (`DOCUMENT_WINDOW`) before the
        # sampling policy picks whose documents to build: over a window of batches only the
        # newest few per field are wanted, where a batch of a few jobs would want them all.
        loop = asyncio.get_running_loop()
        queue = self.queue
        held: list[tuple[Job, Record]] = []  # their task_done() waits until they are stored
        window_end = 0.0
        while True:
            try:
                if held:
                    async with asyncio.timeout_at(window_end):
                        first = await queue.get()
                else:
                    first = await queue.get()
            except TimeoutError:
                await self._release(held)
                held = []
                continue
            if queue.qsize() < MIN_BATCH:
                # Let a batch gather: each executor call costs a thread wake-up and two GIL
                # hand-overs whatever it carries (7 % of the CPU of (d) at a few jobs each).
                await asyncio.sleep(BATCH_WAIT)
            jobs = [first]
            while len(jobs) < BATCH_SIZE and not queue.empty():
                jobs.append(queue.get_nowait())
            held_now: set[int] = set()
            try:
                named: list[tuple[Job, str | None]] = []
                name = self.namer.name if self.endpoint_cap else self.namer.candidate
                for job in jobs:
                    try:
                        r = self.redactor.for_request(job.headers, job.path_qs, job.body)
                        if r is not self.redactor:
                            self._bound[job.id] = r
                        # named from the masked path: `/basic-auth/alice/hunter2` must not
                        # keep the password in the endpoint name
                        endpoint = name(job.method, r.path(job.path_qs), CIMultiDict(job.headers))
                        named.append((job, r.text(endpoint) if r.secrets else endpoint))
                    except Exception:  # noqa: BLE001 - one bad request must not stop the worker
                        self._failed(job)
                        named.append((job, None))
                outcomes = await self._analyse_all(loop, named)
                for (job, endpoint), outcome in zip(named, outcomes):
                    if endpoint is None:
                        continue
                    if outcome is _NOT_DONE:  # past the drain deadline
                        self.metrics.dropped.inc()
                        self.metrics.dropped_bytes.inc(job_bytes(job))
                    elif isinstance(outcome, BaseException):
                        self._failed(job, outcome)
                    elif outcome.raw or outcome.noise:
                        if not held:
                            window_end = loop.time() + DOCUMENT_WINDOW
                        held.append((job, outcome))
                        held_now.add(id(job))
                    else:
                        self._store(job, outcome)
            finally:
                self._done(job for job in jobs if id(job) not in held_now)
            # Under load the queue is never empty, so the timeout above never fires.
            if held and (loop.time() >= window_end or len(held) >= MAX_HELD):
                await self._release(held)
                held = []

    async def _release(self, held: list[tuple[Job, Record]]) -> None:
        """Build the documents the sampling policy wants of the held records, store them all."""
        try:
            records = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._with_documents, held)
            for (job, _), record in zip(held, records):
                self._store(job, record)
        finally:
            self._done(job for job, _ in held)

    def _redactor(self, job: Job) -> Redactor:
        return self._bound.get(job.id, self.redactor)

    def _store(self, job: Job, record: Record) -> None:
        self._bound.pop(job.id, None)
        try:
            added = self.store.add(record)
        except Exception as exc:  # noqa: BLE001 - counted, the pipeline goes on
            self._failed(job, exc)
            return
        if added is False:  # it arrived before the results were cleared
            self.metrics.cleared.inc()
            return
        self.metrics.completed.inc()
        if record.raw:
            self.metrics.differences.inc()
        if record.noise:
            self.metrics.noise.inc()

    def _failed(self, job: Job, exc: BaseException | None = None) -> None:
        self.metrics.failed.inc()
        redactor = self._bound.pop(job.id, None) or self.redactor
        if isinstance(exc, RecursionError):  # its traceback is ~1000 frames of one walk
            log.error("comparing %s %s failed: nested too deep (RecursionError)", job.method,
                      redactor.path(job.path_qs))
            return
        log.error("comparing %s %s failed", job.method, redactor.path(job.path_qs),
                  exc_info=exc if exc is not None else True)

    async def _analyse_all(self, loop: asyncio.AbstractEventLoop,
                           named: list[tuple[Job, str | None]]) -> list:
        """`_analyse_batch` of every job: those whose three bodies are the same bytes here
        (a few microseconds each: no body is parsed), the others in the comparison thread.
        Under load the queue holds a few jobs per round, and an executor round trip per
        batch (a thread woken, the GIL handed over and back) cost more than comparing
        identical bodies: 9 % of the CPU of (c) was `ThreadPoolExecutor.submit`."""
        cheap = [_same_bodies(job) for job, _ in named]
        if all(cheap):
            return self._analyse_batch(named)
        if not any(cheap):
            return await loop.run_in_executor(self._executor, self._analyse_batch, named)
        here = iter(self._analyse_batch([n for n, c in zip(named, cheap) if c]))
        there = iter(await loop.run_in_executor(self._executor, self._analyse_batch,
                                                [n for n, c in zip(named, cheap) if not c]))
        return [next(here) if c else next(there) for c in cheap]

    def _analyse_batch(self, named: list[tuple[Job, str | None]]) -> list[Record | BaseException | None]:
        """Compare and redact a batch. Runs in the comparison thread."""
        out: list[Record | BaseException | None] = []
        for job, endpoint in named:
            if endpoint is None:
                out.append(None)
                continue
            if self._past_deadline():
                out.append(_NOT_DONE)
                continue
            try:
                out.append(self.analyse(job, endpoint))
            except Exception as exc:  # noqa: BLE001 - reported per job by the caller
                out.append(exc)
        return out

    def _with_documents(self, held: list[tuple[Job, Record]]) -> list[Record]:
        """The held records, with documents for those the sampling policy may keep. Runs in
        the comparison thread."""
        keys = [[(r.endpoint, path) for path in (*r.raw, *r.noise)] for _, r in held]
        out = [record for _, record in held]
        for i, keep in enumerate(self.sampler.select(keys)):
            if keep and not self._past_deadline():  # past it: counted, not an example
                job, record = held[i]
                try:
                    out[i] = dataclasses.replace(record, document=self.document(job, record))
                except Exception:  # counted without an example
                    log.exception("building result %s failed; it is not kept as an example",
                                  record.id)
        return out

    def analyse(self, job: Job, endpoint: str) -> Record:
        """Compare, then redact everything that will be stored."""
        result = self.comparator.compare(job.primary, job.secondary, job.candidate)
        for reason in result.bounded:
            self.metrics.bounded.inc(reason=reason)
        latency = (_elapsed(job.primary), _elapsed(job.secondary), _elapsed(job.candidate))
        if result.identical or not (result.raw or result.noise):
            return Record(id=job.id, endpoint=endpoint, raw={}, noise={}, failed=result.failed,
                          baseline_failed=result.baseline_failed, latency_ms=latency,
                          epoch=job.epoch)
        r = self._redactor(job)
        raw = {p: _difference(d, result.raw.get(p, d)) for p, d in r.differences(result.raw).items()}
        noise = {p: _difference(d, result.noise.get(p, d))
                 for p, d in r.differences(result.noise).items()}
        return Record(id=job.id, endpoint=endpoint, raw=raw, noise=noise, failed=result.failed,
                      baseline_failed=result.baseline_failed, latency_ms=latency, epoch=job.epoch)

    def document(self, job: Job, record: Record) -> str:
        """The stored result, redacted and serialised, without its endpoint (the store adds
        it); built only for records that may be kept as examples."""
        r = self._redactor(job)
        limit = self.comparator.settings.max_body_bytes
        lifting = self.comparator.settings.lift
        doc = {
            "id": job.id,
            "trace_id": job.trace_id,
            "timestamp_msec": job.timestamp_msec,
            "method": job.method,
            "uri": r.path(job.path_qs),
            "differences": record.raw,
            "noise": record.noise,
            "request": self._request(job, r),
            "failed": list(record.failed),
            "baseline_failed": record.baseline_failed,
        }
        doc["primary"], doc["secondary"], doc["candidate"] = _lifted_sides(
            r, (job.primary, job.secondary, job.candidate), limit, lifting)
        return json.dumps(doc, separators=(",", ":"))

    def _request(self, job: Job, r: Redactor) -> dict:
        headers: dict[str, str] = {}
        for name, value in job.headers:
            lower = name.lower()
            if lower == "host":
                value = strip_shadow(value)
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        body = job.body
        if body:
            # Parsed whole and redacted before it is cut to MAX_STORED_REQUEST_BODY: a
            # secret cut in two by the limit would keep its prefix.
            body_value = r.value(parse_body(body, headers.get("content-type", ""),
                                            headers.get("content-encoding", ""),
                                            self.comparator.settings.max_body_bytes))
            if len(body) > MAX_STORED_REQUEST_BODY:
                text = body_value if isinstance(body_value, str) else json.dumps(body_value)
                if len(text) > MAX_STORED_REQUEST_BODY:
                    body_value = (f"{text[:MAX_STORED_REQUEST_BODY]}... "
                                  f"[{len(text)} chars, cut at {MAX_STORED_REQUEST_BODY}]")
        else:
            body_value = ""
        out = r.lifted({"method": job.method, "uri": job.path_qs, "headers": headers, "body": ""})
        out["body"] = body_value
        return out

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    async def drain(self, timeout: float) -> None:
        """Finish what is queued within `timeout`, then stop the worker. Past the deadline
        the rest of the queue is dropped (counted) instead of compared, and what is already
        compared is still recorded (without building more example documents), so the stop
        takes `timeout` plus at most one comparison (bounded by compare.MAX_COMPARE_NODES and
        lift.MAX_COMPARE_DEPTH)."""
        self._deadline = time.monotonic() + timeout
        dropped_before = self.metrics.dropped.get()
        try:
            await asyncio.wait_for(self.queue.join(), timeout + DRAIN_GRACE)
        except TimeoutError:
            log.warning("stopping with %d comparisons not done", self.queue.qsize())
        dropped = int(self.metrics.dropped.get() - dropped_before)
        if dropped:
            log.warning("stopping: %d queued comparisons dropped after the %gs drain "
                        "(-shutdown.drainTimeout); counted in diffproxy_comparisons_dropped_total",
                        dropped, timeout)
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)


def _lifted_sides(r: Redactor, responses: tuple[Response, ...], limit: int,
                  lifting: LiftSettings) -> list[dict]:
    """Each response lifted and redacted; a body that arrived byte for byte like an earlier
    side's (the primary and the secondary, mostly) is parsed and redacted once: with a
    difference every few requests per endpoint, building documents was a third of the CPU
    of the realistic mix, most of it parsing and redacting the same body again."""
    out: list[dict] = []
    for i, response in enumerate(responses):
        twin = next((out[j]["body"] for j in range(i) if _same_body(responses[j], response)), None)
        if twin is None:
            out.append(r.lifted(lift(response, limit, lifting)))
        else:
            lifted = r.lifted(lift(response, limit, lifting, body=""))
            lifted["body"] = twin
            out.append(lifted)
    return out


def _same_body(a: Response, b: Response) -> bool:
    return (a.error is None and b.error is None and a.body == b.body
            and content_headers(a.headers) == content_headers(b.headers))


def _same_bodies(job: Job) -> bool:
    p, s, c = job.primary, job.secondary, job.candidate
    return p.error is None and s.error is None and c.error is None and p.body == s.body == c.body


def job_bytes(job: Job) -> int:
    """What a queued job holds in bodies: the request, and each answer raw and decoded."""
    n = len(job.body)
    for r in (job.primary, job.secondary, job.candidate):
        n += len(r.body) + (len(r.decoded) if r.decoded is not None else 0)
    return n


def _elapsed(response) -> float | None:
    """Time to the full response; None when the target gave none (its error is counted)."""
    return None if response.status is None or response.error else response.elapsed_ms


def _difference(d: Difference, original: Difference) -> dict:
    """`d` redacted as stored; the subtree facts (leaf count, where it moved) come from the
    comparison's own `original` (paths, not values: nothing to redact)."""
    out = {"type": d.type, "left": d.left, "right": d.right}
    if original.leaves is not None:
        out["leaves"] = original.leaves
    if d.to is not None:  # redacted too: a secret may be a key on the moved path
        out["to"] = d.to
    return out
