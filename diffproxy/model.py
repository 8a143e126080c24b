"""The nouns every stage shares: where a target lives, what it answered, how two answers
differ, and what is kept of one mirrored request. Plain data, no behaviour beyond
formatting, so any stage can import this module without pulling in another stage."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

ERROR_KINDS = ("refused", "timeout", "reset", "bad_response", "too_large", "tls", "other")
DIFF_TYPES = ("changed", "type_changed", "missing", "extra", "size_changed", "error", "moved")
VERDICTS = ("signal", "noise", "same", "baseline_failure", "insufficient")
HEALTH_WINDOW = 20  # outcomes a target's health is judged on ...
HEALTH_WINDOW_SECONDS = 60.0  # ... of at most this age
TARGET_ORDER = ("primary", "secondary", "candidate")


def clip(text: str, at: int) -> str:
    """`text` cut to `at` characters for display, saying how long it was."""
    return text if len(text) <= at else f"{text[:at]}... [{len(text)} chars]"


class Clipped(str):
    """A value cut for display (`... [N chars]`) that still holds the whole: the redactor
    masks secrets in `whole` and cuts afterwards (`clip`). Cutting first would leave the
    start of a secret straddling the cut where no rule sees it (`"token": "abc` lost the
    closing quote its name rule needs; `abc` alone is too short to search by value). Only
    the comparison makes these; redaction turns each back into a plain `str`."""

    whole: str
    at: int

    def __new__(cls, whole: str, at: int) -> Clipped:
        self = super().__new__(cls, clip(whole, at))
        self.whole, self.at = whole, at
        return self

    def __getnewargs__(self) -> tuple[str, int]:  # pickled (to a worker) as what it is
        return self.whole, self.at


@dataclass(frozen=True)
class Target:
    """Where one of primary, secondary and candidate lives."""

    scheme: str
    host: str
    port: int
    base_path: str = ""
    # added to every request sent to this target (Diffy's -candidateHeaders and friends)
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def _host_in_url(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self._host_in_url}:{self.port}{self.base_path}"

    @property
    def authority(self) -> str:
        """The Host header the target expects: its own name, port only when not default."""
        default = 443 if self.scheme == "https" else 80
        return self._host_in_url if self.port == default else f"{self._host_in_url}:{self.port}"

    def __str__(self) -> str:
        return self.base_url


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A complete HTTP response as a transport read it."""

    status: int
    headers: tuple[tuple[str, str], ...]  # as received: original case, in order
    body: bytes                           # as received: no decoding


@dataclass(frozen=True, slots=True)
class Response:
    """What one target did with the request."""

    status: int | None  # None: no HTTP response at all
    headers: tuple[tuple[str, str], ...]  # as received, original case, in order
    body: bytes  # raw body as received (may be gzip/deflate encoded)
    error: str | None = None  # None or one of ERROR_KINDS
    error_detail: str = ""
    elapsed_ms: float = 0.0
    # `body` with its Content-Encoding undone, when the forwarder already did that (to
    # check it for a decompression bomb): the comparison uses it instead of inflating again.
    decoded: bytes | None = None


@dataclass(frozen=True, slots=True)
class Difference:
    type: str  # one of DIFF_TYPES
    left: Any  # JSON-serialisable, long values truncated
    right: Any
    # a whole subtree removed, added or moved: how many scalar leaves it holds
    leaves: int | None = None
    # "moved" only: where the subtree went (its root is the path it is reported under)
    to: str | None = None


@dataclass(frozen=True)
class Job:
    """One request and what the three targets answered, waiting to be compared."""

    id: str
    trace_id: str
    timestamp_msec: int
    method: str
    path_qs: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    primary: Response
    secondary: Response
    candidate: Response
    # The results' epoch when the request arrived (`Store.epoch`): a comparison that
    # finishes after a clear of the results it predates is not recorded.
    epoch: int = 0


@dataclass(frozen=True)
class Record:
    """One finished comparison, redacted, ready to store. `raw`/`noise` map field path ->
    {"type", "left", "right"}. `document` is the whole result as JSON without its
    endpoint (the store adds that: a worker's endpoint name may still be folded into the
    overflow endpoint), or None when it is counted only and never kept as an example."""

    id: str
    endpoint: str
    raw: dict[str, dict]
    noise: dict[str, dict]
    document: str | None = None
    # targets that failed on their own (connect error, reset, timeout, 5xx) while another
    # answered; `baseline_failed`: primary or secondary did and the candidate did not, so
    # `raw` is against the healthy baseline if there was one and `noise` is unknown
    failed: tuple[str, ...] = ()
    baseline_failed: bool = False
    # Each target's time to its full response (primary, secondary, candidate); None when it
    # gave no HTTP response. The store's latency sketches (latency.py) take them.
    latency_ms: tuple[float | None, float | None, float | None] = (None, None, None)
    epoch: int = 0  # from its Job


@dataclass
class TargetHealth:
    """One target's state over a rolling window (the last `HEALTH_WINDOW` outcomes no
    older than `HEALTH_WINDOW_SECONDS`), from real traffic and from probes while idle:
    unhealthy when more than half of the window failed, so one reset among many answers
    does not flip it, and a dead target is unhealthy from its first failure."""

    address: str
    healthy: bool | None = None  # None: not contacted yet
    last_error: str | None = None
    last_change_msec: int | None = None
    last_seen: float = field(default=0.0)
    window: deque = field(default_factory=deque)
    failures: int = 0  # in `window`, kept as outcomes come and go (three per request)

    def record(self, healthy: bool, error: str | None) -> None:
        now = time.monotonic()
        window = self.window
        window.append((now, healthy))
        if not healthy:
            self.failures += 1
        while window and (len(window) > HEALTH_WINDOW or now - window[0][0] > HEALTH_WINDOW_SECONDS):
            if not window.popleft()[1]:
                self.failures -= 1
        verdict = self.failures * 2 <= len(window)
        if verdict != self.healthy:
            self.last_change_msec = int(time.time() * 1000)
        self.healthy = verdict
        if error is not None:
            self.last_error = error
        self.last_seen = now

    def as_json(self) -> dict:
        return {"address": self.address, "healthy": self.healthy, "last_error": self.last_error,
                "window": {"outcomes": len(self.window), "failures": self.failures,
                           "max_outcomes": HEALTH_WINDOW, "max_seconds": HEALTH_WINDOW_SECONDS}}
