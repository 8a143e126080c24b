"""Prometheus text, read with `prometheus_client`'s own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """{(sample name, frozenset of (label, value)): value}. ValueError on text that is not
    the Prometheus exposition format."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The one series of `name` with exactly `labels`; 0 when there is none."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float | None:
    """Sum of every series of `name` whose labels include `labels`; None if there is none."""
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    return sum(found) if found else None
