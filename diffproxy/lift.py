"""Lifting: a raw answer made comparable. Content-Encoding (gzip, deflate, br) is undone
with a hard cap, so a decompression bomb costs at most the limit; the charset is found;
JSON and form bodies are parsed; record streams (NDJSON, JSON text sequences,
`text/event-stream`, and a body declared JSON that holds one JSON value per line, as
httpbin's /stream/n sends) become a list of records and multi-line text a list of lines, so the
comparison can say which record or line changed (`Records`, `Lines`).

Rules decided against Diffy's lifters (twitter/diffy `lifter/HttpLifter`, `JsonLifter`,
`StringLifter`), each behind a flag where teams differ (`LiftSettings`):
- no Content-Type: Diffy compares headers only; here the body is sniffed (JSON if it
  parses, else text) unless `untyped_body` says `text` or `ignore` (Diffy's rule);
- JSON inside string fields: Diffy's HTTP path leaves strings alone (its StringLifter is
  for Thrift strings); so do we unless `json_in_strings`;
- other media types: Diffy refuses them; here text/* is compared by line and anything
  else by length and hash. The forwarder decodes a body once (`inspect`, to refuse
bombs and non-UTF-8 JSON) and hands the decoded bytes on in `Response.decoded`, so the
comparison never inflates the same body again.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import brotlicffi

from .headers import content_headers
from .model import Response

DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024  # decoded limit of the comparison
# Nesting bounds the cost of a comparison: 700 levels blew Python's recursion limit in every
# tree walk after the parser. A parsed JSON body deeper than MAX_COMPARE_DEPTH is compared
# by length and SHA-256 instead, with a note saying so (and the pipeline counts it in
# diffproxy_comparisons_bounded_total{reason="depth"}). The check is one iterative walk.
# (Width is bounded in compare.py, on what differs.)
MAX_COMPARE_DEPTH = 64
MAX_RECORDS = 10_000  # records or lines of one body; beyond, compared by hash
UNTYPED_BODY_MODES = ("sniff", "text", "ignore")


@dataclass(frozen=True)
class LiftSettings:
    untyped_body: str = "sniff"  # body without Content-Type: sniff | text | ignore (Diffy)
    json_in_strings: bool = False  # parse string fields holding a JSON object or array

    def __post_init__(self) -> None:
        if self.untyped_body not in UNTYPED_BODY_MODES:
            raise ValueError(f"untyped_body must be one of {UNTYPED_BODY_MODES}")


DEFAULT_LIFT = LiftSettings()


class Records(list):
    """A record stream (NDJSON, JSON-seq, server-sent events): compared record by record,
    paths keep the record's index (`body[3].field`)."""


class Lines(list):
    """A text body of more than one line: compared line by line (`body[12]`)."""

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


def _unbrotli(data: bytes, limit: int) -> bytes:
    """Brotli with the same cap as gzip: at most `limit` bytes are ever produced."""
    d = brotlicffi.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=limit + 1)
        if len(out) > limit:
            raise _TooLarge()
        if not d.is_finished():
            if d.process(b"", output_buffer_limit=1):
                raise _TooLarge()
            raise _Undecodable("truncated stream")
    except brotlicffi.error as exc:
        raise _Undecodable(str(exc)) from exc
    return out


def _decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    data = body
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            data = _inflate(data, 16 + zlib.MAX_WBITS, limit)
        elif coding == "br":
            data = _unbrotli(data, limit)
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
    body is one `body` type_changed instead of a spray of missing/extra keys. `bounded`:
    "depth" or "width" when a parsable body was hashed because of its shape."""

    bounded: str | None = None


def _digest(body: bytes, note: str | None = None, bounded: str | None = None) -> dict[str, Any]:
    out = _Digest(length=len(body), sha256=hashlib.sha256(body).hexdigest())
    if note:
        out["note"] = note
    out.bounded = bounded
    return out


def too_deep(value: Any, limit: int = MAX_COMPARE_DEPTH) -> bool:
    """Is a parsed JSON value nested deeper than `limit`? Iterative: no recursion."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        t = type(v)
        if t is dict or t is list:
            if depth > limit:
                return True
            stack.extend((c, depth + 1) for c in (v.values() if t is dict else v)
                         if type(c) is dict or type(c) is list)
    return False


def _bounded_json(data: bytes, text: str, value: Any) -> Any:
    # Every object or array of the parsed value began with its own `{` or `[` in `text`
    # (decoded: in some charsets `{` is not byte 0x7B): with no more of them than the
    # limit, it cannot be nested deeper. Counting is C speed; the walk cost ~8 us per 1 KB
    # body, on every body compared.
    if text.count("{") + text.count("[") <= MAX_COMPARE_DEPTH or not too_deep(value):
        return value
    return _digest(data, f"JSON nested deeper than {MAX_COMPARE_DEPTH} levels: compared by hash",
                   bounded="depth")


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
    except ValueError:
        return False, None
    except RecursionError:  # deeper than the C parser goes (~1000 levels)
        return True, _TOO_DEEP


_TOO_DEEP = object()


_NDJSON = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                     "application/x-jsonlines", "application/jsonlines", "application/json-seq"})


def _json_value(text: str) -> Any:
    ok, value = _parse_json(text)
    return value if ok else text


def _ndjson(text: str) -> Any:
    """One record per line (RFC 7464's RS separators too); a line that is not JSON stays a
    string, so one bad record is one difference, not a body compared as text."""
    parts = text.replace("\x1e", "\n").split("\n")
    records = [p.strip() for p in parts if p.strip()]
    if len(records) > MAX_RECORDS:
        return None
    return Records(_json_value(p) for p in records)


def _json_lines(text: str) -> Records | None:
    """A body declared (or sniffed as) JSON that is not one document but one JSON value
    per line, as streaming endpoints answer under `application/json` (httpbin's
    /stream/n): the records, or None when it is not that (then it stays text)."""
    lines = [line for line in text.split("\n") if line.strip()]
    if not 2 <= len(lines) <= MAX_RECORDS:
        return None
    records = Records()
    for line in lines:
        ok, value = _parse_json(line)
        if not ok or value is _TOO_DEEP or too_deep(value):
            return None
        records.append(value)
    return records


def _event_stream(text: str) -> Any:
    """Server-sent events (WHATWG HTML 9.2): events end at a blank line; `data` lines are
    joined with newlines and parsed as JSON when they are JSON; comments are dropped."""
    events = Records()
    event: dict[str, Any] = {}
    data: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") + [""]:
        if not line:
            if data or event:
                if data:
                    event["data"] = _json_value("\n".join(data))
                events.append(event)
                if len(events) > MAX_RECORDS:
                    return None
            event, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name in ("event", "id", "retry"):
            event[name] = value
    return events


def _lines(text: str) -> Any:
    """Text of more than one line as `Lines`; one line stays a string (path `body`)."""
    lines = text.splitlines()
    if len(lines) <= 1 or len(lines) > MAX_RECORDS:
        return text
    return Lines(lines)


def _strings_as_json(value: Any, depth: int = 0) -> Any:
    if depth > 32:
        return value
    if type(value) is dict:
        return {k: _strings_as_json(v, depth + 1) for k, v in value.items()}
    if type(value) is list:
        return [_strings_as_json(v, depth + 1) for v in value]
    if isinstance(value, Records):
        return Records(_strings_as_json(v, depth + 1) for v in value)
    if type(value) is str and value[:1] in ("{", "[") and value[-1:] in ("}", "]"):
        ok, parsed = _parse_json(value)
        if ok and isinstance(parsed, (dict, list)):
            return _strings_as_json(parsed, depth + 1)
    return value


def parse_body(body: bytes, content_type: str, content_encoding: str, limit: int,
               decoded: bytes | None = None, settings: LiftSettings = DEFAULT_LIFT) -> Any:
    """The comparable, JSON-serialisable form of a raw body. `decoded`: `body` with its
    Content-Encoding already undone (by `inspect`), so it is not inflated twice."""
    value = _parse_body(body, content_type, content_encoding, limit, decoded, settings)
    if settings.json_in_strings and isinstance(value, (dict, list)):
        value = _strings_as_json(value)
    return value


def _parse_body(body: bytes, content_type: str, content_encoding: str, limit: int,
                decoded: bytes | None, settings: LiftSettings) -> Any:
    if len(body) > limit and not content_encoding.strip():
        return _digest(body, f"body larger than {limit} bytes: compared by hash")
    if decoded is not None:
        if len(decoded) > limit:
            return _digest(body, f"decoded body larger than {limit} bytes: compared by hash")
        data = decoded
    else:
        try:
            data = _decode_content(body, content_encoding, limit) if content_encoding else body
        except _TooLarge:
            return _digest(body, f"decoded body larger than {limit} bytes: compared by hash")
        except _Undecodable as exc:
            return _digest(body, f"could not decode {content_encoding.strip()}: {exc}")
    if not data:
        return ""
    mt, charset = _media_type(content_type)
    if not mt and settings.untyped_body == "ignore":
        return ""  # Diffy: a body without Content-Type is not compared
    if _is_json(mt) or not mt:
        text = _decode_text(data, charset if charset not in (None, "utf-8", "utf8") else "utf-8-sig")
        if text is None:
            return _digest(data)
        if _is_json(mt) or (settings.untyped_body == "sniff" and text.lstrip()[:1] in ("{", "[")):
            ok, value = _parse_json(text)
            if value is _TOO_DEEP:
                return _digest(data, f"JSON nested deeper than {MAX_COMPARE_DEPTH} levels: "
                                     "compared by hash", bounded="depth")
            if ok:
                return _bounded_json(data, text, value)
            records = _json_lines(text)
            if records is not None:
                return records
        return text if _is_json(mt) else _lines(text)
    if mt in _NDJSON or mt == "text/event-stream":
        text = _decode_text(data, charset or "utf-8")
        if text is None:
            return _digest(data)
        records = _event_stream(text) if mt == "text/event-stream" else _ndjson(text)
        return _digest(data, f"more than {MAX_RECORDS} records: compared by hash") \
            if records is None else records
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
        return _digest(data) if text is None else _lines(text)
    return _digest(data)


def inspect(headers: tuple[tuple[str, str], ...], body: bytes,
            limit: int) -> tuple[tuple[str, str] | None, bytes | None]:
    """(why a body that arrived whole is still unusable as declared, or None;
    the body with its Content-Encoding undone, or None when it has none or it failed).

    ("too_large", ...) when its Content-Encoding expands past `limit` (a decompression
    bomb: a few KB on the wire, gigabytes for whoever inflates it); ("bad_response", ...)
    when it is declared JSON without another charset but is not UTF-8 (RFC 8259 8.1).
    Bodies in encodings this module cannot undo are left to the comparison (digest)."""
    ctype, cenc = content_headers(headers)
    data = body
    decoded = None
    if cenc.strip():
        try:
            data = decoded = _decode_content(body, cenc, limit)
        except _TooLarge:
            return ("too_large", f"{cenc.strip()} body expands past {limit} bytes "
                                 "(decompression bomb?)"), None
        except _Undecodable:
            return None, None
    mt, charset = _media_type(ctype)
    # ASCII is UTF-8: checked without decoding a copy of the body (three per request)
    if data and _is_json(mt) and charset in (None, "utf-8", "utf8") and not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ("bad_response", f"JSON body is not valid UTF-8 (byte {exc.start})"), None
    return None, decoded


def body_of(r: Response, limit: int, settings: LiftSettings = DEFAULT_LIFT) -> Any:
    """The parsed body of one response (None for a failed one)."""
    if r.error is not None:
        return None
    ctype, cenc = content_headers(r.headers)
    return parse_body(r.body, ctype, cenc, limit, r.decoded, settings)


_PARSE = object()


def lift(r: Response, limit: int, settings: LiftSettings = DEFAULT_LIFT, body: Any = _PARSE) -> dict:
    """{status, headers, body, error} of one response; all headers kept (redact before storing).
    `body`: the parsed body when the caller has it already."""
    headers: dict[str, str] = {}
    for name, value in r.headers:
        lower = name.lower()
        headers[lower] = f"{headers[lower]}, {value}" if lower in headers else value
    out = {"status": r.status, "headers": headers,
           "body": body_of(r, limit, settings) if body is _PARSE else body,
           "error": r.error}
    if r.error is not None:
        out["error_detail"] = r.error_detail
    return out
