"""Latency per endpoint and target: sketch accuracy and persistence, the verdict's rule, and
the API over a real proxy whose candidate answers later than primary."""

from __future__ import annotations

import asyncio
import random

import pytest

from diffproxy.latency import (
    BIN_LIMIT,
    LatencyBook,
    Thresholds,
    decode,
    encode,
    new_sketch,
    verdict,
)
from diffproxy.model import Record
from diffproxy.settings import SettingsError, load

from .test_forward import http_reply, raw_server
from .test_proxy import _settings, _url, running
from .test_store import open_store


def _book(primary, secondary, candidate) -> dict:
    out = {}
    for name, values in (("primary", primary), ("secondary", secondary), ("candidate", candidate)):
        sketch = new_sketch()
        for v in values:
            sketch.add(v)
        out[name] = sketch
    return out


def _spread(centre: float, n: int, seed: int, width: float = 1.0) -> list[float]:
    rng = random.Random(seed)
    return [centre + rng.uniform(-width, width) for _ in range(n)]


def test_quantiles_are_within_one_percent_and_counts_exact():
    rng = random.Random(7)
    values = [rng.lognormvariate(1.5, 0.8) for _ in range(20000)]
    sketch = new_sketch()
    for v in values:
        sketch.add(v)
    assert sketch.count == len(values)
    exact = sorted(values)
    for q in (0.5, 0.9, 0.99):
        true = exact[int(q * (len(exact) - 1))]
        assert sketch.get_quantile_value(q) == pytest.approx(true, rel=0.011)


def test_memory_is_bounded_whatever_the_spread():
    sketch = new_sketch()
    for exponent in range(-6, 9):  # 1 ns to 100 000 s
        for i in range(200):
            sketch.add(10.0 ** exponent * (1 + i / 200))
    assert len(sketch._store.bins) <= BIN_LIMIT


def test_encoding_round_trips_exactly():
    sketch = new_sketch()
    for v in _spread(40.0, 500, seed=1, width=30.0) + [0.0, 0.0]:
        sketch.add(v)
    again = decode(encode(sketch))
    assert again.count == sketch.count == 502
    assert (again.sum, again._min, again._max) == (sketch.sum, sketch._min, sketch._max)
    for q in (0.0, 0.01, 0.5, 0.9, 0.99, 1.0):
        assert again.get_quantile_value(q) == sketch.get_quantile_value(q)


def test_slower_when_the_candidate_is_beyond_noise_and_thresholds():
    t = Thresholds()
    assert verdict(_book(_spread(4, 50, 1), _spread(4, 50, 2), _spread(84, 50, 3)), t) == "slower"
    assert verdict(_book(_spread(84, 50, 1), _spread(84, 50, 2), _spread(4, 50, 3)), t) == "faster"
    assert verdict(_book(_spread(4, 50, 1), _spread(4, 50, 2), _spread(4.5, 50, 3)), t) == "same"


def test_noise_between_primary_and_secondary_widens_the_margin():
    t = Thresholds()
    # The secondary (production again) is as far from primary as the candidate: noise.
    assert verdict(_book(_spread(4, 50, 1), _spread(84, 50, 2), _spread(84, 50, 3)), t) == "same"


def test_absolute_and_relative_thresholds_both_apply():
    base = _book(_spread(100, 50, 1), _spread(100, 50, 2), _spread(115, 50, 3))
    assert verdict(base, Thresholds(relative=20.0, absolute_ms=10.0)) == "same"  # 15 < 20% of 100
    assert verdict(base, Thresholds(relative=10.0, absolute_ms=10.0)) == "slower"
    assert verdict(base, Thresholds(relative=10.0, absolute_ms=20.0)) == "same"


def test_too_few_samples_is_insufficient_and_p99_waits_for_a_hundred():
    t = Thresholds(min_samples=20)
    few = _book(_spread(4, 19, 1), _spread(4, 50, 2), _spread(84, 50, 3))
    assert verdict(few, t) == "insufficient"
    # Only the slowest 1% are slower: with 50 samples p99 is not judged yet, with 200 it is.
    tail50 = _book(_spread(4, 50, 1), _spread(4, 50, 2), _spread(4, 49, 3) + [300.0])
    assert verdict(tail50, t) == "same"
    tail = _book(_spread(4, 200, 1), _spread(4, 200, 2), _spread(4, 196, 3) + [300.0] * 4)
    assert verdict(tail, t) == "slower"


def test_a_target_without_a_response_adds_nothing():
    book = LatencyBook()
    book.add("GET /a", (5.0, None, 7.0))
    report = book.report("GET /a", Thresholds())
    assert [report[n]["count"] for n in ("primary", "secondary", "candidate")] == [1, 0, 1]
    assert report["secondary"]["p50_ms"] is None and report["verdict"] == "insufficient"


def test_flags_are_parsed_and_bad_values_refused():
    base = ["-master.primary=127.0.0.1:1", "-candidate=127.0.0.1:2"]
    s = load([*base, "-latency.relative=15", "-latency.absolute=25ms", "-latency.minSamples=50"],
             env={})
    assert (s.latency.relative, s.latency.absolute_ms, s.latency.min_samples) == (15.0, 25.0, 50)
    for bad in ("-latency.absolute=-1", "-latency.minSamples=0", "-latency.relative=abc"):
        with pytest.raises(SettingsError, match="latency"):
            load([*base, bad], env={})


async def test_sketches_survive_a_restart_and_clear_forgets_them(tmp_path):
    path = tmp_path / "s.sqlite"
    store = await open_store(path)
    for i in range(30):
        store.add(Record(id=str(i), endpoint="GET /a", raw={}, noise={},
                         latency_ms=(4.0 + i / 10, 4.0, 80.0 + i)))
    before = store.latency.report("GET /a", Thresholds())
    await store.close()
    assert before["candidate"]["count"] == 30 and before["verdict"] == "slower"

    store = await open_store(path)
    assert store.latency.report("GET /a", Thresholds()) == before
    store.add(Record(id="x", endpoint="GET /a", raw={}, noise={}, latency_ms=(1.0, 1.0, 1.0)))
    await store.flush()
    await store.clear()
    await store.close()
    store = await open_store(path)
    assert store.latency.sketches == {}
    await store.close()


async def test_api_reports_the_three_distributions_and_the_verdict(tmp_path):
    """A real proxy; the candidate answers 80 ms later than primary (the demo's change)."""
    async def late(head, reader, writer):
        await asyncio.sleep(0.08)
        await http_reply()(head, reader, writer)

    async with raw_server(http_reply()) as (primary, _), raw_server(late) as (candidate, _):
        s = _settings(tmp_path, primary.authority, candidate.authority, "-latency.minSamples=10")
        async with running(s) as (proxy, client):
            base, api = _url(s.listeners.proxy), _url(s.listeners.http) + "/api/1"
            for _ in range(12):
                await client.get(base + "/delay/0")
            await proxy.settled()
            listed = (await client.get(api + "/endpoints")).json()
            assert listed["GET /delay/:id"]["latency_verdict"] == "slower"
            r = await client.get(api + "/endpoints/GET%20%2Fdelay%2F%3Aid/latency")
            assert r.status_code == 200
            body = r.json()
            assert body["verdict"] == "slower"
            for name in ("primary", "secondary", "candidate"):
                assert body[name]["count"] == 12
                assert body[name]["p50_ms"] <= body[name]["p90_ms"] <= body[name]["p99_ms"]
            assert body["candidate"]["p50_ms"] >= 80 > body["primary"]["p50_ms"]
            assert body["thresholds"] == {"relative": 20.0, "absolute_ms": 10.0, "min_samples": 10}
            missing = await client.get(api + "/endpoints/GET%20%2Fnope/latency")
            assert missing.status_code == 404
            # /metrics: the same requests in the per-endpoint histogram.
            text = (await client.get(_url(s.listeners.admin) + "/metrics")).text
            line = next(x for x in text.splitlines() if x.startswith(
                'diffproxy_target_latency_seconds_count{target="candidate",endpoint="GET /delay/:id"}'))
            assert line.endswith(" 12")
