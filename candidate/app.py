"""The candidate: httpbin, except that `GET /json` reports a different slideshow author.

This is the demo's "risky release". Every other route is untouched, so the diff results
show exactly one signal field, `body.slideshow.author` on `GET /json`, among the noise
(`/uuid`, per-request ids). Run it like httpbin: `gunicorn candidate.app:app`.
"""

from __future__ import annotations

import json

from httpbin import app as httpbin

CHANGED_PATH = "/json"
CHANGED_FIELD = ("slideshow", "author")
CANDIDATE_VALUE = "Yours Truly, v2"


def _rewrite(body: bytes) -> bytes:
    document = json.loads(body)
    *parents, leaf = CHANGED_FIELD
    node = document
    for key in parents:
        node = node[key]
    node[leaf] = CANDIDATE_VALUE
    return json.dumps(document, indent=2).encode() + b"\n"


def app(environ, start_response):
    if environ.get("PATH_INFO") != CHANGED_PATH:
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
