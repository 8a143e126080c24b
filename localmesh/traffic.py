"""The sleep pod's role: send the original demo's requests to the mesh entry."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpx

from localmesh.errors import MeshError

# What the original demo's `curl http://mirrorservice-sample:44134/...` calls hit: echoes,
# a random field (/uuid, noise), the changed document (/json, signal), a templated path, and
# the route the candidate answers 80 ms later (/delay/0: the latency regression).
DEMO_PATHS: tuple[str, ...] = (
    "/headers", "/get", "/uuid", "/json", "/anything/{id}", "/status/200", "/user-agent",
    "/delay/0",
)


# Seconds between two demo requests, as a curl loop in the sleep pod leaves them. Sent
# back to back instead, the fire-and-forget copies pile up behind the caller: each target is
# one gunicorn process, and the candidate's 80 ms route holds its threads, so every route of
# the candidate queues and is (truly, but only because of the pile-up) slower. At 50
# requests/s no target queues, and the latency verdict sees the one deliberate change.
DEMO_INTERVAL = 0.02


def demo_rounds(min_samples: int) -> int:
    """Rounds of DEMO_PATHS the demo sends: three are enough for /uuid's noise to cancel and
    /json's signal to stand out; the latency verdict needs `-latency.minSamples` per endpoint."""
    return max(3, min_samples)


@dataclass(frozen=True)
class Reply:
    path: str
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    def json(self):
        import json

        return json.loads(self.body)


def expand(paths: Iterable[str], count: int, rng: random.Random | None = None) -> Iterator[str]:
    """`count` paths cycling through `paths`; `{id}` becomes a fresh number each time."""
    rng = rng or random.Random()
    for template in itertools.islice(itertools.cycle(tuple(paths)), count):
        yield template.replace("{id}", str(rng.randrange(1, 1_000_000)))


def send(base_url: str, paths: Iterable[str], host: str | None = None,
         timeout: float = 10.0, interval: float = 0.0) -> list[Reply]:
    """One GET per path, one after the other, like a shell loop around curl, `interval`
    seconds apart.

    `host` sets the Host header, so a request to 127.0.0.1 looks like the cluster's
    `mirrorservice-sample:44134` to the caller's Envoy and to everything behind it.
    """
    headers = {"Host": host} if host else {}
    replies: list[Reply] = []
    with httpx.Client(base_url=base_url, timeout=timeout, headers=headers) as client:
        for i, path in enumerate(paths):
            if i and interval > 0:
                time.sleep(interval)
            try:
                response = client.get(path)
            except httpx.HTTPError as exc:
                raise MeshError(f"request to {base_url}{path} failed: {exc or type(exc).__name__}") from None
            replies.append(Reply(path, response.status_code, response.content,
                                 tuple(response.headers.multi_items())))
    return replies
