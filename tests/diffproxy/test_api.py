"""How API URLs are taken apart: percent-encoded names, and tolerated unencoded slashes."""

from __future__ import annotations

import pytest

from diffproxy.api import result_view, split_segments
from tests.support.diffapi import CLIENT


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


# Bounded views -------------------------------------------------------------------------

async def _filled(proxy, endpoints: int, fields: int) -> None:
    from diffproxy.model import Record

    changed = {"type": "changed", "left": 1, "right": 2}
    for e in range(endpoints):
        raw = {f"body.f{f:03d}": changed for f in range(fields if e == 0 else 2)}
        proxy.store.add(Record(id=f"r{e}", endpoint=f"GET /e{e:04d}", raw=raw, noise={}))
    await proxy.store.flush()


async def test_overview_is_paged_and_bounded(tmp_path):
    from .test_proxy import _settings, _url, running

    s = _settings(tmp_path, "127.0.0.1:9", "127.0.0.1:9", "-max.endpoints=2000", "-max.fields=300")
    async with running(s) as (proxy, client):
        await _filled(proxy, 1200, 250)
        api = _url(s.listeners.http) + "/api/1/overview"
        first = await client.get(api)
        assert first.status_code == 200
        page = first.json()
        assert len(page) == 1000 and first.headers["x-next-cursor"] == "GET /e0999"
        assert len(page["GET /e0000"]["fields"]) == 20 and page["GET /e0000"]["fields_total"] == 250
        assert page["GET /e0000"]["total"] == 1 and page["GET /e0000"]["signal"] is True
        rest = await client.get(api, params={"cursor": first.headers["x-next-cursor"]})
        assert sorted(rest.json()) == [f"GET /e{e:04d}" for e in range(1000, 1200)]
        assert "x-next-cursor" not in rest.headers
        small = await client.get(api, params={"limit": 5, "fields_limit": 300})
        assert list(small.json()) == [f"GET /e{e:04d}" for e in range(5)]
        assert len(small.json()["GET /e0000"]["fields"]) == 250
        bad = await client.get(api, params={"limit": "0"})
        assert bad.status_code == 400 and "limit" in bad.json()["error"]
        stats = _url(s.listeners.http) + "/api/1/endpoints/GET%20%2Fe0000/stats"
        one = await client.get(stats, params={"limit": 100})
        assert len(one.json()["fields"]) == 100 and one.headers["x-next-cursor"] == "body.f099"
        two = await client.get(stats, params={"limit": 1000, "cursor": "body.f099"})
        assert len(two.json()["fields"]) == 150 and "x-next-cursor" not in two.headers


async def test_overview_parts_kept_between_polls_follow_every_change(tmp_path):
    """The overview keeps each endpoint's entry between polls; a comparison, a clear, or a
    different fields_limit must show at once."""
    from diffproxy.model import Record

    from .test_proxy import _settings, _url, running

    changed = {"type": "changed", "left": 1, "right": 2}
    s = _settings(tmp_path, "127.0.0.1:9", "127.0.0.1:9")
    async with running(s) as (proxy, client):
        api = _url(s.listeners.http) + "/api/1/overview"
        for e in range(3):
            proxy.store.add(Record(id=f"a{e}", endpoint=f"GET /e{e}", raw={"body.a": changed},
                                   noise={}))
        first = (await client.get(api)).json()
        assert (await client.get(api)).json() == first  # kept: the same answer
        proxy.store.add(Record(id="b1", endpoint="GET /e1", raw={"body.b": changed}, noise={}))
        second = (await client.get(api)).json()
        assert second["GET /e1"]["total"] == 2 and set(second["GET /e1"]["fields"]) == {
            "body.a", "body.b"}
        assert second["GET /e0"] == first["GET /e0"]
        assert len((await client.get(api, params={"fields_limit": 1})).json()["GET /e1"][
            "fields"]) == 1
        cleared = await client.post(_url(s.listeners.http) + "/api/1/clear", headers=CLIENT)
        assert cleared.status_code == 200
        assert (await client.get(api)).json() == {}
        # the same counts as before the clear, other fields: not the entry from before
        proxy.store.add(Record(id="c0", endpoint="GET /e0", raw={"body.c": changed},
                               noise={}, epoch=proxy.store.epoch))
        again = (await client.get(api)).json()
        assert list(again) == ["GET /e0"] and set(again["GET /e0"]["fields"]) == {"body.c"}
        assert again["GET /e0"]["total"] == first["GET /e0"]["total"] == 1


async def test_large_examples_are_truncated_with_a_link_to_the_whole(tmp_path):
    import json

    from diffproxy.model import Record

    from .test_proxy import _settings, _url, running

    s = _settings(tmp_path, "127.0.0.1:9", "127.0.0.1:9")
    async with running(s) as (proxy, client):
        big = "x" * 2_000_000
        doc = {"id": "big1", "differences": {"body.a": {}}, "noise": {},
               "request": {"method": "GET", "uri": "/a", "headers": {}, "body": ""},
               "primary": {"status": 200, "headers": {}, "body": {"a": big}},
               "secondary": {"status": 200, "headers": {}, "body": {"a": big}},
               "candidate": {"status": 200, "headers": {}, "body": {"a": "small"}}}
        proxy.store.add(Record(id="big1", endpoint="GET /a", raw={"body.a": {}}, noise={},
                               document=json.dumps(doc)))
        base = _url(s.listeners.http) + "/api/1/endpoints/GET%20%2Fa/fields/body.a/results"
        r = await client.get(base, params={"include_request": "true"})
        assert r.status_code == 200 and len(r.content) < 300_000
        (example,) = r.json()["requests"]
        assert example["primary"]["body"]["truncated"] is True
        assert example["primary"]["body"]["bytes"] > 2_000_000
        assert example["candidate"]["body"] == {"a": "small"}  # small bodies stay whole
        assert example["full"] == "/api/1/requests/big1"
        whole = await client.get(_url(s.listeners.http) + example["full"])
        assert whole.json()["primary"]["body"]["a"] == big
        more = await client.get(base, params={"include_request": "true", "max_bytes": 3_000_000})
        assert more.json()["requests"][0]["primary"]["body"]["a"] == big


def test_result_view_says_who_failed_and_older_documents_read_as_nobody():
    doc = {"id": "2", "differences": {}, "noise": {"error": {"type": "error", "left": "reset",
                                                             "right": None}},
           "failed": ["primary"], "baseline_failed": True}
    view = result_view(doc, False)
    assert (view["failed"], view["baseline_failed"]) == (["primary"], True)
    older = result_view({"id": "3", "differences": {}, "noise": {}}, False)
    assert (older["failed"], older["baseline_failed"]) == ([], False)
