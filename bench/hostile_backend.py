"""Three targets for the hostile-traffic figures (`bench.hostile`), one port per role.

`python -m bench.hostile_backend PRIMARY_PORT SECONDARY_PORT CANDIDATE_PORT`:

    /wide/<n>       a JSON object of n random keys, new ones on every answer (nothing in
                    common between any two answers: the widest comparison there is)
    /big/<name>?mb=M  about M MB of JSON; the candidate's `who` differs, so each one is kept
                    as an example
    /echo/<name>    the request body back inside JSON ({"who", "data"}); the candidate's
                    `who` differs

A separate process, so its memory and CPU are not the proxy's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import uvloop
from aiohttp import web

ROLES = ("primary", "secondary", "candidate")
PAD = "0123456789abcdef" * 65536  # 1 MiB of characters JSON needs no escape for


def _who(role: str) -> str:
    return "v2" if role == "candidate" else "v1"


def make_app(role: str) -> web.Application:
    async def wide(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        keys = os.urandom(8 * n).hex()
        body = {keys[i * 16:(i + 1) * 16]: i for i in range(n)}
        return web.Response(text=json.dumps(body), content_type="application/json")

    async def big(request: web.Request) -> web.Response:
        size = int(float(request.query.get("mb", "1")) * 1_000_000)
        pad = (PAD * (size // len(PAD) + 1))[:size]
        return web.Response(text=json.dumps({"who": _who(role), "pad": pad}),
                            content_type="application/json")

    async def echo(request: web.Request) -> web.Response:
        data = (await request.read()).decode("utf-8", "replace")
        return web.Response(text=json.dumps({"who": _who(role), "data": data}),
                            content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/wide/{n:[0-9]+}", wide)
    app.router.add_get("/big/{name}", big)
    app.router.add_route("*", "/echo/{name}", echo)
    return app


async def serve(ports: list[int]) -> None:
    for role, port in zip(ROLES, ports):
        runner = web.AppRunner(make_app(role), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    uvloop.run(serve([int(p) for p in argv]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
