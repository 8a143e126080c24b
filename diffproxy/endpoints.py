"""Naming the endpoint a request belongs to, so results group per resource.

Order: a `Canonical-Resource` request header, then the configured resource mappings
(Diffy's `-resource.mapping`), else `METHOD /path` with id-like segments templated as
`:id`. The number of distinct names is capped: paths full of unrecognised ids must not
grow the store without bound.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

OVERFLOW_ENDPOINT = "__overflow__"
CANONICAL_RESOURCE_HEADER = "canonical-resource"
_MAX_NAME_CHARS = 256
_MAX_SEGMENT_CHARS = 64  # longer segments are ids/tokens, never route words

_NUMERIC = re.compile(r"[+-]?\d+(?:\.\d+)?")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_HEX = re.compile(r"(?=[^\d]*\d)(?:0x)?[0-9a-fA-F]{8,}")  # >= 8 hex chars with a digit
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-+=~.]{16,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ResourceMapping:
    pattern: str  # "/users/:id", "/*"
    name: str

    def matches(self, segments: list[str]) -> bool:
        parts = _segments(self.pattern)
        for i, part in enumerate(parts):
            if part == "*":
                return True
            if i >= len(segments):
                return False
            if not part.startswith(":") and part != segments[i]:
                return False
        return len(parts) == len(segments)


def parse_mappings(spec: str) -> tuple[ResourceMapping, ...]:
    """Diffy's `-resource.mapping`: "pattern;name" entries separated by commas."""
    out: list[ResourceMapping] = []
    for n, entry in enumerate(spec.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue
        pattern, sep, name = entry.partition(";")
        pattern, name = pattern.strip(), name.strip()
        where = f"resource mapping #{n} {entry!r}"
        if not sep or ";" in name:
            raise ValueError(f"{where}: expected 'pattern;name', e.g. '/users/:id;users'")
        if not pattern.startswith("/"):
            raise ValueError(f"{where}: pattern must start with '/'")
        if not name:
            raise ValueError(f"{where}: name must not be empty")
        parts = _segments(pattern)
        if "*" in parts[:-1] or any("*" in p and p != "*" for p in parts):
            raise ValueError(f"{where}: '*' may only be a whole last segment")
        if any(p == ":" for p in parts):
            raise ValueError(f"{where}: ':' needs a token name, e.g. ':id'")
        out.append(ResourceMapping(pattern, name))
    return tuple(out)


def _segments(path: str) -> list[str]:
    return [s for s in path.split("/") if s]


def _clean(s: str) -> str:
    """Printable, UTF-8-encodable text (paths may carry surrogates from undecodable bytes)."""
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", s)


def _strip_path(path: str) -> str:
    path = path.split("#", 1)[0].split("?", 1)[0]
    if "://" in path[:16]:  # absolute-form request target
        path = "/" + path.split("://", 1)[1].partition("/")[2]
    return path or "/"


def _looks_like_token(segment: str) -> bool:
    """base64/base64url/base36 ids: random text has digits and (mixed case or many digits);
    slugs like `release-notes-2024` and words like `anything` do not."""
    if not _TOKEN_CHARS.fullmatch(segment):
        return False
    digits = sum(c.isdigit() for c in segment)
    if not digits or digits == len(segment):
        return False
    mixed_case = any(c.isupper() for c in segment) and any(c.islower() for c in segment)
    separated = any(c in "-_." for c in segment)  # slugs are separated words
    return mixed_case or (not separated and digits * 5 >= len(segment))


def template_segment(segment: str) -> str:
    if (len(segment) > _MAX_SEGMENT_CHARS or _NUMERIC.fullmatch(segment) or _UUID.fullmatch(segment)
            or _HEX.fullmatch(segment) or _looks_like_token(segment)):
        return ":id"
    return segment


def default_name(method: str, path: str) -> str:
    """`GET /users/:id`: query dropped, id-like segments templated."""
    segments = _segments(_strip_path(path))
    templated = "/" + "/".join(template_segment(s) for s in segments)
    if path.endswith("/") and segments:
        templated += "/"
    name = f"{(method.strip().upper() or 'GET')[:16]} {templated}"
    return _clean(name)[:_MAX_NAME_CHARS]


class EndpointNamer:
    def __init__(self, mappings: Iterable[ResourceMapping] = (), max_endpoints: int = 1000,
                 known: Iterable[str] = ()) -> None:
        if max_endpoints < 1:
            raise ValueError(f"max_endpoints must be at least 1, got {max_endpoints}")
        self.mappings = tuple(mappings)
        self.max_endpoints = max_endpoints
        self._known: set[str] = {k for k in known if k != OVERFLOW_ENDPOINT}

    @property
    def known(self) -> frozenset[str]:
        return frozenset(self._known)

    def _candidate(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        canonical = _header(headers, CANONICAL_RESOURCE_HEADER)
        if canonical and canonical.strip():
            return _clean(canonical.strip())[:_MAX_NAME_CHARS]
        if self.mappings:
            segments = _segments(_strip_path(path))
            for mapping in self.mappings:
                if mapping.matches(segments):
                    return mapping.name
        return default_name(method, path)

    def candidate(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        """The name before the cap (worker processes name; the owner process caps)."""
        return self._candidate(method, path, headers)

    def name(self, method: str, path: str, headers: Mapping[str, str]) -> str:
        return self.admit(self._candidate(method, path, headers))

    def admit(self, name: str) -> str:
        """`name` itself, or OVERFLOW_ENDPOINT once max_endpoints names are known."""
        if name in self._known:
            return name
        if len(self._known) >= self.max_endpoints:
            return OVERFLOW_ENDPOINT
        self._known.add(name)
        return name


def _header(headers: Mapping[str, str], lower: str) -> str | None:
    try:
        value = headers.get(lower)  # CIMultiDict and lower-cased dicts answer directly
    except Exception:  # noqa: BLE001 - any mapping type; fall back to scanning
        value = None
    if value is not None:
        return value
    for key, value in headers.items():
        if key.lower() == lower:
            return value
    return None
