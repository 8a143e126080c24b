"""The transport seam: what the forwarder needs from an HTTP client, as a Protocol (like
httpx's `BaseTransport`), so forwarding and fault handling can be unit-tested without
sockets (`MockTransport`). `h1client.H1Client` is the real transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .model import RawResponse, Target


class ClientError(Exception):
    """A target failed. `status`/`headers` are set when the body was too large: the head
    arrived whole, and says how large the body claimed to be."""

    def __init__(self, kind: str, detail: str, status: int | None = None,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.headers = headers


def encode_headers(headers: Iterable[tuple[str, str]]) -> bytes:
    """`Name: value` lines for a request head. ValueError when a name or value could
    split the head (CR/LF), or is not Latin-1 (it could not have come from a request)."""
    count = 0
    parts = []
    for name, value in headers:
        parts.append(f"{name}: {value}\r\n")
        count += 1
    block = "".join(parts)
    if block.count("\n") != count or block.count("\r") != count:
        raise ValueError("a header name or value contains CR or LF")
    try:
        return block.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(f"a header is not Latin-1: {exc}") from None


class Transport(Protocol):
    """Sends one request to one target and reads the whole answer.

    Returns a `RawResponse` or raises `ClientError(kind, detail)` with a kind of
    `model.ERROR_KINDS`; may be cancelled at any await (the forwarder's deadline)."""

    async def request(self, target: Target, method: str, path_qs: str, host: str,
                      headers: bytes, body: bytes) -> RawResponse: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SentRequest:
    """What a `MockTransport` was asked to send."""

    target: Target
    method: str
    path_qs: str
    host: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


Handler = Callable[[SentRequest], "RawResponse | Awaitable[RawResponse]"]


class MockTransport:
    """A transport that calls `handler` instead of opening a socket. The handler returns a
    `RawResponse` (or an awaitable of one) or raises `ClientError`; every request is kept
    in `sent`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.sent: list[SentRequest] = []
        self.closed = False

    async def request(self, target: Target, method: str, path_qs: str, host: str,
                      headers: bytes, body: bytes) -> RawResponse:
        if self.closed:
            raise ClientError("other", "the client is closed")
        lines = headers.decode("latin-1").split("\r\n")
        parsed = tuple((name, value.lstrip()) for name, _, value in
                       (line.partition(":") for line in lines if line))
        sent = SentRequest(target, method, path_qs, host, parsed, body)
        self.sent.append(sent)
        answer = self.handler(sent)
        if asyncio.iscoroutine(answer) or isinstance(answer, asyncio.Future):
            answer = await answer
        return answer

    async def close(self) -> None:
        self.closed = True
