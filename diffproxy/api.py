"""Diffy's JSON API (`/api/1/...`) on the http port.

Every view is bounded, and computed off the event loop (a worker thread, or the store's
thread for examples), so reading results never stalls the proxy port. Without paging
parameters the shapes are Diffy's, cut at the defaults:
- `overview`: at most `limit` endpoints (default and maximum 1000, in name order, after
  `cursor`), each with its `fields_limit` (default 20) most telling fields (signal first,
  then most differences) and `fields_total`; `X-Next-Cursor` names the next page's cursor.
- `endpoints/E/stats`: at most `limit` fields (default and maximum 1000) after `cursor`.
- field results with `include_request`: each request and response body longer than
  `max_bytes` (default 64 KiB, as JSON) is replaced by {"truncated": true, "bytes": N,
  "preview": the first max_bytes characters}, and the example's `full` link
  (`/api/1/requests/ID`) fetches it whole, one example at a time.

Endpoint names (`GET /users/:id`) and field paths arrive percent-encoded as single path
segments (`GET%20%2Fusers%2F%3Aid`). aiohttp's router would decode `%2F` before
matching, so the API routes on `request.raw_path` itself: split on literal slashes first,
then decode each segment. Unencoded slashes are tolerated where the shape is unambiguous.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import heapq
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from . import __version__
from .edge import cross_site
from .endpoints import OVERFLOW_ENDPOINT
from .latency import Thresholds as LatencyThresholds
from .model import TargetHealth
from .noise import FieldStats, classify, verdict
from .settings import Settings
from .storage import ResultStore
from .store import OVERFLOW_FIELD, StoreError

log = logging.getLogger("diffproxy.api")

PREFIX = "/api/1"
_FIELD_KEYS = ("differences", "noise", "relative_difference", "absolute_difference", "signal")
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
_TRUE = ("true", "1", "yes", "on")
MAX_PAGE = 1000  # endpoints per overview page, fields per stats page
DEFAULT_FIELDS_LIMIT = 20  # fields per endpoint in the overview
DEFAULT_EXAMPLE_BYTES = 64 * 1024  # per body in field results; /requests/ID has it whole
# Views built in a thread still hold the GIL while they compute: at the caps the overview is
# ~1 s of CPU, which starved the proxy's event loop (wrk p99 3.5x). The builder sleeps this
# long after every endpoint (~1 ms of work each), so the loop gets the GIL at least that often;
# measured with `python -m bench.console_poll`.
YIELD_S = 0.001


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


def _int_param(request: web.Request, name: str, default: int, maximum: int) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {value!r}") from None
    if not 0 < n <= maximum:
        raise ApiError(400, f"{name} must be between 1 and {maximum}, got {n}")
    return n


def _page(items: list[tuple[str, Any]], cursor: str | None, limit: int):
    """(items after `cursor` in name order, at most `limit`; the next cursor or None)."""
    items.sort(key=lambda kv: kv[0])
    if cursor:
        items = items[bisect.bisect_right([k for k, _ in items], cursor):]
    page = items[:limit]
    return page, (page[-1][0] if len(items) > limit else None)


def bound_body(value: Any, max_bytes: int) -> Any:
    text = json.dumps(value, separators=(",", ":"))
    if len(text) <= max_bytes:
        return value
    return {"truncated": True, "bytes": len(text), "preview": text[:max_bytes]}


def bounded_example(doc: dict, max_bytes: int) -> dict:
    """A stored result with every body longer than `max_bytes` (as JSON) cut to a preview."""
    out = dict(doc)
    for key in ("request", "primary", "secondary", "candidate"):
        part = out.get(key)
        if isinstance(part, dict) and "body" in part:
            body = bound_body(part["body"], max_bytes)
            if body is not part["body"]:
                out[key] = {**part, "body": body}
                out["full"] = f"{PREFIX}/requests/{doc.get('id')}"
    return out


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
        if "full" in doc:  # bodies were cut: where the whole example is
            out["full"] = doc["full"]
    return out


class Api:
    def __init__(self, settings: Settings, store: ResultStore, health: dict[str, TargetHealth],
                 on_clear: Callable[[], None], extra_info: Callable[[], dict] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.health = health
        self.on_clear = on_clear
        self.extra_info = extra_info or dict
        # endpoint -> (what its overview entry was built from, the entry as JSON text): a
        # console polls every 3 s, and at the caps most endpoints did not change in between.
        # At most one entry per endpoint the store holds.
        self._overview_parts: dict[str, tuple[tuple, str]] = {}

    def register(self, app: web.Application) -> None:
        app.router.add_route("*", PREFIX, self.handle)
        app.router.add_route("*", PREFIX + "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        try:
            data = await self._dispatch(request, split_segments(request.raw_path))
            if isinstance(data, web.Response):
                return data
            return json_response(data)
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
                return await asyncio.to_thread(self.endpoints)  # every field of every endpoint
            if len(seg) >= 3 and seg[-1] == "stats":
                self._allow(request, "GET")
                return await self.stats("/".join(seg[1:-1]), _flag(request, "exclude_noise", True),
                                        _flag(request, "include_weights"),
                                        request.query.get("cursor"),
                                        _int_param(request, "limit", MAX_PAGE, MAX_PAGE))
            if len(seg) >= 3 and seg[-1] == "latency":  # issue 14
                self._allow(request, "GET")
                return self.latency("/".join(seg[1:-1]))
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
                        return await self.results(
                            endpoint, path, index,
                            _flag(request, "include_request", index is not None),
                            _int_param(request, "max_bytes", DEFAULT_EXAMPLE_BYTES, 2**31))
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
            return await self.overview(request.query.get("cursor"),
                                       _int_param(request, "limit", MAX_PAGE, MAX_PAGE),
                                       _int_param(request, "fields_limit", DEFAULT_FIELDS_LIMIT,
                                                  10**6))
        elif head == "info" and len(seg) == 1:
            self._allow(request, "GET")
            return self.info()
        raise ApiError(404, f"no such API resource: {request.path}")

    # resources ----------------------------------------------------------------------------

    def endpoints(self) -> dict:
        """Diffy's {total, differences} per endpoint, plus who failed and the verdict."""
        out = {}
        for name, c in sorted(list(self.store.endpoints.items()), key=lambda kv: kv[0]):
            out[name] = self._endpoint(name, c)
            time.sleep(YIELD_S)  # in a thread: let the event loop run (see YIELD_S)
        return out

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
                             "candidate": c.failed_candidate},
                "latency_verdict": self.store.latency.verdict_of(name, self._latency_thresholds())}

    def _latency_thresholds(self) -> LatencyThresholds:
        s = self.settings.latency
        return LatencyThresholds(relative=s.relative, absolute_ms=s.absolute_ms,
                                 min_samples=s.min_samples)

    def latency(self, endpoint: str) -> dict:
        """Each target's count and p50/p90/p99 (ms) for the endpoint, and its verdict."""
        self._counts(endpoint)
        report = self.store.latency.report(endpoint, self._latency_thresholds())
        report["thresholds"] = dataclasses.asdict(self._latency_thresholds())
        return report

    def _counts(self, endpoint: str):
        counts = self.store.endpoints.get(endpoint)
        if counts is None:
            raise ApiError(404, f"unknown endpoint {endpoint!r}")
        return counts

    def _fields(self, endpoint: str, total: int, exclude_noise: bool,
                include_weights: bool = False) -> dict:
        """Diffy lists the fields primary and candidate differed on; noise-only fields
        (differences 0) are listed here too unless `exclude_noise`, as `signal: false`."""
        # list() of a dict is one C call under the GIL: a consistent snapshot even from a
        # worker thread while the event loop goes on counting
        items = sorted(list(self.store.fields.get(endpoint, {}).items()), key=lambda kv: kv[0])
        return self._classified(items, total, exclude_noise, include_weights)

    def _classified(self, items, total: int, exclude_noise: bool,
                    include_weights: bool = False) -> dict:
        diff = self.settings.diff
        out = {}
        for path, fc in items:
            stats = classify(fc.differences, fc.noise, total, diff.relative_threshold,
                             diff.absolute_threshold)
            if exclude_noise and not stats.signal:
                continue
            # by hand: dataclasses.asdict deep-copies, and was half the overview's time
            out[path] = {"differences": stats.differences, "noise": stats.noise,
                         "relative_difference": stats.relative_difference,
                         "absolute_difference": stats.absolute_difference,
                         "signal": stats.signal}
            if include_weights:
                out[path]["weight"] = fc.weight
        return out

    async def stats(self, endpoint: str, exclude_noise: bool = True,
                    include_weights: bool = False, cursor: str | None = None,
                    limit: int = MAX_PAGE) -> web.Response:
        counts = self._counts(endpoint)

        def build() -> tuple[str, str | None]:
            all_fields = self._fields(endpoint, counts.total, False, include_weights)
            fields = ({p: f for p, f in all_fields.items() if f["signal"]} if exclude_noise
                      else all_fields)
            page, nxt = _page(list(fields.items()), cursor, limit)
            body = {"endpoint": self._endpoint(endpoint, counts, all_fields), "fields": dict(page)}
            return json.dumps(body, separators=(",", ":")), nxt
        text, nxt = await asyncio.to_thread(build)
        return _paged(text, nxt)

    async def overview(self, cursor: str | None = None, limit: int = MAX_PAGE,
                       fields_limit: int = DEFAULT_FIELDS_LIMIT) -> web.Response:
        endpoints = self.store.endpoints

        def build() -> tuple[str, str | None]:
            page, nxt = _page(list(endpoints.items()), cursor, limit)
            thresholds = self._latency_thresholds()
            cache = self._overview_parts
            parts = []
            for name, counts in page:
                fields_now = self.store.fields.get(name, {})
                # Every change to an endpoint (its fields, its latency) comes with a compared
                # request, which moves `total`; a clear moves `epoch`. The latency verdict is
                # in the key too: a shared store's refresh may bring sketches of its own.
                key = (self.store.epoch, self.store.last_reset, fields_limit, counts.total,
                       counts.differences, counts.baseline_failures, counts.failed_primary,
                       counts.failed_secondary, counts.failed_candidate, len(fields_now),
                       self.store.latency.verdict_of(name, thresholds))
                kept = cache.get(name)
                if kept is None or kept[0] != key:
                    time.sleep(YIELD_S)
                    fields = self._fields(name, counts.total, False)
                    top = heapq.nsmallest(fields_limit, fields.items(), key=lambda kv: (
                        not kv[1]["signal"], -kv[1]["differences"], kv[0]))
                    entry = {**self._endpoint(name, counts, fields),
                             "signal": any(f["signal"] for f in fields.values()),
                             "fields": dict(sorted(top)), "fields_total": len(fields)}
                    # one endpoint per dumps: json.dumps holds the GIL for the whole call,
                    # and the whole page at once (2.5 MB at the caps) held it ~40 ms
                    kept = cache[name] = (key, json.dumps(name) + ":" + json.dumps(
                        entry, separators=(",", ":")))
                parts.append(kept[1])
            if len(cache) > len(endpoints):  # after a clear: forget names that are gone
                for gone in cache.keys() - endpoints.keys():
                    cache.pop(gone, None)
            return "{" + ",".join(parts) + "}", nxt
        text, nxt = await asyncio.to_thread(build)
        return _paged(text, nxt)

    async def results(self, endpoint: str, path: str, index: str | None,
                      include_request: bool, max_bytes: int = DEFAULT_EXAMPLE_BYTES) -> dict:
        self._counts(endpoint)
        if path not in self.store.fields.get(endpoint, {}):
            raise ApiError(404, f"endpoint {endpoint!r} has no field {path!r}")
        shape = (lambda d: bounded_example(d, max_bytes)) if include_request else None
        docs = await self.store.results(endpoint, path, shape)
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
        refused = cross_site(request)
        if refused is not None:
            raise ApiError(403, refused)
        token = self.settings.admin_token
        if token:
            given = request.headers.get("X-Admin-Token", "")
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            # aiohttp keeps undecodable bytes as surrogates: compare the bytes that came.
            if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                       token.encode("utf-8", "surrogateescape")):
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


def _paged(text: str, next_cursor: str | None) -> web.Response:
    headers = {**NOSNIFF, "Cache-Control": "no-store"}
    if next_cursor is not None:
        headers["X-Next-Cursor"] = next_cursor
    return web.Response(text=text, content_type="application/json", headers=headers)


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
