"""Command line, environment and config file -> one frozen `Settings` tree.

Diffy's flags are accepted verbatim (`-master.primary=host:port`, `-rootUrl='x'` with the
quotes a shell left in, `-allowHttpSideEffects` as a bare boolean), plus `--key=value` and
`-key value`. Precedence: flag > environment (`DIFFPROXY_<KEY>`, dots -> `_`) > config file
(`-config`, YAML or JSON with the same keys, nested maps allowed) > default. Every problem
is a `SettingsError` whose message is one line naming the offending key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import endpoints
from .model import Target
from .transport import encode_headers

ENV_PREFIX = "DIFFPROXY_"
RESPONSE_MODES = ("primary", "secondary", "candidate", "empty")
FORWARD_HOST_MODES = ("target", "caller")
UNTYPED_BODY_MODES = ("sniff", "text", "ignore")
HEADER_VALUE_MODES = ("joined", "sorted")


class SettingsError(ValueError):
    """Bad command line, environment or config file. The message is one line."""


class HelpRequested(Exception):
    """`-help`: the caller prints `usage()` and exits 0."""


# Value types -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Listeners:
    proxy: Listen
    admin: Listen
    http: Listen


@dataclass(frozen=True)
class Targets:
    primary: Target
    secondary: Target
    candidate: Target

    def items(self) -> tuple[tuple[str, Target], ...]:
        return (("primary", self.primary), ("secondary", self.secondary),
                ("candidate", self.candidate))


@dataclass(frozen=True)
class ProxySettings:
    response_mode: str = "primary"
    allow_http_side_effects: bool = False
    timeout: float = 5.0
    max_request_size: int = 5 * 1024 * 1024
    max_response_size: int = 5 * 1024 * 1024
    max_header_size: int = 32 * 1024
    forward_host: str = "target"
    queue_size: int = 1000
    workers: int = 1  # processes serving the proxy port (1: this process only)
    # issue 13: bounds (hostile-bounds)
    queue_max_bytes: int = 64 * 1024 * 1024  # body bytes waiting for comparison at most
    drain_timeout: float = 5.0  # seconds SIGTERM waits for queued comparisons


@dataclass(frozen=True)
class DiffSettings:
    relative_threshold: float = 20.0
    absolute_threshold: float = 0.03
    exclude_headers: bool = False
    ignore_headers: tuple[str, ...] = ()
    ignore_fields: tuple[str, ...] = ()
    redact_headers: tuple[str, ...] = ()
    redact_fields: tuple[str, ...] = ()
    resource_mappings: tuple[endpoints.ResourceMapping, ...] = ()
    max_endpoints: int = 1000
    max_fields: int = 200
    # issue 12 (trust-verdicts): body kinds, verdicts
    json_in_strings: bool = False
    untyped_body: str = "sniff"
    header_values: str = "joined"
    min_requests: int = 1
    baseline_failure_percent: float = 20.0


@dataclass(frozen=True)
class StoreSettings:
    path: str = "./diffproxy.sqlite"
    samples_first: int = 5
    samples_latest: int = 5
    flush_interval: float = 0.2
    # issue 16: a PostgreSQL shared by replicas instead of the SQLite file ("" = SQLite).
    url: str = ""
    connect_timeout: float = 30.0
    # issue 13: bounds (hostile-bounds)
    max_bytes: int = 1024**3  # size budget of the store; examples are thinned beyond it


# issue 14: latency verdict -----------------------------------------------------------------
@dataclass(frozen=True)
class LatencySettings:
    relative: float = 20.0  # percent of primary's quantile
    absolute_ms: float = 10.0
    min_samples: int = 20


# issue 13 (hostile edge): slow callers on the proxy port, Host checks on the API/admin ports.
@dataclass(frozen=True)
class EdgeSettings:
    header_timeout: float = 10.0  # a request's head must arrive within this of its first byte
    body_timeout: float = 30.0    # ... and its body within this of the head
    idle_timeout: float = 75.0    # an idle keep-alive connection is closed after this
    # Host names the API and admin ports answer to (beside loopback names, IP literals and
    # -rootUrl's/-apiRoot's host); "*" answers any. Against DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    targets: Targets
    listeners: Listeners
    service_name: str = "service"
    protocol: str = "http"
    root_url: str = ""
    api_root: str = ""
    admin_token: str = ""
    proxy: ProxySettings = field(default_factory=ProxySettings)
    diff: DiffSettings = field(default_factory=DiffSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    # issue 12: Diffy flags given on the command line that have no meaning here, logged
    # once at start as ignored
    ignored_flags: tuple[str, ...] = ()
    latency: LatencySettings = field(default_factory=LatencySettings)  # issue 14


# Value parsers: raw (str, or a native YAML/JSON value) -> typed value, ValueError on bad input.


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].strip()
    return value


def _text(raw: Any) -> str:
    if isinstance(raw, (list, tuple)):
        return ",".join(_unquote(str(v)) for v in raw)
    if isinstance(raw, bool):
        return "true" if raw else "false"
    return _unquote(str(raw))


def parse_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = _text(raw).lower()
    if text in ("true", "1", "yes", "on", ""):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"want true or false, got {text!r}")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad port {text!r} (want 1-65535)")
    return int(text)


def _split_host_port(text: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}")
        return host, rest[1:] if rest else None
    if text.count(":") > 1:  # bare IPv6 literal without a port
        return text, None
    host, sep, port = text.partition(":")
    return host, port if sep else None


def parse_listen(raw: Any) -> Listen:
    """`:8880` (all interfaces, as Diffy), `127.0.0.1:8880`, `[::1]:8880` or `8880`."""
    text = _text(raw)
    if text.isdigit():
        return Listen("0.0.0.0", _port(text))
    host, port = _split_host_port(text)
    if port is None:
        raise ValueError(f"bad port in {text!r} (want :PORT or HOST:PORT)")
    return Listen(host or "0.0.0.0", _port(port))


def parse_target(raw: Any, protocol: str = "http", https_port: int = 443) -> Target:
    """`host:port` (Diffy's form; scheme from -service.protocol) or a full base URL."""
    text = _text(raw)
    if not text:
        raise ValueError("must not be empty")
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, got {parts.scheme!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError(f"{text!r}: a target URL takes no query, fragment or credentials")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"bad port in {text!r} (want 1-65535)") from None
        if not parts.hostname:
            raise ValueError(f"no host in {text!r}")
        if port is not None and not 1 <= port <= 65535:
            raise ValueError(f"bad port in {text!r} (want 1-65535)")
        default = https_port if scheme == "https" else 80
        return Target(scheme, parts.hostname, port or default, parts.path.rstrip("/"))
    scheme = "https" if protocol == "https" else "http"
    host, port = _split_host_port(text)
    if not host or "/" in host:
        raise ValueError(f"bad target {text!r} (want HOST:PORT or http(s)://HOST:PORT)")
    default = https_port if scheme == "https" else 80
    return Target(scheme, host, _port(port) if port is not None else default)


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP field name (RFC 9110 5.6.2)


def parse_header_pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    """Diffy's `key1:value1,key2:value2`. Unlike Diffy, a value may hold `:` (split at the
    first one: URLs, `Basic` credentials) and a pair without one is an error, not dropped."""
    pairs = []
    for item in _text(raw).split(","):
        if not item.strip():
            continue
        name, colon, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not name or not _TOKEN.fullmatch(name):
            raise ValueError(f"want NAME:VALUE pairs separated by commas, got {item.strip()!r}")
        pairs.append((name, value))
    encode_headers(pairs)  # its ValueError (CR/LF, not Latin-1) names what is wrong
    return tuple(pairs)


def parse_api_root(raw: Any) -> str:
    """Diffy's `-candidateApiRoot=api/v1`: a path put before every request's path."""
    text = _text(raw).strip().strip("/")
    if any(c in text for c in "?#\r\n "):
        raise ValueError(f"want a path such as api/v1, got {text!r}")
    return "/" + text if text else ""


def parse_milliseconds(raw: Any) -> float:  # issue 14
    text = _text(raw)
    try:
        value = float(text.removesuffix("ms"))
    except ValueError:
        raise ValueError(f"want milliseconds, a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"want milliseconds, a number >= 0, got {text!r}")
    return value


def parse_threshold(raw: Any) -> float:
    text = _text(raw)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"want a number between 0 and 100, got {text!r}") from None
    if math.isnan(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"want a number between 0 and 100, got {text!r}")
    return value


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*\.?\s*([a-z]*)$")
_SIZE_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "k": 1024, "kb": 1024, "kib": 1024, "kilobyte": 1024, "kilobytes": 1024,
    "m": 1024**2, "mb": 1024**2, "mib": 1024**2, "megabyte": 1024**2, "megabytes": 1024**2,
    "g": 1024**3, "gb": 1024**3, "gib": 1024**3, "gigabyte": 1024**3, "gigabytes": 1024**3,
}


def parse_size(raw: Any) -> int:
    """Bytes: `5242880`, `5MB`, `512k` or Twitter's `5.megabytes` (1024-based)."""
    text = _text(raw).lower()
    match = _SIZE.match(text)
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"bad size {text!r} (e.g. 5242880, 5MB, 5.megabytes)")
    value = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    if value < 1:
        raise ValueError(f"size must be positive, got {text!r}")
    return value


_DURATION_UNITS = {
    "": 1.0, "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "m": 60.0, "min": 60.0, "minute": 60.0, "minutes": 60.0,
}


def parse_duration(raw: Any) -> float:
    """Seconds: `5`, `2.5s`, `500ms` or `5.seconds`."""
    text = _text(raw).lower()
    match = _SIZE.match(text)
    if not match or match.group(2) not in _DURATION_UNITS:
        raise ValueError(f"bad duration {text!r} (e.g. 5, 2.5s, 500ms)")
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    if value <= 0:
        raise ValueError(f"duration must be positive, got {text!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        text = _text(raw)
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"want a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise ValueError(f"want a whole number >= {minimum}, got {text!r}")
        return value
    return parse


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(raw: Any) -> str:
        text = _text(raw).lower()
        if text not in allowed:
            raise ValueError(f"want one of {', '.join(allowed)}; got {text!r}")
        return text
    return parse


def parse_protocol(raw: Any) -> str:
    text = _text(raw).lower()
    if text == "thrift":
        raise ValueError("thrift is not supported by diffproxy; use http or https")
    return _choice("http", "https")(text)


def parse_list(raw: Any) -> tuple[str, ...]:
    items = raw if isinstance(raw, (list, tuple)) else _text(raw).split(",")
    return tuple(s for s in (_unquote(str(i)) for i in items) if s)


def parse_mapping(raw: Any) -> tuple[endpoints.ResourceMapping, ...]:
    text = _text(raw)
    return endpoints.parse_mappings(text) if text else ()


def parse_flush_interval(raw: Any) -> float:
    value = parse_duration(raw)
    if value > 1.0:
        raise ValueError("must be at most 1s: results of the last flush window are lost on a crash")
    return value


def mask_url(url: str) -> str:
    """The URL as logs and the API may show it: its password, if any, as ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


def parse_store_url(raw: Any) -> str:
    """A postgresql:// URL; messages never repeat it (it may carry a password)."""
    url = _text(raw).strip()
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("is not a valid URL (expected postgresql://USER@HOST:PORT/DATABASE)") \
            from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"must be a postgresql:// URL, got scheme {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ValueError("names no host (expected postgresql://USER@HOST:PORT/DATABASE)")
    return url


# The flag table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Flag:
    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    boolean: bool = False

    @property
    def env_names(self) -> tuple[str, ...]:
        plain = ENV_PREFIX + self.key.replace(".", "_").upper()
        snake = ENV_PREFIX + re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", self.key).replace(".", "_").upper()
        return (plain,) if snake == plain else (plain, snake)


def _identity(raw: Any) -> str:
    return _text(raw)


FLAGS: tuple[Flag, ...] = (
    Flag("candidate", _identity, None, "candidate target: HOST:PORT or http(s)://HOST:PORT[/base] (required)"),
    Flag("master.primary", _identity, None, "primary target (required)"),
    Flag("master.secondary", _identity, None, "secondary target, same version as primary (default: the primary)"),
    Flag("service.protocol", parse_protocol, "http", "http or https (default scheme of HOST:PORT targets)"),
    Flag("serviceName", _identity, "service", "name shown in the API and console"),
    # Diffy's per-target headers and API roots (DiffyServiceModule)
    *(Flag(f"{role}Headers", parse_header_pairs, "",
           f"headers added to every request to the {role}: NAME:VALUE,NAME:VALUE")
      for role in ("candidate", "primary", "secondary")),
    *(Flag(f"{role}ApiRoot", parse_api_root, "",
           f"path put before every request's path on the {role} (e.g. api/v1)")
      for role in ("candidate", "primary", "secondary")),
    Flag("proxy.port", parse_listen, ":8880", "proxy listener (mirrored traffic in)"),
    Flag("admin.port", parse_listen, ":8881", "admin listener: /healthz /readyz /metrics"),
    Flag("http.port", parse_listen, ":8888", "API and console listener"),
    Flag("rootUrl", _identity, "", "public URL of the console (informational)"),
    Flag("apiRoot", _identity, "", "public URL of the API (informational)"),
    Flag("threshold.relative", parse_threshold, "20.0", "relative difference threshold, percent"),
    Flag("threshold.absolute", parse_threshold, "0.03", "absolute difference threshold, percent"),
    Flag("allowHttpSideEffects", parse_bool, "false",
         "forward every method, not only GET/HEAD/OPTIONS/TRACE", boolean=True),
    Flag("excludeHttpHeadersComparison", parse_bool, "false", "do not compare headers", boolean=True),
    Flag("responseMode", _choice(*RESPONSE_MODES), "primary",
         "whose response the caller gets: primary|secondary|candidate|empty"),
    Flag("resource.mapping", parse_mapping, "", "endpoint names: 'pattern;name,...' (e.g. /users/:id;users)"),
    Flag("maxResponseSize", parse_size, "5MB", "largest target response body read"),
    Flag("maxHeaderSize", parse_size, "32KB", "largest target response header line"),
    Flag("maxRequestSize", parse_size, "5MB", "largest request body accepted (413 beyond)"),
    Flag("httpsPort", lambda raw: _port(_text(raw)), "443", "port for https targets given without one"),
    Flag("forward.host", _choice(*FORWARD_HOST_MODES), "target",
         "Host sent to targets: each target's own (target) or the caller's (caller)"),
    Flag("target.timeout", parse_duration, "5", "per-target timeout (seconds, or 500ms)"),
    Flag("queue.size", _int_at_least(1), "1000", "comparisons waiting at most; more are dropped and counted"),
    Flag("workers", _int_at_least(1), "1", "processes serving the proxy port (SO_REUSEPORT); e.g. the number of cores"),
    Flag("store.path", _identity, "./diffproxy.sqlite", "SQLite results file"),
    Flag("store.flushInterval", parse_flush_interval, "200ms", "how often results are written (<= 1s)"),
    # issue 16: the shared PostgreSQL store (README "Scaling out").
    Flag("store.url", parse_store_url, "",
         "postgresql://USER@HOST:PORT/DB shared by replicas, instead of -store.path "
         "(DIFFPROXY_STORE_URL; password in the URL or PGPASSWORD)"),
    Flag("store.connectTimeout", parse_duration, "30",
         "how long the database may take to answer at start before exit 2 (seconds, or 500ms)"),
    Flag("ignore.headers", parse_list, "", "extra headers never compared (comma list, globs)"),
    Flag("ignore.fields", parse_list, "", "field paths never compared (comma list, globs)"),
    Flag("redact.headers", parse_list, "", "extra headers masked before storing"),
    Flag("redact.fields", parse_list, "", "body fields masked before storing"),
    Flag("samples.first", _int_at_least(0), "5", "first examples kept per endpoint and field"),
    Flag("samples.latest", _int_at_least(0), "5", "latest examples kept per endpoint and field"),
    Flag("max.endpoints", _int_at_least(1), "1000", "distinct endpoints; more are counted as __overflow__"),
    Flag("max.fields", _int_at_least(1), "200",
         "distinct fields per endpoint; more are counted as __overflow_fields__"),
    Flag("admin.token", _identity, "", "if set, clearing results needs 'Authorization: Bearer TOKEN'"),
    # issue 14: latency verdict
    Flag("latency.relative", parse_threshold, "20.0",
         "latency verdict: percent of primary's p50/p99 the candidate may differ by, beyond noise"),
    Flag("latency.absolute", parse_milliseconds, "10",
         "latency verdict: milliseconds the candidate may differ by, beyond noise"),
    Flag("latency.minSamples", _int_at_least(1), "20",
         "latency verdict: compared requests per target before an endpoint is judged"),
    Flag("config", _identity, "", "YAML or JSON file with any of these keys"),
    # issue 13 (hostile edge)
    Flag("receive.headerTimeout", parse_duration, "10s",
         "a request's head must arrive within this (else 408, connection closed)"),
    Flag("receive.bodyTimeout", parse_duration, "30s",
         "a request's body must arrive within this of its head (else 408)"),
    Flag("receive.idleTimeout", parse_duration, "75s", "idle keep-alive connections closed after this"),
    Flag("allowedHosts", parse_list, "",
         "Host names the API and admin ports answer (besides localhost, IP literals, "
         "-rootUrl's and -apiRoot's host; '*': any); others get 421"),
    # issue 13: bounds (hostile-bounds)
    Flag("queue.maxBytes", parse_size, "64MB",
         "body bytes waiting for comparison at most; more are dropped and counted"),
    Flag("store.maxBytes", parse_size, "1GB",
         "size budget of the results store: oldest examples are deleted beyond it (counts stay exact)"),
    Flag("shutdown.drainTimeout", parse_duration, "5s",
         "on SIGTERM, how long queued comparisons may take before the rest is dropped (counted)"),
    # issue 12 (trust-verdicts): how bodies are lifted, when an endpoint has a verdict
    Flag("compare.jsonInStrings", parse_bool, "false",
         "parse string fields holding a JSON object/array and compare them field by field",
         boolean=True),
    Flag("compare.untypedBody", _choice(*UNTYPED_BODY_MODES), "sniff",
         "a body without Content-Type: sniff (JSON if it parses, else text) | text | "
         "ignore (Diffy: headers only)"),
    Flag("compare.headerValues", _choice(*HEADER_VALUE_MODES), "joined",
         "repeated headers: joined in order (joined) or as a sorted list (sorted, Diffy)"),
    Flag("verdict.minRequests", _int_at_least(1), "1",
         "comparable requests an endpoint needs before it has a verdict (else insufficient)"),
    Flag("verdict.baselineFailures", parse_threshold, "20.0",
         "percent of an endpoint's requests on which primary or secondary failed, beyond "
         "which its verdict is baseline_failure (unless it shows signal)"),
)
# Diffy's own flags (DiffyServiceModule) that mean nothing here: accepted so a Diffy
# command line starts unchanged, logged once as ignored. Boolean ones may be bare.
DIFFY_IGNORED_FLAGS: dict[str, bool] = {
    "dc": False, "proxy.clientId": False, "thrift.jar": False, "thrift.serviceClass": False,
    "enableThriftMux": True, "notifications.targetEmail": False, "notifications.delay": False,
    "skipEmailsWhenNoErrors": True,
}
_IGNORED_BY_LOWER = {k.lower(): k for k in DIFFY_IGNORED_FLAGS}
FLAGS_BY_KEY = {f.key: f for f in FLAGS}
_FLAGS_BY_LOWER = {f.key.lower(): f for f in FLAGS}


def usage() -> str:
    lines = ["usage: python -m diffproxy -candidate=HOST:PORT -master.primary=HOST:PORT [flags]",
             "       python -m diffproxy report --url http://HOST:8888 [--fail-on-signal] "
             "[--min-requests N] [--accept FILE] [--format F] [--junit FILE]",
             "", "flags (also DIFFPROXY_<KEY> env vars and -config file keys):"]
    for f in FLAGS:
        default = "" if f.default in (None, "") else f" (default {f.default})"
        lines.append(f"  -{f.key:<30} {f.help}{default}")
    lines.append("accepted and ignored (Diffy flags without a meaning here): "
                 + ", ".join(f"-{k}" for k in DIFFY_IGNORED_FLAGS))
    return "\n".join(lines)


# Layers ----------------------------------------------------------------------------------


def _lookup(key: str) -> Flag:
    flag = FLAGS_BY_KEY.get(key) or _FLAGS_BY_LOWER.get(key.lower())
    if flag is None:
        raise SettingsError(f"unknown flag -{key} (see -help)")
    return flag


def parse_argv(argv: Iterable[str]) -> dict[str, Any]:
    """Flags -> {key: raw value}. Bare booleans are True; `-key value` takes the next item."""
    args = list(argv)
    values: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            continue
        if not arg.startswith("-") or arg in ("-", "--"):
            raise SettingsError(f"unexpected argument {arg!r} (flags look like -key=value)")
        name, sep, value = arg.lstrip("-").partition("=")
        if name in ("help", "h"):
            raise HelpRequested()
        ignored = _IGNORED_BY_LOWER.get(name.lower())
        if ignored is not None:
            if not sep and not DIFFY_IGNORED_FLAGS[ignored] and i < len(args) \
                    and not args[i].startswith("-"):
                i += 1  # `-dc value`: the value goes with the flag
            values.setdefault(IGNORED_KEY, []).append(ignored)
            continue
        flag = _lookup(name)
        if not sep:
            if flag.boolean:
                value = "true"
            elif i < len(args) and not args[i].startswith("-"):
                value, i = args[i], i + 1
            else:
                raise SettingsError(f"-{flag.key} needs a value (-{flag.key}=VALUE)")
        values[flag.key] = value
    return values


IGNORED_KEY = "__ignored__"


def parse_env(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """{key: (env var name, raw value)} for every DIFFPROXY_* variable naming a flag."""
    found = {}
    for flag in FLAGS:
        for name in flag.env_names:
            if name in env:
                found[flag.key] = (name, env[name])
                break
    return found


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        full = f"{prefix}{str(key).lstrip('-')}"
        if isinstance(value, Mapping) and full not in FLAGS_BY_KEY:
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = value
    return flat


def load_config(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"-config: cannot read {path}: {exc.strerror or exc}") from None
    try:
        if path.endswith(".json"):
            data = json.loads(text)
        else:
            import yaml  # JSON is YAML too, so one loader covers both

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is the user's file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SettingsError(f"-config: {path} is not valid YAML/JSON: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise SettingsError(f"-config: {path} must hold a mapping of flag names to values")
    values = {}
    for key, value in _flatten(data).items():
        if key.lower() in _IGNORED_BY_LOWER:
            values.setdefault(IGNORED_KEY, []).append(_IGNORED_BY_LOWER[key.lower()])
            continue
        try:
            flag = _lookup(key)
        except SettingsError:
            raise SettingsError(f"-config: {path}: unknown key {key!r}") from None
        values[flag.key] = value
    return values


def load(argv: Iterable[str], env: Mapping[str, str] | None = None) -> Settings:
    """The whole precedence chain -> Settings, or SettingsError with a one-line message."""
    env = os.environ if env is None else env
    flags = parse_argv(argv)
    ignored = tuple(dict.fromkeys(flags.pop(IGNORED_KEY, ())))
    env_values = parse_env(env)
    config_path = flags.get("config") or (env_values["config"][1] if "config" in env_values else "")
    config = load_config(_text(config_path)) if config_path else {}
    ignored = tuple(dict.fromkeys((*ignored, *config.pop(IGNORED_KEY, ()))))

    def raw(key: str) -> tuple[str, Any]:
        """(where it came from, raw value)"""
        if key in flags:
            return f"-{key}", flags[key]
        if key in env_values:
            return env_values[key]
        if key in config:
            return f"-config key {key!r}", config[key]
        return f"-{key}", FLAGS_BY_KEY[key].default

    def get(key: str, parse: Callable[[Any], Any] | None = None) -> Any:
        source, value = raw(key)
        try:
            return (parse or FLAGS_BY_KEY[key].parse)(value)
        except ValueError as exc:
            message = " ".join(str(exc).split())
            raise SettingsError(f"{source}: {message}") from None

    protocol = get("service.protocol")
    https_port = get("httpsPort")

    def target(key: str, role: str) -> Target:
        if raw(key)[1] is None:
            raise SettingsError(f"-{key} is required (HOST:PORT or http(s)://HOST:PORT)")
        return tailored(get(key, lambda v: parse_target(v, protocol, https_port)), role)

    def tailored(t: Target, role: str) -> Target:
        return dataclasses.replace(t, base_path=t.base_path + get(f"{role}ApiRoot"),
                                   headers=get(f"{role}Headers"))

    primary = target("master.primary", "primary")
    candidate = target("candidate", "candidate")
    secondary = (target("master.secondary", "secondary") if raw("master.secondary")[1] is not None
                 else tailored(get("master.primary", lambda v: parse_target(v, protocol, https_port)),
                               "secondary"))

    listeners = Listeners(proxy=get("proxy.port"), admin=get("admin.port"), http=get("http.port"))
    seen: dict[int, str] = {}
    for name in ("proxy", "admin", "http"):
        port = getattr(listeners, name).port
        if port in seen:
            raise SettingsError(f"-{name}.port: port {port} is also -{seen[port]}.port")
        seen[port] = name

    return Settings(
        targets=Targets(primary=primary, secondary=secondary, candidate=candidate),
        listeners=listeners,
        service_name=get("serviceName"),
        protocol=protocol,
        root_url=get("rootUrl"),
        api_root=get("apiRoot"),
        admin_token=get("admin.token"),
        proxy=ProxySettings(
            response_mode=get("responseMode"),
            allow_http_side_effects=get("allowHttpSideEffects"),
            timeout=get("target.timeout"),
            max_request_size=get("maxRequestSize"),
            max_response_size=get("maxResponseSize"),
            max_header_size=get("maxHeaderSize"),
            forward_host=get("forward.host"),
            queue_size=get("queue.size"),
            workers=get("workers"),
            queue_max_bytes=get("queue.maxBytes"),
            drain_timeout=get("shutdown.drainTimeout"),
        ),
        diff=DiffSettings(
            relative_threshold=get("threshold.relative"),
            absolute_threshold=get("threshold.absolute"),
            exclude_headers=get("excludeHttpHeadersComparison"),
            ignore_headers=get("ignore.headers"),
            ignore_fields=get("ignore.fields"),
            redact_headers=get("redact.headers"),
            redact_fields=get("redact.fields"),
            resource_mappings=get("resource.mapping"),
            max_endpoints=get("max.endpoints"),
            max_fields=get("max.fields"),
            json_in_strings=get("compare.jsonInStrings"),
            untyped_body=get("compare.untypedBody"),
            header_values=get("compare.headerValues"),
            min_requests=get("verdict.minRequests"),
            baseline_failure_percent=get("verdict.baselineFailures"),
        ),
        store=StoreSettings(
            path=get("store.path"),
            samples_first=get("samples.first"),
            samples_latest=get("samples.latest"),
            flush_interval=get("store.flushInterval"),
            url=_store_url(raw, get),
            connect_timeout=get("store.connectTimeout"),
            max_bytes=get("store.maxBytes"),
        ),
        edge=EdgeSettings(
            header_timeout=get("receive.headerTimeout"),
            body_timeout=get("receive.bodyTimeout"),
            idle_timeout=get("receive.idleTimeout"),
            allowed_hosts=get("allowedHosts"),
        ),
        ignored_flags=ignored,
        latency=LatencySettings(  # issue 14
            relative=get("latency.relative"),
            absolute_ms=get("latency.absolute"),
            min_samples=get("latency.minSamples"),
        ),
    )


def _store_url(raw: Callable[[str], tuple[str, Any]], get: Callable[[str], Any]) -> str:
    url = get("store.url")
    if url and raw("store.path")[1] != FLAGS_BY_KEY["store.path"].default:
        raise SettingsError(f"{raw('store.url')[0]} and {raw('store.path')[0]}: choose one "
                            "store, the shared PostgreSQL or the SQLite file")
    return url


def fail(message: str) -> int:
    """Print a settings error as the one line the CLI promises; returns the exit code."""
    print(f"diffproxy: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
