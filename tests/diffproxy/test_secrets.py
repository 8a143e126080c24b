"""Secrets never reach the store, the API or the console; destructive calls are guarded;
every API answer is JSON with nosniff.

The candidate runs under another base path (`/anything`), so every answer differs from the
primary's and every request is kept as an example with its request and three responses:
the strongest test for redaction. httpbin echoes what it gets (/headers, /cookies,
/anything) and sets cookies (/cookies/set), so secrets arrive in bodies and Set-Cookie too.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from urllib.parse import quote

import httpx
import pytest

from diffproxy.console import STATIC_DIR
from tests.support import diffapi
from tests.support.diffapi import enc, get_json

from .conftest import start_proxy

TOKEN = f"admin-{uuid.uuid4().hex}"


def _secret(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex}"


SECRETS = {name: _secret(name) for name in (
    "authorization", "proxy", "cookie", "tenant", "card", "setcookie", "query")}


@pytest.fixture(scope="module")
def secret_proxy(backends, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("secrets")
    proxy = start_proxy(backends, tmp / "secrets.sqlite", log_dir=tmp,
                        candidate=f"{backends.candidate.url}/anything",
                        extra=["-allowHttpSideEffects", "-redact.headers=X-Tenant-Key",
                               "-redact.fields=sessionid,card_number", f"-admin.token={TOKEN}",
                               "-samples.first=50", "-samples.latest=50"])
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def traffic(secret_proxy):
    """Send every secret-bearing request once; returns the request ids."""
    s = SECRETS
    headers = {"Authorization": f"Bearer {s['authorization']}",
               "Proxy-Authorization": f"Secret {s['proxy']}",
               "Cookie": f"sessionid={s['cookie']}; theme=dark",
               "X-Tenant-Key": s["tenant"]}
    ids = []
    with httpx.Client(timeout=10.0, base_url=secret_proxy.proxy_url) as client:
        for r in (client.get("/headers", headers=headers),
                  client.get("/cookies", headers=headers),
                  client.post("/post", headers=headers,
                              json={"card_number": s["card"], "amount": 5}),
                  client.get(f"/cookies/set?sessionid={s['setcookie']}"),
                  client.get(f"/get?sessionid={s['query']}&page=2")):
            assert r.status_code == 200 or r.status_code == 302, r.text
            ids.append(r.headers["X-Diffproxy-Request-Id"])
        assert s["setcookie"] in client.get(
            f"/cookies/set?sessionid={s['setcookie']}").headers["set-cookie"]
    diffapi.wait_idle(secret_proxy.admin_url)
    return ids


def _forms(secret: str) -> list[bytes]:
    """The secret as it could appear anywhere: raw, URL-encoded, JSON-escaped, base64."""
    return [secret.encode(), quote(secret).encode(), json.dumps(secret)[1:-1].encode(),
            base64.b64encode(secret.encode())[:16]]


def _assert_no_secrets(blob: bytes, where: str) -> None:
    for name, secret in {**SECRETS, "token": TOKEN}.items():
        for form in _forms(secret):
            assert form not in blob, f"{name} secret found in {where}"


def _every_api_answer(api_url: str, ids: list[str]) -> list[bytes]:
    bodies = []

    def get(path: str) -> dict:
        status, _, body = diffapi.fetch(f"{api_url}/api/1/{path}")
        assert status == 200, (path, body[:300])
        bodies.append(body)
        return json.loads(body)

    for path in ("endpoints", "overview", "info"):
        get(path)
    for endpoint in get("endpoints"):
        for path in get(f"endpoints/{enc(endpoint)}/stats?exclude_noise=false")["fields"]:
            get(f"endpoints/{enc(endpoint)}/stats?exclude_noise=true")
            base = f"endpoints/{enc(endpoint)}/fields/{enc(path)}/results"
            kept = get(base + "?include_request=true")["requests"]
            get(base)
            for i, result in enumerate(kept):
                get(f"{base}/{i}")
                get(f"requests/{result['id']}")
    for n, request_id in enumerate(ids):
        assert diffapi.fetch(f"{api_url}/api/1/requests/{request_id}")[0] == 200, f"request {n} not kept"
        get(f"requests/{request_id}")
    return bodies


def test_secrets_never_stored_or_shown(secret_proxy, traffic):
    proxy = secret_proxy
    bodies = _every_api_answer(proxy.api_url, traffic)
    assert len(bodies) > 30, "too few answers to prove anything"
    _assert_no_secrets(b"\n".join(bodies), "the API")

    docs = {i: get_json(proxy.api_url, f"requests/{i}") for i in traffic}  # all kept
    echoed = docs[traffic[0]]
    assert echoed["request"]["headers"]["authorization"] == "<redacted>"
    assert echoed["request"]["headers"]["proxy-authorization"] == "<redacted>"
    assert echoed["request"]["headers"]["x-tenant-key"] == "<redacted>"
    assert echoed["primary"]["body"]["headers"]["X-Tenant-Key"] == "<redacted>"
    assert docs[traffic[1]]["primary"]["body"]["cookies"] == "<redacted>"
    assert docs[traffic[2]]["request"]["body"]["card_number"] == "<redacted>"
    assert docs[traffic[2]]["primary"]["body"]["json"]["card_number"] == "<redacted>"
    assert docs[traffic[3]]["primary"]["status"] == 302
    assert docs[traffic[3]]["primary"]["headers"]["set-cookie"] == "<redacted>"
    assert docs[traffic[4]]["uri"] == "/get?sessionid=<redacted>&page=2"

    console = [diffapi.fetch(proxy.api_url + "/")[2]]
    console += [diffapi.fetch(f"{proxy.api_url}/static/{p.name}")[2]
                for p in STATIC_DIR.iterdir() if p.is_file()]
    assert all(console) and b"<html" in console[0].lower()
    _assert_no_secrets(b"\n".join(console), "the console")

    store = proxy.flag("store.path")
    files = [p for p in (store, store + "-wal", store + "-shm", store + "-journal")
             if os.path.exists(p)]
    blob = b"".join(open(p, "rb").read() for p in files)
    assert traffic[0].encode() in blob  # the examples are in the file...
    _assert_no_secrets(blob, f"the store ({', '.join(files)})")  # ...the secrets are not
    _assert_no_secrets(proxy.log_path.read_bytes(), "the proxy's log")


# Secrets by value: echoed back by the targets under names the name rules do not know.
VALUES = {name: _secret(name) for name in (
    "bearer", "basic_user", "basic_password", "query_token", "query_key", "quoted",
    "json_token", "private_key", "api_key", "x_token", "cut")}
VALUES["number"] = str(900000000 + uuid.uuid4().int % 99999999)
VALUES["jwt"] = ("eyJhbGciOiJIUzI1NiJ9." + base64.urlsafe_b64encode(
    json.dumps({"sub": uuid.uuid4().hex}).encode()).decode().rstrip("=") + ".c2lnbmF0dXJl")


@pytest.fixture(scope="module")
def value_traffic(secret_proxy):
    v = VALUES
    basic = base64.b64encode(f"{v['basic_user']}:{v['basic_password']}".encode()).decode()
    pad = 64 * 1024 - 40  # the cut secret straddles the 64 KiB stored-body limit
    ids = []
    with httpx.Client(timeout=10.0, base_url=secret_proxy.proxy_url) as client:
        for r in (
            client.get("/bearer", headers={"Authorization": f"Bearer {v['bearer']}"}),
            client.get(f"/basic-auth/{v['basic_user']}/{v['basic_password']}",
                       headers={"Authorization": f"Basic {basic}"}),
            client.get(f"/get?token={v['query_token']}&key={v['query_key']}&page=2"),
            client.get(f"/get?access_token=abc'{v['quoted']}&page=3"),
            client.post("/post", json={"token": v["json_token"],
                                           "nested": {"private_key": v["private_key"]}}),
            client.get("/headers", headers={"Api-Key": v["api_key"], "X-Token": v["x_token"],
                                            "X-Forwarded-Jwt": v["jwt"]}),
            client.post("/post", content=f'{{"password": {v["number"]}}}',
                        headers={"Content-Type": "text/plain"}),
            client.post("/post", json={"pad": "a" * pad, "token": v["cut"]}),
        ):
            assert r.status_code == 200, (r.request.url, r.text[:200])
            ids.append(r.headers["X-Diffproxy-Request-Id"])
    diffapi.wait_idle(secret_proxy.admin_url)
    return ids


def test_secrets_are_masked_by_value_wherever_they_reappear(secret_proxy, value_traffic):
    proxy = secret_proxy
    bodies = _every_api_answer(proxy.api_url, value_traffic)
    blobs = {"the API": b"\n".join(bodies)}
    console = [diffapi.fetch(proxy.api_url + "/")[2]]
    console += [diffapi.fetch(f"{proxy.api_url}/static/{p.name}")[2]
                for p in STATIC_DIR.iterdir() if p.is_file()]
    blobs["the console"] = b"\n".join(console)
    store = proxy.flag("store.path")
    files = [p for p in (store, store + "-wal", store + "-shm") if os.path.exists(p)]
    blobs["the store"] = b"".join(open(p, "rb").read() for p in files)
    blobs["the log"] = proxy.log_path.read_bytes()
    assert value_traffic[1].encode() in blobs["the store"]
    for where, blob in blobs.items():
        for name, secret in VALUES.items():
            for form in _forms(secret):
                assert form not in blob, f"{name} secret ({form[:20]!r}) found in {where}"
        # cut by the stored-body limit: not even its first half is kept
        assert VALUES["cut"][: len(VALUES["cut"]) // 2].encode() not in blob, where

    names = set(get_json(proxy.api_url, "endpoints"))
    assert "GET /basic-auth/<redacted>/<redacted>" in names, names
    docs = [get_json(proxy.api_url, f"requests/{i}") for i in value_traffic]
    bearer, basic, query, quoted = docs[:4]
    assert bearer["primary"]["body"]["token"] == "<redacted>"
    assert basic["uri"] == "/basic-auth/<redacted>/<redacted>"
    assert basic["primary"]["body"]["user"] == "<redacted>"  # echoed under a harmless name
    assert query["uri"] == "/get?token=<redacted>&key=<redacted>&page=2"
    assert quoted["uri"] == "/get?access_token=<redacted>&page=3"
    assert quoted["primary"]["body"]["args"]["page"] == "3"  # the rest is kept
    assert docs[5]["primary"]["body"]["headers"]["Api-Key"] == "<redacted>"


def test_clear_needs_post_and_the_token(secret_proxy, traffic):
    api = secret_proxy.api_url + "/api/1"
    with httpx.Client(timeout=10.0) as client:
        got = client.get(api + "/clear")
        assert got.status_code == 405 and got.headers["allow"] == "POST"
        assert "POST" in got.json()["error"]
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Admin-Token": "wrong"},
                        {"Authorization": b"Bearer caf\xe9\xff"},  # not UTF-8: still a 401
                        {"X-Admin-Token": b"\xc3\x28"}):
            denied = client.post(api + "/clear", headers={**diffapi.CLIENT, **headers})
            assert denied.status_code == 401 and "admin token" in denied.json()["error"]
        assert get_json(secret_proxy.api_url, "endpoints"), "a refused clear cleared anyway"
        cleared = client.post(api + "/clear", headers={**diffapi.CLIENT,
                                                        "Authorization": f"Bearer {TOKEN}"})
        assert cleared.json() == {"success": "Diffs cleared"}
        assert get_json(secret_proxy.api_url, "endpoints") == {}


API_URLS = [
    ("GET", "/api/1/endpoints", 200), ("GET", "/api/1/overview", 200),
    ("GET", "/api/1/info", 200), ("HEAD", "/api/1/info", 200),
    ("GET", "/api/1", 404), ("GET", "/api/1/", 404), ("GET", "/api", 404), ("GET", "/api/", 404),
    ("GET", "/api/2/endpoints", 404), ("GET", "/api/1/nope", 404),
    ("GET", "/api/1/endpoints/GET%20%2Fnope/stats", 404),
    ("GET", "/api/1/endpoints/GET%20%2Fnope/fields/body.x/results", 404),
    ("GET", "/api/1/endpoints/%ZZ%/stats", 404),
    ("GET", "/api/1/endpoints/" + "a" * 4000 + "/stats", 404),
    ("GET", "/api/1/requests/nope", 404), ("GET", "/api/1/requests/", 404),
    ("GET", "/api/1/clear", 405), ("PUT", "/api/1/clear", 405),
    ("POST", "/api/1/clear", 403), ("DELETE", "/api/1/endpoints", 405),
    ("POST", "/api/1/info", 405),
]


@pytest.mark.parametrize("method, path, status", API_URLS)
def test_every_api_answer_is_json_and_nosniff(secret_proxy, method, path, status):
    r = httpx.request(method, secret_proxy.api_url + path, timeout=10.0)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.headers["x-content-type-options"] == "nosniff"
    if method != "HEAD":
        body = r.json()
        assert ("error" in body) == (status >= 400)


UNPARSABLE = {  # requests the HTTP parser rejects, each carrying a secret
    "query with a control byte": "GET /x?access_token={s}\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    "header with a NUL": "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {s}\x00\r\n\r\n",
    "header with a bare CR": "GET / HTTP/1.1\r\nHost: x\r\nCookie: sid={s}\rx\r\n\r\n",
    "secret in a broken request line": "GET /{s} HTTP/1.1 extra\r\nHost: x\r\n\r\n",
}


@pytest.mark.parametrize("port", ["proxy", "api", "admin"])
@pytest.mark.parametrize("template", UNPARSABLE.values(), ids=UNPARSABLE.keys())
def test_requests_the_parser_rejects_are_not_logged(secret_proxy, template, port):
    import socket

    secret = _secret("unparsed")
    number = {"proxy": secret_proxy.port, "api": secret_proxy.http_port,
              "admin": secret_proxy.admin_port}[port]
    with socket.create_connection(("127.0.0.1", number), timeout=10) as sock:
        sock.sendall(template.format(s=secret).encode("latin-1"))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400", answer[:200]
    assert httpx.get(secret_proxy.admin_url + "/healthz", timeout=10).status_code == 200
    log = secret_proxy.log_path.read_bytes()
    for form in _forms(secret):
        assert form not in log, f"the secret reached the proxy's log:\n{log.decode(errors='replace')[-2000:]}"


# Every leak issue 12 lists, through one proxy, then every place a secret could surface.
LEAKS = {name: _secret(name) for name in (
    "bearer", "basic_user", "basic_password", "query_token", "query_key", "json_token",
    "private_key", "api_key", "x_token", "stored_cut")}
LEAKS["quoted"] = f"SECRET{uuid.uuid4().hex}"  # ?access_token=abc'SECRET...
LEAKS["number"] = str(900000000 + uuid.uuid4().int % 99999999)  # "password": 987654321
# Straddling the comparison's 1,000-character cut of a free-text body (httpbin's /base64
# answers the decoded text as text/html; the candidate, under /anything, answers JSON, so
# the body differs and is shown cut): "zq"/"zp" start them, letters hex never has, so even
# a one-character prefix left at the cut can be searched for.
LEAKS["value_cut"] = f"zq{uuid.uuid4().hex}"  # a request secret (X-Token) in the text
LEAKS["text_cut"] = f"zp{uuid.uuid4().hex}"  # "password": "..." in the text
CUT_AT = 998  # where each straddling secret starts: two characters before the cut


def _base64_path(before: str, secret: str) -> str:
    """/base64/... answering `{"pad": "aaa...<before><secret>"}` with `secret` at CUT_AT.
    The text starts with `{"`, so its base64 starts `eyJ` and the path is masked as a JWT
    (the secret is in it, base64-encoded)."""
    text = '{"pad": "' + "a" * (CUT_AT - 9 - len(before)) + before + secret
    text += " " * (-(len(text) + 2) % 3) + '"}'  # whole base64 groups: no "=" in the path
    assert text.index(secret) == CUT_AT
    return "/base64/" + base64.urlsafe_b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def leak_proxy(backends, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("leaks")
    proxy = start_proxy(backends, tmp / "leaks.sqlite", log_dir=tmp,
                        candidate=f"{backends.candidate.url}/anything",
                        extra=["-allowHttpSideEffects", "-samples.first=50", "-samples.latest=50",
                               "-rootUrl=https://diff.example/console"])
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def leaks(leak_proxy):
    v = LEAKS
    basic = base64.b64encode(f"{v['basic_user']}:{v['basic_password']}".encode()).decode()
    with httpx.Client(timeout=10.0, base_url=leak_proxy.proxy_url) as client:
        sent = [
            client.get("/bearer", headers={"Authorization": f"Bearer {v['bearer']}"}),
            client.get(f"/basic-auth/{v['basic_user']}/{v['basic_password']}",
                       headers={"Authorization": f"Basic {basic}"}),
            client.get(f"/get?token={v['query_token']}&key={v['query_key']}&page=2"),
            client.post("/post", json={"token": v["json_token"],
                                       "nested": {"private_key": v["private_key"]}}),
            client.get("/headers", headers={"Api-Key": v["api_key"], "X-Token": v["x_token"]}),
            client.get(f"/get?access_token=abc'{v['quoted']}&page=3"),
            client.post("/post", content=f'{{"password": {v["number"]}}}',
                        headers={"Content-Type": "text/plain"}),
            # straddles the 64 KiB stored-body limit (request) and API preview (echo)
            client.post("/post", json={"pad": "a" * (64 * 1024 - 40), "token": v["stored_cut"]}),
            client.get(_base64_path("", v["value_cut"]), headers={"X-Token": v["value_cut"]}),
            client.get(_base64_path('", "password": "', v["text_cut"])),
        ]
        for r in sent:
            assert r.status_code == 200, (r.request.url, r.text[:200])
        assert v["bearer"] in sent[0].text  # the caller still gets the real answer
        assert v["value_cut"] in sent[8].text and v["text_cut"] in sent[9].text
    diffapi.wait_idle(leak_proxy.admin_url)
    return [r.headers["X-Diffproxy-Request-Id"] for r in sent]


def _reports(proxy, tmp_path) -> dict[str, bytes]:
    import subprocess
    import sys

    out = {}
    for fmt in ("text", "markdown", "json", "junit"):
        junit = tmp_path / f"report-{fmt}.xml"
        done = subprocess.run([sys.executable, "-m", "diffproxy", "report", "--url", proxy.api_url,
                               "--format", fmt, "--fail-on-signal", "--min-requests", "1",
                               "--junit", str(junit)], capture_output=True, timeout=120)
        assert done.returncode == 1, done.stderr  # every endpoint differs: signal
        assert b"https://diff.example/console/#/endpoint/" in done.stdout  # examples linked
        out[f"the report (--format {fmt})"] = done.stdout + done.stderr + junit.read_bytes()
    return out


def test_every_listed_leak_is_masked_everywhere(leak_proxy, leaks, tmp_path):
    proxy = leak_proxy
    blobs = {"the API": b"\n".join(_every_api_answer(proxy.api_url, leaks))}
    console = [diffapi.fetch(proxy.api_url + "/")[2]]
    console += [diffapi.fetch(f"{proxy.api_url}/static/{p.name}")[2]
                for p in STATIC_DIR.iterdir() if p.is_file()]
    blobs["the console"] = b"\n".join(console)
    blobs["the metrics"] = diffapi.fetch(proxy.admin_url + "/metrics")[2]
    blobs.update(_reports(proxy, tmp_path))
    store = proxy.flag("store.path")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(store + suffix):
            blobs[f"the store file {suffix or '.sqlite'}"] = open(store + suffix, "rb").read()
    blobs["the log"] = proxy.log_path.read_bytes()
    assert leaks[1].encode() in blobs["the store file .sqlite"] + blobs.get("the store file -wal", b"")
    for where, blob in blobs.items():
        for name, secret in LEAKS.items():
            for form in _forms(secret):
                assert form not in blob, f"{name} secret ({form[:20]!r}) found in {where}"
        assert LEAKS["stored_cut"][: len(LEAKS["stored_cut"]) // 2].encode() not in blob, where
        # nothing of the straddling secrets is left at the cut, not even one character
        assert b"aazq" not in blob and b'"password": "z' not in blob, where
        assert b'\\"password\\": \\"z' not in blob, where

    names = set(get_json(proxy.api_url, "endpoints"))
    assert "GET /basic-auth/<redacted>/<redacted>" in names, names
    docs = [get_json(proxy.api_url, f"requests/{i}") for i in leaks]
    assert docs[0]["primary"]["body"]["token"] == "<redacted>"  # /bearer's echo
    assert docs[1]["uri"] == "/basic-auth/<redacted>/<redacted>"
    assert docs[2]["uri"] == "/get?token=<redacted>&key=<redacted>&page=2"
    assert docs[5]["uri"] == "/get?access_token=<redacted>&page=3"
    assert docs[4]["primary"]["body"]["headers"]["X-Token"] == "<redacted>"
    for doc in docs[8:]:  # the straddle happened: the body was cut, after redaction
        shown = doc["differences"]["body"]["left"]
        assert shown.startswith('{"pad": "aaa') and shown.endswith(" chars]"), shown[-80:]
        assert "z" not in shown and "<r... [" in shown, shown[-80:]
