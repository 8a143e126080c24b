"""Forwarding and fault handling through `MockTransport`: what the forwarder sends, and how
every kind of answer becomes a `Response`, without sockets. The wire itself is proven by
test_forward.py and test_h1client.py over real loopback sockets."""

from __future__ import annotations

import asyncio
import gzip

import pytest

from diffproxy.forward import Forwarder
from diffproxy.metrics import Metrics
from diffproxy.model import RawResponse, Target, TargetHealth
from diffproxy.settings import ProxySettings
from diffproxy.transport import ClientError, MockTransport

A = Target("http", "a.example", 8000)
B = Target("http", "b.example", 80)


def forwarder(handler, **overrides) -> tuple[Forwarder, MockTransport]:
    settings = ProxySettings(**{"timeout": 5.0, "max_response_size": 1000,
                                "max_header_size": 1024, **overrides})
    transport = MockTransport(handler)
    health = {"a": TargetHealth(address="a"), "b": TargetHealth(address="b")}
    return Forwarder(settings, transport, Metrics(targets=("a", "b")), health), transport


def ok(body: bytes = b"ok", *headers: tuple[str, str]):
    return lambda sent: RawResponse(200, tuple(headers), body)


async def test_hop_by_hop_headers_are_dropped_and_each_target_gets_its_own_host():
    fw, transport = forwarder(ok())
    await fw.start((("a", A), ("b", B)), "GET", "/p?q=1",
                    [("Host", "caller"), ("Connection", "x-drop"), ("X-Drop", "1"),
                    ("Keep-Alive", "5"), ("X-Keep", "yes"), ("Content-Length", "0")], b"").all()
    assert [s.host for s in transport.sent] == ["a.example:8000", "b.example"]
    assert all(s.headers == (("X-Keep", "yes"),) and s.path_qs == "/p?q=1"
               for s in transport.sent)


async def test_caller_host_mode_sends_the_unshadowed_caller_host():
    fw, transport = forwarder(ok(), forward_host="caller")
    await fw.start((("a", A),), "GET", "/", [("Host", "svc-shadow:8000")], b"").all()
    assert transport.sent[0].host == "svc:8000"


@pytest.mark.parametrize("kind", ["refused", "reset", "bad_response", "tls", "other"])
async def test_client_errors_become_error_responses_and_mark_the_target(kind):
    def fail(sent):
        raise ClientError(kind, f"{kind} detail")

    fw, _ = forwarder(fail)
    (r,) = await fw.start((("a", A),), "GET", "/", [], b"").all()
    assert (r.status, r.error, r.error_detail, r.body) == (None, kind, f"{kind} detail", b"")
    assert fw.metrics.target_errors.get(target="a", kind=kind) == 1
    assert fw.health["a"].healthy is (kind not in ("refused", "reset", "tls"))


async def test_a_header_that_cannot_be_sent_fails_every_target_as_other():
    fw, transport = forwarder(ok())
    a, b = await fw.start((("a", A), ("b", B)), "GET", "/", [("X-Bad", "a\r\nb")], b"").all()
    assert a.error == b.error == "other" and transport.sent == []


async def test_a_decompression_bomb_is_too_large_and_its_body_dropped():
    bomb = gzip.compress(b"0" * 50_000)
    fw, _ = forwarder(ok(bomb, ("Content-Encoding", "gzip")))
    (r,) = await fw.start((("a", A),), "GET", "/", [], b"").all()
    assert (r.status, r.error, r.body) == (200, "too_large", b"")


async def test_the_decoded_body_is_handed_on_and_the_raw_body_kept():
    wire = gzip.compress(b'{"a": 1}')
    fw, _ = forwarder(ok(wire, ("Content-Encoding", "gzip"), ("Content-Type", "application/json")))
    (r,) = await fw.start((("a", A),), "GET", "/", [], b"").all()
    assert (r.error, r.body, r.decoded) == (None, wire, b'{"a": 1}')
    (plain,) = await forwarder(ok(b"x"))[0].start((("a", A),), "GET", "/", [], b"").all()
    assert plain.decoded is None  # nothing to undo: the body itself is used


async def test_the_deadline_times_out_only_the_slow_target():
    async def answer(sent):
        if sent.target is B:
            await asyncio.sleep(30)
        return RawResponse(200, (), b"fast")

    fw, _ = forwarder(answer, timeout=0.2)
    fast, slow = await fw.start((("a", A), ("b", B)), "GET", "/", [], b"").all()
    assert (fast.body, fast.error) == (b"fast", None)
    assert (slow.status, slow.error) == (None, "timeout") and "0.2s" in slow.error_detail
    assert fw.health["b"].healthy is False and fw.health["a"].healthy is True


async def test_a_body_is_decoded_once_from_the_wire_to_the_comparison(monkeypatch):
    # The fault check on the event loop inflates it; the comparison takes those bytes.
    from diffproxy import lift

    calls = []
    real = lift._decode_content

    def counting(body, encoding, limit):
        calls.append(encoding)
        return real(body, encoding, limit)

    monkeypatch.setattr(lift, "_decode_content", counting)
    wire = gzip.compress(b'{"a": [1, 2]}')
    fw, _ = forwarder(ok(wire, ("Content-Encoding", "gzip"), ("Content-Type", "application/json")))
    (r,) = await fw.start((("a", A),), "GET", "/", [], b"").all()
    assert lift.lift(r, 1000)["body"] == {"a": [1, 2]}
    assert calls == ["gzip"]
