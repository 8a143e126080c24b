"""Talking to a running diff proxy from tests: its metrics, its API, waiting for it to settle.

    wait_idle(proxy.admin_url)            # every queued comparison is recorded
    get_json(proxy.api_url, "endpoints")  # GET /api/1/endpoints
    stats(proxy.api_url, "GET /json")     # endpoint names are percent-encoded for you
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(name, frozenset of (label, value)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match:
            raise ValueError(f"not a Prometheus sample line: {line!r}")
        labels = frozenset(_LABEL.findall(match.group(3) or ""))
        out[(match.group(1), labels)] = float(match.group(4))
    return out


def fetch(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def metrics(admin_url: str) -> dict[tuple[str, frozenset], float]:
    status, _, body = fetch(admin_url + "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return parse_metrics(body.decode())


def metric(values: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


def wait_idle(admin_url: str, timeout: float = 15.0) -> dict:
    """Wait until every queued comparison has been completed (or failed); returns metrics."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(admin_url)
        queued = metric(m, "diffproxy_comparisons_queued_total")
        done = metric(m, "diffproxy_comparisons_completed_total") + metric(
            m, "diffproxy_comparisons_failed_total")
        if queued == done and metric(m, "diffproxy_comparison_queue_depth") == 0:
            return m
        if time.monotonic() > deadline:
            raise TimeoutError(f"comparisons not settled: queued {queued}, done {done}")
        time.sleep(0.05)


def enc(name: str) -> str:
    """encodeURIComponent: what a browser client does with an endpoint name or field path."""
    return quote(name, safe="")


def get_json(api_url: str, path: str) -> Any:
    status, headers, body = fetch(f"{api_url}/api/1/{path}")
    if status != 200:
        raise AssertionError(f"GET /api/1/{path} -> {status}: {body[:300]!r}")
    return json.loads(body)


def stats(api_url: str, endpoint: str, exclude_noise: bool = False) -> dict:
    query = "?exclude_noise=true" if exclude_noise else ""
    return get_json(api_url, f"endpoints/{enc(endpoint)}/stats{query}")


def results(api_url: str, endpoint: str, path: str, include_request: bool = True) -> dict:
    query = "?include_request=true" if include_request else ""
    return get_json(api_url, f"endpoints/{enc(endpoint)}/fields/{enc(path)}/results{query}")
