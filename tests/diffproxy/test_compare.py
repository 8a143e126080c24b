import gzip
import hashlib
import json
import time
import zlib

import pytest
from httpbin import app as httpbin_app

from diffproxy.compare import (
    MAX_COMPARE_NODES,
    MAX_VALUE_CHARS,
    Comparator,
    CompareSettings,
    Comparison,
    truncate_value,
)
from diffproxy.headers import DEFAULT_IGNORED_HEADERS
from diffproxy.lift import MAX_COMPARE_DEPTH, lift, parse_body
from diffproxy.model import DIFF_TYPES, Difference, Response

JSON = (("Content-Type", "application/json"),)


@pytest.fixture(scope="module")
def httpbin():
    return httpbin_app.test_client()


def fetch(client, path, **kwargs) -> Response:
    r = client.get(path, **kwargs)
    return Response(r.status_code, tuple(r.headers.items()), r.data)


def js(obj, status=200, headers=JSON) -> Response:
    return Response(status, headers, json.dumps(obj).encode())


@pytest.fixture
def cmp():
    return Comparator(CompareSettings())


def assert_json_safe(diffs):
    json.dumps({p: [d.type, d.left, d.right] for p, d in diffs.items()}, allow_nan=False)
    assert all(d.type in DIFF_TYPES for d in diffs.values())


# httpbin output ------------------------------------------------------------------------


def test_two_uuid_responses_differ_only_at_uuid(httpbin, cmp):
    a, b = fetch(httpbin, "/uuid"), fetch(httpbin, "/uuid")
    diffs = cmp.diff(a, b)
    assert list(diffs) == ["body.uuid"]
    assert diffs["body.uuid"].type == "changed"
    assert diffs["body.uuid"].left == json.loads(a.body)["uuid"]
    assert diffs["body.uuid"].right == json.loads(b.body)["uuid"]


def test_headers_echo_with_different_host_differs_only_at_host(httpbin, cmp):
    a = fetch(httpbin, "/headers", headers={"Host": "httpbin-master:8080"})
    b = fetch(httpbin, "/headers", headers={"Host": "httpbin-candidate:8080"})
    assert cmp.diff(a, b) == {
        "body.headers.Host": Difference("changed", "httpbin-master:8080", "httpbin-candidate:8080")}


def test_ignore_fields_drops_the_host_echo(httpbin):
    cmp = Comparator(CompareSettings(ignore_fields=("body.headers.Host",)))
    a = fetch(httpbin, "/headers", headers={"Host": "a", "User-Agent": "x"})
    b = fetch(httpbin, "/headers", headers={"Host": "b", "User-Agent": "y"})
    assert cmp.diff(a, b) == {"body.headers.User-Agent": Difference("changed", "x", "y")}


def test_ignore_fields_globs(httpbin):
    cmp = Comparator(CompareSettings(ignore_fields=("body.*",)))
    a, b = fetch(httpbin, "/uuid"), fetch(httpbin, "/uuid")
    assert cmp.diff(a, b) == {}
    assert cmp.compare(a, a, b) == Comparison(raw={}, noise={}, identical=False)


def test_gzip_endpoint_lifts_to_json(httpbin, cmp):
    r = fetch(httpbin, "/gzip")
    lifted = lift(r, cmp.settings.max_body_bytes)
    assert lifted["body"]["gzipped"] is True
    assert lifted["status"] == 200
    assert lifted["headers"]["content-encoding"] == "gzip"
    assert lifted["error"] is None
    json.dumps(lifted)


def test_status_404_vs_200(httpbin, cmp):
    ok, missing = fetch(httpbin, "/get"), fetch(httpbin, "/nope")
    diffs = cmp.diff(ok, missing)
    assert diffs["status"] == Difference("changed", 200, 404)
    assert diffs["body"].type == "type_changed"  # JSON object vs HTML page
    assert_json_safe(diffs)


def test_html_bodies_compare_line_by_line(httpbin, cmp):
    page = fetch(httpbin, "/html")
    assert cmp.diff(page, page) == {}
    changed = Response(page.status, page.headers, page.body.replace(b"Herman Melville", b"H. Melville"))
    diffs = cmp.diff(page, changed)
    lines = page.body.decode().splitlines()
    index = next(i for i, line in enumerate(lines) if "Herman Melville" in line)
    assert list(diffs) == [f"body[{index}]"]
    d = diffs[f"body[{index}]"]
    assert d.type == "changed" and "Herman Melville" in d.left and "H. Melville" in d.right


# fast path -----------------------------------------------------------------------------


def test_identical_fast_path(httpbin, cmp):
    r = fetch(httpbin, "/get")
    again = Response(r.status, r.headers + (("Date", "Thu, 01 Jan 1970 00:00:00 GMT"),), r.body)
    assert cmp.compare(r, again, r) == Comparison(raw={}, noise={}, identical=True)


def test_identical_bytes_skip_parsing(cmp):
    # if the body were parsed, a 50 MB gzip bomb would at least be inflated to the cap
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    r = Response(200, JSON + (("Content-Encoding", "gzip"),), bomb)
    assert cmp.compare(r, r, r).identical is True


def test_not_identical_when_candidate_differs(httpbin, cmp):
    a = fetch(httpbin, "/get")
    b = Response(a.status, a.headers, a.body.replace(b'"url"', b'"URL"'))
    result = cmp.compare(a, a, b)
    assert result.identical is False
    assert result.noise == {}
    assert result.raw["body.url"].type == "missing"
    assert result.raw["body.URL"].type == "extra"


def test_noise_and_raw_are_separate(httpbin, cmp):
    p, s, c = fetch(httpbin, "/uuid"), fetch(httpbin, "/uuid"), fetch(httpbin, "/uuid")
    result = cmp.compare(p, s, c)
    assert set(result.noise) == set(result.raw) == {"body.uuid"}
    assert result.noise["body.uuid"].right == json.loads(s.body)["uuid"]
    assert result.raw["body.uuid"].right == json.loads(c.body)["uuid"]


def test_header_only_difference_is_not_identical(cmp):
    a = js({"a": 1}, headers=JSON + (("X-Version", "1"),))
    b = js({"a": 1}, headers=JSON + (("X-Version", "2"),))
    result = cmp.compare(a, a, b)
    assert result.identical is False
    assert result.raw == {"headers.x-version": Difference("changed", "1", "2")}


# headers -------------------------------------------------------------------------------


def test_header_differences_use_lower_case_names(cmp):
    a = Response(200, (("Content-Type", "text/plain"), ("X-Only-Left", "1"), ("Cache-Control", "no-cache")), b"x")
    b = Response(200, (("content-type", "text/plain"), ("X-Only-Right", "2"), ("cache-control", "max-age=60")), b"x")
    assert cmp.diff(a, b) == {
        "headers.cache-control": Difference("changed", "no-cache", "max-age=60"),
        "headers.x-only-left": Difference("missing", "1", None),
        "headers.x-only-right": Difference("extra", None, "2"),
    }


def test_default_ignored_headers_never_show(cmp):
    noisy = (("Date", "Mon"), ("Server", "gunicorn"), ("Content-Length", "1"), ("X-Request-Id", "a"),
             ("X-B3-TraceId", "1"), ("traceparent", "00-1"), ("X-Envoy-Upstream-Service-Time", "3"),
             ("Connection", "close"), ("Transfer-Encoding", "chunked"), ("X-Forwarded-For", "1.2.3.4"))
    other = tuple((n, v + "-other") for n, v in noisy)
    a = Response(200, noisy, b"same")
    b = Response(200, other, b"same")
    assert cmp.diff(a, b) == {}
    assert cmp.compare(a, a, b).identical is True
    assert "x-envoy-*" in DEFAULT_IGNORED_HEADERS


def test_configured_ignore_headers_are_case_insensitive_globs():
    cmp = Comparator(CompareSettings(ignore_headers=("X-Foo-*", "x-bar")))
    a = Response(200, (("x-foo-one", "1"), ("X-BAR", "1"), ("X-Baz", "1")), b"")
    b = Response(200, (("X-Foo-One", "2"), ("x-bar", "2"), ("X-Baz", "2")), b"")
    assert list(cmp.diff(a, b)) == ["headers.x-baz"]


def test_exclude_headers_skips_all_headers():
    cmp = Comparator(CompareSettings(exclude_headers=True))
    a = Response(200, (("X-A", "1"),), b"")
    b = Response(200, (("X-A", "2"), ("X-B", "3")), b"")
    assert cmp.diff(a, b) == {}
    assert cmp.compare(a, a, b).identical is True


def test_ignore_fields_can_drop_headers():
    cmp = Comparator(CompareSettings(ignore_fields=("headers.X-Version",)))
    a = js({}, headers=JSON + (("X-Version", "1"),))
    b = js({}, headers=JSON + (("X-Version", "2"),))
    assert cmp.diff(a, b) == {}


# JSON ----------------------------------------------------------------------------------


def test_json_report_types(cmp):
    a = js({"same": 1, "changed": "a", "typed": 1, "gone": True, "nested": {"k": None}})
    b = js({"same": 1, "changed": "b", "typed": "1", "new": [1], "nested": {"k": 0}})
    assert cmp.diff(a, b) == {
        "body.changed": Difference("changed", "a", "b"),
        "body.typed": Difference("type_changed", 1, "1"),
        "body.gone": Difference("missing", True, None),
        "body.new": Difference("extra", None, [1], leaves=1),
        "body.nested.k": Difference("type_changed", None, 0),
    }


def test_array_elements_collapse_to_one_path(cmp):
    a = js({"slideshow": {"slides": [{"title": "a"}, {"title": "b"}, {"title": "c"}]}})
    b = js({"slideshow": {"slides": [{"title": "x"}, {"title": "y"}, {"title": "z"}]}})
    diffs = cmp.diff(a, b)
    assert list(diffs) == ["body.slideshow.slides.title"]
    assert diffs["body.slideshow.slides.title"].type == "changed"


def test_array_length_change_is_one_size_changed(cmp):
    a = js({"items": [{"id": i} for i in range(30)], "n": 1})
    b = js({"items": [{"id": i + 1} for i in range(25)], "n": 1})
    assert cmp.diff(a, b) == {"body.items": Difference("size_changed", 30, 25)}


def test_nested_array_length_change_reports_outermost_only(cmp):
    a = js({"m": [[1, 2], [3]]})
    b = js({"m": [[1, 2, 9]]})
    assert cmp.diff(a, b) == {"body.m": Difference("size_changed", 2, 1)}


def test_root_array_length_change(cmp):
    assert cmp.diff(js([1, 2]), js([1, 2, 3])) == {"body": Difference("size_changed", 2, 3)}


def test_array_order_is_significant(cmp):
    diffs = cmp.diff(js({"a": [1, 2]}), js({"a": [2, 1]}))
    assert diffs == {"body.a": Difference("changed", 1, 2)}


def test_candidate_change_on_json_endpoint(httpbin, cmp):
    from werkzeug.test import Client

    from candidate.app import app as candidate_app
    primary = fetch(httpbin, "/json")
    candidate = fetch(Client(candidate_app), "/json")  # re-serialised with another indent
    result = cmp.compare(primary, fetch(httpbin, "/json"), candidate)
    assert result.noise == {}
    assert set(result.raw) == {"body.slideshow.author"}
    assert result.raw["body.slideshow.author"].right == "Yours Truly, v2"


def test_invalid_utf8_in_json_content_type_falls_back_to_binary(cmp):
    good = js({"a": "b"})
    bad = Response(200, JSON, b'{"a": "\xff\xfe"}')
    diffs = cmp.diff(good, bad)
    assert list(diffs) == ["body"] and diffs["body"].type == "type_changed"
    assert diffs["body"].right["length"] == len(bad.body)
    assert_json_safe(diffs)
    other = Response(200, JSON, b'{"a": "\xff\xfd"}')
    assert set(cmp.diff(bad, other)) == {"body.sha256"}


def test_invalid_json_falls_back_to_text(cmp):
    a = Response(200, JSON, b'{"a": ')
    b = Response(200, JSON, b'{"a": 1')
    assert cmp.diff(a, b) == {"body": Difference("changed", '{"a": ', '{"a": 1')}
    assert lift(a, cmp.settings.max_body_bytes)["body"] == '{"a": '


def test_non_standard_json_constants_are_text(cmp):
    assert lift(Response(200, JSON, b'{"a": NaN}'), cmp.settings.max_body_bytes)["body"] == '{"a": NaN}'


def test_deeply_nested_json_does_not_crash(cmp):
    deep = b"[" * 100000 + b"]" * 100000
    lifted = lift(Response(200, JSON, deep), cmp.settings.max_body_bytes)
    assert lifted["body"]["sha256"] == hashlib.sha256(deep).hexdigest()
    assert "compared by hash" in lifted["body"]["note"]


@pytest.mark.parametrize("levels", [MAX_COMPARE_DEPTH + 1, 700, 5000])
def test_json_deeper_than_the_bound_is_compared_by_hash_and_says_so(cmp, levels):
    a = Response(200, JSON, b"[" * levels + b"1" + b"]" * levels)
    b = Response(200, JSON, b"[" * levels + b"2" + b"]" * levels)
    result = cmp.compare(a, a, b)
    assert list(result.raw) == ["body.sha256"] and result.noise == {}
    assert "deeper than" in lift(b, cmp.settings.max_body_bytes)["body"]["note"]
    assert set(result.bounded) == {"depth"}


def test_json_just_within_the_depth_bound_is_compared_field_by_field(cmp):
    levels = MAX_COMPARE_DEPTH - 1
    a = Response(200, JSON, b'{"k":' * levels + b"1" + b"}" * levels)
    b = Response(200, JSON, b'{"k":' * levels + b"2" + b"}" * levels)
    result = cmp.compare(a, a, b)
    assert list(result.raw) == ["body" + ".k" * levels] and result.bounded == ()


def test_json_wider_than_the_bound_is_compared_by_hash_and_says_so(cmp):
    import random
    rng = random.Random(7)
    wide = [js({f"k{rng.random()}": i for i in range(MAX_COMPARE_NODES + 1)}) for _ in range(2)]
    result = cmp.compare(wide[0], wide[0], wide[1])
    assert list(result.raw) == ["body.sha256"] and result.bounded == ("width",)
    # equal bodies that wide are still equal, and one change in them is still found by field
    same = cmp.compare(wide[0], wide[0], wide[0])
    assert same.raw == {} and same.bounded == ()
    changed = dict(json.loads(wide[0].body), k0="x")
    one = cmp.compare(wide[0], wide[0], js(changed))
    assert list(one.raw) == ["body.k0"] and one.bounded == ()


# encodings -----------------------------------------------------------------------------


def test_gzip_body_equals_plain_body(httpbin, cmp):
    plain = fetch(httpbin, "/get")
    zipped = Response(plain.status, plain.headers + (("Content-Encoding", "gzip"),), gzip.compress(plain.body))
    assert zipped.body != plain.body
    assert cmp.diff(plain, zipped) == {}
    assert cmp.compare(plain, plain, zipped) == Comparison(raw={}, noise={}, identical=False)


@pytest.mark.parametrize("encode", [zlib.compress, lambda b: zlib.compress(b)[2:-4]], ids=["zlib", "raw"])
def test_deflate_both_flavours(cmp, encode):
    body = json.dumps({"a": [1, 2, 3]}).encode()
    r = Response(200, JSON + (("Content-Encoding", "deflate"),), encode(body))
    assert lift(r, cmp.settings.max_body_bytes)["body"] == {"a": [1, 2, 3]}


def test_decompression_bomb_is_capped(cmp):
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    r = Response(200, JSON + (("Content-Encoding", "gzip"),), bomb)
    started = time.process_time()
    diffs = cmp.diff(js({}), r)
    # generous: inflating the 5 MB cap takes milliseconds, 50 MB plus JSON parsing far more
    assert time.process_time() - started < 2.0
    assert diffs["body"].type == "type_changed"
    lifted = lift(r, cmp.settings.max_body_bytes)["body"]
    assert lifted["length"] == len(bomb)
    assert "larger than" in lifted["note"]


def test_small_cap_applies_to_plain_bodies_too():
    cmp = Comparator(CompareSettings(max_body_bytes=10))
    a = js({"key": "a long value"})
    b = js({"key": "a long valuf"})
    diffs = cmp.diff(a, b)
    assert set(diffs) == {"body.sha256"}


def test_corrupt_gzip_is_compared_by_hash(cmp):
    r = Response(200, JSON + (("Content-Encoding", "gzip"),), b"not gzip at all")
    body = lift(r, cmp.settings.max_body_bytes)["body"]
    assert body["length"] == 15 and "could not decode" in body["note"]


def test_unsupported_encoding_is_compared_by_hash(cmp):
    r = Response(200, JSON + (("Content-Encoding", "br"),), b"\x1b\x00")
    assert "br" in lift(r, cmp.settings.max_body_bytes)["body"]["note"]


def test_concatenated_gzip_members():
    body = gzip.compress(b'{"a": ') + gzip.compress(b"1}")
    assert parse_body(body, "application/json", "gzip", 1000) == {"a": 1}


# other content types -------------------------------------------------------------------


def test_binary_bodies_by_length_and_hash(httpbin, cmp):
    png = fetch(httpbin, "/image/png")
    assert cmp.diff(png, png) == {}
    lifted = lift(png, cmp.settings.max_body_bytes)["body"]
    assert lifted["length"] == len(png.body) and len(lifted["sha256"]) == 64
    flipped = Response(png.status, png.headers, png.body[:-1] + bytes([png.body[-1] ^ 1]))
    assert set(cmp.diff(png, flipped)) == {"body.sha256"}
    longer = Response(png.status, png.headers, png.body + b"\0")
    assert set(cmp.diff(png, longer)) == {"body.length", "body.sha256"}


def test_form_bodies(cmp):
    form = (("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),)
    a = Response(200, form, b"name=ann&tag=a&tag=b&empty=")
    b = Response(200, form, b"name=bob&tag=a&tag=b&tag=c&extra=1&empty=")
    assert lift(a, cmp.settings.max_body_bytes)["body"] == {"name": ["ann"], "tag": ["a", "b"], "empty": [""]}
    assert cmp.diff(a, b) == {
        "body.name": Difference("changed", "ann", "bob"),
        "body.tag": Difference("size_changed", 2, 3),
        "body.extra": Difference("extra", None, ["1"], leaves=1),
    }


def test_text_plain_with_charset(cmp):
    latin = (("Content-Type", "text/plain; charset=iso-8859-1"),)
    a = Response(200, latin, "café".encode("latin-1"))
    assert lift(a, cmp.settings.max_body_bytes)["body"] == "café"
    b = Response(200, latin, "cafe".encode("latin-1"))
    assert cmp.diff(a, b) == {"body": Difference("changed", "café", "cafe")}


def test_empty_body_vs_json(cmp):
    diffs = cmp.diff(Response(204, JSON, b""), js({"a": 1}))
    assert diffs["status"] == Difference("changed", 204, 200)
    assert diffs["body"] == Difference("type_changed", "", {"a": 1})


# errors --------------------------------------------------------------------------------


def test_one_side_errored(httpbin, cmp):
    ok = fetch(httpbin, "/get")
    failed = Response(None, (), b"", error="timeout", error_detail="no answer in 5s")
    assert cmp.diff(ok, failed) == {
        "error": Difference("error", None, "timeout"),
        "status": Difference("changed", 200, None),
    }
    assert cmp.diff(failed, ok)["error"] == Difference("error", "timeout", None)
    lifted = lift(failed, cmp.settings.max_body_bytes)
    assert lifted["error"] == "timeout" and lifted["body"] is None and lifted["status"] is None


def test_both_errored_same_kind_is_no_difference(cmp):
    a = Response(None, (), b"", error="refused", error_detail="port 1")
    b = Response(None, (), b"", error="refused", error_detail="port 2")
    assert cmp.diff(a, b) == {}
    assert cmp.compare(a, a, b).raw == {}


def test_both_errored_different_kinds(cmp):
    a = Response(None, (), b"", error="refused")
    b = Response(None, (), b"", error="reset")
    assert cmp.diff(a, b) == {"error": Difference("error", "refused", "reset")}


# bounding ------------------------------------------------------------------------------


def test_long_values_are_truncated(cmp):
    a = js({"blob": "x" * 5000, "list": list(range(1000))})
    b = js({"blob": "y" * 5000})
    diffs = cmp.diff(a, b)
    assert len(diffs["body.blob"].left) < MAX_VALUE_CHARS + 50
    assert diffs["body.blob"].left.endswith("[5000 chars]")
    assert len(diffs["body.list"].left) == 101
    assert_json_safe(diffs)


def test_truncate_value_makes_json_safe():
    out = truncate_value({"b": b"\xffbytes", "f": float("nan"), "t": (1, 2), 3: {1}})
    assert out == {"b": "\ufffdbytes", "f": "nan", "t": [1, 2], "3": "{1}"}
    json.dumps(out, allow_nan=False)


def test_settings_validate():
    with pytest.raises(ValueError, match="max_body_bytes"):
        CompareSettings(max_body_bytes=-1)


def test_json_number_types_are_not_python_equal(cmp):
    # Python says [1] == [1.0] == [True]; JSON does not
    a = js({"n": {"v": [1, 2]}, "flag": [1]})
    b = js({"n": {"v": [1.0, 2]}, "flag": [True]})
    assert cmp.diff(a, b) == {
        "body.n.v": Difference("type_changed", 1, 1.0),
        "body.flag": Difference("type_changed", 1, True),
    }


def test_double_underscore_keys_are_compared(cmp):
    # DeepDiff skips `__` keys by default; GraphQL's `__typename` is a field like any other,
    # on the fast walk (plain JSON) and through DeepDiff (a tuple forces it there).
    a = js({"data": {"__typename": "User", "id": 1}, "__meta": {"v": 1}})
    b = js({"data": {"__typename": "Account", "id": 1}, "__extra": True, "__meta": {"v": 1}})
    assert cmp.diff(a, b) == {
        "body.data.__typename": Difference("changed", "User", "Account"),
        "body.__extra": Difference("extra", None, True),
    }
    from diffproxy import compare

    reports = compare._deepdiff_reports({"__typename": ("User",)}, {"__typename": ("Account",)})
    assert [keys for _, keys, _, _ in reports] == [["__typename", 0]]


def test_key_order_does_not_matter(cmp):
    a = Response(200, JSON, b'{"a": 1, "b": {"c": 2, "d": 3}}')
    b = Response(200, JSON, b'{"b": {"d": 3, "c": 2}, "a": 1}')
    assert cmp.diff(a, b) == {}


def test_one_change_in_a_large_array_is_found(cmp):
    items = [{"id": i, "name": f"n{i}", "tags": ["a", "b"]} for i in range(2000)]
    a = js({"items": items})
    items[1234] = {**items[1234], "name": "changed", "extra": 1}
    b = js({"items": items})
    assert cmp.diff(a, b) == {
        "body.items.name": Difference("changed", "n1234", "changed"),
        "body.items.extra": Difference("extra", None, 1),
    }


def test_many_elements_differing_alike_still_report_every_path(cmp):
    a_items = [{"ts": f"2024-01-01T00:00:{i % 60:02d}", "n": 1} for i in range(500)]
    b_items = [{"ts": f"2024-01-02T00:00:{i % 60:02d}", "n": 1} for i in range(500)]
    b_items[300] = {**b_items[300], "n": "1", "new": {"deep": [1]}}
    diffs = cmp.diff(js({"items": a_items}), js({"items": b_items}))
    assert diffs == {
        "body.items.ts": Difference("changed", "2024-01-01T00:00:00", "2024-01-02T00:00:00"),
        "body.items.n": Difference("type_changed", 1, "1"),
        "body.items.new": Difference("extra", None, {"deep": [1]}, leaves=1),
    }


def _reference(left, right, keys, out):
    """Spec of the body rules as a naive walk, to check the pruned DeepDiff against."""
    if type(left) is type(right) and json.dumps(left) == json.dumps(right):
        return
    path = ".".join(["body"] + [k for k in keys if isinstance(k, str)])
    if type(left) is dict and type(right) is dict:
        for k in left.keys() - right.keys():
            out.setdefault(".".join([path, k]), set()).add("missing")
        for k in right.keys() - left.keys():
            out.setdefault(".".join([path, k]), set()).add("extra")
        for k in left.keys() & right.keys():
            _reference(left[k], right[k], keys + [k], out)
    elif type(left) is list and type(right) is list:
        if len(left) != len(right):
            out.setdefault(path, set()).add("size_changed")
        else:
            for i, (a, b) in enumerate(zip(left, right)):
                _reference(a, b, keys + [i], out)
    else:
        out.setdefault(path, set()).add("changed" if type(left) is type(right) else "type_changed")


def _random_json(rng, depth=0):
    kind = rng.random()
    if depth > 3 or kind < 0.45:
        return rng.choice([0, 1, 1.0, 2.5, True, False, None, "a", "b", "", "1"])
    if kind < 0.75:
        return {rng.choice("abcdef"): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def _mutate(rng, value):
    if isinstance(value, dict) and value and rng.random() < 0.7:
        value = dict(value)
        k = rng.choice(list(value))
        action = rng.random()
        if action < 0.2:
            del value[k]
        elif action < 0.3:
            value[rng.choice("uvwxyz")] = _random_json(rng, 2)
        else:
            value[k] = _mutate(rng, value[k])
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        value = list(value)
        if rng.random() < 0.2:
            value.pop()
        else:
            i = rng.randrange(len(value))
            value[i] = _mutate(rng, value[i])
        return value
    return _random_json(rng, 3)


def test_pruned_deepdiff_matches_naive_walk(cmp):
    import random
    rng = random.Random(20240601)
    checked = 0
    for _ in range(400):
        left = {"root": _random_json(rng)}
        right = _mutate(rng, left)
        expected: dict[str, set] = {}
        _reference(left, right, [], expected)
        diffs = cmp.diff(js(left), js(right))
        assert set(diffs) == set(expected), (left, right)
        for path, d in diffs.items():
            assert d.type in expected[path], (left, right, path)
        assert cmp.diff(js(left), js(left)) == {}
        checked += bool(expected)
    assert checked > 200  # the generator really produced differences


def test_json_with_byte_order_mark(cmp):
    assert lift(Response(200, JSON, b'\xef\xbb\xbf{"a": 1}'), cmp.settings.max_body_bytes)["body"] == {"a": 1}


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=utf-16", "text/html; charset=rot13",
    "text/plain; charset=nonsense", "application/x-www-form-urlencoded", "", ";;;",
    "application/octet-stream", "application/problem+json",
])
def test_garbage_never_raises(cmp, content_type):
    import random
    rng = random.Random(content_type)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(64))) for _ in range(30)]
    samples += [b"{", b"[1,", b"%%%=&&=", b"\x1f\x8b\x08\x00", b"\x00" * 10, b"a=" + b"&" * 20000]
    for encoding in ("", "gzip", "deflate", "identity, gzip"):
        headers = (("Content-Type", content_type), ("Content-Encoding", encoding))
        responses = [Response(200, headers, body) for body in samples]
        for a, b in zip(responses, responses[1:]):
            result = cmp.compare(a, a, b)
            assert_json_safe(result.raw)
            json.dumps(lift(b, cmp.settings.max_body_bytes), allow_nan=False)


# Every body kind (issue 12) ---------------------------------------------------------------

import brotlicffi  # noqa: E402

from diffproxy.compare import failed  # noqa: E402
from diffproxy.lift import LiftSettings, Lines, Records, inspect  # noqa: E402

NDJSON = (("Content-Type", "application/x-ndjson"),)
SSE = (("Content-Type", "text/event-stream"),)
TEXT = (("Content-Type", "text/plain"),)


def test_brotli_bodies_are_decoded_and_compared_by_field(cmp):
    br = (("Content-Type", "application/json"), ("Content-Encoding", "br"))
    a = Response(200, br, brotlicffi.compress(json.dumps({"v": 1, "same": "x"}).encode()))
    b = Response(200, br, brotlicffi.compress(json.dumps({"v": 2, "same": "x"}).encode()))
    assert cmp.diff(a, b) == {"body.v": Difference("changed", 1, 2)}
    # the same JSON, compressed by one side only: no difference at all
    plain = Response(200, JSON, json.dumps({"v": 1, "same": "x"}).encode())
    assert cmp.diff(a, plain) == {}


def test_brotli_bomb_is_refused_like_gzip():
    bomb = brotlicffi.compress(b"\0" * (20 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "br"))
    fault, decoded = inspect(headers, bomb, 1024 * 1024)
    assert fault is not None and fault[0] == "too_large" and decoded is None
    digest = parse_body(bomb, "application/json", "br", 1024 * 1024)
    assert "larger than" in digest["note"]
    broken = parse_body(b"not brotli at all", "application/json", "br", 1024)
    assert "could not decode br" in broken["note"]


def test_ndjson_is_compared_record_by_record(cmp):
    a = Response(200, NDJSON, b'{"i": 0, "n": 0}\n{"i": 1, "n": 1}\n{"i": 2, "n": 2}\n')
    b = Response(200, NDJSON, b'{"i": 0, "n": 0}\n{"i": 1, "n": 99}\n{"i": 2, "n": 2}\n')
    assert isinstance(parse_body(a.body, "application/x-ndjson", "", 1 << 20), Records)
    assert cmp.diff(a, b) == {"body[1].n": Difference("changed", 1, 99)}


def test_json_declared_body_of_one_value_per_line_is_records(httpbin, cmp):
    """httpbin's /stream/n answers `application/json` with one JSON object per line."""
    streamed = fetch(httpbin, "/stream/3")
    assert streamed.body.count(b"\n") == 3
    parsed = parse_body(streamed.body, "application/json", "", 1 << 20)
    assert isinstance(parsed, Records) and [r["id"] for r in parsed] == [0, 1, 2]
    changed = Response(200, streamed.headers, streamed.body.replace(b'"id": 1', b'"id": 7'))
    assert cmp.diff(streamed, changed) == {"body[1].id": Difference("changed", 1, 7)}
    # not JSON on every line: stays one text value, as before
    assert parse_body(b'{"a": 1}\n{"a": ', "application/json", "", 1 << 20) == '{"a": 1}\n{"a": '


def test_inserted_record_is_one_extra_not_every_later_record(cmp):
    rows = [{"i": i} for i in range(6)]
    a = Response(200, NDJSON, b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    b = Response(200, NDJSON, b"".join(json.dumps(r).encode() + b"\n"
                                       for r in rows[:2] + [{"i": "new"}] + rows[2:]))
    diffs = cmp.diff(a, b)
    assert list(diffs) == ["body[2]"]
    assert diffs["body[2]"].type == "extra" and diffs["body[2]"].right == {"i": "new"}


def test_json_seq_record_separators():
    value = parse_body(b'\x1e{"a": 1}\n\x1e{"a": 2}\n', "application/json-seq", "", 1 << 20)
    assert value == [{"a": 1}, {"a": 2}] and isinstance(value, Records)


def test_event_stream_events_with_json_data(cmp):
    a = Response(200, SSE, b': keep-alive\nevent: tick\nid: 1\ndata: {"n": 1}\n\n'
                           b'event: tick\ndata: {"n": 2, "tag": "v1"}\n\n')
    b = Response(200, SSE, b'event: tick\nid: 1\ndata: {"n": 1}\n\n'
                           b'event: tick\ndata: {"n": 2, "tag": "v2"}\n\n')
    assert parse_body(a.body, "text/event-stream", "", 1 << 20)[0] == {
        "event": "tick", "id": "1", "data": {"n": 1}}
    assert cmp.diff(a, b) == {"body[1].data.tag": Difference("changed", "v1", "v2")}


def test_text_is_compared_line_by_line(cmp):
    a = Response(200, TEXT, b"alpha\nbeta\ngamma\ndelta\n")
    b = Response(200, TEXT, b"alpha\nbeta\ninserted\ngamma\nDELTA\n")
    assert isinstance(parse_body(a.body, "text/plain", "", 1 << 20), Lines)
    diffs = cmp.diff(a, b)
    assert diffs == {"body[2]": Difference("extra", None, "inserted"),
                     "body[3]": Difference("changed", "delta", "DELTA")}
    # a one-line text body keeps the whole-body path
    assert list(cmp.diff(Response(200, TEXT, b"one"), Response(200, TEXT, b"two"))) == ["body"]


def test_body_without_content_type_rules():
    body = b'{"a": 1}'
    assert parse_body(body, "", "", 1 << 20) == {"a": 1}
    assert parse_body(body, "", "", 1 << 20, settings=LiftSettings(untyped_body="text")) == '{"a": 1}'
    assert parse_body(body, "", "", 1 << 20, settings=LiftSettings(untyped_body="ignore")) == ""
    ignoring = Comparator(CompareSettings(lift=LiftSettings(untyped_body="ignore")))
    assert ignoring.diff(Response(200, (), b"x"), Response(200, (), b"y")) == {}


def test_json_inside_strings_behind_a_flag():
    a = js({"payload": json.dumps({"user": "ann", "n": 1})})
    b = js({"payload": json.dumps({"user": "ann", "n": 2})})
    assert list(Comparator(CompareSettings()).diff(a, b)) == ["body.payload"]
    lifting = Comparator(CompareSettings(lift=LiftSettings(json_in_strings=True)))
    assert lifting.diff(a, b) == {"body.payload.n": Difference("changed", 1, 2)}


def test_repeated_header_values_joined_or_sorted():
    a = Response(200, (("Vary", "Accept"), ("Vary", "Origin")), b"")
    b = Response(200, (("Vary", "Origin"), ("Vary", "Accept")), b"")
    assert list(Comparator(CompareSettings()).diff(a, b)) == ["headers.vary"]
    assert Comparator(CompareSettings(header_values="sorted")).diff(a, b) == {}


def test_validators_compared_only_when_the_body_differs(cmp):
    a = Response(200, (*TEXT, ("ETag", '"a"'), ("Last-Modified", "Mon")), b"same")
    b = Response(200, (*TEXT, ("ETag", '"b"'), ("Last-Modified", "Tue")), b"same")
    assert cmp.diff(a, b) == {}
    c = Response(200, (*TEXT, ("ETag", '"b"')), b"changed")
    assert set(cmp.diff(a, c)) == {"headers.etag", "headers.last-modified", "body"}


def test_validators_dropped_when_the_body_differs_only_in_ignored_fields():
    # httpbin's /cache: a new ETag each time, a body echoing each target's own Host
    a = Response(200, (("Content-Type", "application/json"), ("ETag", "a1")), b'{"h": "a", "v": 1}')
    b = Response(200, (("Content-Type", "application/json"), ("ETag", "b2")), b'{"h": "b", "v": 1}')
    ignoring = Comparator(CompareSettings(ignore_fields=("body.h",)))
    assert ignoring.diff(a, b) == {}
    c = Response(200, b.headers, b'{"h": "b", "v": 2}')
    assert set(ignoring.diff(a, c)) == {"headers.etag", "body.v"}


# One change, one line ----------------------------------------------------------------------

INNER = {"a": 1, "b": "two", "c": [3, 4], "d": None, "e": {"f": 6}}


def test_dropped_wrapper_is_one_moved_line(cmp):
    diffs = cmp.diff(js({"data": INNER, "ok": True}), js({**INNER, "ok": True}))
    assert diffs == {"body.data": Difference("moved", "body.data.*", "body.*", leaves=6, to="body")}


def test_added_wrapper_is_one_moved_line_and_changed_values_stay_visible(cmp):
    diffs = cmp.diff(js({**INNER, "ok": True}), js({"data": {**INNER, "a": 100}, "ok": True}))
    assert diffs == {"body.data": Difference("moved", "body.*", "body.data.*", leaves=6,
                                             to="body.data"),
                     "body.data.a": Difference("changed", 1, 100)}


def test_removed_subtree_is_one_line_with_its_leaves(cmp):
    diffs = cmp.diff(js({"keep": 1, "gone": INNER}), js({"keep": 1}))
    assert diffs == {"body.gone": Difference("missing", INNER, None, leaves=6)}


def test_unrelated_removal_and_addition_are_not_a_move(cmp):
    diffs = cmp.diff(js({"data": {"a": 1, "b": 2}}), js({"a": 5, "b": 6}))
    assert {d.type for d in diffs.values()} == {"missing", "extra"}


# Who failed --------------------------------------------------------------------------------


def test_failed_means_no_answer_or_5xx():
    assert failed(Response(None, (), b"", error="reset"))
    assert failed(Response(503, (), b""))
    assert not failed(Response(404, (), b""))


def test_primary_failure_judges_the_candidate_against_the_secondary(cmp):
    ok, other = js({"ok": True}), js({"ok": False})
    down = Response(None, (), b"", error="reset")
    result = cmp.compare(down, ok, ok)
    assert (result.raw, result.failed, result.baseline_failed) == ({}, ("primary",), True)
    assert set(result.noise) == {"error", "status"}  # the masters' disagreement is noise
    changed = cmp.compare(down, ok, other)
    assert changed.raw == {"body.ok": Difference("changed", True, False)}  # still signal
    both = cmp.compare(Response(500, JSON, b"{}"), Response(502, JSON, b"{}"), ok)
    assert (both.raw, both.failed, both.baseline_failed) == ({}, ("primary", "secondary"), True)


def test_candidate_failure_is_the_candidates_own(cmp):
    ok = js({"ok": True})
    result = cmp.compare(ok, ok, Response(500, JSON, b'{"error": 1}'))
    assert result.failed == ("candidate",) and not result.baseline_failed
    assert result.raw["status"] == Difference("changed", 200, 500)
    everyone = Response(None, (), b"", error="refused")
    assert cmp.compare(everyone, everyone, everyone).failed == ()


# The structural fast path ----------------------------------------------------------------


def _plain_value(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice([1, 2, 1.0, 2.5, True, False, None, "x", "y", "", 0, -0.0, 10**30])
    if r < 0.7:
        return {k: _plain_value(rng, depth + 1)
                for k in rng.sample(["a", "b", "c", "__x", "id", "name"], rng.randint(0, 4))}
    return [_plain_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def _plain_mutated(rng, value, depth=0):
    if rng.random() < 0.15:
        return _plain_value(rng, depth)
    if type(value) is dict:
        out = {}
        for k, v in value.items():
            roll = rng.random()
            if roll < 0.3:
                out[k] = _plain_mutated(rng, v, depth + 1)
            elif roll > 0.9:
                continue  # removed
            else:
                out[k] = v
        if rng.random() < 0.2:
            out[rng.choice(["a", "b", "c", "__x", "id", "name"])] = _plain_value(rng, depth + 1)
        return out
    if type(value) is list:
        out = [_plain_mutated(rng, v, depth + 1) if rng.random() < 0.4 else v for v in value]
        if rng.random() < 0.1:
            out.append(_plain_value(rng, depth + 1))
        return out
    return value


def test_fast_path_reports_exactly_what_deepdiff_reports():
    """The walk that replaces DeepDiff for plain JSON must give the same differences, in the
    same order, as DeepDiff on the same pruned trees: random bodies with JSON's traps
    (1 vs 1.0 vs true, null, `__` keys, nested lists, removed and added keys)."""
    import random

    from diffproxy import compare

    rng = random.Random(17)
    compared = 0
    for _ in range(4000):
        left = _plain_value(rng)
        right = _plain_mutated(rng, left)
        if type(left) not in (dict, list) or type(right) is not type(left):
            continue
        pl, pr = compare._prune(left, right, [], [])
        fast = compare._plain_reports(pl, pr)
        assert fast is not None, (pl, pr)  # nothing but JSON: never left to DeepDiff
        slow = compare._deepdiff_reports(pl, pr)

        def first_per_path(reports):
            out = {}
            for kind, keys, a, b in reports:
                out.setdefault(compare._body_path(keys), (kind, repr(truncate_value(a)),
                                                          repr(truncate_value(b))))
            return list(out.items())

        assert first_per_path(fast) == first_per_path(slow), (left, right)
        compared += 1
    assert compared > 1000


def test_other_types_are_left_to_deepdiff():
    from diffproxy import compare

    assert compare._plain_reports({"a": (1, 2)}, {"a": (1, 3)}) is None
    assert compare._plain_reports({1: "x"}, {1: "y"}) is None
    assert compare._plain_reports([1, 2], [2, 1]) is None  # DeepDiff aligns scalars itself
    digest = parse_body(b"\x00\x01", "application/octet-stream", "", 1000)
    other = parse_body(b"\x00\x02", "application/octet-stream", "", 1000)
    assert compare._plain_reports(digest, other) is None
    # ... and still reported as before, through DeepDiff
    d = Comparator(CompareSettings()).diff(Response(200, (("Content-Type", "application/octet-stream"),), b"\x00\x01"),
                                          Response(200, (("Content-Type", "application/octet-stream"),), b"\x00\x02"))
    assert d["body.sha256"].type == "changed"


def test_depth_bound_holds_when_brackets_are_few_or_many():
    deep = {"a": 1}
    for _ in range(MAX_COMPARE_DEPTH + 5):
        deep = {"k": deep}
    body = parse_body(json.dumps(deep).encode(), "application/json", "", 10**6)
    assert getattr(body, "bounded", None) == "depth"
    shallow = {"items": [{"n": i} for i in range(MAX_COMPARE_DEPTH * 2)]}  # many `{`, depth 3
    assert parse_body(json.dumps(shallow).encode(), "application/json", "", 10**6) == shallow
