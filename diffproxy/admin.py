"""The admin port: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from .api import json_response
from .metrics import CONTENT_TYPE, Metrics


def admin_app(metrics: Metrics, readiness: Callable[[], str | None]) -> web.Application:
    """`readiness()` returns None when ready, else why not (shown in /readyz's 503)."""

    async def healthz(_request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        reason = readiness()
        if reason is not None:
            return json_response({"status": "not ready", "reason": reason}, 503)
        return json_response({"status": "ready"})

    async def prometheus(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render().encode(),
                            headers={"Content-Type": CONTENT_TYPE,
                                     "X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", prometheus)
    return app
