"""Every target role x every way a target can fail, through the real proxy process.

For each case: the caller gets what -responseMode=primary promises (the primary's failure
-> 502/504 JSON; anyone else's -> the primary's normal answer), the failure is recorded as
an `error` difference on the right side, /metrics counts it for that target and kind only,
and the next 100 requests are served normally.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from diffproxy.model import ERROR_KINDS
from tests.support import diffapi
from tests.support.diffapi import get_json, metric, stats

from .conftest import start_fault_proxy
from .faultserver import FAULTS, ROLES

FOLLOW_UPS = 100
ERRORS = "diffproxy_target_errors_total"
# (raw, noise) counts of the `error` field when this role fails: raw is primary vs
# candidate, noise is primary vs secondary.
ERROR_COUNTS = {"primary": (1, 1), "secondary": (0, 1), "candidate": (1, 0)}


@pytest.fixture(scope="module")
def fault_proxy(faults, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    proxy = start_fault_proxy(faults, tmp / "faults.sqlite", log_dir=tmp)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=10.0) as c:
        yield c


def _errors(m) -> dict[tuple[str, str], float]:
    return {(t, k): metric(m, ERRORS, target=t, kind=k) for t in ROLES for k in ERROR_KINDS}


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("role", ROLES)
def test_fault_is_answered_recorded_counted_and_survived(role, fault, faults, fault_proxy, client):
    proxy, kind = fault_proxy, FAULTS[fault]
    before = _errors(diffapi.wait_idle(proxy.admin_url))
    path = f"/fault/{role}/{fault}"
    if fault == "refused":
        faults.refuse(role)
    try:
        r = client.get(proxy.proxy_url + path)
    finally:
        if fault == "refused":
            faults.accept(role)

    if role == "primary":
        assert r.status_code == (504 if kind == "timeout" else 502), r.text
        assert r.headers["content-type"].startswith("application/json")
        assert (r.json()["target"], r.json()["kind"]) == ("primary", kind)
    else:
        assert (r.status_code, r.json()) == (200, {"ok": True})

    after = _errors(diffapi.wait_idle(proxy.admin_url))
    grown = {key: after[key] - before[key] for key in after if after[key] != before[key]}
    assert grown == {(role, kind): 1}

    endpoint = f"GET {path}"
    fields = stats(proxy.api_url, endpoint)["fields"]
    assert (fields["error"]["differences"], fields["error"]["noise"]) == ERROR_COUNTS[role]
    example = diffapi.results(proxy.api_url, endpoint, "error")["requests"][0]
    side = example["noise"] if role == "secondary" else example["differences"]
    left, right = (kind, None) if role == "primary" else (None, kind)
    assert side["error"] == {"type": "error", "left": left, "right": right}
    assert example[role]["error"] == kind and example[role]["body"] is None
    target = get_json(proxy.api_url, "info")["targets"][role]
    assert target["last_error"].startswith(f"{kind}: ")

    follow = f"/after/{role}/{fault}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.get(proxy.proxy_url + follow), range(FOLLOW_UPS)))
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * FOLLOW_UPS
    settled = diffapi.wait_idle(proxy.admin_url)
    assert _errors(settled) == after  # the follow-ups failed nowhere
    assert get_json(proxy.api_url, "endpoints")[f"GET {follow}"] == {
        "total": FOLLOW_UPS, "differences": 0}
    assert get_json(proxy.api_url, "info")["targets"][role]["healthy"] is True


def test_unstorable_field_name_does_not_jam_the_store(fault_proxy, client):
    """A candidate answering `{"\\ud800key": 1}` (valid JSON, a lone surrogate UTF-8 cannot
    encode) once made every later flush fail: nothing after it was ever written."""
    proxy = fault_proxy
    before = diffapi.wait_idle(proxy.admin_url)
    assert client.get(proxy.proxy_url + "/surrogate-key").status_code == 200
    assert client.get(proxy.proxy_url + "/after-surrogate").status_code == 200
    diffapi.wait_idle(proxy.admin_url)
    fields = stats(proxy.api_url, "GET /surrogate-key")["fields"]
    assert fields["body.\\ud800key"]["differences"] == 1
    kept = diffapi.results(proxy.api_url, "GET /surrogate-key", "body.\\ud800key")["requests"]
    assert len(kept) == 1  # read back from the file: the batch was written
    after = diffapi.metrics(proxy.admin_url)
    assert metric(after, "diffproxy_store_errors_total") == metric(before, "diffproxy_store_errors_total")
    assert metric(after, "diffproxy_store_flushes_total") > metric(before, "diffproxy_store_flushes_total")
    assert get_json(proxy.api_url, "endpoints")["GET /after-surrogate"]["total"] == 1
