"""The candidate dies mid-run: callers never notice, the diff proxy records the candidate's
failures and keeps answering its API."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def mesh(open_mesh):
    with open_mesh(mirror_percentage=100.0) as m:
        yield m


def candidate_failed(result: dict) -> bool:
    # Locally the connection is refused; in a mesh the candidate's sidecar answers 503.
    candidate = result["candidate"]
    return candidate["error"] is not None or (candidate["status"] or 0) >= 500


def test_killed_candidate_is_recorded_and_the_proxy_keeps_serving(mesh):
    _, overview = mesh.fresh_run(["/json"] * 2)
    assert overview["GET /json"]["total"] == 2

    mesh.kill_candidate()
    paths = ["/json"] * 3 + ["/headers"] * 3
    replies, overview = mesh.fresh_run(paths)

    assert [r.status for r in replies] == [200] * len(paths)
    assert {n: e["total"] for n, e in overview.items()} == {"GET /json": 3, "GET /headers": 3}
    for endpoint in ("GET /json", "GET /headers"):
        fields = overview[endpoint]["fields"]
        failing = [f for f in ("error", "status") if f in fields]
        assert failing, f"{endpoint}: no error or status difference in {sorted(fields)}"
        assert fields[failing[0]]["differences"] == 3
        examples = mesh.results(endpoint, failing[0])
        assert examples and all(candidate_failed(r) for r in examples)
        assert all(r["primary"]["status"] == 200 for r in examples)

    info = mesh.api("/api/1/info")
    assert info["name"] == "httpbin"
    done = mesh.report()
    assert done.returncode == 0, done.stderr
    assert "GET /headers" in done.stdout
