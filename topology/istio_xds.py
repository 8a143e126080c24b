"""DestinationRule + VirtualService dicts -> the Envoy config istiod would give a caller's sidecar.

Written from istiod's behaviour (istio/istio 1.28, pilot/pkg/networking/core/route/route.go,
httproute.go, retry/retry.go; pilot/pkg/model BuildSubsetKey), not from its code, for the
parts of the API this demo's rules use:

- every Service port gets a cluster `outbound|PORT||FQDN`, every DestinationRule subset one
  more, `outbound|PORT|SUBSET|FQDN`, holding the endpoints whose labels carry the subset's;
- a VirtualService's hosts become one virtual host on the route configuration named after
  the port, matched without the port (`ignore_port_in_host_matching`), with the FQDN, the
  short names a caller in the same namespace may use, and the Service's addresses;
- an `http` entry without `match` is the catch-all `prefix: /`; one `route` destination is a
  `cluster`, several are `weighted_clusters` (weight 0 left out); no timeout, Istio's default
  retry policy;
- `mirror` (with `mirrorPercentage`, the deprecated integer `mirrorPercent`, or neither) and
  each of `mirrors` (with its `percentage`) become one `request_mirror_policies` entry:
  `runtime_fraction.default_value` is `value * 10000` over MILLION, truncated to an integer
  as istiod's Go conversion does (12.5 -> 125000), or 100 over HUNDRED when no percentage is
  given; a zero percentage emits no policy at all; `trace_sampled: false`;
  `disable_shadow_host_suffix_append` is what istiod of the configured release sets
  (topology/istio.py).

Clusters are STATIC (loopback endpoints handed in) where istiod would use EDS: the local
stack has no control plane to stream endpoints from.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from topology.istio import Istio
from topology.model import TopologyError

UINT32_MAX = 4294967295
ROUTER = {"name": "envoy.filters.http.router",
          "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
FILE_LOG_TYPE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
UUID_TYPE = "type.googleapis.com/envoy.extensions.request_id.uuid.v3.UuidRequestIdConfig"
# Same fields as the nginx access logs (localmesh/nginx.py), so one parser reads all three.
ACCESS_LOG_FORMAT = ('%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% - [%START_TIME%] '
                     '"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
                     '%RESPONSE_CODE% %BYTES_SENT% "%REQ(USER-AGENT)%" host="%REQ(:AUTHORITY)%" '
                     'rid="%REQ(X-REQUEST-ID)%" upstream="%UPSTREAM_CLUSTER%"\n')


@dataclass(frozen=True)
class Endpoint:
    address: str
    port: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Service:
    """What istiod learns from a Kubernetes Service and its pods: FQDN, port, endpoints."""

    hostname: str
    port: int
    endpoints: tuple[Endpoint, ...] = ()
    addresses: tuple[str, ...] = ()  # cluster IPs; the local stack's are its loopback addresses


@dataclass(frozen=True)
class Sidecar:
    """The caller's proxy: where it listens, its admin port, its namespace (for short names)."""

    namespace: str
    listen_address: str
    listen_port: int
    admin_address: str
    admin_port: int
    access_log: str = "/dev/stdout"
    node_id: str = "sidecar~127.0.0.1~caller~local"


PREVIOUS_HOSTS_TYPE = "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"


def cluster_name(port: int, subset: str, hostname: str) -> str:
    return f"outbound|{port}|{subset}|{hostname}"


def mirror_fraction(percentage: Mapping | None, integer_percent: int | None = None) -> dict | None:
    """`runtime_fraction` of one mirror policy, or None when istiod emits no policy."""
    if percentage is not None:
        value = float(percentage.get("value", 0.0))
        if not 0.0 <= value <= 100.0:
            raise TopologyError(f"mirror percentage must be between 0 and 100, got {value}")
        if value <= 0:
            return None
        return {"default_value": {"numerator": int(value * 10000), "denominator": "MILLION"}}
    if integer_percent is not None:
        if integer_percent <= 0:
            return None
        return {"default_value": {"numerator": int(integer_percent), "denominator": "HUNDRED"}}
    return {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def _spec(obj: Mapping, kind: str) -> Mapping:
    if obj.get("kind") != kind or not isinstance(obj.get("spec"), Mapping):
        raise TopologyError(f"expected a {kind} with a spec, got {obj.get('kind')!r}")
    return obj["spec"]


def _ip_form(address: str) -> str:
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def vhost_domains(service: Service, caller_namespace: str) -> list[str]:
    """FQDN, the short names of a same-namespace caller, addresses (IPv6 bracketed); no ports."""
    host = service.hostname
    domains = [host]
    if ".svc." in host:
        name, _, rest = host.partition(".")
        namespace = rest.split(".", 1)[0]
        if namespace == caller_namespace:
            domains += [name, f"{name}.{namespace}.svc", f"{name}.{namespace}"]
        else:
            domains += [f"{name}.{namespace}", f"{name}.{namespace}.svc"]
    domains += [_ip_form(a) for a in service.addresses]
    return list(dict.fromkeys(domains))


class _Registry:
    def __init__(self, services: Iterable[Service]) -> None:
        self.services = list(services)

    def find(self, hostname: str, port: int | None = None) -> Service | None:
        matches = [s for s in self.services if s.hostname == hostname and (port is None or s.port == port)]
        return matches[0] if matches else None

    def cluster_for(self, destination: Mapping, listener_port: int) -> str:
        host = destination.get("host", "")
        if not host:
            raise TopologyError("a destination needs a host")
        port = (destination.get("port") or {}).get("number")
        if port is None:
            # istiod: the Service's only port, else the listener's.
            ports = [s.port for s in self.services if s.hostname == host]
            port = ports[0] if len(ports) == 1 else listener_port
        return cluster_name(int(port), destination.get("subset", ""), host)


def _retry_policy() -> dict:
    # Istio's default when a VirtualService sets no `retries`.
    return {"retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            "num_retries": 2,
            "retry_host_predicate": [{
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {"@type": PREVIOUS_HOSTS_TYPE}}],
            "host_selection_retry_max_attempts": 5}


def mirror_policies(http: Mapping, registry: _Registry, listener_port: int, istio: Istio) -> list[dict]:
    if "mirror" in http and "mirrors" in http:
        raise TopologyError("a VirtualService route cannot have both mirror and mirrors")
    wanted: list[tuple[Mapping, dict | None]] = []
    if http.get("mirror"):
        wanted.append((http["mirror"], mirror_fraction(http.get("mirrorPercentage"), http.get("mirrorPercent"))))
    for entry in http.get("mirrors") or ():
        if entry.get("destination"):
            wanted.append((entry["destination"], mirror_fraction(entry.get("percentage"))))
    return [{"cluster": registry.cluster_for(destination, listener_port),
             "runtime_fraction": fraction,
             "trace_sampled": False,
             "disable_shadow_host_suffix_append": istio.disable_shadow_host_suffix_append}
            for destination, fraction in wanted if fraction is not None]


def translate_route(http: Mapping, registry: _Registry, listener_port: int, istio: Istio,
                    operation: str) -> dict:
    if http.get("match"):
        raise TopologyError("the translator handles catch-all routes only (no `match`)")
    destinations = http.get("route") or []
    if not destinations:
        raise TopologyError("a VirtualService http route needs at least one destination")
    action: dict = {"timeout": "0s", "max_grpc_timeout": "0s"}
    if len(destinations) == 1:
        action["cluster"] = registry.cluster_for(destinations[0]["destination"], listener_port)
    else:
        action["weighted_clusters"] = {"clusters": [
            {"name": registry.cluster_for(d["destination"], listener_port), "weight": int(d.get("weight", 0))}
            for d in destinations if int(d.get("weight", 0)) != 0]}
    policies = mirror_policies(http, registry, listener_port, istio)
    if policies:
        action["request_mirror_policies"] = policies
    action["retry_policy"] = _retry_policy()
    return {"match": {"prefix": "/"}, "route": action, "decorator": {"operation": operation}}


def clusters(registry: _Registry, destination_rules: Iterable[Mapping]) -> list[dict]:
    subsets: dict[str, list[Mapping]] = {}
    for rule in destination_rules:
        spec = _spec(rule, "DestinationRule")
        subsets.setdefault(spec["host"], []).extend(spec.get("subsets") or [])
    out: list[dict] = []
    for service in registry.services:
        out.append(_cluster(cluster_name(service.port, "", service.hostname), service.endpoints))
        for subset in subsets.get(service.hostname, []):
            selector = subset.get("labels") or {}
            members = tuple(e for e in service.endpoints
                            if all(e.labels.get(k) == v for k, v in selector.items()))
            out.append(_cluster(cluster_name(service.port, subset["name"], service.hostname), members))
    return out


def _cluster(name: str, endpoints: Iterable[Endpoint]) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "10s",  # Istio's default connectTimeout
        "lb_policy": "LEAST_REQUEST",  # Istio's default load balancer
        # Istio lifts Envoy's 1024 defaults to the maximum unless a DestinationRule limits them.
        "circuit_breakers": {"thresholds": [{
            "max_connections": UINT32_MAX, "max_pending_requests": UINT32_MAX,
            "max_requests": UINT32_MAX, "max_retries": UINT32_MAX, "track_remaining": True}]},
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": e.address, "port_value": e.port}}}}
            for e in endpoints]}]},
    }


def route_configuration(services: list[Service], virtual_services: Iterable[Mapping], port: int,
                        registry: _Registry, caller_namespace: str, istio: Istio) -> dict:
    vhosts = []
    for vs in virtual_services:
        spec = _spec(vs, "VirtualService")
        if spec.get("gateways") and "mesh" not in spec["gateways"]:
            continue  # applies to gateways only, not to sidecars
        for host in spec.get("hosts") or []:
            service = registry.find(host, port)
            if service is None:
                continue
            operation = f"{host}:{port}/*"
            routes = []
            for http in spec.get("http") or []:
                routes.append(translate_route(http, registry, port, istio, operation))
                break  # a catch-all: istiod stops at the first one
            vhosts.append({"name": f"{host}:{port}", "domains": vhost_domains(service, caller_namespace),
                           "routes": routes, "include_request_attempt_count": True})
    routed = {v["name"] for v in vhosts}
    for service in services:
        if service.port == port and f"{service.hostname}:{port}" not in routed:
            # No VirtualService: istiod's default route to the Service's cluster.
            vhosts.append({"name": f"{service.hostname}:{port}",
                           "domains": vhost_domains(service, caller_namespace),
                           "routes": [{"match": {"prefix": "/"}, "name": "default", "route": {
                               "cluster": cluster_name(port, "", service.hostname),
                               "timeout": "0s", "max_grpc_timeout": "0s",
                               "retry_policy": _retry_policy()}}],
                           "include_request_attempt_count": True})
    # Like istiod, a domain already claimed by an earlier virtual host is left out of later ones:
    # Envoy rejects a route configuration with a domain twice.
    seen: set[str] = set()
    for vhost in vhosts:
        vhost["domains"] = [d for d in vhost["domains"] if d not in seen]
        seen.update(vhost["domains"])
    return {"name": str(port), "virtual_hosts": [v for v in vhosts if v["domains"]], "validate_clusters": False,
            "ignore_port_in_host_matching": True}


def sidecar_config(destination_rules: Iterable[Mapping], virtual_services: Iterable[Mapping],
                   services: Iterable[Service], service_port: int, sidecar: Sidecar,
                   istio: Istio) -> dict:
    """A complete Envoy bootstrap: one outbound HTTP listener for `service_port`, all clusters."""
    services = list(services)
    registry = _Registry(services)
    routes = route_configuration(services, list(virtual_services), service_port, registry,
                                 sidecar.namespace, istio)
    hcm = {
        "@type": HCM_TYPE,
        "stat_prefix": f"outbound_0.0.0.0_{service_port}",
        "route_config": routes,
        "http_filters": [ROUTER],
        # As on Istio's outbound listeners: the caller is internal, its x-request-id is kept.
        "use_remote_address": False,
        "normalize_path": True,
        "merge_slashes": False,
        "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
        "request_id_extension": {"typed_config": {"@type": UUID_TYPE,
                                                  "use_request_id_for_trace_sampling": True}},
        "access_log": [{"name": "envoy.access_loggers.file", "typed_config": {
            "@type": FILE_LOG_TYPE, "path": sidecar.access_log,
            "log_format": {"text_format_source": {"inline_string": ACCESS_LOG_FORMAT}}}}],
    }
    listener = {
        "name": f"0.0.0.0_{service_port}",
        "address": {"socket_address": {"address": sidecar.listen_address, "port_value": sidecar.listen_port}},
        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                        "typed_config": hcm}]}],
    }
    return {
        "node": {"id": sidecar.node_id, "cluster": f"caller.{sidecar.namespace}"},
        "admin": {"address": {"socket_address": {"address": sidecar.admin_address,
                                                 "port_value": sidecar.admin_port}}},
        "static_resources": {"listeners": [listener],
                             "clusters": clusters(registry, destination_rules)},
    }


def render(config: dict) -> str:
    return json.dumps(config, indent=2) + "\n"
