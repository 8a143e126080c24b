"""The gate against a real proxy in front of real httpbin and the demo's candidate: exit
codes from an empty store to signal, accepted differences, and no secret in any format."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest

from candidate.app import CANDIDATE_VALUE
from diffproxy.client import ApiClient
from tests.support import diffapi, procs


@pytest.fixture(scope="module")
def real_proxy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    started = [start(log_dir=tmp, wait=False)
               for start in (procs.start_httpbin, procs.start_httpbin, procs.start_candidate)]
    try:
        for proc in started:
            proc.wait_until(proc.url + "/get", timeout=30)
        proxy = procs.start_diffproxy(primary=started[0].address, secondary=started[1].address,
                                      candidate=started[2].address, store_path=tmp / "gate.sqlite",
                                      extra=["-rootUrl=https://diff.example/console"], log_dir=tmp)
        try:
            yield proxy
        finally:
            proxy.stop()
    finally:
        for proc in started:
            proc.stop()


def report(proxy, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diffproxy", "report", "--url", proxy.api_url, *args],
                          capture_output=True, text=True, timeout=60)


def test_gate_from_empty_store_to_signal_and_accepted(real_proxy, tmp_path):
    ApiClient(real_proxy.api_url).clear()
    empty = report(real_proxy, "--min-requests", "1", "--fail-on-signal")
    assert empty.returncode == 3, empty.stderr
    assert report(real_proxy, "--fail-on-signal").returncode == 0  # no gate on evidence asked

    token = f"tok-{uuid.uuid4().hex}"
    with httpx.Client(base_url=real_proxy.proxy_url, timeout=10.0) as client:
        for _ in range(3):
            assert client.get("/json").status_code == 200
            assert client.get("/get").status_code == 200
            assert client.get("/bearer", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert client.get(f"/anything?token={token}").status_code == 200
    diffapi.wait_idle(real_proxy.admin_url)

    signal = report(real_proxy, "--fail-on-signal", "--min-requests", "3")
    assert signal.returncode == 1, signal.stdout + signal.stderr
    assert CANDIDATE_VALUE in signal.stdout  # the example pair...
    assert "https://diff.example/console/#/endpoint/GET%20%2Fjson/field/body.slideshow.author/request/" \
        in signal.stdout  # ...and the deep link, from -rootUrl
    assert report(real_proxy, "--min-requests", "4").returncode == 3

    accept = tmp_path / "accept.yaml"
    accept.write_text("- endpoint: GET /json\n  field: body.slideshow.author\n  reason: v2 renames the author\n")
    accepted = report(real_proxy, "--fail-on-signal", "--min-requests", "3", "--accept", str(accept))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "accepted body.slideshow.author: v2 renames the author" in accepted.stdout

    for fmt in ("text", "markdown", "json", "junit"):
        done = report(real_proxy, "--format", fmt, "--fail-on-signal")
        assert done.returncode == 1
        assert token not in done.stdout + done.stderr, fmt
