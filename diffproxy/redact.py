"""Masking secrets before anything is stored or shown: by name and by value.

By name: header names, body keys and query/form names are matched case-insensitively,
with `-`/`_` ignored in body and query names (`accessToken`, `access-token`); a header is
also secret when one of its words is a secret word (`Api-Key`, `X-Token`,
`X-Amz-Signature`). Body keys are masked at any depth, because echo services (httpbin's
/headers, /cookies) repeat request headers in their bodies. Strings are scanned for
`name=value` (query strings, form text), `Name: value` lines and `"name": value` JSON text
(strings and numbers). JWT-shaped values (`eyJ...`) are masked wherever they are.

By value: `RequestSecrets.collect` takes every secret a request carries once (bearer and
other Authorization credentials, Basic user and password decoded, cookie values,
Proxy-Authorization, redacted headers, query/form/JSON fields named like secrets) and
`Redactor.for_request` binds them, so the request's own secrets are masked wherever they
reappear: response bodies and headers, the stored path and query, the endpoint name,
field paths, differences and logs. A path segment or a whole value equal to a secret is
masked whatever its length; inside longer text only secrets of `MIN_VALUE_CHARS` or more
are searched (masking every "a" in a body because a password was "a" would erase the
body). The comparison runs on the real values before this, so a changed secret is still
a difference, shown masked.

Search: a request carries a handful of secrets, so each string is searched with `in` and
`str.replace` per secret form. Measured on this 2-core machine under load (1 KB string,
8 forms): 6.7 us per string against 3.3 us for one compiled alternation, but compiling that
alternation costs ~1.1 ms per request, more than the loop spends on the ~100 strings of a
stored example; pyahocorasick would also need its automaton built per request and was not
added (not measured). From `_ALTERNATION_AT` forms on (a request stuffed with secrets) the
loop's cost per string grows past the compile, and one compiled alternation is used.
Requests without secrets share one redactor and pay ~2 us to find that out (headers,
query and body checked against the name stems only).

Cuts: every length limit applies to redacted text. The comparison runs first and cuts
long difference values to 1,000 characters, but as `model.Clipped`, which keeps the whole
value: `text` masks it (up to `CUT_WINDOW` characters past the cut, which holds any
secret that starts before it) and cuts the result, so a secret straddling the cut is
masked instead of leaving its first characters (which no rule could recognise: a
name rule needs the value's closing quote, a value search needs the whole value). Inputs
are never mutated.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from .model import Clipped, Difference

DEFAULT_REDACTED = (
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-auth-token", "x-amz-security-token", "x-csrf-token", "x-xsrf-token", "api-key",
    "x-token", "private-token",
)
# Body/query names that hold secrets in common APIs (httpbin's /cookies answers {"cookies": {...}}).
DEFAULT_REDACTED_FIELDS = (
    "cookies", "token", "access_token", "refresh_token", "id_token", "api_key", "apikey",
    "key", "secret", "client_secret", "password", "passwd", "pwd", "private_key",
    "signature", "sig", "session",
)
# A header named with one of these words is secret (Api-Key, X-Token, X-Session-Id).
SECRET_HEADER_WORDS = frozenset(("token", "key", "apikey", "secret", "password", "passwd",
                                 "pwd", "signature", "sig", "session", "credential",
                                 "credentials", "auth"))
REDACTED = "<redacted>"
MIN_VALUE_CHARS = 4
CUT_WINDOW = 4096  # characters past a cut that are redacted with it (`Redactor._clipped`)
_ALTERNATION_AT = 24
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{10,}(?:\.[A-Za-z0-9_-]*){0,2}")
_WORDS = re.compile(r"[-_.\s]+")
_STEMS = ("token", "key", "secret", "pass", "pwd", "sig", "session", "cookie", "auth", "eyj")


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "").replace("_", "")


class RequestSecrets:
    """The secret values of one request and the forms they may reappear in."""

    __slots__ = ("values", "_forms", "_alternation", "longest")

    def __init__(self, values: Iterable[str]) -> None:
        self.values = frozenset(v for v in values if v and v != REDACTED)
        forms: set[str] = set()
        for v in self.values:
            if len(v) < MIN_VALUE_CHARS:
                continue
            forms.add(v)
            forms.add(quote(v, safe=""))
            forms.add(quote_plus(v, safe=""))
            forms.add(json.dumps(v)[1:-1])
        # longest first, so a secret containing another is masked whole
        self._forms = tuple(sorted(forms, key=len, reverse=True))
        self.longest = len(self._forms[0]) if self._forms else 0
        self._alternation = (re.compile("|".join(map(re.escape, self._forms)))
                             if len(self._forms) >= _ALTERNATION_AT else None)

    def __bool__(self) -> bool:
        return bool(self.values)

    def text(self, s: str) -> str:
        if s in self.values:
            return REDACTED
        if self._alternation is not None:
            s = self._alternation.sub(REDACTED, s)
        else:
            for form in self._forms:
                if form in s:
                    s = s.replace(form, REDACTED)
        return s

    def path(self, path_qs: str) -> str:
        """Path segments and query values equal to a secret masked, then the text search."""
        path, sep, query = path_qs.partition("?")
        segments = path.split("/")
        if any(_unquote(seg) in self.values for seg in segments):
            path = "/".join(REDACTED if _unquote(seg) in self.values else seg for seg in segments)
        if sep:
            query = "&".join(_mask_pair(pair, self.values) for pair in query.split("&"))
        return self.text(path + sep + query)

    @staticmethod
    def collect(headers: Iterable[tuple[str, str]], path_qs: str, body: bytes,
                redactor: Redactor) -> RequestSecrets:
        """Every secret one request carries: read once per request."""
        found: list[str] = []
        for name, value in headers:
            lower = name.lower()
            if lower in ("authorization", "proxy-authorization"):
                _credentials(value, found)
            elif lower == "cookie":
                for part in value.split(";"):
                    _, eq, v = part.partition("=")
                    if eq and v.strip():
                        found.append(v.strip().strip('"'))
            elif redactor.header_is_secret(lower):
                found.append(value.strip())
            if "eyJ" in value:
                found.extend(_JWT.findall(value))
        _, sep, query = path_qs.partition("?")
        if sep and redactor.may_hold_names(query):
            _fields_of_query(query.split("#", 1)[0], redactor, found)
        if "eyJ" in path_qs:
            found.extend(_JWT.findall(unquote(path_qs)))
        if body:
            _fields_of_body(body, headers, redactor, found)
        return RequestSecrets(found) if found else _NONE


def _unquote(s: str) -> str:
    try:
        return unquote(s, errors="strict")
    except UnicodeDecodeError:
        return s


def _mask_pair(pair: str, values: frozenset[str]) -> str:
    name, eq, value = pair.partition("=")
    if eq and value and (value in values or _unquote(unquote_plus(value)) in values):
        return f"{name}={REDACTED}"
    return pair


def _credentials(value: str, found: list[str]) -> None:
    value = value.strip()
    scheme, _, creds = value.partition(" ")
    creds = creds.strip()
    if not creds:
        found.append(value)
        return
    found.append(creds)
    if scheme.lower() == "basic":
        try:
            user, colon, password = base64.b64decode(creds, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return
        found.extend(v for v in (user, password) if v)
    elif "=" in creds:  # Digest and friends: key="value", ...
        for part in creds.split(","):
            _, eq, v = part.partition("=")
            if eq and len(v.strip().strip('"')) >= MIN_VALUE_CHARS:
                found.append(v.strip().strip('"'))


def _fields_of_query(query: str, redactor: Redactor, found: list[str]) -> None:
    # Split the way servers (Werkzeug, Python's parse_qsl, Go) do: on "&" only, so
    # `?access_token=abc'SECRET` is one value.
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and redactor.field_is_secret(unquote_plus(name)):
            found.append(unquote_plus(value))
            found.append(value)


def _fields_of_body(body: bytes, headers: Iterable[tuple[str, str]], redactor: Redactor,
                    found: list[str]) -> None:
    ctype = next((v.lower() for k, v in headers if k.lower() == "content-type"), "")
    text = body[:5 * 1024 * 1024].decode("utf-8", "replace")
    if not redactor.may_hold_names(text):
        return
    if "eyJ" in text:
        found.extend(_JWT.findall(text))
    if "json" in ctype or text.lstrip()[:1] in ("{", "["):
        try:
            _fields_of_json(json.loads(text), redactor, found, 0)
        except (ValueError, RecursionError):
            pass
    elif "x-www-form-urlencoded" in ctype:
        _fields_of_query(text, redactor, found)


def _fields_of_json(value: Any, redactor: Redactor, found: list[str], depth: int) -> None:
    if depth > 64:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if redactor.field_is_secret(k) and isinstance(v, (str, int, float)) \
                    and not isinstance(v, bool):
                found.append(str(v))
            else:
                _fields_of_json(v, redactor, found, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _fields_of_json(v, redactor, found, depth + 1)


_NONE = RequestSecrets(())


class Redactor:
    def __init__(self, extra_headers: Iterable[str] = (), fields: Iterable[str] = (),
                 secrets: RequestSecrets | None = None,
                 target_headers: Iterable[tuple[str, str]] = ()) -> None:
        """`target_headers`: what the proxy itself adds to requests (-candidateHeaders and
        friends); the secret ones are masked by value in every request, since a target
        may echo them back."""
        self.extra_headers = tuple(extra_headers)
        self.fields = tuple(fields)
        self.header_names = frozenset(
            h.strip().lower() for h in (*DEFAULT_REDACTED, *self.extra_headers) if h and h.strip())
        self.field_names = frozenset(
            f.strip().lower() for f in (*DEFAULT_REDACTED_FIELDS, *self.fields) if f and f.strip())
        self._normalised = frozenset(_norm(n) for n in self.field_names | self.header_names)
        self._names = self.header_names | self.field_names
        self._verdicts: dict[str, bool] = {}
        variants = set(self._names)
        for n in self.field_names:
            variants.add(n.replace("_", "-"))
            variants.add(n.replace("_", ""))
        alternatives = "|".join(sorted((re.escape(n) for n in variants), key=len, reverse=True))
        # name=value in query strings and form text: the value runs to the next "&" (how
        # servers split), or to whitespace/quote/";" in free text
        self._query = re.compile(rf"(?i)(?<![\w-])((?:{alternatives}))=[^&#\s\"]*")
        # "Name: value" header-like lines, and "name": value pairs in JSON-ish text
        self._line = re.compile(rf"(?im)^([ \t]*(?:{alternatives})[ \t]*:[ \t]*)[^\r\n]*")
        self._json = re.compile(
            rf'(?i)(["\'](?:{alternatives})["\']\s*:\s*)(?:"(?:[^"\\]|\\.)*(?:"|\Z)|\'[^\']*\'|-?[\d.][\w.+-]*)')
        # Almost no string holds a secret name; one search spares the substitutions. It
        # looks for stems every name contains, in the lower-cased string: a case-insensitive
        # alternation of all ~60 name variants cost ~15x more per request path.
        stems = set(_STEMS)
        for n in variants:
            if not any(stem in n for stem in _STEMS):
                stems.add(n)
        self._any = re.compile("|".join(sorted(map(re.escape, stems))))
        self._base = self
        self.secrets = secrets
        own = RequestSecrets.collect(tuple(target_headers), "", b"", self)
        if own:
            self.secrets = RequestSecrets((*own.values, *(secrets.values if secrets else ())))

    # names ----------------------------------------------------------------------------

    def may_hold_names(self, s: str) -> bool:
        """False when `s` holds no secret name and no JWT: nothing to mask by name."""
        return self._any.search(s.lower()) is not None

    def header_is_secret(self, lower: str) -> bool:
        verdict = self._verdicts.get(lower)
        if verdict is None:
            verdict = (lower in self._names
                       or any(w in SECRET_HEADER_WORDS for w in _WORDS.split(lower)))
            if len(self._verdicts) > 4096:
                self._verdicts.clear()
            self._verdicts[lower] = verdict
        return verdict

    def field_is_secret(self, name: str) -> bool:
        return isinstance(name, str) and (name.lower() in self._names or _norm(name) in self._normalised)

    # per request ------------------------------------------------------------------------

    def for_request(self, headers: Iterable[tuple[str, str]], path_qs: str, body: bytes) -> Redactor:
        """This redactor plus the request's own secrets masked by value."""
        secrets = RequestSecrets.collect(headers, path_qs, body, self)
        if not secrets:
            return self
        if self.secrets:  # the proxy's own (-candidateHeaders): masked in every request
            secrets = RequestSecrets((*secrets.values, *self.secrets.values))
        bound = object.__new__(Redactor)
        bound.__dict__.update(self.__dict__)
        bound.secrets = secrets
        return bound

    def path(self, path_qs: str) -> str:
        """A request path and query as stored, logged or named."""
        if self.secrets:
            path_qs = self.secrets.path(path_qs)
        return self.text(path_qs)

    # masking ----------------------------------------------------------------------------

    def text(self, s: str) -> str:
        """`?token=abc` -> `?token=<redacted>` for every redacted name; same for header
        lines, JSON text and JWTs; then the request's secrets by value."""
        if not s or not isinstance(s, str):
            return s
        if type(s) is Clipped:
            return self._clipped(s)
        if self._any.search(s.lower()) is not None:
            s = self._query.sub(rf"\1={REDACTED}", s)
            if ":" in s:
                s = self._line.sub(rf"\g<1>{REDACTED}", s)
                s = self._json.sub(rf'\1"{REDACTED}"', s)
            if "eyJ" in s:
                s = _JWT.sub(REDACTED, s)
        if self.secrets:
            s = self.secrets.text(s)
        return s

    def _clipped(self, s: Clipped) -> str:
        """A value the comparison cut: redacted first, then cut. Only a window past the cut
        is redacted (the whole cost 0.76 ms per 100,000 chars): it holds every secret that
        starts before the cut (the request's longest secret form fits in it), and a value
        masked by name is masked to the window's end (a JSON string may end there)."""
        window = s.whole[:s.at + CUT_WINDOW + (self.secrets.longest if self.secrets else 0)]
        shown = self.text(window)
        if len(window) == len(s.whole) and len(shown) <= s.at:
            return shown
        return f"{shown[:s.at]}... [{len(s.whole)} chars]"

    def headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(name, REDACTED if self.header_is_secret(name.lower()) else self.text(value))
                for name, value in headers]

    def _key(self, k: Any) -> Any:
        return self.text(k) if isinstance(k, str) and (self.secrets or type(k) is Clipped) else k

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secret keys masked and strings scanned."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._key(k): REDACTED if self.field_is_secret(k) else self.value(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if (self.secrets and isinstance(value, (int, float)) and not isinstance(value, bool)
                and str(value) in self.secrets.values):
            return REDACTED
        return value

    def lifted(self, lifted: dict) -> dict:
        out = dict(lifted)
        headers = lifted.get("headers")
        if isinstance(headers, dict):
            out["headers"] = {k: REDACTED if self.header_is_secret(k.lower()) else self.text(v)
                              for k, v in headers.items()}
        elif isinstance(headers, (list, tuple)):
            out["headers"] = self.headers(headers)
        if "body" in lifted:
            out["body"] = self.value(lifted["body"])
        for key in ("uri", "url"):
            if isinstance(lifted.get(key), str):
                out[key] = self.path(lifted[key])
        if isinstance(lifted.get("error_detail"), str):
            out["error_detail"] = self.text(lifted["error_detail"])
        return out

    def path_is_secret(self, path: str) -> bool:
        parts = path.split(".")
        if parts[0] == "headers" and len(parts) == 2:
            return self.header_is_secret(parts[1])
        return any(self.field_is_secret(segment) for segment in parts[1:])

    def field_path(self, path: str) -> str:
        """A field path as stored: a segment equal to a secret (a body keyed by a token) masked."""
        if not self.secrets:
            return path
        return ".".join(REDACTED if seg in self.secrets.values else self.secrets.text(seg)
                        for seg in path.split("."))

    def differences(self, diffs: dict[str, Difference]) -> dict[str, Difference]:
        out: dict[str, Difference] = {}
        for path, d in diffs.items():
            stored = self.field_path(path)
            if getattr(d, "to", None):  # a moved subtree's new path is a field path too
                d = dataclasses.replace(d, to=self.field_path(d.to))
            if d.type in ("size_changed", "error"):
                out[stored] = d  # lengths and error kinds carry no payload
            elif self.path_is_secret(path):
                out[stored] = dataclasses.replace(d, left=_mask(d.left), right=_mask(d.right))
            else:
                out[stored] = dataclasses.replace(d, left=self.value(d.left), right=self.value(d.right))
        return out


def _mask(value: Any) -> Any:
    # keep "absent" visible: a missing secret is still worth reporting as missing
    return None if value is None else REDACTED
