"""Diffy's JSON API (`/api/1/...`) on the http port.

Endpoint names (`GET /users/:id`) and field paths arrive percent-encoded as single path
segments (`GET%20%2Fusers%2F%3Aid`). aiohttp's router would decode `%2F` before
matching, so the API routes on `request.raw_path` itself: split on literal slashes first,
then decode each segment. Unencoded slashes are tolerated where the shape is unambiguous.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from . import __version__
from .endpoints import OVERFLOW_ENDPOINT
from .model import TargetHealth
from .noise import FieldStats, classify, verdict
from .settings import Settings
from .store import OVERFLOW_FIELD, Store, StoreError

log = logging.getLogger("diffproxy.api")

PREFIX = "/api/1"
_FIELD_KEYS = ("differences", "noise", "relative_difference", "absolute_difference", "signal")
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
_TRUE = ("true", "1", "yes", "on")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(data, separators=(",", ":")),
                        content_type="application/json",
                        headers={**NOSNIFF, "Cache-Control": "no-store", **(headers or {})})


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    return default if value is None else value.strip().lower() in _TRUE


def split_segments(raw_path: str) -> list[str]:
    """`/api/1/endpoints/GET%20%2Fa/stats?x` -> ["endpoints", "GET /a", "stats"]."""
    path = raw_path.split("?", 1)[0].split("#", 1)[0]
    rest = path[len(PREFIX):].strip("/")
    return [unquote(s) for s in rest.split("/")] if rest else []


def result_view(doc: dict, include_request: bool) -> dict:
    """A stored result as the API shows it; Diffy's `left`/`right` alias primary/candidate."""
    out = {k: doc.get(k) for k in ("id", "trace_id", "timestamp_msec", "endpoint", "method",
                                   "uri", "differences", "noise")}
    out["failed"] = doc.get("failed", [])
    out["baseline_failed"] = doc.get("baseline_failed", False)
    if include_request:
        for key in ("request", "primary", "secondary", "candidate"):
            out[key] = doc.get(key)
        out["left"] = doc.get("primary")
        out["right"] = doc.get("candidate")
    return out


class Api:
    def __init__(self, settings: Settings, store: Store, health: dict[str, TargetHealth],
                 on_clear: Callable[[], None], extra_info: Callable[[], dict] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.health = health
        self.on_clear = on_clear
        self.extra_info = extra_info or dict

    def register(self, app: web.Application) -> None:
        app.router.add_route("*", PREFIX, self.handle)
        app.router.add_route("*", PREFIX + "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            return json_response(await self._dispatch(request, split_segments(request.raw_path)))
        except ApiError as exc:
            return json_response({"error": str(exc)}, exc.status, exc.headers)
        except StoreError as exc:
            return json_response({"error": f"results store unavailable: {exc}"}, 503)

    # routing ----------------------------------------------------------------------------

    @staticmethod
    def _allow(request: web.Request, *methods: str) -> None:
        allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())
        if request.method not in allowed:
            raise ApiError(405, f"method {request.method} not allowed here; use {', '.join(methods)}",
                           {"Allow": ", ".join(sorted(allowed))})

    async def _dispatch(self, request: web.Request, seg: list[str]) -> Any:
        if not seg:
            raise ApiError(404, "no such API resource; try /api/1/endpoints, /api/1/overview or /api/1/info")
        head = seg[0]
        if head == "endpoints":
            if len(seg) == 1:
                self._allow(request, "GET")
                return self.endpoints()
            if len(seg) >= 3 and seg[-1] == "stats":
                self._allow(request, "GET")
                return self.stats("/".join(seg[1:-1]), _flag(request, "exclude_noise", True),
                                  _flag(request, "include_weights"))
            if len(seg) >= 5 and "results" in seg[-2:]:
                index: str | None = None
                if seg[-1] != "results":
                    index, seg = seg[-1], seg[:-1]
                # The field path is after the last "fields": paths never hold slashes,
                # endpoint names often do.
                body = seg[1:-1]
                if "fields" in body[1:]:
                    cut = len(body) - 1 - body[::-1].index("fields")
                    endpoint, path = "/".join(body[:cut]), "/".join(body[cut + 1:])
                    if endpoint and path:
                        self._allow(request, "GET")
                        return await self.results(endpoint, path, index,
                                                  _flag(request, "include_request", index is not None))
        elif head == "requests" and len(seg) == 2:
            self._allow(request, "GET")
            return await self.request_by_id(seg[1])
        elif head == "clear" and len(seg) == 1:
            if request.method != "POST":
                # Diffy cleared on GET too; a destructive GET can be fired by a crawler,
                # a prefetch or an <img> tag on any page the operator visits.
                raise ApiError(405, "clearing results is destructive: use POST /api/1/clear",
                               {"Allow": "POST"})
            return await self.clear(request)
        elif head == "overview" and len(seg) == 1:
            self._allow(request, "GET")
            return self.overview()
        elif head == "info" and len(seg) == 1:
            self._allow(request, "GET")
            return self.info()
        raise ApiError(404, f"no such API resource: {request.path}")

    # resources ----------------------------------------------------------------------------

    def endpoints(self) -> dict:
        """Diffy's {total, differences} per endpoint, plus who failed and the verdict."""
        return {name: self._endpoint(name, c) for name, c in sorted(self.store.endpoints.items())}

    def _endpoint(self, name: str, c, fields: dict | None = None) -> dict:
        if fields is None:
            fields = self._fields(name, c.total, False)
        diff = self.settings.diff
        stats = [FieldStats(**{k: f[k] for k in _FIELD_KEYS}) for f in fields.values()]
        return {"total": c.total, "differences": c.differences,
                "verdict": verdict(c.total, c.baseline_failures, stats, diff.min_requests,
                                   diff.baseline_failure_percent),
                "signal_fields": sum(1 for f in stats if f.signal),
                "noise_fields": sum(1 for f in stats if not f.signal),
                "baseline_failures": c.baseline_failures,
                "failures": {"primary": c.failed_primary, "secondary": c.failed_secondary,
                             "candidate": c.failed_candidate}}

    def _counts(self, endpoint: str):
        counts = self.store.endpoints.get(endpoint)
        if counts is None:
            raise ApiError(404, f"unknown endpoint {endpoint!r}")
        return counts

    def _fields(self, endpoint: str, total: int, exclude_noise: bool,
                include_weights: bool = False) -> dict:
        """Diffy lists the fields primary and candidate differed on; noise-only fields
        (differences 0) are listed here too unless `exclude_noise`, as `signal: false`."""
        diff = self.settings.diff
        out = {}
        for path, fc in sorted(self.store.fields.get(endpoint, {}).items()):
            stats = classify(fc.differences, fc.noise, total, diff.relative_threshold,
                             diff.absolute_threshold)
            if exclude_noise and not stats.signal:
                continue
            out[path] = dataclasses.asdict(stats)
            if include_weights:
                out[path]["weight"] = fc.weight
        return out

    def stats(self, endpoint: str, exclude_noise: bool = True,
              include_weights: bool = False) -> dict:
        counts = self._counts(endpoint)
        all_fields = self._fields(endpoint, counts.total, False, include_weights)
        fields = ({p: f for p, f in all_fields.items() if f["signal"]} if exclude_noise
                  else all_fields)
        summary = self._endpoint(endpoint, counts, all_fields)
        return {"endpoint": summary, "fields": fields}

    def overview(self) -> dict:
        out = {}
        for name, counts in sorted(self.store.endpoints.items()):
            fields = self._fields(name, counts.total, False)
            out[name] = {**self._endpoint(name, counts, fields),
                         "signal": any(f["signal"] for f in fields.values()), "fields": fields}
        return out

    async def results(self, endpoint: str, path: str, index: str | None,
                      include_request: bool) -> dict:
        self._counts(endpoint)
        if path not in self.store.fields.get(endpoint, {}):
            raise ApiError(404, f"endpoint {endpoint!r} has no field {path!r}")
        docs = await self.store.results(endpoint, path)
        # Examples where the field differs between primary and candidate first (oldest
        # first within each group), so results/0 - what a reader or the report shows as
        # "the example" - explains the field; noise-only examples follow.
        docs.sort(key=lambda d: path not in (d.get("differences") or {}))
        if index is None:
            return {"endpoint": endpoint, "path": path,
                    "requests": [result_view(d, include_request) for d in docs]}
        try:
            i = int(index)
        except ValueError:
            raise ApiError(400, f"result index must be a whole number, got {index!r}") from None
        if not 0 <= i < len(docs):
            raise ApiError(404, f"no result {i} for {endpoint!r} {path!r} ({len(docs)} kept)")
        return result_view(docs[i], include_request)

    async def request_by_id(self, result_id: str) -> dict:
        doc = await self.store.result(result_id)
        if doc is None:
            raise ApiError(404, f"no stored result with id {result_id!r} (only examples are kept)")
        return result_view(doc, True)

    async def clear(self, request: web.Request) -> dict:
        token = self.settings.admin_token
        if token:
            given = request.headers.get("X-Admin-Token", "")
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise ApiError(401, "clearing results needs the admin token "
                                    "(Authorization: Bearer TOKEN, see -admin.token)",
                               {"WWW-Authenticate": "Bearer"})
        await self.store.clear()
        self.on_clear()
        return {"success": "Diffs cleared"}

    def info(self) -> dict:
        s = self.settings
        return {
            "name": s.service_name,
            "protocol": s.protocol,
            "version": __version__,
            "response_mode": s.proxy.response_mode,
            "allow_http_side_effects": s.proxy.allow_http_side_effects,
            "thresholds": {"relative": s.diff.relative_threshold,
                           "absolute": s.diff.absolute_threshold},
            "last_reset": self.store.last_reset,
            "targets": {name: self.health[name].as_json() for name, _ in s.targets.items()},
            "root_url": s.root_url,
            "api_root": s.api_root,
            "overflow": {"endpoint": OVERFLOW_ENDPOINT, "field": OVERFLOW_FIELD},
            **self.extra_info(),
        }


@web.middleware
async def http_middleware(request: web.Request, handler) -> web.StreamResponse:
    """JSON errors for anything under /api, even routing errors and crashes."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not request.path.startswith("/api") or exc.status < 400:
            raise
        return json_response({"error": exc.reason}, exc.status)
    except Exception:  # the API answers JSON even when it breaks
        if not request.path.startswith("/api"):
            raise
        log.exception("API request %s failed", request.path)
        return json_response({"error": "internal error (logged)"}, 500)


async def _nosniff(_request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(NOSNIFF)


def add_nosniff(app: web.Application) -> None:
    """X-Content-Type-Options: nosniff on every answer of `app`, static files included."""
    app.on_response_prepare.append(_nosniff)
