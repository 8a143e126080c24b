"""The figures one run produces, as plain dataclasses that serialise straight to JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MB = 1024 * 1024
TITLES = {
    "a": "(a) backend directly (nginx)",
    "b": "(b) nginx `mirror` fan-out",
    "c": "(c) diff proxy, identical bodies",
    "d": "(d) diff proxy, candidate differs",
    "e": "(e) diff proxy, 20 ms backends",
    "f": "(f) Envoy `request_mirror_policies` fan-out",
    "g": "(g) diff proxy, realistic mix",
    "memory": "memory: many distinct paths",
    "shared": "shared store: 1-3 replicas on one PostgreSQL, next to SQLite",
}


@dataclass(frozen=True)
class Comparisons:
    requests: int      # received on the proxy port during the measured window
    queued: int
    completed: int
    dropped: int
    failed: int
    drained: bool      # the queue emptied before the drain timeout
    drain_s: float


@dataclass(frozen=True)
class ScenarioResult:
    key: str
    title: str
    under_test: str                 # whose CPU and RSS are reported
    processes: int                  # processes of `under_test` that serve (an nginx master idles)
    connections: int
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: dict[str, int]
    cpu_s: float
    cpu_s_per_1k: float
    backend_cpu_s_per_1k: float     # the backends' share of the same work, for context
    rss_before_mb: float
    rss_after_mb: float
    rss_max_mb: float               # the highest RSS sampled (twice a second) during the load
    comparisons: Comparisons | None = None
    reference_p50_ms: float | None = None              # (e): slowest backend measured directly
    reference: dict[str, float] = field(default_factory=dict)  # (e): p50 of each backend directly


@dataclass(frozen=True)
class MemoryResult:
    requests: int                   # completed by wrk
    target_requests: int            # what was asked for
    paths: int
    connections: int
    duration_s: float
    rps: float
    errors: dict[str, int]
    rss_before_mb: float
    rss_after_mb: float
    growth_mb: float
    projected_growth_1m_mb: float   # growth + late-phase slope extrapolated to 1,000,000 requests
    endpoints: int                  # what the proxy recorded: shows the endpoint cap at work
    comparisons: Comparisons
    samples: list[tuple[int, float]]  # (requests seen by the proxy, RSS MB)


@dataclass(frozen=True)
class ProfileResult:
    key: str
    rps_while_profiling: float
    samples: int
    by_area_pct: list[tuple[str, float]]
    self_pct: list[tuple[str, float]]
    inclusive_pct: list[tuple[str, float]]


@dataclass
class RunResult:
    started: str
    settings: dict
    machine: dict
    scenarios: dict[str, ScenarioResult] = field(default_factory=dict)
    memory: MemoryResult | None = None
    shared_store: list | None = None  # bench.shared_store.SharedStoreRow, one per configuration
    profiles: dict[str, ProfileResult] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)  # scenario -> why it produced no figures
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)
