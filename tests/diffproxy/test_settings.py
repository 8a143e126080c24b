"""Flags, environment and config file -> Settings."""

from __future__ import annotations

import json

import pytest

from diffproxy.settings import (
    HelpRequested,
    Listen,
    SettingsError,
    Target,
    load,
    parse_duration,
    parse_size,
    parse_target,
)
from topology.model import DEFAULT

# The original demo's arguments as a shell that keeps the quotes would pass them.
DEMO = ["-candidate=httpbin-candidate:8080", "-master.primary=httpbin-master:8080",
        "-master.secondary=httpbin-master:8080", "-service.protocol=http",
        "-serviceName=httpbin", "-proxy.port=:8880", "-admin.port=:8881", "-http.port=:8888",
        "-rootUrl='localhost:8888'"]


def test_demo_flags_verbatim():
    s = load(DEMO, env={})
    assert s.targets.candidate == Target("http", "httpbin-candidate", 8080)
    assert s.targets.primary == s.targets.secondary == Target("http", "httpbin-master", 8080)
    assert s.targets.primary.authority == "httpbin-master:8080"
    assert (s.listeners.proxy, s.listeners.admin, s.listeners.http) == (
        Listen("0.0.0.0", 8880), Listen("0.0.0.0", 8881), Listen("0.0.0.0", 8888))
    assert s.root_url == "localhost:8888"
    assert s.service_name == "httpbin" and s.protocol == "http"
    assert s.proxy.response_mode == "primary" and s.proxy.allow_http_side_effects is False


def test_topology_args_parse():
    s = load(DEFAULT.cluster_diffproxy_args(), env={})
    assert s.diff.ignore_fields == DEFAULT.ignore_fields
    assert s.diff.relative_threshold == DEFAULT.thresholds.relative
    assert s.store.path == "/var/lib/diffproxy/results.sqlite"


def test_flag_forms_and_booleans():
    base = ["--candidate=c:1", "-master.primary", "p:2"]
    assert load(base, env={}).targets.primary == Target("http", "p", 2)
    assert load([*base, "-allowHttpSideEffects"], env={}).proxy.allow_http_side_effects
    assert load([*base, "-allowHttpSideEffects=true"], env={}).proxy.allow_http_side_effects
    assert not load([*base, "-allowHttpSideEffects=false"], env={}).proxy.allow_http_side_effects
    assert load([*base, "-excludeHttpHeadersComparison"], env={}).diff.exclude_headers
    s = load([*base, "-ignore.fields= body.a , body.b,", "-responseMode=EMPTY"], env={})
    assert s.diff.ignore_fields == ("body.a", "body.b")
    assert s.proxy.response_mode == "empty"


@pytest.mark.parametrize("raw, protocol, expected", [
    ("host:8080", "http", Target("http", "host", 8080)),
    ("host", "http", Target("http", "host", 80)),
    ("host", "https", Target("https", "host", 8443)),
    ("https://host", "http", Target("https", "host", 8443)),
    ("http://host:81/base/", "http", Target("http", "host", 81, "/base")),
    ("[::1]:9000", "http", Target("http", "::1", 9000)),
    ("'10.0.0.1:80'", "http", Target("http", "10.0.0.1", 80)),
])
def test_targets(raw, protocol, expected):
    assert parse_target(raw, protocol, https_port=8443) == expected


def test_https_port_flag_applies_to_https_targets():
    s = load(["-candidate=https://c", "-master.primary=p:1", "-httpsPort=9443"], env={})
    assert s.targets.candidate.base_url == "https://c:9443"


@pytest.mark.parametrize("raw, value", [("5242880", 5242880), ("5MB", 5 * 1024**2),
                                        ("5.megabytes", 5 * 1024**2), ("512k", 512 * 1024)])
def test_sizes(raw, value):
    assert parse_size(raw) == value


@pytest.mark.parametrize("raw, value", [("5", 5.0), ("2.5s", 2.5), ("500ms", 0.5),
                                        ("3.seconds", 3.0)])
def test_durations(raw, value):
    assert parse_duration(raw) == value


def test_precedence_flag_env_config_default(tmp_path):
    config = tmp_path / "diffproxy.yaml"
    config.write_text("candidate: c:1\nmaster:\n  primary: p:2\nthreshold.relative: 10\n"
                      "samples:\n  first: 7\n")
    flags = [f"-config={config}"]
    env = {"DIFFPROXY_THRESHOLD_RELATIVE": "15"}
    assert load([*flags, "-threshold.relative=30"], env=env).diff.relative_threshold == 30
    assert load(flags, env=env).diff.relative_threshold == 15
    assert load(flags, env={}).diff.relative_threshold == 10
    assert load(["-candidate=c:1", "-master.primary=p:2"], env={}).diff.relative_threshold == 20
    s = load(flags, env={})
    assert s.targets.primary == Target("http", "p", 2) and s.store.samples_first == 7


def test_json_config_and_env_forms(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"candidate": "c:1", "master.primary": "p:2",
                                  "ignore.fields": ["body.a", "body.b"], "allowHttpSideEffects": True}))
    s = load([], env={"DIFFPROXY_CONFIG": str(config), "DIFFPROXY_STORE_PATH": "/x/s.sqlite"})
    assert s.diff.ignore_fields == ("body.a", "body.b")
    assert s.proxy.allow_http_side_effects is True
    assert s.store.path == "/x/s.sqlite"
    s = load([f"-config={config}"], env={"DIFFPROXY_ALLOW_HTTP_SIDE_EFFECTS": "false"})
    assert s.proxy.allow_http_side_effects is False


@pytest.mark.parametrize("args, env, message", [
    (["-service.protocol=thrift"], {}, "thrift"),
    (["-bogus"], {}, "unknown flag -bogus"),
    (["-proxy.port=:0"], {}, "-proxy.port"),
    (["-threshold.relative=-1"], {}, "-threshold.relative"),
    (["-responseMode=both"], {}, "-responseMode"),
    (["-resource.mapping=users;x"], {}, "-resource.mapping"),
    (["-maxResponseSize=lots"], {}, "-maxResponseSize"),
    (["-target.timeout=0"], {}, "-target.timeout"),
    (["-samples.first=-1"], {}, "-samples.first"),
    (["-store.flushInterval=5s"], {}, "-store.flushInterval"),
    ([], {"DIFFPROXY_PROXY_PORT": "x"}, "DIFFPROXY_PROXY_PORT"),
])
def test_errors_are_one_line_and_name_the_key(args, env, message):
    with pytest.raises(SettingsError) as err:
        load(["-candidate=c:1", "-master.primary=p:2", *args], env=env)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("candidate: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML/JSON"):
        load([f"-config={bad}"], env={})
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("candidate: c:1\ncolour: blue\n")
    with pytest.raises(SettingsError, match="unknown key 'colour'"):
        load([f"-config={unknown}"], env={})
    with pytest.raises(SettingsError, match="cannot read"):
        load([f"-config={tmp_path / 'missing.yaml'}"], env={})


def test_help():
    with pytest.raises(HelpRequested):
        load(["-help"], env={})


def test_workers_flag():
    assert load(DEMO, env={}).proxy.workers == 1  # one process unless asked
    assert load([*DEMO, "-workers=2"], env={}).proxy.workers == 2
    assert load(DEMO, env={"DIFFPROXY_WORKERS": "4"}).proxy.workers == 4
    with pytest.raises(SettingsError, match="workers"):
        load([*DEMO, "-workers=0"], env={})


def test_every_diffy_flag_is_accepted_and_the_foreign_ones_reported():
    """Every flag of twitter/diffy's DiffyServiceModule starts the proxy; the ones that
    mean nothing here are returned for the one warning at start."""
    diffy = [*DEMO, "-dc=smf1", "-proxy.clientId=diffy.proxy", "-thrift.jar", "path/to/thrift.jar",
             "-thrift.serviceClass=UserService", "-apiRoot=http://api", "-enableThriftMux",
             "-threshold.relative=10", "-threshold.absolute=0.5",
             "-notifications.targetEmail=team@example.com", "-notifications.delay=4.hours",
             "-allowHttpSideEffects=true", "-responseMode=candidate",
             "-excludeHttpHeadersComparison=false", "-skipEmailsWhenNoErrors", "-httpsPort=8443",
             "-candidateHeaders=X-Env:canary,Authorization:Basic dTpw", "-primaryHeaders=X-Env:prod",
             "-secondaryHeaders=", "-candidateApiRoot=api/v2", "-primaryApiRoot=api/v1",
             "-secondaryApiRoot=/api/v1/"]
    s = load(diffy, {})
    t = s.targets
    assert t.candidate.headers == (("X-Env", "canary"), ("Authorization", "Basic dTpw"))
    assert (t.primary.headers, t.secondary.headers) == ((("X-Env", "prod"),), ())
    assert (t.candidate.base_path, t.primary.base_path, t.secondary.base_path) == (
        "/api/v2", "/api/v1", "/api/v1")
    for bad in ("-candidateHeaders=no-colon", "-primaryHeaders=bad name:x", "-candidateApiRoot=a?b"):
        with pytest.raises(SettingsError, match=bad.split("=")[0]):
            load([*DEMO, bad], {})
    assert s.ignored_flags == ("dc", "proxy.clientId", "thrift.jar", "thrift.serviceClass",
                               "enableThriftMux", "notifications.targetEmail",
                               "notifications.delay", "skipEmailsWhenNoErrors")
    assert (s.diff.relative_threshold, s.diff.absolute_threshold) == (10.0, 0.5)
    assert s.proxy.response_mode == "candidate" and s.proxy.allow_http_side_effects is True
    assert load(DEMO, {}).ignored_flags == ()
    with pytest.raises(SettingsError, match="unknown flag -nonsense"):
        load([*DEMO, "-nonsense=1"], {})


def test_lifting_and_verdict_flags():
    s = load([*DEMO, "-compare.untypedBody=ignore", "-compare.headerValues=sorted",
              "-compare.jsonInStrings", "-verdict.minRequests=10", "-verdict.baselineFailures=5"], {})
    assert (s.diff.untyped_body, s.diff.header_values, s.diff.json_in_strings) == ("ignore", "sorted", True)
    assert (s.diff.min_requests, s.diff.baseline_failure_percent) == (10, 5.0)
    with pytest.raises(SettingsError, match="compare.untypedBody"):
        load([*DEMO, "-compare.untypedBody=guess"], {})
