import pytest
from multidict import CIMultiDict

from diffproxy.endpoints import (
    OVERFLOW_ENDPOINT,
    EndpointNamer,
    ResourceMapping,
    default_name,
    parse_mappings,
)


@pytest.mark.parametrize("path, expected", [
    ("/headers", "GET /headers"),
    ("/get", "GET /get"),
    ("/uuid", "GET /uuid"),
    ("/json", "GET /json"),
    ("/anything", "GET /anything"),
    ("/anything/123", "GET /anything/:id"),
    ("/status/418", "GET /status/:id"),
    ("/get?show_env=1&token=abc", "GET /get"),
    ("/users/3fa85f64-5717-4562-b3fc-2c963f66afa6/orders", "GET /users/:id/orders"),
    ("/users/3FA85F6457174562B3FC2C963F66AFA6", "GET /users/:id"),
    ("/objects/507f1f77bcf86cd799439011", "GET /objects/:id"),
    ("/blobs/cafe1234", "GET /blobs/:id"),
    ("/base64/SFRUUEJJTiBpcyBhd2Vzb21l", "GET /base64/:id"),
    ("/v1/users", "GET /v1/users"),
    ("/deadbeef", "GET /deadbeef"),  # hex letters only: a word, not an id
    ("/docs/release-notes-2024", "GET /docs/release-notes-2024"),
    ("/internationalization", "GET /internationalization"),
    ("", "GET /"),
    ("/", "GET /"),
    ("http://httpbin:8080/anything/7?x=1", "GET /anything/:id"),
])
def test_default_names(path, expected):
    assert default_name("get", path) == expected
    assert EndpointNamer().name("GET", path, {}) == expected


def test_method_is_part_of_the_name():
    namer = EndpointNamer()
    assert namer.name("post", "/anything/1", {}) == "POST /anything/:id"
    assert namer.name("DELETE", "/anything/1", {}) == "DELETE /anything/:id"


def test_canonical_resource_header_wins_case_insensitively():
    namer = EndpointNamer(mappings=parse_mappings("/*;everything"))
    assert namer.name("GET", "/users/1", {"Canonical-Resource": "user-read"}) == "user-read"
    assert namer.name("GET", "/users/1", {"CANONICAL-RESOURCE": "user-read2"}) == "user-read2"
    assert namer.name("GET", "/users/1", CIMultiDict({"canonical-resource": "cim"})) == "cim"
    assert namer.name("GET", "/users/1", {"Canonical-Resource": "  "}) == "everything"


def test_mappings_in_order():
    namer = EndpointNamer(mappings=parse_mappings("/users/:id;user, /users/:id/*;user-sub,/*;other"))
    assert namer.name("GET", "/users/42", {}) == "user"
    assert namer.name("GET", "/users/42/orders/7", {}) == "user-sub"
    assert namer.name("GET", "/users", {}) == "other"
    assert namer.name("GET", "/", {}) == "other"


def test_unmatched_mapping_falls_back_to_default():
    namer = EndpointNamer(mappings=parse_mappings("/users/:id;user"))
    assert namer.name("GET", "/users/42/extra", {}) == "GET /users/:id/extra"
    assert namer.name("GET", "/users/", {}) == "GET /users/"


def test_parse_mappings():
    assert parse_mappings("/users/:id;users,/*;other") == (
        ResourceMapping("/users/:id", "users"), ResourceMapping("/*", "other"))
    assert parse_mappings("") == ()
    assert parse_mappings(" /a;b , ") == (ResourceMapping("/a", "b"),)


@pytest.mark.parametrize("spec, message", [
    ("/users/:id", "expected 'pattern;name'"),
    ("users;x", "must start with '/'"),
    ("/users;", "name must not be empty"),
    ("/a;b;c", "expected 'pattern;name'"),
    ("/*/x;y", "'\\*' may only be a whole last segment"),
    ("/ab*;y", "'\\*' may only be a whole last segment"),
    ("/a/:;y", "token name"),
])
def test_bad_mappings_raise_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        parse_mappings(spec)
    assert spec.split(",")[0] in str(info.value)


def test_overflow_after_max_endpoints():
    namer = EndpointNamer(max_endpoints=2)
    assert namer.name("GET", "/a", {}) == "GET /a"
    assert namer.name("GET", "/b", {}) == "GET /b"
    assert namer.name("GET", "/c", {}) == OVERFLOW_ENDPOINT
    assert namer.name("GET", "/a", {}) == "GET /a"  # known names keep working
    assert namer.name("GET", "/a/1", {"Canonical-Resource": "new"}) == OVERFLOW_ENDPOINT


def test_known_names_seed_the_cap():
    namer = EndpointNamer(max_endpoints=2, known=["GET /a", "GET /b", OVERFLOW_ENDPOINT])
    assert namer.name("GET", "/b", {}) == "GET /b"
    assert namer.name("GET", "/c", {}) == OVERFLOW_ENDPOINT
    assert namer.known == {"GET /a", "GET /b"}


def test_max_endpoints_must_be_positive():
    with pytest.raises(ValueError, match="max_endpoints"):
        EndpointNamer(max_endpoints=0)


@pytest.mark.parametrize("path", [
    "/\udcff\udcfe/1",  # undecodable bytes as surrogates
    "/caf\u00e9/\U0001f600",
    "/a%2Fb/%E2%9C%93",
    "/x\x00y/\r\n",
    "/" + "a" * 5000,
    "/a" * 5000,
    "//double//slash",
])
def test_weird_paths_do_not_crash(path):
    name = EndpointNamer().name("GET", path, {})
    name.encode("utf-8")  # storable
    assert name.startswith("GET /")
    assert len(name) <= 256
    assert "\x00" not in name and "\n" not in name


def test_long_segments_are_ids():
    assert default_name("GET", "/files/" + "a" * 100) == "GET /files/:id"


def test_weird_canonical_header_is_cleaned():
    name = EndpointNamer().name("GET", "/", {"Canonical-Resource": "a\udcff\nb"})
    name.encode("utf-8")
    assert "\n" not in name and name.startswith("a")
