"""The owner's side of `-workers=N`: start N-1 worker processes (see `child`), fold what
they send into the one store and the one set of metrics, stop them with the owner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..metrics import Metrics
from ..model import Record, TargetHealth
from ..pipeline import Pipeline
from ..settings import Settings
from ..store import Store
from . import channel

log = logging.getLogger("diffproxy.workers")

START_TIMEOUT = 30.0  # seconds for a worker to import, connect its pool and listen
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


class WorkerError(Exception):
    """A worker could not start; the message is one line."""


@dataclass
class _Child:
    proc: subprocess.Popen
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    depth: int = 0
    task: asyncio.Task | None = field(default=None)


class WorkerPool:
    def __init__(self, settings: Settings, store: Store, pipeline: Pipeline,
                 metrics: Metrics, health: dict[str, TargetHealth]) -> None:
        self.settings = settings
        self.store = store
        self.pipeline = pipeline
        self.metrics = metrics
        self.health = health
        self._children: list[_Child] = []

    @property
    def alive(self) -> int:
        return sum(1 for c in self._children if c.task is not None and not c.task.done())

    def depth(self) -> int:
        return sum(c.depth for c in self._children if c.task is not None and not c.task.done())

    async def start(self, count: int) -> None:
        for _ in range(count):
            self._children.append(await self._spawn())
        for child in self._children:
            child.task = asyncio.create_task(self._receive(child), name="diffproxy-worker")
        self.metrics.workers.set(1 + self.alive)

    async def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "diffproxy.workers.child", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        reader, writer = await asyncio.open_connection(sock=ours)
        child = _Child(proc, reader, writer)
        channel.write(writer, self.settings)
        try:
            reply = await asyncio.wait_for(channel.read(reader), START_TIMEOUT)
        except (TimeoutError, channel.ChannelClosed) as exc:
            await self._kill(child)
            raise WorkerError(f"a worker process did not start ({type(exc).__name__}: {exc}); "
                              "see its log above") from None
        if "ready" not in reply:
            await self._kill(child)
            raise WorkerError(f"a worker process failed: {reply.get('failed', reply)}")
        return child

    async def _receive(self, child: _Child) -> None:
        while True:
            try:
                message = await channel.read(child.reader)
            except channel.ChannelClosed:
                break
            try:
                self._apply(child, message)
            except Exception:  # one bad message must not stop the others
                log.exception("applying a message from worker %d failed", child.proc.pid)
        child.depth = 0
        code = await asyncio.get_running_loop().run_in_executor(None, child.proc.wait)
        if code != 0:
            log.error("worker %d exited with %s; %d worker(s) left", child.proc.pid, code,
                      self.alive - 1)
        self.metrics.workers.set(1 + self.alive - 1)

    def _apply(self, child: _Child, message: dict) -> None:
        self.metrics.add_deltas(message["metrics"])
        child.depth = message["depth"]
        for name, (healthy, error) in message["health"].items():
            health = self.health.get(name)
            if health is not None:
                health.record(healthy, error)
                self.metrics.target_up.set(1 if health.healthy else 0, target=name)
        namer = self.pipeline.namer
        for rid, candidate, raw, noise, doc, failed, baseline_failed in message["results"]:
            # The document has no endpoint: the store adds the admitted one, which may be
            # the overflow endpoint.
            endpoint = namer.admit(candidate)
            try:
                self.store.add(Record(id=rid, endpoint=endpoint, raw=dict.fromkeys(raw, {}),
                                      noise=dict.fromkeys(noise, {}), document=doc,
                                      failed=failed, baseline_failed=baseline_failed))
            except Exception:  # counted, like a failed comparison
                self.metrics.failed.inc()
                log.exception("recording result %s from worker %d failed", rid, child.proc.pid)

    def reset(self) -> None:
        """The store was cleared: workers ship first examples again."""
        for child in self._children:
            if not child.writer.is_closing():
                channel.write(child.writer, "reset")

    async def stop(self, timeout: float) -> None:
        """Ask every worker to finish and ship what it has; kill what does not within `timeout`."""
        for child in self._children:
            if not child.writer.is_closing():
                with contextlib.suppress(ConnectionError):
                    channel.write(child.writer, "stop")
        tasks = [c.task for c in self._children if c.task is not None]
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for child in self._children:
                if child.task in pending:
                    log.warning("worker %d did not stop in %gs; killing it", child.proc.pid, timeout)
                    await self._kill(child)
                    child.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
        for child in self._children:
            child.writer.close()
        self._children.clear()

    @staticmethod
    async def _kill(child: _Child) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.proc.kill()
        await asyncio.get_running_loop().run_in_executor(None, child.proc.wait)
        child.writer.close()
