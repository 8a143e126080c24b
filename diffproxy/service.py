"""Wiring: one process, one event loop, three listeners (proxy, http, admin); with
`-workers=N`, N-1 more processes share the proxy port and report to this one (`workers.pool`).

Start order: store (refuses a bad file before anything listens), client session, the
comparison worker, then the three sites. Stop order (SIGTERM/SIGINT): stop taking
mirrored traffic, finish queued comparisons (bounded), write the store, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from aiohttp import web

from . import __version__
from .admin import admin_app
from .api import Api, add_nosniff, http_middleware
from .console import add_console_routes
from .forward import Forwarder, new_session, probe
from .metrics import Metrics
from .model import TargetHealth
from .pipeline import Pipeline
from .receive import ProxyHandler, proxy_runner
from .runtime import loop_factory
from .settings import Settings, fail
from .store import Store, StoreError
from .workers.pool import WorkerError, WorkerPool

log = logging.getLogger("diffproxy")

PROBE_INTERVAL = 5.0  # seconds between TCP probes of a target that saw no traffic
DRAIN_TIMEOUT = 5.0   # seconds to finish queued comparisons on shutdown


class StartError(Exception):
    """The proxy cannot start; the message is one line."""


class ProxyService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.health = {name: TargetHealth(address=str(t)) for name, t in settings.targets.items()}
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self._session = None
        self._runners: dict[str, web.BaseRunner] = {}
        self._tasks: list[asyncio.Task] = []
        self._ready = False
        self.workers: WorkerPool | None = None

    def readiness(self) -> str | None:
        if self.store is None or not self.store.is_open:
            return "results store not open"
        if not self._ready:
            return "starting or stopping"
        return None

    async def start(self) -> None:
        s = self.settings
        self.store = await Store.open(
            s.store.path, samples_first=s.store.samples_first,
            samples_latest=s.store.samples_latest, max_fields=s.diff.max_fields,
            flush_interval=s.store.flush_interval,
            on_flush=self.metrics.store_flushes.inc, on_error=self.metrics.store_errors.inc)
        self._session = new_session(s.proxy)
        forwarder = Forwarder(s.proxy, self._session, self.metrics, self.health)
        self.pipeline = Pipeline(s, self.store, self.metrics)
        self.pipeline.start()
        if s.proxy.workers > 1:
            self.workers = WorkerPool(s, self.store, self.pipeline, self.metrics, self.health)
            own_depth = self.pipeline.queue.qsize
            self.metrics.queue_depth.callback = lambda: own_depth() + self.workers.depth()


        http_app = web.Application(middlewares=[http_middleware])
        add_nosniff(http_app)
        Api(s, self.store, self.health, on_clear=self._cleared,
            extra_info=self._extra_info).register(http_app)
        add_console_routes(http_app)

        listeners = s.listeners
        header_limit = max(8190, s.proxy.max_header_size)
        proxy = proxy_runner(ProxyHandler(s, forwarder, self.pipeline, self.metrics),
                             s.proxy.max_header_size)
        for name, app, listen in (("admin", admin_app(self.metrics, self.readiness), listeners.admin),
                                  ("http", http_app, listeners.http),
                                  ("proxy", None, listeners.proxy)):
            runner = proxy if app is None else web.AppRunner(
                app, access_log=None, handle_signals=False,
                max_line_size=header_limit, max_field_size=header_limit)
            await runner.setup()
            self._runners[name] = runner
            # The proxy port is shared with the worker processes, if any.
            shared = name == "proxy" and self.workers is not None
            try:
                await web.TCPSite(runner, listen.host, listen.port, reuse_address=True,
                                  reuse_port=shared or None).start()
            except OSError as exc:
                raise StartError(f"cannot listen on {listen} (-{name}.port): "
                                 f"{exc.strerror or exc}") from None
        if self.workers is not None:
            try:
                await self.workers.start(s.proxy.workers - 1)
            except WorkerError as exc:
                raise StartError(str(exc)) from None
        self._tasks.append(asyncio.create_task(self._probe_loop(), name="diffproxy-probe"))
        self._ready = True
        log.info("diffproxy %s: proxy %s, api+console %s, admin %s; primary %s, secondary %s, "
                 "candidate %s; store %s", __version__, listeners.proxy, listeners.http,
                 listeners.admin, s.targets.primary, s.targets.secondary, s.targets.candidate,
                 s.store.path)
        if s.ignored_flags:
            log.warning("ignored Diffy flags (no meaning in diffproxy; see docs/diffproxy.md): %s",
                        ", ".join(f"-{k}" for k in s.ignored_flags))

    def _cleared(self) -> None:
        self.pipeline.reset()
        if self.workers is not None:
            self.workers.reset()

    def _extra_info(self) -> dict:
        s = self.settings
        queue = self.pipeline.queue if self.pipeline else None
        return {
            "listeners": {"proxy": str(s.listeners.proxy), "http": str(s.listeners.http),
                          "admin": str(s.listeners.admin)},
            "store": {"path": s.store.path, "samples_first": s.store.samples_first,
                      "samples_latest": s.store.samples_latest},
            "queue": {"depth": int(self.metrics.queue_depth.get()) if queue else 0,
                      "capacity": s.proxy.queue_size,
                      "dropped": int(self.metrics.dropped.get())},
            "workers": s.proxy.workers,
        }

    async def _probe_loop(self) -> None:
        """Keep target health current while no traffic flows (and right after start)."""
        loop = asyncio.get_running_loop()
        while True:
            for name, target in self.settings.targets.items():
                health = self.health[name]
                if health.healthy is not None and loop.time() - health.last_seen < PROBE_INTERVAL:
                    continue
                error = await probe(target, min(2.0, self.settings.proxy.timeout))
                health.record(error is None, error)
                self.metrics.target_up.set(1 if health.healthy else 0, target=name)
            await asyncio.sleep(PROBE_INTERVAL)

    async def stop(self) -> None:
        self._ready = False
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if "proxy" in self._runners:  # no new mirrored traffic; in-flight requests finish
            await self._runners.pop("proxy").cleanup()
        if self.workers is not None:  # they finish and ship their comparisons first
            await self.workers.stop(DRAIN_TIMEOUT + 5.0)
        if self.pipeline is not None:
            await self.pipeline.drain(DRAIN_TIMEOUT)
        if self.store is not None:
            await self.store.close()
        for runner in self._runners.values():
            await runner.cleanup()
        self._runners.clear()
        if self._session is not None:
            await self._session.close()


async def serve(settings: Settings) -> int:
    proxy = ProxyService(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await proxy.start()
    except (StoreError, StartError) as exc:
        await proxy.stop()
        return fail(str(exc))
    await stopping.wait()
    log.info("stopping: finishing queued comparisons and writing results")
    await proxy.stop()
    return 0


def run(settings: Settings) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(serve(settings))

