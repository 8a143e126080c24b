"""Every target role x every way a target can fail, through the real proxy process.

For each case: the caller gets what -responseMode=primary promises (the primary's failure
-> 502/504 JSON; anyone else's -> the primary's normal answer), the failure is recorded as
an `error` difference on the right side (a master's failure is noise: the candidate is
judged against the healthy master), the endpoint attributes the failure to that target,
/metrics counts it for that target and kind only, and the next 100 requests are served
normally.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from diffproxy.client import ApiClient
from diffproxy.model import ERROR_KINDS
from tests.support import diffapi
from tests.support.diffapi import get_json, metric, stats

from .conftest import start_fault_proxy
from .faultserver import FAULTS, ROLES

FOLLOW_UPS = 100
ERRORS = "diffproxy_target_errors_total"
# (raw, noise) counts of the `error` field when this role fails: noise is primary vs
# secondary; raw is primary vs candidate, or secondary vs candidate when the primary failed.
ERROR_COUNTS = {"primary": (0, 1), "secondary": (0, 1), "candidate": (1, 0)}


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
    side = example["differences"] if role == "candidate" else example["noise"]
    left, right = (kind, None) if role == "primary" else (None, kind)
    assert side["error"] == {"type": "error", "left": left, "right": right}
    assert example["failed"] == [role]
    assert example["baseline_failed"] is (role != "candidate")
    entry = get_json(proxy.api_url, "endpoints")[endpoint]
    assert entry["failures"] == {r: int(r == role) for r in ROLES}
    assert entry["baseline_failures"] == int(role != "candidate")
    # one request: a master's failure is the whole evidence, the candidate's is signal
    assert entry["verdict"] == ("signal" if role == "candidate" else "baseline_failure")
    assert example[role]["error"] == kind and example[role]["body"] is None
    target = get_json(proxy.api_url, "info")["targets"][role]
    assert target["last_error"].startswith(f"{kind}: ")

    follow = f"/after/{role}/{fault}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.get(proxy.proxy_url + follow), range(FOLLOW_UPS)))
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * FOLLOW_UPS
    settled = diffapi.wait_idle(proxy.admin_url)
    assert _errors(settled) == after  # the follow-ups failed nowhere
    follow_entry = get_json(proxy.api_url, "endpoints")[f"GET {follow}"]
    assert (follow_entry["total"], follow_entry["differences"], follow_entry["verdict"]) == (
        FOLLOW_UPS, 0, "same")
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


def test_one_failure_among_answers_does_not_flip_a_targets_health(fault_proxy, client):
    """Health is judged on a rolling window: one reset after a run of answers leaves the
    target healthy (it used to flip on the last request), with the failure on record."""
    proxy = fault_proxy
    for _ in range(25):
        assert client.get(proxy.proxy_url + "/window/ok").status_code == 200
    assert client.get(proxy.proxy_url + "/fault/candidate/accept_close").status_code == 200
    diffapi.wait_idle(proxy.admin_url)
    target = get_json(proxy.api_url, "info")["targets"]["candidate"]
    assert target["healthy"] is True, target
    assert target["last_error"].startswith("reset: ")
    assert target["window"]["failures"] == 1 and target["window"]["outcomes"] > 1, target


# Body kinds and who failed, through the real proxy (issue 12) ------------------------------


@pytest.fixture(scope="module")
def kinds_proxy(faults, tmp_path_factory):
    """Its own store, so verdicts are not mixed with the fault cases; started with Diffy
    flags that mean nothing here, and an endpoint needs 2 requests for a verdict."""
    tmp = tmp_path_factory.mktemp("kinds")
    proxy = start_fault_proxy(faults, tmp / "kinds.sqlite", log_dir=tmp,
                              extra=["-dc=smf1", "-enableThriftMux", "-notifications.delay=4.hours",
                                     "-verdict.minRequests=2"])
    yield proxy
    proxy.stop()


def _send(client, proxy, path: str, n: int = 1) -> None:
    for _ in range(n):
        client.get(proxy.proxy_url + path)
    diffapi.wait_idle(proxy.admin_url)


def test_diffy_per_target_headers_and_api_roots(faults, tmp_path):
    """Diffy's -candidateHeaders/-primaryHeaders and -*ApiRoot: each target gets its own
    headers and path prefix; a secret the proxy adds is never stored or logged."""
    secret = f"sek-{uuid.uuid4().hex}"
    proxy = start_fault_proxy(faults, tmp_path / "roots.sqlite", log_dir=tmp_path, extra=[
        f"-candidateHeaders=X-Env:canary, X-Api-Key:{secret}", "-candidateApiRoot=api/v2",
        "-primaryHeaders=X-Env:prod", "-secondaryApiRoot=/api/v1/"])
    try:
        before = {role: len(faults.targets(role)) for role in ROLES}
        answer = httpx.get(proxy.proxy_url + "/echo-headers?n=1", timeout=10.0)
        assert answer.json()["headers"]["X-Env"] == "prod"  # the primary's answer
        assert "X-Env" not in answer.request.headers
        diffapi.wait_idle(proxy.admin_url)
        seen = {role: faults.targets(role)[before[role]:] for role in ROLES}
        assert seen == {"primary": ["/echo-headers?n=1"], "secondary": ["/api/v1/echo-headers?n=1"],
                        "candidate": ["/api/v2/echo-headers?n=1"]}
        [kept] = diffapi.results(proxy.api_url, "GET /echo-headers", "body.headers.X-Env")["requests"]
        assert kept["differences"]["body.headers.X-Env"] == {
            "type": "changed", "left": "prod", "right": "canary+v2"}
        assert kept["candidate"]["body"]["headers"]["X-Api-Key"] == "<redacted>"
        doc = json.dumps(get_json(proxy.api_url, f"requests/{kept['id']}"))
        store = proxy.flag("store.path")
        stored = b"".join(open(p, "rb").read() for p in (store, store + "-wal") if os.path.exists(p))
        for where, blob in {"API": doc.encode(), "store": stored, "log": proxy.log_path.read_bytes()}.items():
            assert secret.encode() not in blob, where
    finally:
        proxy.stop()


def test_ignored_diffy_flags_logged_once(kinds_proxy):
    log = kinds_proxy.log(tail=100_000)
    lines = [line for line in log.splitlines() if "ignored Diffy flags" in line]
    assert len(lines) == 1 and "-dc" in lines[0] and "-notifications.delay" in lines[0], log[-2000:]


def test_too_few_requests_is_insufficient_in_the_endpoint_list(kinds_proxy, client):
    _send(client, kinds_proxy, "/once", 1)
    assert get_json(kinds_proxy.api_url, "endpoints")["GET /once"]["verdict"] == "insufficient"
    _send(client, kinds_proxy, "/once", 1)
    assert get_json(kinds_proxy.api_url, "endpoints")["GET /once"]["verdict"] == "same"


def test_brotli_candidate_compared_by_field(kinds_proxy, client):
    _send(client, kinds_proxy, "/brotli", 3)
    fields = stats(kinds_proxy.api_url, "GET /brotli")["fields"]
    assert set(fields) == {"body.version"} and fields["body.version"]["signal"] is True
    example = diffapi.results(kinds_proxy.api_url, "GET /brotli", "body.version")["requests"][0]
    assert example["differences"]["body.version"] == {"type": "changed", "left": 1, "right": 2}


def test_brotli_bodies_equal_once_decoded_are_the_same(kinds_proxy, client, faults):
    """Compared by hash of the compressed bytes, a candidate compressing the same JSON
    differently was a false signal."""
    _send(client, kinds_proxy, "/brotli-recompressed", 3)
    bodies = {}
    for role in ("primary", "candidate"):
        with httpx.stream("GET", f"http://{faults.address(role)}/brotli-recompressed",
                          timeout=10.0) as r:
            bodies[role] = b"".join(r.iter_raw())  # as sent: still brotli
    assert bodies["primary"] != bodies["candidate"]  # other bytes on the wire...
    entry = get_json(kinds_proxy.api_url, "endpoints")["GET /brotli-recompressed"]
    assert (entry["total"], entry["differences"], entry["verdict"]) == (3, 0, "same")  # ...same answer


def test_ndjson_json_seq_and_event_stream_record_paths(kinds_proxy, client):
    _send(client, kinds_proxy, "/ndjson", 3)
    _send(client, kinds_proxy, "/events", 3)
    _send(client, kinds_proxy, "/json-seq", 3)
    assert set(stats(kinds_proxy.api_url, "GET /ndjson")["fields"]) == {"body[1].n"}
    assert set(stats(kinds_proxy.api_url, "GET /json-seq")["fields"]) == {"body[1].tag"}
    assert set(stats(kinds_proxy.api_url, "GET /events")["fields"]) == {"body[1].data.tag"}


def test_dropped_wrapper_is_one_moved_field(kinds_proxy, client):
    _send(client, kinds_proxy, "/wrapped", 3)
    fields = stats(kinds_proxy.api_url, "GET /wrapped")["fields"]
    assert set(fields) == {"body.data"} and fields["body.data"]["differences"] == 3
    example = diffapi.results(kinds_proxy.api_url, "GET /wrapped", "body.data")["requests"][0]
    assert example["differences"]["body.data"] == {
        "type": "moved", "left": "body.data.*", "right": "body.*", "leaves": 5, "to": "body"}


def test_text_is_compared_line_by_line(kinds_proxy, client):
    _send(client, kinds_proxy, "/lines", 2)
    assert set(stats(kinds_proxy.api_url, "GET /lines")["fields"]) == {"body[2]"}
    example = diffapi.results(kinds_proxy.api_url, "GET /lines", "body[2]")["requests"][0]
    assert example["differences"] == {"body[2]": {"type": "changed", "left": "gamma",
                                                  "right": "gamma v2"}}


def test_dropped_headers_wrapper_is_one_moved_field(kinds_proxy, client):
    """The issue's own case: `body.headers.X` -> `body.X` was six signal fields."""
    _send(client, kinds_proxy, "/wrapped-headers", 2)
    fields = stats(kinds_proxy.api_url, "GET /wrapped-headers")["fields"]
    assert set(fields) == {"body.headers"} and fields["body.headers"]["signal"] is True
    example = diffapi.results(kinds_proxy.api_url, "GET /wrapped-headers", "body.headers")["requests"][0]
    assert example["differences"] == {"body.headers": {
        "type": "moved", "left": "body.headers.*", "right": "body.*", "leaves": 3, "to": "body"}}


def test_the_example_shown_for_a_field_is_one_where_it_differs(kinds_proxy, client):
    """The oldest kept result for `body.v` is noise only (the secondary differed); the
    example the console and the report show first is the later one where the candidate
    differs."""
    _send(client, kinds_proxy, "/noise-then-signal", 3)
    kept = diffapi.results(kinds_proxy.api_url, "GET /noise-then-signal", "body.v")["requests"]
    assert len(kept) == 3 and "body.v" in kept[-1]["noise"] and "body.v" not in kept[-1]["differences"]
    first = get_json(kinds_proxy.api_url,
                     f"endpoints/{diffapi.enc('GET /noise-then-signal')}/fields/body.v/results/0")
    assert first["differences"]["body.v"] == {"type": "changed", "left": 1, "right": 3}


def test_primary_only_failure_is_the_baselines_not_the_candidates(kinds_proxy, client):
    """The primary answers 500, secondary and candidate agree: the endpoint's verdict says
    the baseline failed, and no field is candidate signal. The candidate answering 500
    alone is signal and attributed to it."""
    _send(client, kinds_proxy, "/status500/primary", 4)
    _send(client, kinds_proxy, "/status500/candidate", 4)
    entries = get_json(kinds_proxy.api_url, "endpoints")
    base = entries["GET /status500/primary"]
    assert base["failures"] == {"primary": 4, "secondary": 0, "candidate": 0}
    assert (base["verdict"], base["baseline_failures"], base["differences"]) == (
        "baseline_failure", 4, 0)
    assert stats(kinds_proxy.api_url, "GET /status500/primary", exclude_noise=True)["fields"] == {}
    cand = entries["GET /status500/candidate"]
    assert cand["failures"] == {"primary": 0, "secondary": 0, "candidate": 4}
    assert (cand["verdict"], cand["baseline_failures"]) == ("signal", 0)
    signal = stats(kinds_proxy.api_url, "GET /status500/candidate", exclude_noise=True)["fields"]
    assert signal["status"]["differences"] == 4
    # a 5xx is an answer: it is attributed, but the target is reachable, so healthy
    assert get_json(kinds_proxy.api_url, "info")["targets"]["primary"]["healthy"] is True


def test_report_exits_4_when_the_baseline_failed_on_a_gated_endpoint(kinds_proxy, client):
    import subprocess
    import sys

    _send(client, kinds_proxy, "/status500/primary", 2)
    _send(client, kinds_proxy, "/status500/candidate", 2)

    def report(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "diffproxy", "report", "--url",
                               kinds_proxy.api_url, "--fail-on-signal", *args],
                              capture_output=True, text=True, timeout=120)

    failed = report("--endpoint", "GET /status500/primary", "--format", "json")
    assert failed.returncode == 4, failed.stdout + failed.stderr
    [entry] = [e for e in json.loads(failed.stdout)["endpoints"] if e["name"] == "GET /status500/primary"]
    assert entry["verdict"] == "baseline_failure", entry
    # the same gate on an endpoint the candidate broke is signal: 1 wins over 4
    assert report("--endpoint", "GET /status500/*").returncode == 1


# The caller's path (issue 13) ----------------------------------------------------------


@pytest.fixture(scope="module")
def patient_proxy(faults, tmp_path_factory):
    """A proxy that gives targets 15 s: longer than any caller here waits."""
    tmp = tmp_path_factory.mktemp("patient")
    proxy = start_fault_proxy(faults, tmp / "patient.sqlite", log_dir=tmp,
                              extra=["-target.timeout=15s"])
    yield proxy
    assert proxy.alive(), proxy.log()
    proxy.stop()


HOLD_WAIT = 30.0  # a caller that must wait for the hold to end
CALLER_DEADLINE = 10.0  # the candidate holds for up to HOLD_MAX (20 s), the targets get 15 s


def still_held(faults, role: str) -> bool:
    """The role holds the request (it only lets go on `release`, or after HOLD_MAX)."""
    deadline = time.monotonic() + CALLER_DEADLINE
    while faults.holding(role) != 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_caller_waits_only_for_the_target_it_is_answered_from(faults, patient_proxy):
    proxy = patient_proxy
    before = diffapi.wait_idle(proxy.admin_url)
    try:
        r = httpx.get(proxy.proxy_url + "/hold/candidate", timeout=CALLER_DEADLINE)
        assert (r.status_code, r.json()) == (200, {"ok": True})
        # The order that proves it: answered while the candidate still holds the request
        # (it may still be on its way there: the primary can answer first).
        assert still_held(faults, "candidate")
        m = diffapi.metrics(proxy.admin_url)
        assert metric(m, "diffproxy_comparisons_queued_total") == \
            metric(before, "diffproxy_comparisons_queued_total")  # not compared yet...
        assert metric(m, "diffproxy_comparison_queue_depth") == 1  # ...but waited for
    finally:
        faults.release("candidate")
    diffapi.wait_idle(proxy.admin_url, timeout=30)
    # ...then compared with the candidate's real answer, once it came.
    assert diffapi.counts(get_json(proxy.api_url, "endpoints"))["GET /hold/candidate"] == {
        "total": 1, "differences": 0}


def test_comparisons_in_flight_during_a_clear_are_not_recorded(faults, patient_proxy):
    proxy = patient_proxy
    before = diffapi.wait_idle(proxy.admin_url)
    try:
        r = httpx.get(proxy.proxy_url + "/hold/candidate?before-clear", timeout=CALLER_DEADLINE)
        assert r.status_code == 200 and still_held(faults, "candidate")
        ApiClient(proxy.api_url, timeout=10).clear()
    finally:
        faults.release("candidate")
    assert httpx.get(proxy.proxy_url + "/after-clear", timeout=10).status_code == 200
    after = diffapi.wait_idle(proxy.admin_url, timeout=30)
    assert diffapi.counts(get_json(proxy.api_url, "endpoints")) == {
        "GET /after-clear": {"total": 1, "differences": 0}}
    assert metric(after, "diffproxy_comparisons_cleared_total") == \
        metric(before, "diffproxy_comparisons_cleared_total") + 1  # counted, not recorded


def test_fan_outs_waiting_off_the_path_are_bounded(faults, tmp_path):
    """Beyond -queue.size fan-outs awaited off the callers' paths, a caller waits for all
    three targets again: slow targets cannot pile up unbounded work."""
    proxy = start_fault_proxy(faults, tmp_path / "bounded.sqlite", log_dir=tmp_path,
                              extra=["-target.timeout=15s", "-queue.size=2"])
    try:
        with ThreadPoolExecutor(1) as pool:
            try:
                for i in range(2):  # answered early: two fan-outs wait off the path
                    r = httpx.get(f"{proxy.proxy_url}/hold/candidate?n={i}", timeout=CALLER_DEADLINE)
                    assert r.status_code == 200
                third = pool.submit(httpx.get, proxy.proxy_url + "/hold/candidate?n=2",
                                    timeout=HOLD_WAIT)
                deadline = time.monotonic() + CALLER_DEADLINE
                while faults.holding("candidate") < 3 and time.monotonic() < deadline:
                    time.sleep(0.02)
                assert faults.holding("candidate") == 3
                assert not third.done()  # this caller waits for the candidate
            finally:
                faults.release("candidate")
            assert third.result().status_code == 200
        settled = diffapi.wait_idle(proxy.admin_url, timeout=30)
        # Released together, the three reach a comparison queue of 2 (-queue.size bounds it
        # too) at once: whether the worker took one first depends on the load, so a drop is
        # allowed, and must be counted.
        counted = diffapi.counts(get_json(proxy.api_url, "endpoints"))["GET /hold/candidate"]
        dropped = metric(settled, "diffproxy_comparisons_dropped_total")
        assert counted["differences"] == 0 and counted["total"] >= 2
        assert counted["total"] + dropped == 3
    finally:
        proxy.stop()
