"""The comparison pipeline without sockets: a window of differing records, and documents
built only for the records the sampling policy may keep."""

from __future__ import annotations

import asyncio
import json

from diffproxy.metrics import Metrics
from diffproxy.model import Job, Record, Response
from diffproxy.pipeline import Pipeline
from diffproxy.settings import load

JSON = (("Content-Type", "application/json"),)


class Sink:
    def __init__(self) -> None:
        self.records: list[Record] = []

    def add(self, record: Record) -> None:
        self.records.append(record)

    def known_endpoints(self) -> list[str]:
        return []


def _job(n: int, candidate: bytes) -> Job:
    same = Response(200, JSON, b'{"a": 1}')
    return Job(id=f"r{n}", trace_id=f"t{n}", timestamp_msec=n, method="GET", path_qs=f"/x?n={n}",
               headers=(("Host", "svc-shadow"),), body=b"", primary=same, secondary=same,
               candidate=Response(200, JSON, candidate))


async def test_documents_only_for_the_first_and_latest_of_a_window(tmp_path):
    settings = load(["-master.primary=p:1", "-candidate=c:1", "-samples.first=2",
                     "-samples.latest=2", f"-store.path={tmp_path / 's.sqlite'}"], env={})
    sink = Sink()
    pipeline = Pipeline(settings, sink, Metrics())
    pipeline.start()
    try:
        for n in range(20):
            assert pipeline.submit(_job(n, b'{"a": 2}'))
        pipeline.submit(_job(99, b'{"a": 1}'))  # identical: stored, never documented
        await asyncio.wait_for(pipeline.queue.join(), 10)
    finally:
        await pipeline.drain(5)
    by_id = {r.id: r for r in sink.records}
    assert len(by_id) == 21 and by_id["r99"].raw == {} and by_id["r99"].document is None
    documented = sorted(int(r.id[1:]) for r in sink.records if r.document is not None)
    assert documented == [0, 1, 18, 19]
    doc = json.loads(by_id["r18"].document)
    assert "endpoint" not in doc  # the store adds it
    assert doc["differences"] == {"body.a": {"type": "changed", "left": 1, "right": 2}}
    assert doc["request"]["headers"]["host"] == "svc"


def _settings(tmp_path, *extra):
    return load(["-master.primary=p:1", "-candidate=c:1", f"-store.path={tmp_path / 's.sqlite'}",
                 *extra], env={})


async def test_the_queue_is_bounded_in_bytes_and_drops_are_counted(tmp_path):
    metrics = Metrics()
    pipeline = Pipeline(_settings(tmp_path, "-queue.maxBytes=1MB", "-queue.size=1000"), Sink(), metrics)
    big = b'{"a": "' + b"x" * 300_000 + b'"}'
    jobs = [_job(n, big) for n in range(10)]  # not started: nothing leaves the queue
    accepted = [pipeline.submit(job) for job in jobs]
    assert accepted == [True] * 3 + [False] * 7  # 3 x 300 KB fit in 1 MB, a 4th does not
    assert metrics.dropped.get() == 7
    assert metrics.dropped_bytes.get() == 7 * (len(big) + 2 * len(b'{"a": 1}'))
    assert pipeline.bytes <= 1024 * 1024
    pipeline.start()
    await asyncio.wait_for(pipeline.queue.join(), 10)
    assert pipeline.bytes == 0  # all stored: room again
    assert pipeline.submit(jobs[0])
    await pipeline.drain(5)


async def test_drain_is_bounded_and_keeps_what_was_compared(tmp_path, monkeypatch):
    import time as _time

    metrics = Metrics()
    sink = Sink()
    pipeline = Pipeline(_settings(tmp_path, "-queue.size=1000"), sink, metrics)
    real = pipeline.analyse

    def slow(job, endpoint):  # a comparison that takes 50 ms
        _time.sleep(0.05)
        return real(job, endpoint)

    monkeypatch.setattr(pipeline, "analyse", slow)
    pipeline.start()
    for n in range(400):  # 20 s of comparing
        assert pipeline.submit(_job(n, b'{"a": 2}'))
    await asyncio.sleep(0.5)
    started = _time.monotonic()
    await pipeline.drain(1.0)
    took = _time.monotonic() - started
    compared = {r.id for r in sink.records}
    assert 0 < len(compared) < 400
    assert len(compared) + metrics.dropped.get() == 400  # every job stored or counted dropped
    assert took < 1.0 + 10  # the drain deadline plus the grace for one comparison, not 20 s
