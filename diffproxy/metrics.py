"""Counters, gauges and histograms, rendered in the Prometheus text exposition format (0.0.4).

Small on purpose: the proxy has a fixed, known set of series, so a hand-written registry is
shorter than wiring a library and keeps the runtime dependencies to aiohttp and deepdiff.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Target latency per endpoint: finer below 100 ms, where a release's regression shows first.
TARGET_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25,
                          0.5, 1.0, 2.5, 5.0, 10.0)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(names: tuple[str, ...], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


@dataclass
class _Metric:
    name: str
    help: str
    labelnames: tuple[str, ...] = ()

    def _key(self, labels: dict[str, str]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self, kind: str) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {kind}"]


class CounterSeries:
    """One label set of a counter, checked once: the request path increments these."""

    __slots__ = ("_values", "_key")

    def __init__(self, values: dict[LabelValues, float], key: LabelValues) -> None:
        self._values = values
        self._key = key

    def inc(self, amount: float = 1.0) -> None:
        self._values[self._key] = self._values.get(self._key, 0.0) + amount


class HistogramSeries:
    __slots__ = ("_buckets", "_counts", "_sums", "_key")

    def __init__(self, histogram: Histogram, key: LabelValues) -> None:
        self._buckets = histogram.buckets
        self._counts = histogram._series(key)
        self._sums = histogram.sums
        self._key = key

    def observe(self, value: float) -> None:
        counts = self._counts
        for i, bound in enumerate(self._buckets):
            if value <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        self._sums[self._key] += value


@dataclass
class Counter(_Metric):
    values: dict[LabelValues, float] = field(default_factory=dict)

    def series(self, **labels: str) -> CounterSeries:
        """A pre-validated handle; the series appears in the output at its first `inc`."""
        return CounterSeries(self.values, self._key(labels))

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0.0) + amount

    def get(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0.0)

    def touch(self, **labels: str) -> None:
        """Make the series visible at 0 before the first event."""
        self.values.setdefault(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = self.header("counter")
        lines += [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}"
                  for k, v in sorted(self.values.items())]
        return lines


@dataclass
class Gauge(_Metric):
    values: dict[LabelValues, float] = field(default_factory=dict)
    callback: Callable[[], float] | None = None

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = float(value)

    def get(self, **labels: str) -> float:
        if self.callback is not None:
            return float(self.callback())
        return self.values.get(self._key(labels), 0.0)

    def render(self) -> list[str]:
        lines = self.header("gauge")
        if self.callback is not None:
            return lines + [f"{self.name} {_number(self.callback())}"]
        lines += [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}"
                  for k, v in sorted(self.values.items())]
        return lines


@dataclass
class Histogram(_Metric):
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: dict[LabelValues, list[int]] = field(default_factory=dict)
    sums: dict[LabelValues, float] = field(default_factory=dict)

    def _series(self, key: LabelValues) -> list[int]:
        if key not in self.counts:
            self.counts[key] = [0] * (len(self.buckets) + 1)  # last slot: +Inf
            self.sums[key] = 0.0
        return self.counts[key]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        series = self._series(key)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                series[i] += 1
                break
        else:
            series[-1] += 1
        self.sums[key] += value

    def touch(self, **labels: str) -> None:
        self._series(self._key(labels))

    def series(self, **labels: str) -> HistogramSeries:
        return HistogramSeries(self, self._key(labels))

    def count(self, **labels: str) -> int:
        return sum(self.counts.get(self._key(labels), ()))

    def render(self) -> list[str]:
        lines = self.header("histogram")
        for key in sorted(self.counts):
            cumulative = 0
            for bound, n in zip((*self.buckets, math.inf), self.counts[key]):
                cumulative += n
                le = 'le="' + _number(bound) + '"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_number(self.sums[key])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {cumulative}")
        return lines


class Metrics:
    """Every series the proxy exports; one instance per running proxy."""

    def __init__(self, targets: Iterable[str] = ("primary", "secondary", "candidate")) -> None:
        self.requests = Counter("diffproxy_requests_total",
                                "Requests received on the proxy port.", ("method",))
        self.rejected = Counter("diffproxy_requests_rejected_total",
                                "Requests answered without forwarding, by reason.", ("reason",))
        self.blocked = Counter("diffproxy_blocked_side_effects_total",
                               "Requests with a method other than GET/HEAD/OPTIONS/TRACE not "
                               "forwarded (-allowHttpSideEffects is off).", ("method",))
        self.target_requests = Counter("diffproxy_target_requests_total",
                                       "Requests sent to each target.", ("target",))
        self.target_errors = Counter("diffproxy_target_errors_total",
                                     "Target requests that got no usable response, by kind.",
                                     ("target", "kind"))
        # Observed as comparisons are counted (the owner's store), so `endpoint` is bounded
        # by -max.endpoints; requests a target gave no response to are not in it.
        self.target_latency = Histogram("diffproxy_target_latency_seconds",
                                        "Time from sending a compared request to a target "
                                        "to its last response byte, by endpoint.",
                                        ("target", "endpoint"), buckets=TARGET_LATENCY_BUCKETS)
        self._latency_series: dict[str, tuple[HistogramSeries, ...]] = {}
        self.target_up = Gauge("diffproxy_target_up",
                               "1 if the target answered its last request or probe.",
                               ("target",))
        self.queued = Counter("diffproxy_comparisons_queued_total",
                              "Comparisons put on the queue.")
        self.dropped = Counter("diffproxy_comparisons_dropped_total",
                               "Comparisons dropped because the queue was full.")
        self.completed = Counter("diffproxy_comparisons_completed_total",
                                 "Comparisons finished and recorded.")
        self.failed = Counter("diffproxy_comparisons_failed_total",
                              "Comparisons that raised an error (logged).")
        self.cleared = Counter("diffproxy_comparisons_cleared_total",
                               "Comparisons of requests that arrived before a clear of the "
                               "results, finished after it: not recorded.")
        self.differences = Counter("diffproxy_differences_total",
                                   "Compared requests where primary and candidate differ.")
        self.noise = Counter("diffproxy_noise_total",
                             "Compared requests where primary and secondary differ.")
        self.store_flushes = Counter("diffproxy_store_flushes_total",
                                     "Batches written to the results store.")
        self.store_errors = Counter("diffproxy_store_errors_total",
                                    "Batches the results store failed to write.")
        # issue 16: the shared PostgreSQL store.
        self.store_dropped = Counter("diffproxy_store_dropped_total",
                                     "Comparisons not recorded because the results database "
                                     "could not be written (lost, or down at the time).")
        self.queue_depth = Gauge("diffproxy_comparison_queue_depth",
                                 "Comparisons waiting: on the queue, or for the targets the "
                                 "caller was not answered from.")
        self.workers = Gauge("diffproxy_workers",
                             "Processes serving the proxy port (this one included).")
        self.workers.set(1)
        # issue 13: bounds (hostile-bounds)
        self.worker_restarts = Counter("diffproxy_worker_restarts_total",
                                       "Worker processes that died and were started again.")
        self.dropped_bytes = Counter("diffproxy_comparisons_dropped_bytes_total",
                                     "Body bytes of comparisons dropped because the queue "
                                     "was full (by count or by -queue.maxBytes).")
        self.bounded = Counter("diffproxy_comparisons_bounded_total",
                               "Bodies compared by a cheaper method (hash) because they were "
                               "too deep or too wide, by reason.", ("reason",))
        self.store_thinned = Counter("diffproxy_store_examples_thinned_total",
                                     "Stored examples deleted to keep the store within "
                                     "-store.maxBytes (counts are kept).")
        for reason in ("depth", "width"):
            self.bounded.touch(reason=reason)
        for name in (self.worker_restarts, self.dropped_bytes, self.store_thinned,
                     self.queued, self.dropped, self.completed, self.failed, self.cleared,
                     self.differences, self.noise, self.store_flushes, self.store_errors,
                     self.store_dropped):
            name.touch()
        for reason in ("side_effect", "too_large", "malformed", "slow_client"):
            self.rejected.touch(reason=reason)
        for target in targets:
            self.target_requests.touch(target=target)
            self.target_up.set(0, target=target)

    def _counters(self) -> tuple[Counter, ...]:
        return tuple(m for m in vars(self).values() if isinstance(m, Counter))

    def _histograms(self) -> tuple[Histogram, ...]:
        return tuple(m for m in vars(self).values() if isinstance(m, Histogram))

    def take_deltas(self) -> dict:
        """What the counters and histograms gained since the last call (and zero them): a
        worker process ships these to the owner, which adds them to its own."""
        counters = {}
        for c in self._counters():
            changed = {k: v for k, v in c.values.items() if v}
            if changed:
                counters[c.name] = changed
                for k in changed:
                    c.values[k] = 0.0
        histograms = {}
        for h in self._histograms():
            changed = {k: (list(counts), h.sums[k]) for k, counts in h.counts.items() if any(counts)}
            if changed:
                histograms[h.name] = changed
                for k in changed:
                    h.counts[k][:] = [0] * len(h.counts[k])  # in place: bound series hold the list
                    h.sums[k] = 0.0
        return {"counters": counters, "histograms": histograms}

    def add_deltas(self, deltas: dict) -> None:
        counters = {c.name: c for c in self._counters()}
        for name, values in deltas.get("counters", {}).items():
            c = counters.get(name)
            if c is not None:
                for k, v in values.items():
                    c.values[k] = c.values.get(k, 0.0) + v
        histograms = {h.name: h for h in self._histograms()}
        for name, values in deltas.get("histograms", {}).items():
            h = histograms.get(name)
            if h is not None:
                for k, (counts, total) in values.items():
                    series = h._series(k)
                    for i, n in enumerate(counts[:len(series)]):
                        series[i] += n
                    h.sums[k] += total

    def observe_latency(self, endpoint: str, latency_ms: tuple[float | None, ...]) -> None:
        """One compared request's three response times (primary, secondary, candidate)."""
        series = self._latency_series.get(endpoint)
        if series is None:
            series = self._latency_series[endpoint] = tuple(
                self.target_latency.series(target=t, endpoint=endpoint)
                for t in ("primary", "secondary", "candidate"))
        for one, value in zip(series, latency_ms):
            if value is not None:
                one.observe(value / 1000.0)

    def clear_latency(self) -> None:
        """The results were cleared: per-endpoint series start again (cardinality follows
        the store's endpoints)."""
        self.target_latency.counts.clear()
        self.target_latency.sums.clear()
        self._latency_series.clear()

    @staticmethod
    def method_label(method: str) -> str:
        """Bounded label values: arbitrary methods would make unbounded series."""
        return method if method in KNOWN_METHODS else "OTHER"

    def render(self) -> str:
        lines: list[str] = []
        for metric in (self.requests, self.rejected, self.blocked, self.target_requests,
                       self.target_errors, self.target_latency, self.target_up, self.queued,
                       self.dropped, self.completed, self.failed, self.cleared, self.queue_depth,
                       self.differences, self.noise, self.store_flushes, self.store_errors,
                       self.store_dropped, self.workers, self.worker_restarts, self.dropped_bytes,
                       self.bounded, self.store_thinned):
            lines += metric.render()
        return "\n".join(lines) + "\n"
