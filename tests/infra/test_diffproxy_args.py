"""The diff proxy Deployment's args, read by the diff proxy's own command-line parser."""

from __future__ import annotations

import posixpath

from diffproxy import settings as cli
from topology import DEFAULT
from topology.kube import ClusterSettings, diffproxy_objects, store_dir


def _container() -> dict:
    deployment = next(o for o in diffproxy_objects(DEFAULT, ClusterSettings())
                      if o["kind"] == "Deployment")
    container, = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_the_diff_proxy_accepts_the_deployments_args():
    container = _container()
    parsed = cli.load(container["args"], env={})
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert parsed.listeners.proxy.port == ports["http-proxy"]
    assert parsed.listeners.admin.port == ports["http-admin"]
    assert parsed.listeners.http.port == ports["http-console"]
    assert {parsed.targets.primary.port, parsed.targets.candidate.port} == {DEFAULT.ports.backend}
    assert parsed.targets.candidate.host == DEFAULT.candidate_service
    assert parsed.targets.primary.host == parsed.targets.secondary.host == DEFAULT.primary_service
    assert parsed.diff.relative_threshold == DEFAULT.thresholds.relative
    assert parsed.diff.ignore_fields == DEFAULT.ignore_fields


def test_the_results_store_lives_on_the_mounted_volume():
    container = _container()
    parsed = cli.load(container["args"], env={})
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert posixpath.dirname(parsed.store.path) == mounts["results"] == store_dir(DEFAULT)
