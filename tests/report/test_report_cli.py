"""`python -m diffproxy report` against a small aiohttp server answering with canned API JSON.

This checks the formatter, the JUnit file and the exit codes; the e2e suite runs the same
command against the real proxy.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
import xml.etree.ElementTree as ET

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from diffproxy import report

INFO = {
    "name": "httpbin", "protocol": "http", "version": "0.1.0", "response_mode": "primary",
    "allow_http_side_effects": False, "thresholds": {"relative": 20.0, "absolute": 0.03},
    "last_reset": None,
    "targets": {
        "primary": {"address": "127.0.0.1:9001", "healthy": True, "last_error": None},
        "secondary": {"address": "127.0.0.1:9001", "healthy": True, "last_error": None},
        "candidate": {"address": "127.0.0.1:9002", "healthy": False, "last_error": "refused"},
    },
}


def field(differences: int, noise: int, total: int, signal: bool) -> dict:
    relative = abs(differences - noise) / (differences + noise) * 100 if differences + noise else 0.0
    return {"differences": differences, "noise": noise, "relative_difference": relative,
            "absolute_difference": abs(differences - noise) / total * 100, "signal": signal}


SIGNAL_OVERVIEW = {
    "GET /uuid": {"total": 4, "differences": 4, "signal": False,
                  "fields": {"body.uuid": field(4, 4, 4, False)}},
    "GET /json": {"total": 4, "differences": 4, "signal": True,
                  "fields": {"body.slideshow.author": field(4, 0, 4, True)}},
    "GET /headers": {"total": 4, "differences": 0, "signal": False, "fields": {}},
}
NOISE_OVERVIEW = {k: v for k, v in SIGNAL_OVERVIEW.items() if k != "GET /json"}


async def serve(routes: dict[str, web.StreamResponse | object], delay: float = 0.0) -> TestServer:
    overview = routes.get("/api/1/overview")
    if "/api/1/endpoints" not in routes:  # what the proxy answers next to its overview
        routes = {**routes, "/api/1/endpoints": {
            k: {"total": v.get("total"), "differences": v.get("differences")}
            for k, v in overview.items()} if isinstance(overview, dict) else {}}
    app = web.Application()

    async def handler(request):  # by raw path: endpoint names arrive percent-encoded
        answer = routes.get(request.raw_path.split("?", 1)[0])
        if answer is None:
            return web.json_response({"error": "no such resource"}, status=404)
        if delay:
            await asyncio.sleep(delay)
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.json_response(answer)
    app.router.add_get("/{tail:.*}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    # urllib blocks: run the CLI off the loop that serves the canned API.
    code = await asyncio.to_thread(report.main, list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
async def signal_server():
    server = await serve({"/api/1/info": INFO, "/api/1/overview": SIGNAL_OVERVIEW})
    yield server
    await server.close()


@pytest.fixture
async def noise_server():
    server = await serve({"/api/1/info": INFO, "/api/1/overview": NOISE_OVERVIEW})
    yield server
    await server.close()


def url(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def test_summary_lists_every_endpoint_with_verdict_and_signal_fields(signal_server):
    code, out, err = await run("--url", url(signal_server))
    assert code == 0, err
    rows = {line.split()[0] + " " + line.split()[1]: line.split()[2:]
            for line in out.splitlines() if line.startswith("GET ")}
    assert rows == {"GET /json": ["4", "4", "SIGNAL"], "GET /uuid": ["4", "4", "noise"],
                    "GET /headers": ["4", "0", "same"]}
    signal_lines = [line.strip() for line in out.splitlines() if line.strip().startswith("signal ")]
    assert signal_lines == ["signal body.slideshow.author: 4 differing vs 0 noise "
                            "(relative 100.0%, absolute 100.0%)"]
    assert "noise  body.uuid" in out
    assert "candidate 127.0.0.1:9002 (unhealthy: refused)" in out
    # Signal first, so the line a reader needs is at the top of the table.
    assert out.index("GET /json") < out.index("GET /headers") < out.index("GET /uuid")
    assert "3 endpoint(s), 12 request(s) compared; 1 endpoint(s) with signal: GET /json" in out


async def test_an_unjudged_report_counts_the_signal_its_table_shows(signal_server):
    # What the demo prints: the API's verdicts, no gate run.
    out = report.render(await asyncio.to_thread(report.fetch, url(signal_server), 10.0))
    assert "GET /json" in out and "SIGNAL" in out
    assert "1 endpoint(s) with signal: GET /json" in out


async def test_fail_on_signal_exits_1_only_when_an_endpoint_has_signal(signal_server, noise_server):
    code, _, err = await run("--url", url(signal_server), "--fail-on-signal")
    assert code == 1
    assert "signal found" in err
    code, out, _ = await run("report", "--url", url(noise_server), "--fail-on-signal")
    assert code == 0
    assert "SIGNAL" not in out


async def test_junit_has_one_testcase_per_endpoint_and_a_failure_for_signal(signal_server, tmp_path):
    target = tmp_path / "out" / "diff.xml"
    code, _, err = await run("--url", url(signal_server), "--junit", str(target))
    assert code == 0, err
    suite = ET.parse(target).getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert set(cases) == set(SIGNAL_OVERVIEW)
    failure = cases["GET /json"].find("failure")
    assert failure is not None and "body.slideshow.author" in failure.get("message")
    assert cases["GET /uuid"].find("failure") is None
    assert cases["GET /headers"].find("failure") is None


async def test_unreachable_url_is_one_line_and_exit_2():
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = await run("--url", f"http://127.0.0.1:{port}", "--fail-on-signal")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and f"cannot reach the diff proxy at http://127.0.0.1:{port}" in err


@pytest.mark.parametrize("routes, message", [
    ({"/api/1/info": INFO, "/api/1/overview": web.Response(text="<html>hi</html>")}, "did not return JSON"),
    ({"/api/1/info": INFO, "/api/1/overview": web.json_response({"error": "store unavailable"}, status=503)},
     "answered 503: store unavailable"),
    ({"/api/1/info": INFO, "/api/1/overview": {"GET /x": {"total": "many", "differences": 0}}},
     "total is 'many', not a number"),
    ({"/api/1/info": [1, 2], "/api/1/overview": {}}, "/api/1/info is not a JSON object"),
])
async def test_bad_answers_exit_2_with_a_reason(routes, message):
    server = await serve(routes)
    try:
        code, _, err = await run("--url", url(server))
    finally:
        await server.close()
    assert code == 2
    assert message in err


async def test_slow_proxy_hits_the_timeout():
    server = await serve({"/api/1/info": INFO, "/api/1/overview": {}}, delay=2.0)
    try:
        code, _, err = await run("--url", url(server), "--timeout", "0.2")
    finally:
        await server.close()
    assert code == 2
    assert "did not answer within 0.2s" in err or "timed out" in err


async def test_empty_results_say_so_and_pass():
    server = await serve({"/api/1/info": INFO, "/api/1/overview": {}})
    try:
        code, out, _ = await run("--url", url(server), "--fail-on-signal")
    finally:
        await server.close()
    assert code == 0
    assert "no requests compared yet" in out


@pytest.mark.parametrize("argv", [["--url", "ftp://x"], ["--timeout", "0"], ["--bogus"]])
async def test_bad_arguments_exit_2(argv):
    code, _, _ = await run(*argv)
    assert code == 2


def test_parse_overview_infers_endpoint_signal_from_fields():
    parsed = report.parse_overview({"GET /a": {"total": 2, "differences": 2,
                                               "fields": {"body.x": field(2, 0, 2, True)}}})
    assert parsed[0].signal and parsed[0].verdict == "SIGNAL"


# issue 14: latency verdicts ---------------------------------------------------------------

def _latency(verdict: str, p50: tuple[float, float, float]) -> dict:
    out = {name: {"count": 40, "p50_ms": v, "p90_ms": v * 1.2, "p99_ms": v * 1.5}
           for name, v in zip(("primary", "secondary", "candidate"), p50)}
    return {**out, "verdict": verdict}


LATENCY = {"GET /delay/:id": _latency("slower", (4.0, 4.2, 84.0)),
           "GET /json": _latency("same", (3.0, 3.1, 3.2)),
           "GET /uuid": _latency("insufficient", (3.0, 3.0, 3.0))}


async def latency_server(latency: dict) -> TestServer:
    app = web.Application()
    endpoints = {name: {"total": 40, "differences": 0, "latency_verdict": v["verdict"]}
                 for name, v in latency.items()}
    by_raw = {f"/api/1/endpoints/{report.enc(n)}/latency": v for n, v in latency.items()}

    async def any_path(request: web.Request) -> web.Response:
        raw = request.raw_path.split("?", 1)[0]
        answers = {"/api/1/info": INFO, "/api/1/overview": NOISE_OVERVIEW,
                   "/api/1/endpoints": endpoints, **by_raw}
        if raw not in answers:
            return web.json_response({"error": "no"}, status=404)
        return web.json_response(answers[raw])

    app.router.add_get("/{tail:.*}", any_path)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_report_lists_latency_verdicts_slower_first():
    server = await latency_server(LATENCY)
    try:
        code, out, err = await run("--url", url(server))
    finally:
        await server.close()
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("ENDPOINT") and "LATENCY" in line)
    rows = [line for line in lines[header + 1:] if line.strip()]
    assert len(rows) == 3
    assert rows[0].startswith("GET /delay/:id") and "SLOWER" in rows[0]
    assert "4.0/4.2/84.0" in rows[0]
    assert any(r.startswith("GET /uuid") and "insufficient" in r for r in rows)


async def test_fail_on_latency_exits_1_only_when_an_endpoint_is_slower():
    slow = await latency_server(LATENCY)
    fine = await latency_server({k: v for k, v in LATENCY.items() if v["verdict"] != "slower"})
    try:
        code, _, err = await run("--url", url(slow), "--fail-on-latency")
        assert code == 1 and "GET /delay/:id" in err and "--fail-on-latency" in err
        code, _, err = await run("--url", url(fine), "--fail-on-latency")
        assert code == 0, err
        code, _, _ = await run("--url", url(slow))  # without the flag, slower only shows
        assert code == 0
    finally:
        await slow.close()
        await fine.close()


async def test_fail_on_latency_against_a_server_without_latency_is_an_error(noise_server):
    code, _, err = await run("--url", url(noise_server), "--fail-on-latency")
    assert code == 2 and "endpoints" in err


# The evidence-based gate ----------------------------------------------------------------------

EXAMPLE = {"endpoint": "GET /json", "path": "body.slideshow.author", "requests": [
    {"id": "r1", "differences": {"body.slideshow.author": {
        "type": "changed", "left": "Yours Truly", "right": "Yours Truly, v2"}}}]}


async def gate_server(overview=None, endpoints=None):
    overview = SIGNAL_OVERVIEW if overview is None else overview
    routes = {"/api/1/info": INFO, "/api/1/overview": overview,
              "/api/1/endpoints/GET%20%2Fjson/fields/body.slideshow.author/results": EXAMPLE}
    if endpoints is not None:
        routes["/api/1/endpoints"] = endpoints
    return await serve(routes)


async def gate(*argv, overview=None, endpoints=None):
    server = await gate_server(overview, endpoints)
    try:
        return await run("--url", url(server), *argv)
    finally:
        await server.close()


async def test_empty_store_with_min_requests_is_not_enough_evidence():
    code, out, err = await gate("--min-requests", "1", overview={})
    assert code == 3, err
    assert "not enough evidence: 0 request(s) compared" in err
    code, _, _ = await gate("--min-requests", "1", "--fail-on-signal", overview={})
    assert code == 3


async def test_endpoints_below_min_requests_are_insufficient():
    code, out, err = await gate("--min-requests", "5", overview=NOISE_OVERVIEW)
    assert code == 3, err
    assert "insufficient" in out and "GET /uuid" in err
    code, _, err = await gate("--min-requests", "4", overview=NOISE_OVERVIEW)
    assert code == 0, err
    # signal below the minimum is not signal yet
    code, out, _ = await gate("--min-requests", "5")
    assert code == 3 and "SIGNAL" not in out


async def test_the_proxys_verdict_is_used_and_baseline_failure_exits_4():
    endpoints = {"GET /uuid": {"total": 4, "differences": 4, "verdict": "noise"},
                 "GET /headers": {"total": 4, "differences": 0, "verdict": "baseline_failure"}}
    code, out, err = await gate("--fail-on-signal", overview=NOISE_OVERVIEW, endpoints=endpoints)
    assert code == 4, err
    assert "baseline_failure" in out and "GET /headers" in err
    # gated endpoints only
    code, _, err = await gate("--fail-on-signal", "--endpoint", "GET /uuid",
                              overview=NOISE_OVERVIEW, endpoints=endpoints)
    assert code == 0, err
    # signal outranks the baseline's failure
    code, _, _ = await gate("--fail-on-signal", endpoints={**endpoints, "GET /json": {
        "total": 4, "differences": 4, "verdict": "signal"}})
    assert code == 1


async def test_signal_fields_come_with_an_example_pair_and_a_console_link():
    code, out, _ = await gate("--fail-on-signal", "--console-url", "https://diff.example/")
    assert code == 1
    assert 'primary   "Yours Truly"' in out and 'candidate "Yours Truly, v2"' in out
    assert ("https://diff.example/#/endpoint/GET%20%2Fjson/field/body.slideshow.author/request/r1"
            in out)


async def test_accepted_fields_pass_and_unseen_accepted_differences_fail(tmp_path):
    accept = tmp_path / "accept.yaml"
    accept.write_text("accept:\n  - endpoint: GET /json\n    field: body.slideshow.*\n"
                      "    reason: the author is renamed in v2\n")
    code, out, err = await gate("--accept", str(accept))
    assert code == 0, err
    assert "accepted body.slideshow.author: the author is renamed in v2" in out
    assert "GET /json" in out and "SIGNAL" not in out
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps([{"endpoint": "GET /uuid", "field": "body.title",
                                  "reason": "v2 adds a title"}]))
    code, _, err = await gate("--accept", str(stale), overview=NOISE_OVERVIEW)
    assert code == 1 and "accepted difference not seen: GET /uuid body.title" in err


@pytest.mark.parametrize("text, message", [
    ("- endpoint: GET /json\n  field: body.x\n", "'reason' must be a non-empty string"),
    ("- endpoint: GET /json\n  field: body.x\n  reason: r\n  why: x\n", "unknown key(s) why"),
    ("{not yaml: [", "is not valid YAML/JSON"),
    ("42\n", "must hold a list"),
])
async def test_bad_accept_files_exit_2(tmp_path, text, message):
    accept = tmp_path / "accept.yaml"
    accept.write_text(text)
    code, out, err = await gate("--accept", str(accept))
    assert code == 2 and message in err and out == ""


async def test_formats_markdown_json_junit(tmp_path):
    code, out, _ = await gate("--format", "json", "--fail-on-signal", "--min-requests", "1")
    doc = json.loads(out)
    assert code == 1 and doc["exit_code"] == 1
    by_name = {e["name"]: e for e in doc["endpoints"]}
    assert by_name["GET /json"]["verdict"] == "signal"
    assert by_name["GET /json"]["signal_fields"][0]["example"]["candidate"] == "Yours Truly, v2"
    assert by_name["GET /uuid"]["verdict"] == "noise"

    code, out, _ = await gate("--format", "markdown", "--fail-on-signal")
    assert out.startswith("### diffproxy: ❌ signal")
    assert "| [`GET /json`](" in out and "[open in the console](" in out

    target = tmp_path / "also.xml"
    code, out, _ = await gate("--format", "junit", "--junit", str(target), "--min-requests", "5",
                              overview=NOISE_OVERVIEW)
    assert code == 3
    for root in (ET.fromstring(out.split("?>", 1)[1]), ET.parse(target).getroot()):
        assert root.get("failures") == "2"
        assert {c.find("failure").get("type") for c in root.findall("testcase")} == {"insufficient"}
