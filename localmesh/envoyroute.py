"""What share of a route Envoy mirrors, read from its admin `config_dump`.

After `pulumi up` changes `mirrorPercentage`, istiod pushes the new route to every sidecar
some time later. Until the caller's sidecar has it, traffic is mirrored at the old rate; the
kind backend therefore waits until the sleep pod's sidecar reports the new fraction.

istiod turns `mirrorPercentage: {value: P}` into a `request_mirror_policies` entry with
`runtime_fraction.default_value = {numerator: P * 10000, denominator: MILLION}`, emits no
entry for 0, and `{numerator: 100, denominator: HUNDRED}` when `mirrorPercentage` is absent
(topology/istio_xds.py, `mirror_fraction`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from topology import Topology

_DENOMINATORS = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


def route_clusters(t: Topology) -> tuple[str, str]:
    """(the route's own cluster, the mirror's cluster), as istiod names them."""
    primary = f"outbound|{t.ports.app}|v1|{t.service_host}"
    if t.relay:
        return primary, f"outbound|{t.ports.app}|v2|{t.service_host}"
    return primary, f"outbound|{t.ports.proxy}||{t.diffproxy_host}"


def _route_configs(node: Any) -> Iterator[dict]:
    """Every RouteConfiguration in a dump, whatever its nesting (full dump or `?resource=`)."""
    if isinstance(node, dict):
        if "virtual_hosts" in node:
            yield node
            return
        for value in node.values():
            yield from _route_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _route_configs(value)


def _percent(policy: dict) -> float:
    fraction = policy.get("runtime_fraction")
    if fraction is None:
        return 100.0
    value = fraction.get("default_value", {})
    # proto3 JSON leaves out zero values: numerator 0 and the HUNDRED denominator.
    numerator = int(value.get("numerator", 0))
    denominator = _DENOMINATORS[value.get("denominator", "HUNDRED")]
    return 100.0 * numerator / denominator


def mirror_percentage(dump: dict, route_cluster: str, mirror_cluster: str) -> float | None:
    """The mirrored share (0-100) of the route to `route_cluster`; None when the sidecar has
    no such route yet. A route without a policy for `mirror_cluster` mirrors 0%."""
    found: list[float] = []
    for config in _route_configs(dump):
        for host in config.get("virtual_hosts", []):
            for route in host.get("routes", []):
                action = route.get("route", {})
                if action.get("cluster") != route_cluster:
                    continue
                shares = [_percent(p) for p in action.get("request_mirror_policies", [])
                          if p.get("cluster") == mirror_cluster]
                found.append(shares[0] if shares else 0.0)
    if not found:
        return None
    # The same route under several listeners' route configs: all must agree.
    return found[0] if len(set(found)) == 1 else None
