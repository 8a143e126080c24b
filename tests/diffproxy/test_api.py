"""How API URLs are taken apart: percent-encoded names, and tolerated unencoded slashes."""

from __future__ import annotations

import pytest

from diffproxy.api import result_view, split_segments


@pytest.mark.parametrize("raw, expected", [
    ("/api/1/endpoints", ["endpoints"]),
    ("/api/1/endpoints/", ["endpoints"]),
    ("/api/1/endpoints/GET%20%2Fusers%2F%3Aid/stats?exclude_noise=true",
     ["endpoints", "GET /users/:id", "stats"]),
    ("/api/1/endpoints/GET%20/users/:id/stats", ["endpoints", "GET ", "users", ":id", "stats"]),
    ("/api/1/endpoints/a/fields/body.a%2Eb/results/3", ["endpoints", "a", "fields", "body.a.b", "results", "3"]),
    ("/api/1", []),
])
def test_split_segments(raw, expected):
    assert split_segments(raw) == expected


def test_result_view_aliases_left_and_right():
    doc = {"id": "1", "differences": {}, "noise": {}, "request": {"uri": "/"},
           "primary": {"status": 200}, "secondary": {"status": 200}, "candidate": {"status": 500}}
    full = result_view(doc, True)
    assert full["left"] == {"status": 200} and full["right"] == {"status": 500}
    brief = result_view(doc, False)
    assert "request" not in brief and "left" not in brief and brief["id"] == "1"


def test_result_view_says_who_failed_and_older_documents_read_as_nobody():
    doc = {"id": "2", "differences": {}, "noise": {"error": {"type": "error", "left": "reset",
                                                             "right": None}},
           "failed": ["primary"], "baseline_failed": True}
    view = result_view(doc, False)
    assert (view["failed"], view["baseline_failed"]) == (["primary"], True)
    older = result_view({"id": "3", "differences": {}, "noise": {}}, False)
    assert (older["failed"], older["baseline_failed"]) == ([], False)
