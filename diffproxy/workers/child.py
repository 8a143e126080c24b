"""A worker process (`-workers=N`, N > 1): serves the proxy port next to the owner process
(SO_REUSEPORT), forwards, compares, and ships compact results to the owner.

The owner keeps everything that must be single: the store, the API and console, the admin
port, the endpoint cap and the metrics. Every `SHIP_INTERVAL` a worker sends one message:
its metric increments since the last one, its queue depth, the health of the targets it
talked to, and its finished comparisons as (id, endpoint, differing fields, noisy fields,
document or None). Documents are built only where the owner can keep them, as the
sampling policy (`sampling`) says, by the worker's own comparison pipeline.

A worker dies with its owner: Linux's parent-death signal (SIGKILL), and, as a second line,
end of file on the channel. Run by the owner as `python -m diffproxy.workers.child FD OWNER_PID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time

from aiohttp import web

from ..forward import Forwarder, new_session
from ..metrics import Metrics
from ..model import Record, TargetHealth
from ..pipeline import Pipeline
from ..receive import ProxyHandler, proxy_runner
from ..runtime import die_with_parent, loop_factory
from ..settings import Settings
from . import channel

log = logging.getLogger("diffproxy.worker")

SHIP_INTERVAL = 0.1   # seconds between messages to the owner
DRAIN_TIMEOUT = 5.0   # seconds to finish queued comparisons when asked to stop

# id, endpoint, raw paths, noise paths, document, failed targets, baseline failed
Shipped = tuple[str, str, tuple[str, ...], tuple[str, ...], "str | None", tuple[str, ...], bool]


class Outbox:
    """Stands in for the store inside a worker: collects records until the next message."""

    def __init__(self) -> None:
        self._pending: list[Record] = []

    def known_endpoints(self) -> list[str]:
        return []

    def add(self, record: Record) -> None:
        self._pending.append(record)

    def take(self) -> list[Shipped]:
        pending, self._pending = self._pending, []
        return [(r.id, r.endpoint, tuple(r.raw), tuple(r.noise), r.document, r.failed,
                 r.baseline_failed) for r in pending]


class Worker:
    def __init__(self, settings: Settings, writer: asyncio.StreamWriter) -> None:
        self.settings = settings
        self.writer = writer
        self.metrics = Metrics()
        self.health = {name: TargetHealth(address=str(t)) for name, t in settings.targets.items()}
        self.outbox = Outbox()
        self.pipeline = Pipeline(settings, self.outbox, self.metrics, endpoint_cap=False)
        self._session = None
        self._runner: web.BaseRunner | None = None
        self._shipper: asyncio.Task | None = None
        self._last_ship = 0.0

    async def start(self) -> None:
        s = self.settings
        self._session = new_session(s.proxy)
        forwarder = Forwarder(s.proxy, self._session, self.metrics, self.health)
        self.pipeline.start()
        self._runner = proxy_runner(ProxyHandler(s, forwarder, self.pipeline, self.metrics),
                                    s.proxy.max_header_size)
        await self._runner.setup()
        listen = s.listeners.proxy
        await web.TCPSite(self._runner, listen.host, listen.port, reuse_address=True,
                          reuse_port=True).start()
        self._shipper = asyncio.create_task(self._ship_loop(), name="diffproxy-ship")

    async def _ship_loop(self) -> None:
        while True:
            await asyncio.sleep(SHIP_INTERVAL)
            await self.ship()

    async def ship(self) -> None:
        results = self.outbox.take()
        since, self._last_ship = self._last_ship, time.monotonic()
        health = {name: (h.healthy, h.last_error) for name, h in self.health.items()
                  if h.healthy is not None and h.last_seen >= since}
        channel.write(self.writer, {"metrics": self.metrics.take_deltas(),
                                    "depth": self.pipeline.queue.qsize(),
                                    "health": health, "results": results})
        await self.writer.drain()

    async def stop(self) -> None:
        """Stop taking requests, finish what is queued, ship it all."""
        if self._runner is not None:
            await self._runner.cleanup()
        if self._shipper is not None:
            self._shipper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._shipper
        await self.pipeline.drain(DRAIN_TIMEOUT)
        await self.ship()
        if self._session is not None:
            await self._session.close()


async def _serve(sock: socket.socket) -> int:
    reader, writer = await asyncio.open_connection(sock=sock)
    settings: Settings = await channel.read(reader)
    worker = Worker(settings, writer)
    try:
        await worker.start()
    except OSError as exc:
        channel.write(writer, {"failed": f"cannot listen on {settings.listeners.proxy}: "
                                         f"{exc.strerror or exc}"})
        await writer.drain()
        return 1
    channel.write(writer, {"ready": os.getpid()})
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)

    async def listen() -> None:
        while True:
            try:
                message = await channel.read(reader)
            except channel.ChannelClosed:
                os._exit(1)  # the owner is gone: nothing here is worth keeping
            if message == "reset":
                worker.pipeline.reset()
            elif message == "stop":
                stopping.set()

    listener = asyncio.create_task(listen())
    await stopping.wait()
    await worker.stop()
    listener.cancel()
    writer.close()
    return 0


def main(argv: list[str]) -> int:
    fd, owner_pid = int(argv[0]), int(argv[1])
    die_with_parent(owner_pid)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s")
    sock = socket.socket(fileno=fd)
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_serve(sock))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
