"""A worker process (`-workers=N`, N > 1): serves the proxy port next to the owner process
(SO_REUSEPORT), forwards, compares, and ships compact results to the owner.

The owner keeps everything that must be single: the store, the API and console, the admin
port, the endpoint cap and the metrics. Every `SHIP_INTERVAL` a worker sends one message:
its metric increments since the last one, its queue depth, the health of the targets it
talked to, and its finished comparisons as (id, endpoint, differing fields, noisy fields,
document or None). Documents are built only where the owner can keep them: the first
`samples.first` per endpoint and field this worker saw, and the newest `samples.latest`
per endpoint and field in the message.

A worker dies with its owner: Linux's parent-death signal (SIGKILL), and, as a second line,
end of file on the channel. Run by the owner as `python -m diffproxy.worker FD OWNER_PID`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from . import channel
from .forward import Forwarder, TargetHealth, new_session
from .metrics import Metrics
from .proxy import Comparisons, ProxyHandler, proxy_runner
from .settings import Settings
from .store import Record

log = logging.getLogger("diffproxy.worker")

SHIP_INTERVAL = 0.1   # seconds between messages to the owner
DRAIN_TIMEOUT = 5.0   # seconds to finish queued comparisons when asked to stop
MAX_FIRST_KEYS = 100_000  # bound on the (endpoint, field) pairs remembered for first examples
PR_SET_PDEATHSIG = 1

Shipped = tuple[str, str, tuple[str, ...], tuple[str, ...], "str | None"]


class ResultSink:
    """Stands in for the store inside a worker: collects records until the next message."""

    def __init__(self, samples_first: int, samples_latest: int) -> None:
        self.samples_first = samples_first
        self.samples_latest = samples_latest
        self._pending: list[Record] = []
        self._first: dict[tuple[str, str], int] = {}

    def known_endpoints(self) -> list[str]:
        return []

    def add(self, record: Record) -> None:
        self._pending.append(record)

    def reset(self) -> None:
        """The owner's store was cleared: first examples are wanted again."""
        self._first.clear()

    def take(self) -> list[tuple[Record, bool]]:
        """Everything collected, each with whether its document should be shipped."""
        pending, self._pending = self._pending, []
        keep = [False] * len(pending)
        newest: dict[tuple[str, str], int] = {}
        for i in range(len(pending) - 1, -1, -1):
            rec = pending[i]
            for path in (*rec.raw, *rec.noise):
                key = (rec.endpoint, path)
                n = newest.get(key, 0)
                if n < self.samples_latest:
                    newest[key] = n + 1
                    keep[i] = True
        if len(self._first) > MAX_FIRST_KEYS:
            self._first.clear()  # at worst a few more documents shipped; memory stays bounded
        for i, rec in enumerate(pending):
            for path in (*rec.raw, *rec.noise):
                key = (rec.endpoint, path)
                n = self._first.get(key, 0)
                if n < self.samples_first:
                    self._first[key] = n + 1
                    keep[i] = True
        return list(zip(pending, keep))


def _shipped(items: list[tuple[Record, bool]]) -> list[Shipped]:
    """Build the kept documents (the expensive part); runs in a thread."""
    out: list[Shipped] = []
    for rec, keep in items:
        doc = None
        if keep and (rec.raw or rec.noise):
            try:
                built = rec.document()
                doc = built() if callable(built) else built
            except Exception:  # noqa: BLE001 - counted without an example
                log.exception("building result %s failed", rec.id)
        out.append((rec.id, rec.endpoint, tuple(rec.raw), tuple(rec.noise), doc))
    return out


class Worker:
    def __init__(self, settings: Settings, writer: asyncio.StreamWriter) -> None:
        self.settings = settings
        self.writer = writer
        self.metrics = Metrics()
        self.health = {name: TargetHealth(address=str(t)) for name, t in settings.targets.items()}
        self.sink = ResultSink(settings.store.samples_first, settings.store.samples_latest)
        self.comparisons = Comparisons(settings, self.sink, self.metrics, endpoint_cap=False)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffproxy-ship")
        self._session = None
        self._runner: web.BaseRunner | None = None
        self._shipper: asyncio.Task | None = None
        self._last_ship = 0.0

    async def start(self) -> None:
        s = self.settings
        self._session = new_session(s.proxy)
        forwarder = Forwarder(s.proxy, self._session, self.metrics, self.health)
        self.comparisons.start()
        self._runner = proxy_runner(ProxyHandler(s, forwarder, self.comparisons, self.metrics),
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
        items = self.sink.take()
        results = (await asyncio.get_running_loop().run_in_executor(self._executor, _shipped, items)
                   if items else [])
        since, self._last_ship = self._last_ship, time.monotonic()
        health = {name: (h.healthy, h.last_error) for name, h in self.health.items()
                  if h.healthy is not None and h.last_seen >= since}
        channel.write(self.writer, {"metrics": self.metrics.take_deltas(),
                                    "depth": self.comparisons.queue.qsize(),
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
        await self.comparisons.drain(DRAIN_TIMEOUT)
        await self.ship()
        if self._session is not None:
            await self._session.close()
        self._executor.shutdown(wait=True)


def _die_with_owner(owner_pid: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: end of file on the channel still stops us
        pass
    if os.getppid() != owner_pid:  # the owner died before the signal was armed
        os._exit(1)


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
                worker.sink.reset()
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
    _die_with_owner(owner_pid)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s")
    from .app import _loop_factory  # noqa: PLC0415 - app imports this module's owner side
    sock = socket.socket(fileno=fd)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(_serve(sock))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
