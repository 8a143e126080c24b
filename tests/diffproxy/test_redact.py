import copy
import json

import pytest
from httpbin import app as httpbin_app
from werkzeug.test import Client

from diffproxy.compare import Comparator, CompareSettings
from diffproxy.lift import lift
from diffproxy.model import Clipped, Difference, Response
from diffproxy.redact import DEFAULT_REDACTED, REDACTED, Redactor


@pytest.fixture(scope="module")
def httpbin():
    return httpbin_app.test_client()


def test_headers_are_masked_case_insensitively():
    r = Redactor(extra_headers=["X-Secret"])
    out = r.headers([("AUTHORIZATION", "Bearer abc"), ("Cookie", "s=1"), ("x-secret", "v"),
                     ("Accept", "*/*"), ("Set-Cookie", "id=2")])
    assert out == [("AUTHORIZATION", REDACTED), ("Cookie", REDACTED), ("x-secret", REDACTED),
                   ("Accept", "*/*"), ("Set-Cookie", REDACTED)]
    assert "proxy-authorization" in DEFAULT_REDACTED


def test_lifted_httpbin_headers_echo():
    # without a cookie jar so the Cookie header reaches httpbin as sent
    resp = Client(httpbin_app, use_cookies=False).get(
        "/headers", headers={"Authorization": "Bearer s3cret", "Cookie": "sid=abc", "X-Keep": "visible"})
    response = Response(resp.status_code, tuple(resp.headers.items()) + (("Set-Cookie", "sid=abc"),),
                        resp.data)
    lifted = lift(response, CompareSettings().max_body_bytes)
    before = copy.deepcopy(lifted)
    out = Redactor().lifted(lifted)
    assert lifted == before  # input untouched
    assert out["body"]["headers"]["Authorization"] == REDACTED
    assert out["body"]["headers"]["Cookie"] == REDACTED
    assert out["body"]["headers"]["X-Keep"] == "visible"
    assert out["headers"]["set-cookie"] == REDACTED
    dumped = json.dumps(out)
    assert "s3cret" not in dumped and "sid=abc" not in dumped


def test_lifted_configured_fields_at_any_depth():
    r = Redactor(fields=["SSN"])
    lifted = {"status": 200, "headers": {}, "error": None,
              "body": {"users": [{"name": "a", "ssn": "123"}, {"name": "b", "Ssn": "456"}],
                       "password": "hunter2"}}
    out = r.lifted(lifted)
    assert out["body"]["users"] == [{"name": "a", "ssn": REDACTED}, {"name": "b", "Ssn": REDACTED}]
    assert out["body"]["password"] == REDACTED  # a default field name
    assert lifted["body"]["users"][0]["ssn"] == "123"


def test_lifted_cookies_endpoint(httpbin):
    httpbin.set_cookie("session", "topsecret")
    resp = httpbin.get("/cookies")
    lifted = lift(Response(resp.status_code, tuple(resp.headers.items()), resp.data), CompareSettings().max_body_bytes)
    assert "topsecret" in json.dumps(lifted)
    assert "topsecret" not in json.dumps(Redactor().lifted(lifted))


def test_lifted_form_bodies():
    lifted = {"status": 200, "headers": {}, "body": {"token": ["abc"], "q": ["x"]}, "error": None}
    assert Redactor(fields=["token"]).lifted(lifted)["body"] == {"token": REDACTED, "q": ["x"]}


def test_lifted_url_echo_and_request_uri(httpbin):
    resp = httpbin.get("/get?token=abc123&page=2")
    lifted = lift(Response(resp.status_code, tuple(resp.headers.items()), resp.data), CompareSettings().max_body_bytes)
    lifted["uri"] = "/get?token=abc123&page=2"
    out = Redactor(fields=["token"]).lifted(lifted)
    assert out["body"]["args"] == {"token": REDACTED, "page": "2"}
    assert out["body"]["url"].endswith(f"/get?token={REDACTED}&page=2")
    assert out["uri"] == f"/get?token={REDACTED}&page=2"


def test_text_masks_query_strings_header_lines_and_json_text():
    r = Redactor(fields=["token"])
    assert r.text("/a?token=abc&x=1") == f"/a?token={REDACTED}&x=1"
    assert r.text("/a?TOKEN=abc") == f"/a?TOKEN={REDACTED}"
    assert r.text("/a?mytoken=abc") == "/a?mytoken=abc"  # other names untouched
    assert r.text("Authorization: Bearer x\nAccept: y") == f"Authorization: {REDACTED}\nAccept: y"
    assert r.text('{"Authorization": "Bearer \\"x\\"", "a": 1}') == f'{{"Authorization": "{REDACTED}", "a": 1}}'
    assert r.text("") == ""


def test_differences_masked_by_path_segment():
    r = Redactor(fields=["token"])
    diffs = {
        "body.headers.Authorization": Difference("changed", "Bearer a", "Bearer b"),
        "headers.set-cookie": Difference("extra", None, "id=1"),
        "body.cookies.session": Difference("changed", "a", "b"),
        "body.auth.token": Difference("missing", "abc", None),
        "body.url": Difference("changed", "/x?token=a", "/x?token=b"),
        "body.headers.Host": Difference("changed", "a", "b"),
        "body.items": Difference("size_changed", 1, 2),
        "body.data": Difference("extra", None, {"password": "p", "ok": 1}),
    }
    out = r.differences(diffs)
    assert out["body.headers.Authorization"] == Difference("changed", REDACTED, REDACTED)
    assert out["headers.set-cookie"] == Difference("extra", None, REDACTED)
    assert out["body.cookies.session"] == Difference("changed", REDACTED, REDACTED)
    assert out["body.auth.token"] == Difference("missing", REDACTED, None)
    assert out["body.url"] == Difference("changed", f"/x?token={REDACTED}", f"/x?token={REDACTED}")
    assert out["body.headers.Host"] == diffs["body.headers.Host"]
    assert out["body.items"] == diffs["body.items"]
    assert out["body.data"].right == {"password": REDACTED, "ok": 1}
    assert diffs["body.data"].right == {"password": "p", "ok": 1}  # input untouched


def test_end_to_end_compare_then_redact(httpbin):
    a = httpbin.get("/headers", headers={"Authorization": "Bearer one"})
    b = httpbin.get("/headers", headers={"Authorization": "Bearer two"})
    cmp = Comparator(CompareSettings())
    diffs = cmp.diff(*(Response(x.status_code, tuple(x.headers.items()), x.data) for x in (a, b)))
    assert set(diffs) == {"body.headers.Authorization"}
    masked = Redactor().differences(diffs)
    assert "Bearer" not in json.dumps({p: [d.left, d.right] for p, d in masked.items()})


def test_fast_path_skips_only_strings_without_any_secret_name():
    r = Redactor(fields=("token",))
    plain = "/items?page=2&sort=name"
    assert r.text(plain) is plain  # no secret name anywhere: returned untouched
    assert r.text("/x?TOKEN=abc&page=2") == "/x?TOKEN=<redacted>&page=2"
    assert r.text("Authorization: Bearer abc") == "Authorization: <redacted>"
    assert r.text('{"Cookie": "a=b"}') == '{"Cookie": "<redacted>"}'


def test_a_changed_secret_is_still_a_difference_shown_masked(httpbin):
    # primary and candidate echo different tokens: compared on real values, stored masked
    a = httpbin.get("/bearer", headers={"Authorization": "Bearer first-token-1234"})
    b = httpbin.get("/bearer", headers={"Authorization": "Bearer other-token-5678"})
    diffs = Comparator(CompareSettings()).diff(
        *(Response(x.status_code, tuple(x.headers.items()), x.data) for x in (a, b)))
    assert set(diffs) == {"body.token"}
    r = Redactor().for_request((("Authorization", "Bearer first-token-1234"),), "/bearer", b"")
    assert r.differences(diffs)["body.token"] == Difference("changed", REDACTED, REDACTED)


def test_values_of_a_request_are_masked_by_value():
    import base64
    basic = base64.b64encode(b"alice:hunter2").decode()
    r = Redactor().for_request(
        (("Authorization", f"Basic {basic}"), ("Cookie", "sid=cookie-value-1; theme=x"),
         ("X-Session-Id", "sess-abcdef")),
        "/basic-auth/alice/hunter2?access_token=abc'SECRET&page=2",
        b'{"password": 987654321}')
    assert r.path("/basic-auth/alice/hunter2?access_token=abc'SECRET&page=2") == \
        f"/basic-auth/{REDACTED}/{REDACTED}?access_token={REDACTED}&page=2"
    assert r.value({"user": "alice", "n": 987654321, "text": "got cookie-value-1 and sess-abcdef"}) \
        == {"user": REDACTED, "n": REDACTED, "text": f"got {REDACTED} and {REDACTED}"}
    # a value the comparison cut (`Clipped`) is redacted whole, then cut: nothing of a
    # secret straddling the cut is left, not even a prefix too short to search for
    for at in range(11, 20):
        cut = r.text(Clipped("x" * 10 + "cookie-value-1" + "y" * 5000, at))
        assert type(cut) is str and cut.startswith("x" * 10) and "co" not in cut, cut
    assert r.text(Clipped("x" * 10 + "cookie-value-1" + "y" * 5000, 30)) == \
        "x" * 10 + REDACTED + "y" * 10 + "... [5024 chars]"
    # without secrets of its own, a request's redactor is the shared one
    base = Redactor()
    assert base.for_request((("Accept", "*/*"),), "/get?page=2", b"") is base


def test_a_free_text_value_cut_by_the_comparison_is_redacted_before_the_cut():
    # `"token": "abc` without its closing quote is what the name rule saw when the cut
    # came first: the value's start was kept
    secret = "zq" + "5" * 30
    text = "a" * 988 + f'"token": "{secret}" end'
    left, right = (Response(200, (("Content-Type", "text/plain"),), t.encode())
                   for t in (text, text.replace("end", "END")))
    diffs = Comparator(CompareSettings()).diff(left, right)
    assert isinstance(diffs["body"].left, Clipped)  # the comparison cut it...
    import pickle
    again = pickle.loads(pickle.dumps(diffs["body"].left))  # (as -workers send results)
    assert type(again) is Clipped and again.whole == diffs["body"].left.whole
    shown = Redactor().differences(diffs)["body"]
    assert type(shown.left) is str and "zq" not in shown.left and "zq" not in shown.right
    # ...after redaction: cut first, "zq" would be left at the end
    assert shown.left == "a" * 988 + '"token": "<r... [1035 chars]', shown.left


def test_a_cut_value_is_redacted_in_a_window_past_the_cut():
    from diffproxy.redact import CUT_WINDOW
    # a secret-named JSON string longer than the window is masked to the window's end
    long_value = "k" * (2 * CUT_WINDOW)
    text = "a" * 990 + f'{{"private_key": "{long_value}"}}' + "b" * 10_000
    shown = Redactor().text(Clipped(text, 1000))
    assert "k" not in shown and shown.endswith(f"... [{len(text)} chars]"), shown[-60:]
    # a request's secret longer than the window starting before the cut: masked too
    secret = "s" * (CUT_WINDOW + 500)
    r = Redactor().for_request((("X-Token", secret),), "/x", b"")
    assert "s" not in r.text(Clipped("a" * 995 + secret + "b" * 10_000, 1000)).replace("chars", "")


def test_name_rules_headers_words_json_numbers_and_jwts():
    r = Redactor()
    assert r.headers([("Api-Key", "k1"), ("X-Token", "t"), ("X-Amz-Signature", "s"),
                      ("Keep-Alive", "5"), ("Accept", "a")]) == [
        ("Api-Key", REDACTED), ("X-Token", REDACTED), ("X-Amz-Signature", REDACTED),
        ("Keep-Alive", "5"), ("Accept", "a")]
    assert r.text('{"password": 987654321, "n": 1}') == f'{{"password": "{REDACTED}", "n": 1}}'
    assert r.text("/x?access_token=abc'SECRET&y=1") == f"/x?access_token={REDACTED}&y=1"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"
    assert r.text(f"seen {jwt} here") == f"seen {REDACTED} here"
    assert r.value({"accessToken": "a", "private-key": "b", "ok": "c"}) == {
        "accessToken": REDACTED, "private-key": REDACTED, "ok": "c"}


def test_secrets_the_proxy_adds_to_targets_are_masked_by_value_in_every_request():
    r = Redactor(target_headers=(("X-Env", "canary"), ("Authorization", "Bearer added-token-1"),
                                 ("X-Api-Key", "added-key-22")))
    plain = r.for_request((("Accept", "*/*"),), "/get", b"")
    assert plain.value({"seen": "added-token-1 and added-key-22", "env": "canary"}) == {
        "seen": f"{REDACTED} and {REDACTED}", "env": "canary"}  # X-Env is no secret
    own = r.for_request((("Cookie", "sid=caller-cookie-3"),), "/get", b"")
    assert own.text("added-key-22 caller-cookie-3") == f"{REDACTED} {REDACTED}"
