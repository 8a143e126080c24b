"""A mirror target that answers every request after a delay: `python -m localmesh.faultserver PORT SECONDS`.

The local stack puts it where the relay listens to show that a slow mirror target never
holds up the caller (`LocalMesh.mirror_target_fault("slow")`).
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


def make_app(delay: float) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.sleep(delay)
        return web.Response(text="slow mirror target\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m localmesh.faultserver PORT SECONDS", file=sys.stderr)
        return 2
    web.run_app(make_app(float(argv[1])), host="127.0.0.1", port=int(argv[0]), print=None,
                access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
