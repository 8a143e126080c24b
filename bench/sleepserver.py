"""Fallback delayed backend for machines whose nginx lacks the echo module.

`python -m bench.sleepserver PORT DELAY_MS BODY_FILE [PORT ...]`: every request is answered
with the body after an asyncio sleep, on uvloop, so concurrent requests sleep side by side.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvloop
from aiohttp import web


def make_app(delay: float, body: bytes) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(ports: list[int], delay: float, body: bytes) -> None:
    runners = []
    for port in ports:
        runner = web.AppRunner(make_app(delay, body), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
        runners.append(runner)
    await asyncio.Event().wait()


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    port, delay_ms, body_file, *more = argv
    uvloop.run(serve([int(port), *map(int, more)], int(delay_ms) / 1000, Path(body_file).read_bytes()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
