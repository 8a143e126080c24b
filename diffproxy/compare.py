"""Difference analysis between the responses of two (or three) targets.

Pure and synchronous: the proxy hands in what each target returned and gets back field
paths mapped to `Difference`s. Responses are "lifted" into `{status, headers, body}`,
bodies parsed by Content-Type after Content-Encoding is undone (with a hard cap, so a
decompression bomb costs at most `max_body_bytes`), and compared with DeepDiff.

Path rules (Diffy-like): `status`, `headers.<lower-name>`, `body.<key>.<key>` with array
indexes dropped so every element of an array shares one path, `body` for a whole
text/HTML body, `body.length` / `body.sha256` for binary bodies, `error` when a target
failed on one side only.

Arrays: when an array has a different length on the two sides, it is reported once as
`size_changed` (left/right = the lengths) and nothing inside it is reported: with
elements shifted, per-index comparisons would be dozens of misleading entries. Arrays of
equal length are compared element by element.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import operator
import re
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from deepdiff import DeepDiff
from deepdiff.helper import NotPresent

ERROR_KINDS = ("refused", "timeout", "reset", "bad_response", "too_large", "tls", "other")
DIFF_TYPES = ("changed", "type_changed", "missing", "extra", "size_changed", "error")

# Headers that differ between any two healthy replicas or are rewritten by the mesh:
# comparing them would only ever produce noise. Content-Encoding is here because bodies
# are compared after decoding; a target that stops compressing changes transport, not data.
DEFAULT_IGNORED_HEADERS: tuple[str, ...] = (
    # hop-by-hop (RFC 9110 7.6.1) and framing
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "te", "trailer",
    "trailers", "transfer-encoding", "upgrade", "content-length", "content-encoding",
    # per-response / per-host
    "date", "server", "age", "expires", "last-modified", "etag", "via", "forwarded",
    "x-forwarded-*", "x-real-ip", "x-request-id", "x-correlation-id", "x-amzn-trace-id",
    # tracing and the Envoy sidecar
    "x-b3-*", "b3", "traceparent", "tracestate", "baggage", "x-ot-span-context",
    "x-cloud-trace-context", "grpc-trace-bin", "x-datadog-*", "x-envoy-*", "x-istio-*",
    "x-client-trace-id", "x-diffproxy-*",
)

MAX_VALUE_CHARS = 1000  # longer strings in a Difference are cut here
_MAX_ITEMS = 100  # longer arrays / bigger objects in a Difference are cut here
_MAX_DEPTH = 12
_TEXT_PREVIEW = 1000

_DEEPDIFF_TYPES: dict[str, str] = {
    "type_changes": "type_changed",
    "values_changed": "changed",
    "dictionary_item_removed": "missing",
    "iterable_item_removed": "missing",
    "attribute_removed": "missing",
    "set_item_removed": "missing",
    "dictionary_item_added": "extra",
    "iterable_item_added": "extra",
    "attribute_added": "extra",
    "set_item_added": "extra",
}


@dataclass(frozen=True, slots=True)
class Response:
    """What one target did with the request."""

    status: int | None  # None: no HTTP response at all
    headers: tuple[tuple[str, str], ...]  # as received, original case, in order
    body: bytes  # raw body as received (may be gzip/deflate encoded)
    error: str | None = None  # None or one of ERROR_KINDS
    error_detail: str = ""
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Difference:
    type: str  # one of DIFF_TYPES
    left: Any  # JSON-serialisable, long values truncated
    right: Any


@dataclass(frozen=True)
class CompareSettings:
    ignore_headers: tuple[str, ...] = ()  # extra names or globs ("x-foo-*"), case-insensitive
    ignore_fields: tuple[str, ...] = ()  # globs on field paths ("body.headers.Host")
    exclude_headers: bool = False  # Diffy's -excludeHttpHeadersComparison
    max_body_bytes: int = 5 * 1024 * 1024  # decoded limit: decompression-bomb guard

    def __post_init__(self) -> None:
        if self.max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must not be negative, got {self.max_body_bytes}")


@dataclass(frozen=True)
class Comparison:
    raw: dict[str, Difference]  # primary vs candidate
    noise: dict[str, Difference]  # primary vs secondary
    identical: bool  # fast path: bytes identical, deepdiff skipped


# Bounding values ---------------------------------------------------------------------


def truncate_value(value: Any, max_chars: int = MAX_VALUE_CHARS, _depth: int = 0) -> Any:
    """A JSON-serialisable copy of `value` with long strings, big containers and deep
    nesting cut, keeping the structure so redaction by key still works afterwards."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        if len(value) <= max_chars:
            return value
        return f"{value[:max_chars]}... [{len(value)} chars]"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return truncate_value(bytes(value).decode("utf-8", "replace"), max_chars, _depth)
    if isinstance(value, NotPresent):
        return None
    if _depth >= _MAX_DEPTH:
        return "... [nested too deep]"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= _MAX_ITEMS:
                out["..."] = f"[{len(value)} keys]"
                break
            out[truncate_value(str(k), max_chars)] = truncate_value(v, max_chars, _depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        items = [truncate_value(v, max_chars, _depth + 1) for v in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"... [{len(value)} items]")
        return items
    return truncate_value(str(value), max_chars, _depth)


# Bodies -------------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _Undecodable(Exception):
    pass


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """Decompress at most `limit` bytes; raise _TooLarge beyond, _Undecodable on junk."""
    out = bytearray()
    members = 0
    while True:
        d = zlib.decompressobj(wbits)
        try:
            chunk = d.decompress(data, limit - len(out) + 1)
        except zlib.error as exc:
            raise _Undecodable(str(exc)) from exc
        out += chunk
        if len(out) > limit or d.unconsumed_tail:
            raise _TooLarge()
        if not d.eof:
            raise _Undecodable("truncated stream")
        data = d.unused_data
        members += 1
        # gzip allows concatenated members; trailing zero padding is common and harmless
        if not data.strip(b"\x00") or members >= 64:
            return bytes(out)


def _decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    data = body
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, 16 + zlib.MAX_WBITS, limit)
        elif coding == "deflate":
            # RFC says zlib-wrapped; some servers send raw deflate
            try:
                data = _inflate(data, zlib.MAX_WBITS, limit)
            except _Undecodable:
                data = _inflate(data, -zlib.MAX_WBITS, limit)
        else:
            raise _Undecodable(f"unsupported content-encoding {coding!r}")
    if len(data) > limit:
        raise _TooLarge()
    return data


class _Digest(dict):
    """A body compared by length and hash; its own type so that a digest against a parsed
    body is one `body` type_changed instead of a spray of missing/extra keys."""


def _digest(body: bytes, note: str | None = None) -> dict[str, Any]:
    out = _Digest(length=len(body), sha256=hashlib.sha256(body).hexdigest())
    if note:
        out["note"] = note
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _media_type(content_type: str) -> tuple[str, str | None]:
    parts = content_type.split(";")
    mt = parts[0].strip().lower()
    charset = None
    for p in parts[1:]:
        k, _, v = p.partition("=")
        if k.strip().lower() == "charset":
            charset = v.strip().strip('"').lower() or None
    return mt, charset


def _is_json(mt: str) -> bool:
    return mt in ("application/json", "text/json", "application/x-json") or mt.endswith("+json")


def _is_text(mt: str) -> bool:
    return (mt.startswith("text/") or mt.endswith("+xml") or mt in (
        "application/xml", "application/javascript", "application/ecmascript",
        "application/x-javascript", "application/xhtml+xml"))


def _decode_text(data: bytes, charset: str | None) -> str | None:
    try:
        return data.decode(charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        if charset and charset not in ("utf-8", "utf8"):
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return None


def _parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def parse_body(body: bytes, content_type: str, content_encoding: str, limit: int) -> Any:
    """The comparable, JSON-serialisable form of a raw body."""
    if len(body) > limit and not content_encoding.strip():
        return _digest(body, f"body larger than {limit} bytes: compared by hash")
    try:
        data = _decode_content(body, content_encoding, limit) if content_encoding else body
    except _TooLarge:
        return _digest(body, f"decoded body larger than {limit} bytes: compared by hash")
    except _Undecodable as exc:
        return _digest(body, f"could not decode {content_encoding.strip()}: {exc}")
    if not data:
        return ""
    mt, charset = _media_type(content_type)
    if _is_json(mt) or not mt:
        text = _decode_text(data, charset if charset not in (None, "utf-8", "utf8") else "utf-8-sig")
        if text is None:
            return _digest(data)
        if _is_json(mt) or text.lstrip()[:1] in ("{", "["):
            ok, value = _parse_json(text)
            if ok:
                return value
        return text
    if mt == "application/x-www-form-urlencoded":
        text = _decode_text(data, charset)
        if text is None:
            return _digest(data)
        try:
            return parse_qs(text, keep_blank_values=True, max_num_fields=10000)
        except ValueError:
            return text
    if _is_text(mt):
        text = _decode_text(data, charset)
        return _digest(data) if text is None else text
    return _digest(data)


def content_fault(headers: tuple[tuple[str, str], ...], body: bytes, limit: int) -> tuple[str, str] | None:
    """Why a body that arrived whole is still unusable as declared, or None.

    ("too_large", ...) when its Content-Encoding expands past `limit` (a decompression
    bomb: a few KB on the wire, gigabytes for whoever inflates it); ("bad_response", ...)
    when it is declared JSON without another charset but is not UTF-8 (RFC 8259 8.1).
    Bodies in encodings this module cannot undo are left to the comparison (digest)."""
    ctype = cenc = ""
    for name, value in headers:
        lower = name.lower()
        if lower == "content-type":
            ctype = value
        elif lower == "content-encoding":
            cenc = f"{cenc}, {value}" if cenc else value
    data = body
    if cenc.strip():
        try:
            data = _decode_content(body, cenc, limit)
        except _TooLarge:
            return "too_large", f"{cenc.strip()} body expands past {limit} bytes (decompression bomb?)"
        except _Undecodable:
            return None
    mt, charset = _media_type(ctype)
    if data and _is_json(mt) and charset in (None, "utf-8", "utf8"):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return "bad_response", f"JSON body is not valid UTF-8 (byte {exc.start})"
    return None


# Pruning -------------------------------------------------------------------------------


def _strict_equal(a: Any, b: Any) -> bool:
    """Equal with JSON types respected: Python has 1 == 1.0 == True, JSON does not."""
    if type(a) is not type(b) or a != b:
        return False
    # `a == b` already holds, so repr (C speed) only has to catch nested 1/1.0/true and
    # dict key order (which only costs a descent that then finds nothing)
    return type(a) not in (dict, list) or repr(a) == repr(b)


def _all_strict_equal(lefts: list, rights: list) -> list[bool]:
    """Per pair: strictly equal? One C-speed pass for the common all-equal case."""
    verdicts = list(map(operator.eq, lefts, rights))
    same_l = [v for v, ok in zip(lefts, verdicts) if ok]
    same_r = [v for v, ok in zip(rights, verdicts) if ok]
    # both reprs are sequences of complete literals of pairwise-equal values, so equal
    # joined reprs mean every pair has equal reprs
    if same_l and repr(same_l) != repr(same_r):
        verdicts = [ok and _strict_equal(a, b) for a, b, ok in zip(lefts, rights, verdicts)]
    return verdicts


_CONTAINERS = (dict, list)
_SHAPE_DEPTH = 8


def _shape(value: Any, depth: int = 0) -> Any:
    """What decides the paths and report types DeepDiff will find in a pruned subtree."""
    if type(value) is dict:
        if depth >= _SHAPE_DEPTH:
            return "dict"
        return ("dict", tuple((k, _shape(v, depth + 1)) for k, v in sorted(value.items())))
    if type(value) is list:
        if depth >= _SHAPE_DEPTH:
            return "list"
        return ("list", frozenset(_shape(v, depth + 1) for v in value))
    return type(value).__name__


def _prune(left: Any, right: Any, keys: list, found: list[tuple[list, Difference]]) -> tuple[Any, Any]:
    """Copies of two differing trees with equal subtrees dropped, for DeepDiff to classify.

    Arrays of equal length keep only their differing element pairs (indexes are dropped
    from paths, so alignment among the rest is all that matters). Arrays whose length
    differs become one size_changed in `found` and are not descended into. Scalar pairs
    inside arrays are classified here: DeepDiff compares array items by hash, and
    hash(1) == hash(1.0) == hash(True)."""
    if type(left) is dict and type(right) is dict:
        pl: dict = {}
        pr: dict = {}
        common = [k for k in left if k in right]
        verdicts = _all_strict_equal([left[k] for k in common], [right[k] for k in common])
        for k, same in zip(common, verdicts):
            if not same:
                pl[k], pr[k] = _prune(left[k], right[k], keys + [k], found)
        for k, lv in left.items():
            if k not in right:
                pl[k] = lv
        for k, rv in right.items():
            if k not in left:
                pr[k] = rv
        return pl, pr
    if type(left) is list and type(right) is list:
        if len(left) != len(right):
            found.append((keys, Difference("size_changed", len(left), len(right))))
            return None, None
        ll: list = []
        lr: list = []
        seen: set = set()
        for i, (lv, rv, same) in enumerate(zip(left, right, _all_strict_equal(left, right))):
            if same:
                continue
            if isinstance(lv, _CONTAINERS) and type(lv) is type(rv):
                a, b = _prune(lv, rv, keys + [i], found)
                # all elements share one path, so 1000 items differing the same way
                # (a per-item timestamp) need DeepDiff to look at only the first
                shape = (_shape(a), _shape(b))
                if shape in seen:
                    continue
                seen.add(shape)
                ll.append(a)
                lr.append(b)
            else:
                kind = "changed" if type(lv) is type(rv) else "type_changed"
                found.append((keys + [i], Difference(kind, truncate_value(lv), truncate_value(rv))))
        return ll, lr
    return left, right


# Paths --------------------------------------------------------------------------------


def _body_path(keys: list) -> str:
    names = [str(k) for k in keys if not isinstance(k, int)]
    return "body." + ".".join(names) if names else "body"


class _Glob:
    """Many fnmatch globs as one compiled regex."""

    def __init__(self, globs: tuple[str, ...], ignore_case: bool) -> None:
        globs = tuple(g.strip() for g in globs if g and g.strip())
        flags = re.IGNORECASE if ignore_case else 0
        self._re = re.compile("|".join(fnmatch.translate(g) for g in globs), flags) if globs else None

    def __call__(self, s: str) -> bool:
        return self._re is not None and self._re.match(s) is not None


# The comparator -----------------------------------------------------------------------


class Comparator:
    def __init__(self, settings: CompareSettings) -> None:
        self.settings = settings
        self._ignored_header = _Glob(DEFAULT_IGNORED_HEADERS + tuple(settings.ignore_headers), True)
        self._ignored_field = _Glob(tuple(settings.ignore_fields), False)
        self._ignored_header_field = _Glob(
            tuple(g for g in settings.ignore_fields if g.lower().startswith("headers.")), True)
        self._header_verdicts: dict[str, bool] = {}

    # lifting ---------------------------------------------------------------------------

    def _keep_header(self, lower: str) -> bool:
        verdict = self._header_verdicts.get(lower)
        if verdict is None:
            verdict = not self._ignored_header(lower)
            if len(self._header_verdicts) > 4096:  # names come from targets: keep the cache bounded
                self._header_verdicts.clear()
            self._header_verdicts[lower] = verdict
        return verdict

    def _compared_headers(self, r: Response) -> dict[str, str]:
        if self.settings.exclude_headers:
            return {}
        out: dict[str, str] = {}
        for name, value in r.headers:
            lower = name.lower()
            if self._keep_header(lower):
                out[lower] = f"{out[lower]}, {value}" if lower in out else value
        return out

    def _parsed_body(self, r: Response) -> Any:
        if r.error is not None:
            return None
        ctype = cenc = ""
        for name, value in r.headers:
            lower = name.lower()
            if lower == "content-type":
                ctype = value
            elif lower == "content-encoding":
                cenc = f"{cenc}, {value}" if cenc else value
        return parse_body(r.body, ctype, cenc, self.settings.max_body_bytes)

    def lift(self, r: Response) -> dict:
        """{status, headers, body, error} of one response; all headers kept (redact before storing)."""
        headers: dict[str, str] = {}
        for name, value in r.headers:
            lower = name.lower()
            headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
        out = {"status": r.status, "headers": headers, "body": self._parsed_body(r), "error": r.error}
        if r.error is not None:
            out["error_detail"] = r.error_detail
        return out

    # comparing -------------------------------------------------------------------------

    def _drop_ignored(self, diffs: dict[str, Difference]) -> dict[str, Difference]:
        if not self.settings.ignore_fields:
            return diffs
        return {p: d for p, d in diffs.items()
                if not (self._ignored_field(p)
                        or (p.startswith("headers.") and self._ignored_header_field(p)))}

    def _diff_headers(self, lh: dict[str, str], rh: dict[str, str], out: dict[str, Difference]) -> None:
        if lh == rh:
            return
        for name in sorted(lh.keys() | rh.keys()):
            lv, rv = lh.get(name), rh.get(name)
            if lv == rv:
                continue
            kind = "missing" if rv is None else "extra" if lv is None else "changed"
            out[f"headers.{name}"] = Difference(kind, truncate_value(lv), truncate_value(rv))

    def _diff_bodies(self, lb: Any, rb: Any, out: dict[str, Difference]) -> None:
        if _strict_equal(lb, rb):
            return
        if not isinstance(lb, (dict, list)) or type(lb) is not type(rb):
            kind = "changed" if type(lb) is type(rb) else "type_changed"
            out["body"] = Difference(kind, truncate_value(lb, _TEXT_PREVIEW), truncate_value(rb, _TEXT_PREVIEW))
            return
        # DeepDiff visits every node, equal or not (~25 us each): hand it only what differs
        found: list[tuple[list, Difference]] = []
        pl, pr = _prune(lb, rb, [], found)
        for keys, difference in found:
            out.setdefault(_body_path(keys), difference)
        tree = DeepDiff(pl, pr, ignore_order=False, view="tree", threshold_to_diff_deeper=0,
                        verbose_level=1, cache_size=0, get_deep_distance=False)
        for report, kind in _DEEPDIFF_TYPES.items():
            for level in tree.get(report, ()):
                path = _body_path(level.path(output_format="list"))
                if path not in out:
                    out[path] = Difference(kind, truncate_value(level.t1), truncate_value(level.t2))

    def _diff(self, left: Response, right: Response, bodies: dict[int, Any]) -> dict[str, Difference]:
        out: dict[str, Difference] = {}
        if left.error is not None or right.error is not None:
            if left.error != right.error:
                out["error"] = Difference("error", left.error, right.error)
            if left.status != right.status:
                out["status"] = Difference("changed", left.status, right.status)
            return self._drop_ignored(out)
        if left.status != right.status:
            out["status"] = Difference("changed", left.status, right.status)
        self._diff_headers(self._compared_headers(left), self._compared_headers(right), out)
        if left.body != right.body or self._codec(left) != self._codec(right):
            for r in (left, right):
                if id(r) not in bodies:
                    bodies[id(r)] = self._parsed_body(r)
            self._diff_bodies(bodies[id(left)], bodies[id(right)], out)
        return self._drop_ignored(out)

    @staticmethod
    def _codec(r: Response) -> tuple[str, str]:
        ctype = cenc = ""
        for name, value in r.headers:
            lower = name.lower()
            if lower == "content-type":
                ctype = value.lower()
            elif lower == "content-encoding":
                cenc += value.lower()
        return ctype, cenc

    def diff(self, left: Response, right: Response) -> dict[str, Difference]:
        return self._diff(left, right, {})

    def compare(self, primary: Response, secondary: Response, candidate: Response) -> Comparison:
        # Hot path: most mirrored requests are byte-identical on all three targets.
        if (primary.body == secondary.body == candidate.body
                and primary.status == secondary.status == candidate.status
                and primary.error == secondary.error == candidate.error):
            ph = self._compared_headers(primary)
            if ph == self._compared_headers(secondary) == self._compared_headers(candidate):
                return Comparison(raw={}, noise={}, identical=True)
        bodies: dict[int, Any] = {}
        noise = self._diff(primary, secondary, bodies)
        raw = self._diff(primary, candidate, bodies)
        return Comparison(raw=raw, noise=noise, identical=False)
