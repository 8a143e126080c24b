"""`python -m diffproxy` as a user runs it: bad input -> one line on stderr, exit code 2."""

from __future__ import annotations

import sqlite3

import pytest

from diffproxy.client import ApiClient
from tests.support import procs

TARGETS = ["-candidate=127.0.0.1:9", "-master.primary=127.0.0.1:9"]


def _listen_flags() -> list[str]:
    return [f"-proxy.port=127.0.0.1:{procs.free_port()}",
            f"-admin.port=127.0.0.1:{procs.free_port()}",
            f"-http.port=127.0.0.1:{procs.free_port()}"]


def _assert_one_line_error(result, *expected: str) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("diffproxy: error: ")
    for text in expected:
        assert text in lines[0]
    assert result.stdout == ""
    return lines[0]


@pytest.mark.parametrize("args, expected", [
    (["-service.protocol=thrift", *TARGETS], ("-service.protocol", "thrift")),
    (["-nosuchflag=1", *TARGETS], ("-nosuchflag",)),
    (["-proxy.port=:99999", *TARGETS], ("-proxy.port", "99999")),
    (["-admin.port=:http", *TARGETS], ("-admin.port",)),
    (["-threshold.relative=lots", *TARGETS], ("-threshold.relative", "lots")),
    (["-threshold.absolute=101", *TARGETS], ("-threshold.absolute",)),
    (["-responseMode=loudest", *TARGETS], ("-responseMode", "loudest")),
    (["-resource.mapping=/users/:id", *TARGETS], ("-resource.mapping",)),
    (["-master.primary=127.0.0.1:9"], ("-candidate", "required")),
    (["-candidate=ftp://x:1", "-master.primary=127.0.0.1:9"], ("-candidate", "scheme")),
    (["-proxy.port=:8880", "-http.port=:8880", *TARGETS], ("8880",)),
    (["stray", *TARGETS], ("stray",)),
])
def test_bad_flags_exit_2_with_one_line(args, expected):
    _assert_one_line_error(procs.run_diffproxy(args), *expected)


def test_bad_env_value_names_the_variable():
    result = procs.run_diffproxy(TARGETS, env={"DIFFPROXY_TARGET_TIMEOUT": "soon"})
    _assert_one_line_error(result, "DIFFPROXY_TARGET_TIMEOUT", "soon")


def test_corrupt_store_is_refused_and_left_alone(tmp_path):
    store = tmp_path / "results.sqlite"
    junk = b"this is not a database\n" * 100
    store.write_bytes(junk)
    result = procs.run_diffproxy([*TARGETS, *_listen_flags(), f"-store.path={store}"])
    _assert_one_line_error(result, str(store), "not an SQLite database")
    assert store.read_bytes() == junk


def test_store_from_a_newer_version_is_refused(tmp_path):
    store = tmp_path / "results.sqlite"
    conn = sqlite3.connect(store)
    conn.executescript("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "INSERT INTO meta VALUES('schema_version', '99');")
    conn.close()
    before = store.read_bytes()
    result = procs.run_diffproxy([*TARGETS, *_listen_flags(), f"-store.path={store}"])
    _assert_one_line_error(result, "schema version 99")
    assert store.read_bytes() == before


def test_help_lists_flags():
    result = procs.run_diffproxy(["-help"])
    assert result.returncode == 0
    for flag in ("-candidate", "-master.primary", "-allowHttpSideEffects", "-store.path"):
        assert flag in result.stdout


def test_demo_flags_verbatim_start_the_proxy(tmp_path):
    """The original demo's arguments, rootUrl quotes included, on loopback ports."""
    proxy_port, http_port, admin_port = (procs.free_port() for _ in range(3))
    args = ["-candidate=127.0.0.1:9", "-master.primary=127.0.0.1:9",
            "-master.secondary=127.0.0.1:9", "-service.protocol=http", "-serviceName=httpbin",
            f"-proxy.port=127.0.0.1:{proxy_port}", f"-admin.port=127.0.0.1:{admin_port}",
            f"-http.port=127.0.0.1:{http_port}", "-rootUrl='localhost:8888'",
            f"-store.path={tmp_path / 's.sqlite'}"]
    proc = procs.spawn("diffproxy", [procs.PYTHON, "-m", "diffproxy", *args], proxy_port, tmp_path)
    try:
        proc.wait_until(f"http://127.0.0.1:{admin_port}/readyz")
        info = ApiClient(f"http://127.0.0.1:{http_port}").info()
        assert info["name"] == "httpbin"
        assert info["root_url"] == "localhost:8888"
        assert info["targets"]["candidate"]["address"] == "http://127.0.0.1:9"
    finally:
        assert proc.stop() == 0
