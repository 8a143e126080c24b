"""Three misbehaving HTTP/1.1 targets (primary, secondary, candidate) on loopback, written on
raw asyncio sockets so they can do what no real framework would: lie about lengths, reset
mid-body, send garbage status lines, bombs and broken UTF-8.

Each role has its own port. What a port does is chosen by the request path, so one proxy
process can be driven through every (role x fault) case without restarting anything:

    /fault/<role>/<fault>   the named role misbehaves; the other two answer normally
    /echo-headers           {"headers": {...}}; the candidate appends "+v2" to every value
    /echo-body              the request body back, byte for byte
    /deep/N                 JSON nested N levels deep; the candidate's innermost value differs
    /slow-ok                a normal answer after SLOW_OK seconds
    /hold/<role>            the role answers only after `release(role)` (at most HOLD_MAX s)
    /raw-header-bytes       headers with bytes beyond ASCII: Latin-1 é, UTF-8 é
    HEAD anything           the head GET would get, Content-Length included, no body
    /surrogate-key          the candidate answers JSON whose key is a lone surrogate escape
    /brotli                 JSON, Content-Encoding br; the candidate's "version" is 2
    /ndjson                 three NDJSON records; the candidate's record 1 has n=99
    /events                 a text/event-stream of two events; the candidate's second differs
    /wrapped                {"data": {5 keys}, "ok": true}; the candidate drops the wrapper
    /status500/<role>       that role answers 500, the others {"ok": true}
    anything else           {"ok": true} (the same on every role)

`refused` cannot be chosen by path: `refuse(role)` closes that port (and its open
connections) until `accept(role)`.

    with FaultServer(limit=64 * 1024) as faults:
        faults.address("primary")  # "127.0.0.1:PORT"
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import struct
import threading
from dataclasses import dataclass, field

import brotlicffi

ROLES = ("primary", "secondary", "candidate")
SLOW_OK = 0.4
HOLD_MAX = 20.0

# fault -> the error kind the proxy must record for it
FAULTS: dict[str, str] = {
    "refused": "refused",
    "accept_close": "reset",
    "reset_mid_body": "reset",
    "slow": "timeout",
    "too_large": "too_large",
    "bad_status": "bad_response",
    "lying_length": "reset",
    "bad_utf8_json": "bad_response",
    "gzip_bomb": "too_large",
}


def _reply(status: str, body: bytes, headers: tuple[str, ...] = (),
           content_type: str = "application/json") -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}", *headers, "", ""]
    return "\r\n".join(head).encode() + body


def _json(data) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


@dataclass
class _Role:
    name: str
    port: int = 0
    server: asyncio.base_events.Server | None = None
    writers: set = field(default_factory=set)
    bodies: list[str] = field(default_factory=list)  # sha256 of each request body seen
    targets: list[str] = field(default_factory=list)  # request-target of each request seen
    holding: int = 0  # requests held on /hold/<role> right now
    release: asyncio.Event | None = None


class FaultServer:
    def __init__(self, limit: int, slow: float = 8.0) -> None:
        self.limit = limit  # the proxy's -maxResponseSize
        self.slow = slow    # longer than the proxy's -target.timeout
        self.roles = {name: _Role(name) for name in ROLES}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultserver",
                                        daemon=True)

    # lifecycle (called from the test thread) -------------------------------------------

    def __enter__(self) -> FaultServer:
        self._thread.start()
        for name in ROLES:
            self._call(self._listen(self.roles[name]))
        return self

    def __exit__(self, *exc) -> None:
        for name in ROLES:
            self._call(self._close(self.roles[name]))
        self._call(self._cancel_handlers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def address(self, role: str) -> str:
        return f"127.0.0.1:{self.roles[role].port}"

    def refuse(self, role: str) -> None:
        self._call(self._close(self.roles[role]))

    def accept(self, role: str) -> None:
        self._call(self._listen(self.roles[role]))

    def holding(self, role: str) -> int:
        return self.roles[role].holding

    def release(self, role: str) -> None:
        async def set_it() -> None:
            if self.roles[role].release is not None:
                self.roles[role].release.set()
        self._call(set_it())

    def bodies(self, role: str) -> list[str]:
        return list(self.roles[role].bodies)

    def targets(self, role: str) -> list[str]:
        return list(self.roles[role].targets)

    # the servers --------------------------------------------------------------------------

    async def _listen(self, role: _Role) -> None:
        async def handle(reader, writer):
            role.writers.add(writer)
            try:
                await self._serve(role, reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                pass
            finally:
                role.writers.discard(writer)
                writer.close()

        role.server = await asyncio.start_server(handle, "127.0.0.1", role.port or 0,
                                                 reuse_address=True, limit=1 << 20)
        role.port = role.server.sockets[0].getsockname()[1]

    async def _cancel_handlers(self) -> None:
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _close(self, role: _Role) -> None:
        if role.server is not None:
            role.server.close()
            role.server = None
        for writer in list(role.writers):  # pooled keep-alive connections must go too
            writer.transport.abort()
        await asyncio.sleep(0.1)  # let the proxy see its pooled connections close

    async def _serve(self, role: _Role, reader, writer) -> None:
        while True:  # keep-alive: one request after another on the same connection
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            _method, target, _version = (lines[0].split(" ", 2) + ["", ""])[:3]
            headers = [tuple(p.strip() for p in line.split(":", 1))
                       for line in lines[1:] if ":" in line]
            length = next((int(v) for k, v in headers if k.lower() == "content-length"), 0)
            body = await reader.readexactly(length) if length else b""
            role.bodies.append(hashlib.sha256(body).hexdigest())
            role.targets.append(target)
            path = target.split("?", 1)[0]
            if _method == "HEAD":
                writer = _HeadOnly(writer)
            if not await self._answer(role, path, headers, body, writer):
                return
            writer = getattr(writer, "inner", writer)

    async def _answer(self, role: _Role, path: str, headers, body: bytes, writer) -> bool:
        """Write the answer; False when the connection must end."""
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "fault" and parts[1] == role.name:
            await self._fault(parts[2], writer)
            return False
        if path.endswith("/echo-headers"):  # under an API root too (-candidateApiRoot)
            suffix = "+v2" if role.name == "candidate" else ""
            echoed = {k: v + suffix for k, v in headers if k.lower() not in
                      ("host", "content-length", "connection")}
            writer.write(_reply("200 OK", _json({"headers": echoed})))
        elif path == "/echo-body":
            writer.write(_reply("200 OK", body, content_type="application/octet-stream"))
        elif path == "/raw-header-bytes":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"X-Latin1: caf\xe9\r\nX-Utf8: caf\xc3\xa9\r\nContent-Length: 2\r\n\r\n{}")
        elif path == f"/hold/{role.name}":
            if role.release is None or role.release.is_set():
                role.release = asyncio.Event()
            role.holding += 1
            try:
                await asyncio.wait_for(role.release.wait(), HOLD_MAX)
            except TimeoutError:
                pass
            finally:
                role.holding -= 1
            writer.write(_reply("200 OK", _json({"ok": True})))
        elif parts[0] == "deep" and len(parts) == 2 and parts[1].isdigit():
            n = int(parts[1])  # n nesting levels; the candidate's leaf differs
            leaf = b"2" if role.name == "candidate" else b"1"
            writer.write(_reply("200 OK", b"[" * n + leaf + b"]" * n))
        elif path == "/brotli":
            data = brotlicffi.compress(_json({"version": 2 if role.name == "candidate" else 1,
                                              "name": "same"}))
            writer.write(_reply("200 OK", data, headers=("Content-Encoding: br",)))
        elif path == "/brotli-recompressed":  # the same JSON, other bytes on the candidate
            quality = 1 if role.name == "candidate" else 11
            data = brotlicffi.compress(_json({"name": "same", "items": list(range(50))}),
                                       quality=quality)
            writer.write(_reply("200 OK", data, headers=("Content-Encoding: br",)))
        elif path == "/ndjson":
            records = [{"i": i, "n": 99 if role.name == "candidate" and i == 1 else i}
                       for i in range(3)]
            data = b"".join(_json(r) + b"\n" for r in records)
            writer.write(_reply("200 OK", data, content_type="application/x-ndjson"))
        elif path == "/json-seq":  # RFC 7464: each record starts with RS
            records = [{"i": 0}, {"i": 1, "tag": "v2" if role.name == "candidate" else "v1"}]
            data = b"".join(b"\x1e" + _json(r) + b"\n" for r in records)
            writer.write(_reply("200 OK", data, content_type="application/json-seq"))
        elif path == "/events":
            second = "v2" if role.name == "candidate" else "v1"
            data = (f'event: ping\ndata: {{"n": 1}}\n\nevent: ping\ndata: {{"n": 2, '
                    f'"tag": "{second}"}}\n\n').encode()
            writer.write(_reply("200 OK", data, content_type="text/event-stream"))
        elif path == "/wrapped":
            inner = {"a": 1, "b": "two", "c": [3], "d": None, "e": {"f": 6}}
            data = {**inner, "ok": True} if role.name == "candidate" else {"data": inner, "ok": True}
            writer.write(_reply("200 OK", _json(data)))
        elif path == "/wrapped-headers":  # httpbin's /headers, then without its wrapper
            inner = {"Accept": "*/*", "Host": "example", "User-Agent": "probe/1"}
            writer.write(_reply("200 OK", _json(inner if role.name == "candidate" else {"headers": inner})))
        elif path == "/noise-then-signal":  # 1st request: the secondary differs; later: the candidate
            first = sum(1 for t in role.targets if t.startswith(path)) == 1
            v = {"primary": 1, "secondary": 2 if first else 1, "candidate": 1 if first else 3}
            writer.write(_reply("200 OK", _json({"v": v[role.name]})))
        elif path == "/lines":
            third = "gamma v2" if role.name == "candidate" else "gamma"
            writer.write(_reply("200 OK", f"alpha\nbeta\n{third}\ndelta\n".encode(),
                                content_type="text/plain"))
        elif path.startswith("/status500/"):
            if path == f"/status500/{role.name}":
                writer.write(_reply("500 Internal Server Error", _json({"error": "boom"})))
            else:
                writer.write(_reply("200 OK", _json({"ok": True})))
        elif path == "/surrogate-key":
            data = b'{"\\ud800key": 1}' if role.name == "candidate" else b'{"ok": 1}'
            writer.write(_reply("200 OK", data))
        else:
            if path == "/slow-ok":
                await asyncio.sleep(SLOW_OK)
            writer.write(_reply("200 OK", _json({"ok": True})))
        await writer.drain()
        return True

    async def _fault(self, fault: str, writer) -> None:
        if fault == "accept_close":
            return
        if fault == "reset_mid_body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + b"x" * 100)
            await writer.drain()
            await asyncio.sleep(0.05)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()  # SO_LINGER 0: the kernel sends RST, not FIN
        elif fault == "slow":
            await asyncio.sleep(self.slow)
        elif fault == "too_large":
            writer.write(_reply("200 OK", b"x" * (self.limit * 2), content_type="text/plain"))
        elif fault == "bad_status":
            writer.write(b"HTTP/1.1 twohundred OK\r\nContent-Length: 2\r\n\r\nok")
        elif fault == "lying_length":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: 1000\r\n\r\nonly this")
        elif fault == "bad_utf8_json":
            writer.write(_reply("200 OK", b'{"name": "caf\xe9 \xff\xfe"}'))
        elif fault == "gzip_bomb":
            bomb = gzip.compress(b'{"a": "' + b"0" * (self.limit * 20) + b'"}', 9)
            writer.write(_reply("200 OK", bomb, ("Content-Encoding: gzip",)))
        else:
            raise ValueError(f"unknown fault {fault!r}")
        if not writer.transport.is_closing():
            await writer.drain()


class _HeadOnly:
    """A writer for a HEAD request: the head of what is written, never the body."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.transport = inner.transport
        self._done = False

    def write(self, data: bytes) -> None:
        if not self._done:
            head, sep, _body = data.partition(b"\r\n\r\n")
            self.inner.write(head + sep)
            self._done = bool(sep)

    async def drain(self) -> None:
        await self.inner.drain()

    def get_extra_info(self, name):
        return self.inner.get_extra_info(name)
