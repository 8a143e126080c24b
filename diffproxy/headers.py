"""The header rules: which headers are hop-by-hop (never forwarded, never compared),
which are ignored by the comparison, and how Istio's shadow Host is undone."""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
    "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding", "upgrade",
})
# Not hop-by-hop, but recomputed for the re-sent body, or meaningless once it is read.
NOT_FORWARDED = frozenset({"host", "content-length", "expect"})
SHADOW_SUFFIX = "-shadow"

# Headers that differ between any two healthy replicas or are rewritten by the mesh:
# comparing them would only ever produce noise. Content-Encoding is here because bodies
# are compared after decoding; a target that stops compressing changes transport, not data.
# ETag and Last-Modified are compared (see compare.py: dropped when the body is equal).
DEFAULT_IGNORED_HEADERS: tuple[str, ...] = (
    # hop-by-hop (RFC 9110 7.6.1) and framing
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "content-length", "content-encoding",
    # per-response / per-host
    "date", "server", "age", "expires", "via", "forwarded",
    "x-forwarded-*", "x-real-ip", "x-request-id", "x-correlation-id", "x-amzn-trace-id",
    # tracing and the Envoy sidecar
    "x-b3-*", "b3", "traceparent", "tracestate", "baggage", "x-ot-span-context",
    "x-cloud-trace-context", "grpc-trace-bin", "x-datadog-*", "x-envoy-*", "x-istio-*",
    "x-client-trace-id", "x-diffproxy-*",
)


def content_headers(headers: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """(Content-Type, Content-Encoding) of a header list; repeated encodings joined."""
    ctype = cenc = ""
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            ctype = value
        elif lower == "content-encoding":
            cenc = f"{cenc}, {value}" if cenc else value
    return ctype, cenc


def strip_hop_by_hop(headers: Iterable[tuple[str, str]],
                     also: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Drop hop-by-hop headers, `Proxy-*`, every header the Connection header names, and
    those named in `also` (lower case). One pass, each name lowered once: this runs twice
    per request (the request forwarded, the response answered)."""
    kept = []
    named = None
    for k, v in headers:
        lower = k.lower()
        if lower in HOP_BY_HOP or lower in also or lower.startswith("proxy-"):
            if lower == "connection":
                named = (named or set()) | {t.strip().lower() for t in v.split(",") if t.strip()}
            continue
        kept.append((k, v, lower))
    if named:
        return [(k, v) for k, v, lower in kept if lower not in named]
    return [(k, v) for k, v, _ in kept]


def strip_shadow(host: str) -> str:
    """Undo the `-shadow` Envoy appends to a mirrored copy's host (Istio before 1.28, or
    compatibilityVersion 1.27): `h-shadow`, `h-shadow:port`, `10.1.2.3-shadow:port`, and for an
    IPv6 literal after the bracket, `[::1]-shadow:port`."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        if end == -1:
            return host
        tail = host[end + 1:]
        if tail.lower().startswith(SHADOW_SUFFIX):
            tail = tail[len(SHADOW_SUFFIX):]
        return host[:end + 1] + tail
    name, sep, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
    if name.lower().endswith(SHADOW_SUFFIX):
        name = name[: -len(SHADOW_SUFFIX)]
    return f"{name}{sep}{port}"
