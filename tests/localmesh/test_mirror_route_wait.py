"""Waiting for istiod's push: the mirrored share is read from the caller's sidecar.

`envoyroute.mirror_percentage` reads Envoy's own `config_dump` JSON, checked here against a
real Envoy (the version Istio 1.28's proxy is built from) serving mirror policies at 50%,
0% (proto3 JSON then leaves the numerator out) and 100% (no runtime_fraction). The kind
backend's wait is checked against a stand-in kubectl whose dump changes after a few reads.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from localmesh import envoyroute, kind
from localmesh.errors import MeshError
from toolbox import procs, ready
from toolbox.ports import free_port
from topology import DEFAULT

ENVOY = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")
ROUTE, MIRROR = envoyroute.route_clusters(DEFAULT)


def _envoy_config(admin: int, listen: int) -> dict:
    def mirror(numerator: int | None) -> list[dict]:
        policy: dict = {"cluster": MIRROR}
        if numerator is not None:
            policy["runtime_fraction"] = {"default_value": {"numerator": numerator,
                                                            "denominator": "MILLION"}}
        return [policy]

    # One virtual host per share, each routing to its own copy of the v1 cluster name.
    hosts = [{"name": name, "domains": [name],
              "routes": [{"match": {"prefix": "/"},
                          "route": {"cluster": f"{ROUTE}-{name}",
                                    "request_mirror_policies": mirror(numerator)}}]}
             for name, numerator in (("half", 500_000), ("zero", 0), ("all", None))]
    clusters = [{"name": name, "type": "STATIC", "connect_timeout": "1s",
                 "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                     {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                                  "port_value": 9}}}}]}]}}
                for name in [MIRROR] + [f"{ROUTE}-{h['name']}" for h in hosts]]
    manager = {
        "@type": ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                  "HttpConnectionManager"),
        "stat_prefix": "t", "route_config": {"name": str(DEFAULT.ports.app), "virtual_hosts": hosts},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "l", "address": {"socket_address": {"address": "127.0.0.1",
                                                                        "port_value": listen}},
                           "filter_chains": [{"filters": [{
                               "name": "envoy.filters.network.http_connection_manager",
                               "typed_config": manager}]}]}],
            "clusters": clusters}}


@pytest.fixture(scope="module")
def envoy_dump(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("envoy")
    admin, listen = free_port(), free_port()
    config = folder / "envoy.yaml"
    config.write_text(yaml.safe_dump(_envoy_config(admin, listen)))
    log = folder / "envoy.log"
    proc = procs.start([ENVOY, "-c", str(config), "--base-id", str(listen), "--log-level", "warn"], log)
    url = f"http://127.0.0.1:{admin}/config_dump?resource=static_route_configs"
    try:
        outcome = ready.poll(lambda: ready.http_status(url, timeout=5) == 200, 60,
                             died=lambda: proc.poll() is not None, interval=0.2)
        if outcome != "ready":
            raise RuntimeError(f"envoy {outcome}:\n{log.read_text()}")
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    finally:
        procs.stop_group(proc, grace=30)


@pytest.mark.parametrize(("host", "share"), [("half", 50.0), ("zero", 0.0), ("all", 100.0)])
def test_reads_the_share_from_real_envoys_dump(envoy_dump, host, share):
    assert envoyroute.mirror_percentage(envoy_dump, f"{ROUTE}-{host}", MIRROR) == share


def test_a_route_without_the_mirror_policy_mirrors_nothing(envoy_dump):
    assert envoyroute.mirror_percentage(envoy_dump, f"{ROUTE}-half", "outbound|1||other") == 0.0


def test_no_route_yet_is_none(envoy_dump):
    assert envoyroute.mirror_percentage(envoy_dump, ROUTE, MIRROR) is None
    assert envoyroute.mirror_percentage({"configs": []}, ROUTE, MIRROR) is None


def test_clusters_are_istios_names():
    t = DEFAULT
    assert ROUTE == f"outbound|{t.ports.app}|v1|{t.service_host}"
    assert MIRROR == f"outbound|{t.ports.app}|v2|{t.service_host}"
    assert envoyroute.route_clusters(t.with_(relay=False))[1] == \
        f"outbound|{t.ports.proxy}||{t.diffproxy_host}"


# The kind backend's wait ----------------------------------------------------------------


def _istio_dump(numerator: int | None) -> str:
    """The `?resource=dynamic_route_configs` shape: one entry per RouteConfiguration."""
    route: dict = {"cluster": ROUTE}
    if numerator:
        route["request_mirror_policies"] = [{"cluster": MIRROR, "runtime_fraction": {
            "default_value": {"numerator": numerator, "denominator": "MILLION"}}}]
    return json.dumps({"configs": [{
        "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
        "route_config": {"name": "44134", "virtual_hosts": [{
            "name": f"{DEFAULT.service_host}:44134", "domains": [DEFAULT.service_host],
            "routes": [{"match": {"prefix": "/"}, "route": route}]}]}}]})


@pytest.fixture
def sequenced(tmp_path: Path):
    """A kubectl whose n-th `exec` prints answers[min(n, last)]."""
    answers = tmp_path / "answers.json"
    count = tmp_path / "count"
    calls = tmp_path / "calls.jsonl"
    script = tmp_path / "kubectl"
    script.write_text(f"""#!{sys.executable}
import json, os, sys
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
n = int(open({str(count)!r}).read()) if os.path.exists({str(count)!r}) else 0
open({str(count)!r}, "w").write(str(n + 1))
answers = json.load(open({str(answers)!r}))
print(answers[min(n, len(answers) - 1)])
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    tools = kind.Tools(docker="docker", kind="kind", kubectl=str(script), pulumi="pulumi")
    settings = kind.KindSettings(cluster_name="demo", state_dir=tmp_path / "state",
                                 run_dir=tmp_path / "run", topology=DEFAULT.with_(mirror_percentage=0.0))
    mesh = kind.KindMesh(settings, tools, log=lambda _line: None)

    def answer(*texts: str) -> list[list[str]]:
        answers.write_text(json.dumps(list(texts)))
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return mesh, answer, calls


def test_waits_until_the_sidecar_has_the_new_share(sequenced):
    mesh, answer, calls = sequenced
    # Two reads still at the old 100%, then a half-pushed read, then the new 0%.
    answer(_istio_dump(1_000_000), _istio_dump(1_000_000), "not json", _istio_dump(None))
    mesh.wait_for_mirror_route(timeout=60, interval=0.01)
    reads = [json.loads(line) for line in calls.read_text().splitlines()]
    assert len(reads) == 4
    assert reads[0][:7] == ["-n", DEFAULT.app_namespace, "exec", f"deploy/{DEFAULT.sleep_name}",
                            "-c", "istio-proxy", "--"]
    assert reads[0][7:] == ["pilot-agent", "request", "GET", "config_dump?resource=dynamic_route_configs"]


def test_a_route_that_never_changes_is_an_error(sequenced):
    mesh, answer, _ = sequenced
    answer(_istio_dump(500_000))
    with pytest.raises(MeshError, match=r"still mirrors 50\.0% .* not the 0% just applied"):
        mesh.wait_for_mirror_route(timeout=0.5, interval=0.05)
