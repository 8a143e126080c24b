"""Mirroring at 100%: callers see v1 only, v2 gets every copy, the diff proxy sorts noise
from signal, and `diffproxy report` turns that into a CI verdict."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from httpbin import app as httpbin_app

from candidate.app import CANDIDATE_VALUE
from topology import Istio

MIXED = ["/headers"] * 3 + ["/uuid"] * 3 + ["/json"] * 3 + ["/anything/17", "/anything/42"]


@pytest.fixture(scope="module")
def mesh(open_mesh):
    # Istio 1.27: copies arrive as host-shadow; everything below must hold regardless.
    with open_mesh(mirror_percentage=100.0, istio=Istio("1.27.3")) as m:
        yield m


@pytest.fixture(scope="module")
def v1_author() -> str:
    # Plain httpbin's answer, asked of httpbin itself rather than copied into the test.
    with httpbin_app.test_client() as client:
        return client.get("/json").get_json()["slideshow"]["author"]


def test_callers_get_only_v1_answers(mesh, v1_author):
    before = mesh.received()
    replies = mesh.send("/json", 5)
    assert [r.status for r in replies] == [200] * 5
    assert {r.json()["slideshow"]["author"] for r in replies} == {v1_author}
    assert v1_author != CANDIDATE_VALUE
    served = mesh.wait_for(lambda: mesh.received().v1 - before.v1, lambda n: n >= 5)
    assert served == 5


def test_v2_receives_exactly_one_copy_of_every_request(mesh):
    before = mesh.received()
    replies = mesh.send_paths(MIXED)
    assert all(r.status == 200 for r in replies)
    mirrored = mesh.wait_for(lambda: mesh.received().v2 - before.v2, lambda n: n >= len(MIXED))
    assert mirrored == len(MIXED)
    assert mesh.received().v1 - before.v1 == len(MIXED)


def test_api_lists_each_mirrored_endpoint_with_its_total(mesh):
    _, overview = mesh.fresh_run(MIXED)
    assert {name: e["total"] for name, e in overview.items()} == {
        "GET /headers": 3, "GET /uuid": 3, "GET /json": 3, "GET /anything/:id": 2}


def test_random_uuid_is_noise_and_the_changed_author_is_signal(mesh, v1_author):
    _, overview = mesh.fresh_run(["/uuid"] * 4 + ["/json"] * 4)

    uuid = overview["GET /uuid"]
    # Primary and secondary disagree on every uuid as much as primary and candidate do.
    assert uuid["fields"]["body.uuid"]["differences"] == 4
    assert uuid["fields"]["body.uuid"]["noise"] == 4
    assert uuid["fields"]["body.uuid"]["signal"] is False
    assert uuid["signal"] is False

    doc = overview["GET /json"]
    author = doc["fields"]["body.slideshow.author"]
    assert (author["differences"], author["noise"], author["signal"]) == (4, 0, True)
    assert doc["signal"] is True
    assert [p for p, f in doc["fields"].items() if f["signal"]] == ["body.slideshow.author"]

    examples = mesh.results("GET /json", "body.slideshow.author")
    assert examples, "the signal field keeps examples"
    for result in examples:
        change = result["differences"]["body.slideshow.author"]
        assert (change["left"], change["right"]) == (v1_author, CANDIDATE_VALUE)


def test_report_gate_fails_on_the_changed_author(mesh, tmp_path):
    mesh.fresh_run(["/json"] * 3 + ["/uuid"] * 3 + ["/headers"] * 3)
    junit = tmp_path / "diff.xml"
    done = mesh.report("--fail-on-signal", "--junit", str(junit))
    assert done.returncode == 1, done.stderr
    diff_table = done.stdout.split("LATENCY", 1)[0]  # the latency table follows it
    rows = {" ".join(line.split()[:2]): line.split()[-1] for line in diff_table.splitlines()
            if line.startswith("GET ")}
    assert rows == {"GET /json": "SIGNAL", "GET /uuid": "noise", "GET /headers": "same"}
    assert "signal body.slideshow.author" in done.stdout

    suite = ET.parse(junit).getroot()
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["GET /json"]
    assert suite.get("tests") == "3"


def test_report_gate_passes_when_only_noise_differs(mesh):
    mesh.fresh_run(["/uuid"] * 3 + ["/headers"] * 3)
    done = mesh.report("--fail-on-signal")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GET /uuid" in done.stdout and "GET /headers" in done.stdout
    assert "SIGNAL" not in done.stdout
