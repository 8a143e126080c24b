"""The API and admin ports' edge, facing browsers: which Host names they answer (DNS
rebinding), which state-changing calls they take (CSRF), and what is logged of a request
aiohttp cannot parse (never the request itself: it may hold a secret).

DNS rebinding: a page on `evil.example` re-resolves its own name to 127.0.0.1 (or a pod
IP) and reads the API as same-origin; the one trace is the Host header, which stays
`evil.example`. So the ports answer only names they were told (loopback names, `*.localhost`,
`-rootUrl`'s and `-apiRoot`'s host, `-allowedHosts`, which the topology fills with the
diff proxy's Service names) and any IP literal: a browser only sends an IP literal as Host
when the page's own URL is that IP, which no rebinding can achieve. IP literals are what
the kubelet's probes (`Host: <pod IP>:<port>`), Prometheus' scrapes and `kubectl
port-forward` (127.0.0.1) send, so none of them needs configuring.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .settings import Settings

log = logging.getLogger("diffproxy.http")

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost",
                            "ip6-loopback"})
CLIENT_HEADER = "X-Diffproxy-Client"  # makes a call non-simple: no cross-site form can send it
_SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of the console, or a typed URL


def _url_host(url: str) -> str | None:
    url = url.strip().strip("'\"")
    if not url:
        return None
    try:
        return urlsplit(url if "//" in url else "//" + url).hostname
    except ValueError:
        return None


class AllowedHosts:
    """The Host names a port answers; `None` names: any."""

    def __init__(self, settings: Settings) -> None:
        names = set(LOOPBACK_NAMES)
        suffixes = [".localhost"]  # RFC 6761: browsers resolve these to loopback themselves
        for url in (settings.root_url, settings.api_root):
            host = _url_host(url)
            if host:
                names.add(host.lower())
        for listen in (settings.listeners.http, settings.listeners.admin):
            names.add(listen.host.lower())
        everything = False
        for entry in settings.edge.allowed_hosts:
            entry = entry.strip().lower().rstrip(".")
            if entry == "*":
                everything = True
            elif entry.startswith("*."):
                suffixes.append(entry[1:])
            elif entry:
                names.add(_url_host(entry) or entry)
        self.names: frozenset[str] | None = None if everything else frozenset(names)
        self.suffixes = tuple(suffixes)

    def allows(self, host_header: str | None) -> bool:
        if self.names is None or host_header is None:  # no Host: not a browser
            return True
        host = host_header.strip()
        if host.startswith("["):
            return "]" in host  # an IPv6 literal
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        try:
            ipaddress.ip_address(name)
            return True
        except ValueError:
            pass
        name = name.lower().rstrip(".")
        return name in self.names or name.endswith(self.suffixes)


def host_guard(settings: Settings) -> Callable:
    """aiohttp middleware: `421 Misdirected Request` for a Host the port does not answer."""
    allowed = AllowedHosts(settings)

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable]) -> web.StreamResponse:
        if allowed.allows(request.headers.get("Host")):
            return await handler(request)
        return web.json_response(
            {"error": "this diff proxy does not answer to that Host name (a guard against DNS "
                      "rebinding): use localhost, an IP address, or add the name with "
                      "-allowedHosts", "flag": "-allowedHosts"},
            status=421, headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    return guard


def cross_site(request: web.Request) -> str | None:
    """Why a state-changing API call must be refused as a possible CSRF, or None.

    It must be a request no cross-site page can make without CORS, which these ports never
    grant: a custom header (`X-Diffproxy-Client`) or a JSON body type. And where the browser
    says where it came from, that must be here: `Sec-Fetch-Site` same-origin (or none: a
    typed URL, curl), `Origin` this very host."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in _SAME_SITE:
        return "a cross-site request (Sec-Fetch-Site) may not change results"
    origin = request.headers.get("Origin")
    if origin is not None:
        parts = urlsplit(origin.strip()) if origin.strip() != "null" else None
        host = request.headers.get("Host", "")
        if parts is None or not parts.netloc or parts.netloc.lower() != host.strip().lower():
            return "a request from another origin may not change results"
    ctype = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if CLIENT_HEADER not in request.headers and ctype != "application/json":
        return (f"state-changing calls need the header {CLIENT_HEADER}: NAME (or a JSON "
                "Content-Type), which no cross-site form or no-cors fetch can send")
    return None


class _ServerLog:
    """The logger aiohttp's server is given: a request it cannot parse becomes one line
    naming the error class (aiohttp's own message quotes the raw request line)."""

    def debug(self, *args, **kwargs) -> None:
        pass  # aiohttp's debug chatter (client disconnects) would only be noise

    def exception(self, msg, *args, exc_info=None, **kwargs) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, HttpProcessingError):
            log.warning("refused a malformed request (%s, %s)", type(exc).__name__, exc.code)
        else:
            log.error(msg, *args, exc_info=exc_info or True, **kwargs)

    def error(self, *args, **kwargs) -> None:
        log.error(*args, **kwargs)

    def warning(self, *args, **kwargs) -> None:
        log.warning(*args, **kwargs)

    def info(self, *args, **kwargs) -> None:
        log.info(*args, **kwargs)

    def isEnabledFor(self, level: int) -> bool:
        return log.isEnabledFor(level)


server_log = _ServerLog()
