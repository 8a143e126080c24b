"""The candidate: httpbin with two deliberate changes, one in a body and one in time.

- `GET /json` reports a different slideshow author: the one signal field,
  `body.slideshow.author`, among the noise (`/uuid`, per-request ids);
- `GET /delay/<n>` answers `LATENCY_ADDED` (80 ms) later than httpbin, with the same body:
  the one endpoint the latency verdict calls `slower` (docs/latency.md).

Every other route is untouched. Run it like httpbin: `gunicorn candidate.app:app`.
"""

from __future__ import annotations

import json
import time

from httpbin import app as httpbin

CHANGED_PATH = "/json"
CHANGED_FIELD = ("slideshow", "author")
CANDIDATE_VALUE = "Yours Truly, v2"
SLOWER_PREFIX = "/delay/"
LATENCY_ADDED = 0.080  # seconds, before httpbin starts on the request


def _rewrite(body: bytes) -> bytes:
    document = json.loads(body)
    *parents, leaf = CHANGED_FIELD
    node = document
    for key in parents:
        node = node[key]
    node[leaf] = CANDIDATE_VALUE
    return json.dumps(document, indent=2).encode() + b"\n"


def app(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith(SLOWER_PREFIX) and environ.get("REQUEST_METHOD") == "GET":
        time.sleep(LATENCY_ADDED)
    if path != CHANGED_PATH:
        return httpbin(environ, start_response)

    captured: dict = {}

    def capture(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers
        return lambda _chunk: None

    chunks = httpbin(environ, capture)
    try:
        body = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    if captured["status"].startswith("200"):
        body = _rewrite(body)
    headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(captured["status"], headers)
    return [body]
