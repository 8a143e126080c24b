"""The results store's interface, and which one a proxy opens.

`-store.path` (the default): one process's SQLite file (`store.py`). `-store.url` /
`DIFFPROXY_STORE_URL`: a PostgreSQL shared by any number of diff proxy replicas
(`store_pg.py`). Both keep exact counts in memory for the API to read without a round trip,
write in batches, and give the same results and API; the pipeline, the worker pool, the API
and the service see only `ResultStore`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .latency import LatencyBook
from .model import Record
from .settings import Settings, mask_url
from .store import EndpointCounts, FieldCounts, Store


class ResultStore(Protocol):
    endpoints: dict[str, EndpointCounts]
    fields: dict[str, dict[str, FieldCounts]]
    last_reset: int | None
    epoch: int  # bumped by each clear (`Record.epoch`)
    latency: LatencyBook

    @property
    def is_open(self) -> bool: ...

    def problem(self) -> str | None:
        """Why the store cannot record right now (for /readyz), or None."""

    def add(self, record: Record) -> None: ...

    def known_endpoints(self) -> list[str]: ...

    async def flush(self) -> None: ...

    async def results(self, endpoint: str, path: str) -> list[dict[str, Any]]: ...

    async def result(self, result_id: str) -> dict[str, Any] | None: ...

    async def clear(self) -> int: ...

    async def close(self) -> None: ...


def describe(settings: Settings) -> str:
    """The store as logs and /api/1/info show it: a URL's password never leaves the process."""
    url = settings.store.url
    return mask_url(url) if url else settings.store.path


async def open_store(settings: Settings, on_flush: Callable[[], None] | None = None,
                     on_error: Callable[[], None] | None = None,
                     on_drop: Callable[[int], None] | None = None,
                     on_cleared: Callable[[], None] | None = None,
                     on_latency: Callable[[str, tuple], None] | None = None,
                     on_thin: Callable[[], None] | None = None) -> ResultStore:
    """`on_drop(n)`: n comparisons could not be recorded (the database was lost);
    `on_cleared()`: another replica cleared the shared results."""
    s = settings.store
    common = dict(samples_first=s.samples_first, samples_latest=s.samples_latest,
                  max_fields=settings.diff.max_fields, flush_interval=s.flush_interval,
                  on_flush=on_flush, on_error=on_error, on_latency=on_latency)
    if not s.url:
        return await Store.open(s.path, max_bytes=s.max_bytes, on_thin=on_thin, **common)
    from .store_pg import PostgresStore  # asyncpg only where a database is used

    return await PostgresStore.open(s.url, max_endpoints=settings.diff.max_endpoints,
                                    connect_timeout=s.connect_timeout, on_drop=on_drop,
                                    on_cleared=on_cleared, **common)
