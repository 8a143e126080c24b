"""Which comparisons are kept as examples: per (endpoint, field), the first `first` ever
seen (until the results are cleared) and a ring of the latest `latest`.

One policy, used twice: the comparison pipeline (owner and worker processes alike) asks
`select` which documents are worth building at all (building one is the expensive part of
a result), and the store asks `take_first` and `newest` which of those it keeps. A
record the store keeps is always one the pipeline selected: the newest N of all records
are among the newest N of their batch, and the first N ever are among the first N of the
pipeline, which starts counting no earlier than the store.

With replicas on one PostgreSQL (`store_pg.py`) the store applies the same policy to the
whole cluster: each replica's pipeline selects as above, and the database keeps the first
N any replica wrote and the newest N across all of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

MAX_FIRST_KEYS = 100_000  # bound on the (endpoint, field) pairs remembered for first examples


def newest(keys: Sequence[Iterable[Hashable]], latest: int) -> list[bool]:
    """Per item (oldest first): is it among the `latest` newest items of any of its keys?"""
    keep = [False] * len(keys)
    if latest <= 0:
        return keep
    seen: dict[Hashable, int] = {}
    for i in range(len(keys) - 1, -1, -1):
        for key in keys[i]:
            n = seen.get(key, 0)
            if n < latest:
                seen[key] = n + 1
                keep[i] = True
    return keep


class ExampleSampler:
    def __init__(self, first: int, latest: int, max_keys: int | None = MAX_FIRST_KEYS) -> None:
        self.first = first
        self.latest = latest
        self.max_keys = max_keys
        self.first_counts: dict[Hashable, int] = {}

    def reset(self) -> None:
        """The results were cleared: first examples are wanted again."""
        self.first_counts.clear()

    def take_first(self, key: Hashable) -> bool:
        """Is this the key's next first example? Counts it if so."""
        n = self.first_counts.get(key, 0)
        if n >= self.first:
            return False
        self.first_counts[key] = n + 1
        return True

    def select(self, keys: Sequence[Iterable[Hashable]]) -> list[bool]:
        """Per item of one batch (oldest first): may it become an example?"""
        keys = [tuple(k) for k in keys]
        keep = newest(keys, self.latest)
        if self.max_keys is not None and len(self.first_counts) > self.max_keys:
            self.first_counts.clear()  # at worst a few more documents built; memory stays bounded
        for i, item in enumerate(keys):
            for key in item:
                if self.take_first(key):
                    keep[i] = True
        return keep
