"""Latency per endpoint and target, and the latency verdict (docs/latency.md).

Each compared request adds its three response times (primary, secondary, candidate, as the
fan-out measured them, to the last body byte) to one sketch per (endpoint, target). The
sketches are DDSketch (DataDog's `ddsketch`, pinned): mergeable, every quantile within 1%
of the true value (relative accuracy, whatever the distribution), the count exact, and
memory bounded by `BIN_LIMIT` bins per sketch (a 1% log mapping needs ~700 bins from 1 µs to
one hour, so the limit is never reached by real latencies). An HDR histogram would also do,
but needs its value range and precision fixed up front; DDSketch's relative error is the
one a "20% slower" rule wants.

The verdict: at p50 and p99 the candidate's quantile minus primary's is compared against
the noise, secondary's minus primary's (the same code, called at the same moment), plus
max(-latency.absolute, -latency.relative x primary's quantile). Beyond it above: slower;
below: faster. Fewer than -latency.minSamples per target: insufficient. p99 is judged only
from 100 samples per target (one sample above it at least); below that, p50 alone.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ddsketch import LogCollapsingLowestDenseDDSketch

from .model import TARGET_ORDER

RELATIVE_ACCURACY = 0.01
BIN_LIMIT = 2048
QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
JUDGED = {"p50": 0.5, "p99": 0.99}
TAIL_SAMPLES = 1  # samples that must lie above a judged quantile
VERDICTS = ("slower", "faster", "same", "insufficient")


def new_sketch() -> LogCollapsingLowestDenseDDSketch:
    return LogCollapsingLowestDenseDDSketch(relative_accuracy=RELATIVE_ACCURACY,
                                            bin_limit=BIN_LIMIT)


def encode(sketch: LogCollapsingLowestDenseDDSketch) -> str:
    """The sketch as compact JSON: its non-empty bins and exact count, sum, min and max.
    (ddsketch's own serialisation needs protobuf, which the proxy does not otherwise use.)
    It reads ddsketch 3.0.1's own fields (pinned); tests/diffproxy/test_latency.py holds the
    round trip exact."""
    store = sketch._store
    bins = [[i + store.offset, n] for i, n in enumerate(store.bins) if n]
    return json.dumps({"c": sketch.count, "s": sketch.sum, "z": sketch._zero_count,
                       "lo": sketch._min, "hi": sketch._max, "b": bins},
                      separators=(",", ":"))


def decode(text: str) -> LogCollapsingLowestDenseDDSketch:
    data = json.loads(text)
    sketch = new_sketch()
    for key, n in data["b"]:
        sketch._store.add(int(key), float(n))
    sketch._zero_count = float(data["z"])
    sketch._count = float(data["c"])
    sketch._sum = float(data["s"])
    sketch._min = float(data["lo"])
    sketch._max = float(data["hi"])
    return sketch


@dataclass(frozen=True)
class Thresholds:
    relative: float = 20.0  # percent
    absolute_ms: float = 10.0
    min_samples: int = 20


def summary(sketch: LogCollapsingLowestDenseDDSketch | None) -> dict:
    """{"count", "p50_ms", "p90_ms", "p99_ms"}; quantiles None while empty."""
    count = int(sketch.count) if sketch is not None else 0
    out: dict = {"count": count}
    for name, q in QUANTILES.items():
        value = sketch.get_quantile_value(q) if count else None
        out[f"{name}_ms"] = round(value, 3) if value is not None else None
    return out


def verdict(sketches: dict[str, LogCollapsingLowestDenseDDSketch | None], t: Thresholds) -> str:
    """slower | faster | same | insufficient, for one endpoint's three sketches."""
    counts = [int(s.count) if s is not None else 0 for s in (sketches.get(n) for n in TARGET_ORDER)]
    if min(counts) < t.min_samples:
        return "insufficient"
    slower = faster = False
    for q in JUDGED.values():
        if min(counts) < max(t.min_samples, round(TAIL_SAMPLES / (1 - q))):
            continue
        p, s, c = (sketches[n].get_quantile_value(q) for n in TARGET_ORDER)
        margin = abs(s - p) + max(t.absolute_ms, t.relative / 100.0 * p)
        if c - p > margin:
            slower = True
        elif p - c > margin:
            faster = True
    # A tail regression outweighs a faster median.
    return "slower" if slower else "faster" if faster else "same"


class LatencyBook:
    """The sketches of every endpoint, and which changed since the last flush."""

    def __init__(self) -> None:
        self.sketches: dict[str, dict[str, LogCollapsingLowestDenseDDSketch]] = {}
        self.dirty: set[str] = set()

    def add(self, endpoint: str, latency_ms: tuple[float | None, ...]) -> None:
        """One compared request; a target that gave no response (None) adds nothing."""
        book = self.sketches.get(endpoint)
        if book is None:
            book = self.sketches[endpoint] = {name: new_sketch() for name in TARGET_ORDER}
        for name, value in zip(TARGET_ORDER, latency_ms):
            if value is not None and math.isfinite(value) and value >= 0:
                book[name].add(value)
        self.dirty.add(endpoint)

    def take_dirty(self) -> list[tuple[str, str, str]]:
        """(endpoint, target, encoded sketch) of every changed endpoint, for the store's write."""
        rows = [(ep, name, encode(sketch)) for ep in self.dirty
                for name, sketch in self.sketches[ep].items()]
        self.dirty = set()
        return rows

    def load(self, rows) -> None:
        for endpoint, target, text in rows:
            if target in TARGET_ORDER:
                book = self.sketches.setdefault(endpoint, {n: new_sketch() for n in TARGET_ORDER})
                book[target] = decode(text)

    def clear(self) -> None:
        self.sketches.clear()
        self.dirty.clear()

    def report(self, endpoint: str, t: Thresholds) -> dict:
        book = self.sketches.get(endpoint, {})
        out = {name: summary(book.get(name)) for name in TARGET_ORDER}
        out["verdict"] = verdict(book, t) if book else "insufficient"
        return out

    def verdict_of(self, endpoint: str, t: Thresholds) -> str:
        book = self.sketches.get(endpoint)
        return verdict(book, t) if book else "insufficient"
