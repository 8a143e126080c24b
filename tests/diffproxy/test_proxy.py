"""The proxy in-process (one event loop, real sockets) against small hand-written targets."""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from diffproxy.endpoints import OVERFLOW_ENDPOINT
from diffproxy.model import Job, Response
from diffproxy.service import ProxyService
from diffproxy.settings import load
from tests.support import diffapi
from tests.support.procs import free_port

from .test_forward import http_reply, raw_server


def _settings(tmp_path, primary: str, candidate: str, *extra: str):
    return load([f"-master.primary={primary}", f"-candidate={candidate}",
                 f"-proxy.port=127.0.0.1:{free_port()}", f"-http.port=127.0.0.1:{free_port()}",
                 f"-admin.port=127.0.0.1:{free_port()}", f"-store.path={tmp_path / 's.sqlite'}",
                 *extra], env={})


@contextlib.asynccontextmanager
async def running(settings):
    proxy = ProxyService(settings)
    await proxy.start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            yield proxy, client
    finally:
        await proxy.stop()


def _url(listen) -> str:
    return f"http://{listen.host}:{listen.port}"


async def test_failed_response_mode_target_gives_502_json(tmp_path):
    async with raw_server(http_reply()) as (primary, _):
        closed = f"127.0.0.1:{free_port()}"
        s = _settings(tmp_path, primary.authority, closed, "-responseMode=candidate")
        async with running(s) as (proxy, client):
            r = await client.get(_url(s.listeners.proxy) + "/x")
            assert r.status_code == 502
            assert r.json()["target"] == "candidate" and r.json()["kind"] == "refused"
            ok = await client.get(_url(s.listeners.proxy) + "/y")  # still serving
            assert ok.status_code == 502 and proxy.readiness() is None


async def test_timed_out_primary_gives_504(tmp_path):
    async def slow(head, reader, writer):
        await asyncio.sleep(3)

    async with raw_server(slow) as (primary, _), raw_server(http_reply()) as (candidate, _):
        s = _settings(tmp_path, primary.authority, candidate.authority, "-target.timeout=300ms")
        async with running(s) as (_, client):
            r = await client.get(_url(s.listeners.proxy) + "/x")
            assert r.status_code == 504 and r.json()["kind"] == "timeout"


async def test_empty_mode_and_response_headers(tmp_path):
    reply = http_reply(headers=("Connection: X-Hop", "X-Hop: 1", "Keep-Alive: timeout=5",
                                "X-Kept: yes", "Content-Encoding: identity"), body=b"body")
    async with raw_server(reply) as (target, _):
        s = _settings(tmp_path, target.authority, target.authority)
        async with running(s) as (_, client):
            r = await client.get(_url(s.listeners.proxy) + "/x")
            assert (r.status_code, r.content) == (200, b"body")
            assert r.headers["x-kept"] == "yes" and r.headers["content-encoding"] == "identity"
            assert "x-hop" not in r.headers and "keep-alive" not in r.headers
        s = _settings(tmp_path, target.authority, target.authority, "-responseMode=empty")
        async with running(s) as (_, client):
            r = await client.get(_url(s.listeners.proxy) + "/x")
            assert (r.status_code, r.content) == (200, b"")


async def test_full_queue_drops_and_counts(tmp_path):
    async with raw_server(http_reply()) as (target, _):
        s = _settings(tmp_path, target.authority, target.authority, "-queue.size=1")
        async with running(s) as (proxy, _):
            proxy.pipeline._worker.cancel()  # nothing consumes: the queue stays full
            job = _job()
            assert proxy.pipeline.submit(job) is True
            assert proxy.pipeline.submit(job) is False
            assert proxy.metrics.dropped.get() == 1 and proxy.metrics.queued.get() == 1
            proxy.pipeline.queue.get_nowait()  # so stopping need not wait for it
            proxy.pipeline.queue.task_done()


def _job() -> Job:
    ok = Response(status=200, headers=(), body=b"")
    return Job(id="j", trace_id="j", timestamp_msec=0, method="GET", path_qs="/", headers=(),
               body=b"", primary=ok, secondary=ok, candidate=ok)


async def test_endpoint_cap_and_clear(tmp_path):
    async with raw_server(http_reply()) as (target, _):
        s = _settings(tmp_path, target.authority, target.authority, "-max.endpoints=1",
                      "-admin.token=t0k")
        async with running(s) as (proxy, client):
            base, api = _url(s.listeners.proxy), _url(s.listeners.http) + "/api/1"
            for path in ("/a", "/b", "/c"):
                await client.get(base + path)
            await proxy.pipeline.queue.join()
            assert diffapi.counts((await client.get(api + "/endpoints")).json()) == {
                "GET /a": {"total": 1, "differences": 0},
                OVERFLOW_ENDPOINT: {"total": 2, "differences": 0}}
            denied = await client.post(api + "/clear")
            assert denied.status_code == 401 and "admin token" in denied.json()["error"]
            cleared = await client.post(api + "/clear", headers={"Authorization": "Bearer t0k"})
            assert cleared.json() == {"success": "Diffs cleared"}
            await client.get(base + "/b")
            await proxy.pipeline.queue.join()
            assert list((await client.get(api + "/endpoints")).json()) == ["GET /b"]
            assert (await client.get(api + "/info")).json()["last_reset"] is not None
