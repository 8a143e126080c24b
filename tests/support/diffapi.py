"""Talking to a running diff proxy from tests: its metrics, its API, waiting for it to settle.

    wait_idle(proxy.admin_url)            # every queued comparison is recorded
    get_json(proxy.api_url, "endpoints")  # GET /api/1/endpoints
    stats(proxy.api_url, "GET /json")     # endpoint names are percent-encoded for you
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from diffproxy.client import ApiClient, ApiError, enc
from toolbox import prom
from toolbox.prom import Samples

__all__ = ["enc", "fetch", "get_json", "metric", "metrics", "parse_metrics", "results",
           "stats", "wait_idle"]

def parse_metrics(text: str) -> Samples:
    """Prometheus text -> {(name, frozenset of (label, value)): value}."""
    return prom.parse(text)


def fetch(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def metrics(admin_url: str) -> Samples:
    status, _, body = fetch(admin_url + "/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return parse_metrics(body.decode())


def metric(values: Samples, name: str, **labels: str) -> float:
    return prom.value(values, name, **labels)


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


def get_json(api_url: str, path: str) -> Any:
    try:
        return ApiClient(api_url).get(path)
    except ApiError as exc:
        raise AssertionError(f"GET /api/1/{path}: {exc}") from None


def stats(api_url: str, endpoint: str, exclude_noise: bool = False) -> dict:
    return ApiClient(api_url).stats(endpoint, exclude_noise)


def results(api_url: str, endpoint: str, path: str, include_request: bool = True) -> dict:
    return ApiClient(api_url).results(endpoint, path, include_request)


def counts(entries: dict) -> dict:
    """`GET /api/1/endpoints` reduced to Diffy's own {total, differences} per endpoint."""
    return {name: {"total": e["total"], "differences": e["differences"]}
            for name, e in entries.items()}
