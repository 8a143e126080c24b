"""The web console: one static page (HTML, CSS, JS) served on the http port next to /api/1.

The page renders mirrored traffic, which is arbitrary input from strangers, so every
response here carries a strict Content-Security-Policy: even if a value slipped into the
DOM as markup, no inline script, inline handler or foreign resource could run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).with_name("static")

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files are tiny; revalidating every load means a restarted proxy never serves a
    # page that does not match its API.
    "Cache-Control": "no-cache",
}

# Only these kinds of files are served, each with an explicit type: nothing in static/
# is ever sent with a guessed or sniffed type.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str


def load_static(directory: Path = STATIC_DIR) -> dict[str, StaticFile]:
    """Reads the page's files once, keyed by file name; unknown kinds are left out."""
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type:
            files[path.name] = StaticFile(path.read_bytes(), content_type)
    if "index.html" not in files:
        raise FileNotFoundError(f"console page missing: {directory / 'index.html'}")
    return files


def _respond(file: StaticFile) -> web.Response:
    charset = None if file.content_type == "image/svg+xml" else "utf-8"
    return web.Response(body=file.body, content_type=file.content_type, charset=charset,
                        headers=SECURITY_HEADERS)


def add_console_routes(app: web.Application) -> None:
    files = load_static()

    async def index(_request: web.Request) -> web.Response:
        return _respond(files["index.html"])

    async def static(request: web.Request) -> web.Response:
        file = files.get(request.match_info["name"])
        if file is None:
            raise web.HTTPNotFound(text="not found", headers=SECURITY_HEADERS)
        return _respond(file)

    app.router.add_get("/", index)
    app.router.add_get("/index.html", index)
    app.router.add_get("/static/{name}", static)
