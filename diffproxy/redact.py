"""Masking secrets before anything is stored or shown.

Header names and field names are matched case-insensitively. Body keys are masked when
they are named like a redacted header or a configured field, at any depth, because
echo services (httpbin's /headers, /cookies) repeat request headers in their bodies.
Strings are scanned for `name=value` (query strings, form text) and `Name: value`
(header-like lines) of the same names. Inputs are never mutated.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from .model import Difference

DEFAULT_REDACTED = (
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-auth-token", "x-amz-security-token", "x-csrf-token", "x-xsrf-token",
)
# Body/query names that hold secrets in common APIs (httpbin's /cookies answers {"cookies": {...}}).
DEFAULT_REDACTED_FIELDS = (
    "cookies", "password", "passwd", "secret", "client_secret", "access_token",
    "refresh_token", "id_token", "api_key", "apikey",
)
REDACTED = "<redacted>"


class Redactor:
    def __init__(self, extra_headers: Iterable[str] = (), fields: Iterable[str] = ()) -> None:
        self.header_names = frozenset(
            h.strip().lower() for h in (*DEFAULT_REDACTED, *extra_headers) if h and h.strip())
        self.field_names = frozenset(
            f.strip().lower() for f in (*DEFAULT_REDACTED_FIELDS, *fields) if f and f.strip())
        self._names = self.header_names | self.field_names
        alternatives = "|".join(sorted((re.escape(n) for n in self._names), key=len, reverse=True))
        # name=value in query strings and form text; the name may be percent-free only
        self._query = re.compile(rf"(?i)(?<![\w-])({alternatives})=[^&#;\s\"']*")
        # "Name: value" header-like lines, and "name": "value" pairs in JSON-ish text
        self._line = re.compile(rf"(?im)^([ \t]*(?:{alternatives})[ \t]*:[ \t]*)[^\r\n]*")
        self._json = re.compile(rf'(?i)("(?:{alternatives})"\s*:\s*)"(?:[^"\\]|\\.)*"')
        # Almost no string holds a secret name; one search spares the three substitutions.
        self._any = re.compile(rf"(?i){alternatives}")

    def text(self, s: str) -> str:
        """`?token=abc` -> `?token=<redacted>` for every redacted name; same for header lines."""
        if not s or not isinstance(s, str) or self._any.search(s) is None:
            return s
        s = self._query.sub(rf"\1={REDACTED}", s)
        if ":" in s:
            s = self._line.sub(rf"\g<1>{REDACTED}", s)
            s = self._json.sub(rf'\1"{REDACTED}"', s)
        return s

    def headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(name, REDACTED if name.lower() in self._names else self.text(value))
                for name, value in headers]

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with secret keys masked and strings scanned."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: REDACTED if isinstance(k, str) and k.lower() in self._names else self.value(v)
                    for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value

    def lifted(self, lifted: dict) -> dict:
        out = dict(lifted)
        headers = lifted.get("headers")
        if isinstance(headers, dict):
            out["headers"] = {k: REDACTED if k.lower() in self._names else self.text(v)
                              for k, v in headers.items()}
        elif isinstance(headers, (list, tuple)):
            out["headers"] = self.headers(headers)
        if "body" in lifted:
            out["body"] = self.value(lifted["body"])
        for key in ("uri", "url", "error_detail"):
            if isinstance(lifted.get(key), str):
                out[key] = self.text(lifted[key])
        return out

    def path_is_secret(self, path: str) -> bool:
        return any(segment.lower() in self._names for segment in path.split(".")[1:])

    def differences(self, diffs: dict[str, Difference]) -> dict[str, Difference]:
        out: dict[str, Difference] = {}
        for path, d in diffs.items():
            if d.type in ("size_changed", "error"):
                out[path] = d  # lengths and error kinds carry no payload
            elif self.path_is_secret(path):
                out[path] = Difference(d.type, _mask(d.left), _mask(d.right))
            else:
                out[path] = Difference(d.type, self.value(d.left), self.value(d.right))
        return out


def _mask(value: Any) -> Any:
    # keep "absent" visible: a missing secret is still worth reporting as missing
    return None if value is None else REDACTED
