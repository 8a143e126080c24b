"""The kind backend's life cycle against recording stand-ins for docker, kind, kubectl and
pulumi (tests/localmesh/fakes.py); the Automation API drives the fake `pulumi` for real.

No cluster can run here: these pin the command lines and their order, which is what the
drift, image, loading and teardown fixes of issue 18 consist of.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localmesh import envoyroute, kind
from localmesh.errors import MeshError
from tests.localmesh import fakes
from topology import DEFAULT

HISTORY = json.dumps([{"version": 1, "kind": "update", "startTime": "2026-01-01T00:00:00.000Z",
                       "message": "", "environment": {}, "config": {}, "result": "succeeded",
                       "endTime": "2026-01-01T00:00:01.000Z", "resourceChanges": {}}])
STACK_LS = json.dumps([{"name": kind.DEMO_STACK, "current": False}])
POD_INJECTED = {"metadata": {"name": "a"}, "spec": {"containers": [{"name": "app"}, {"name": "istio-proxy"}]}}
POD_NATIVE = {"metadata": {"name": "b"}, "spec": {
    "initContainers": [{"name": "istio-init"}, {"name": "istio-proxy", "restartPolicy": "Always"}],
    "containers": [{"name": "app"}]}}
POD_BARE = {"metadata": {"name": "c"}, "spec": {"containers": [{"name": "app"}]}}


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> fakes.Fakes:
    f = fakes.install(tmp_path / "fakes")
    # The Automation API runs `pulumi` from PATH, as it would the real CLI.
    monkeypatch.setenv("PATH", f"{f.bin}:/usr/bin:/bin")
    f.rule("pulumi", "stack", "output", stdout='{"istioVersion": "1.28.1"}')
    f.rule("pulumi", "stack", "history", stdout=HISTORY)
    f.rule("kubectl", "get", "pods", stdout=json.dumps({"items": [POD_INJECTED, POD_NATIVE]}))
    return f


def _mesh(f: fakes.Fakes, tmp_path: Path, stack: str = kind.DEMO_STACK,
          route_wait: bool = False) -> kind.KindMesh:
    tools = kind.Tools(*(f.path(t) for t in ("docker", "kind", "kubectl", "pulumi")))
    settings = kind.KindSettings(cluster_name="demo", state_dir=tmp_path / "state",
                                 run_dir=tmp_path / "run", stack_name=stack)
    mesh = kind.KindMesh(settings, tools, log=lambda _line: None)
    if not route_wait:  # the wait's own tests: test_mirror_route_wait.py, and item 6 below
        mesh.wait_for_mirror_route = lambda: None
    return mesh


def _index(calls: list[list[str]], *words: str) -> int:
    return next(i for i, argv in enumerate(calls) if all(w in argv for w in words))


# Item 3: state and cluster never drift apart ------------------------------------------


def test_up_refreshes_the_state_first(fake, tmp_path):
    _mesh(fake, tmp_path).apply(50)
    (up,) = [argv for argv in fake.calls("pulumi") if "up" in argv]
    assert "--refresh" in up and up[up.index("--stack") + 1] == kind.DEMO_STACK


def test_a_new_cluster_drops_the_stack_of_the_old_one(fake, tmp_path):
    fake.rule("kind", "get", "clusters", stdout="other\n")
    fake.rule("pulumi", "stack", "ls", stdout=STACK_LS)
    fake.rule("docker", "image", "inspect", stdout="sha256:" + "ab" * 32 + "\n")
    _mesh(fake, tmp_path).prepare()
    calls = fake.calls()
    create = calls[_index(calls, "create", "cluster")]
    assert create[create.index("--image") + 1] == kind.NODE_IMAGE
    removed = _index(calls, "stack", "rm")
    assert calls[removed][-2:] == ["--force", kind.DEMO_STACK]
    assert _index(calls, "create", "cluster") < removed < _index(calls, "build")


def test_a_reused_cluster_keeps_the_stack(fake, tmp_path):
    fake.rule("kind", "get", "clusters", stdout="demo\n")
    fake.rule("pulumi", "stack", "ls", stdout=STACK_LS)
    fake.rule("docker", "image", "inspect", stdout="sha256:" + "ab" * 32 + "\n")
    _mesh(fake, tmp_path).prepare()
    calls = fake.calls()
    assert not any("rm" in argv for argv in fake.calls("pulumi"))
    assert not any("create" in argv for argv in fake.calls("kind"))
    assert "export" in calls[_index(calls, "kubeconfig")]


def test_a_reused_cluster_outside_istios_kubernetes_range_is_named(fake, tmp_path):
    fake.rule("kind", "get", "clusters", stdout="demo\n")
    fake.rule("pulumi", "stack", "ls", stdout=STACK_LS)
    fake.rule("docker", "image", "inspect", stdout="sha256:" + "ab" * 32 + "\n")
    fake.rule("kubectl", "get", "nodes", stdout="v1.37.0")
    lines: list[str] = []
    mesh = _mesh(fake, tmp_path)
    mesh._log = lines.append
    mesh.prepare()
    assert any("Kubernetes v1.37.0, outside 1.30-1.34" in line and kind.NODE_IMAGE in line
               for line in lines)


def test_a_reused_cluster_with_lost_state_is_refused_before_anything_is_built(fake, tmp_path):
    fake.rule("kind", "get", "clusters", stdout="demo\n")
    fake.rule("pulumi", "stack", "ls", stdout="[]")
    fake.rule("kubectl", "get", "namespace", stdout="namespace/mirror-demo\nnamespace/istio-system\n")
    with pytest.raises(MeshError, match="state was lost.*kind delete cluster --name demo"):
        _mesh(fake, tmp_path).prepare()
    assert fake.calls("docker") == []


def test_down_with_the_cluster_gone_removes_only_the_stale_stack(fake, tmp_path, capsys):
    fake.rule("kind", "get", "clusters", stdout="")
    fake.rule("pulumi", "stack", "ls", stdout=STACK_LS)
    settings = _mesh(fake, tmp_path).settings
    monkey_tools(fake)
    assert kind.run_down(settings) == 0
    pulumi = fake.calls("pulumi")
    assert [a for a in pulumi if "rm" in a] == [["--non-interactive", "stack", "rm", "--yes", "--force",
                                                 kind.DEMO_STACK]]
    assert not any("destroy" in a for a in pulumi)
    assert not any("delete" in a for a in fake.calls("kind"))
    assert "removed the stale Pulumi stack" in capsys.readouterr().out


def test_down_destroys_then_removes_the_stack_then_the_cluster(fake, tmp_path):
    fake.rule("kind", "get", "clusters", stdout="demo\n")
    fake.rule("pulumi", "stack", "ls", stdout=STACK_LS)
    settings = _mesh(fake, tmp_path).settings
    monkey_tools(fake)
    assert kind.run_down(settings) == 0
    calls = fake.calls()
    assert _index(calls, "destroy") < _index(calls, "stack", "rm") < _index(calls, "delete", "cluster")


def monkey_tools(f: fakes.Fakes) -> None:
    """run_down finds its tools on PATH, which the fixture points at the fakes."""
    assert kind.find_tools().kind == f.path("kind")


# Item 4: a rebuilt image reaches the pods ---------------------------------------------


def test_images_are_deployed_by_their_id_tag(fake, tmp_path):
    fake.rule("docker", "image", "inspect", stdout="sha256:" + "0123456789ab" + "c" * 52 + "\n")
    mesh = _mesh(fake, tmp_path)
    mesh.build_images()
    mesh.load_images()
    mesh.apply(100)
    img = DEFAULT.images
    docker = fake.calls("docker")
    assert ["tag", img.diffproxy, f"{img.diffproxy}-0123456789ab"] in docker
    assert ["tag", img.httpbin, f"{img.httpbin}-0123456789ab"] in docker
    loaded = [a[-1] for a in fake.calls("kind") if "load" in a]
    assert loaded == [f"{img.diffproxy}-0123456789ab", f"{img.httpbin}-0123456789ab"]
    (config,) = [a for a in fake.calls("pulumi") if "set-all" in a]
    for key, image in (("diffproxyImage", img.diffproxy), ("httpbinImage", img.httpbin),
                       ("candidateImage", img.candidate)):
        assert f"{key}={image}-0123456789ab" in config


def test_a_rebuild_with_a_new_id_gets_a_new_tag():
    first = kind.id_tag("diffproxy:0.1.0", "sha256:" + "1" * 64)
    second = kind.id_tag("diffproxy:0.1.0", "sha256:" + "2" * 64)
    assert first == "diffproxy:0.1.0-111111111111" and second != first
    assert kind.id_tag("localhost:5000/diffproxy", "sha256:" + "3" * 64) == \
        "localhost:5000/diffproxy:latest-333333333333"
    with pytest.raises(MeshError, match="no image id"):
        kind.id_tag("diffproxy:0.1.0", "")


# Item 6: apply returns once the caller's sidecar mirrors the applied share --------------


def _route_dump(numerator: int) -> str:
    """The sleep sidecar's route as `config_dump?resource=dynamic_route_configs` shows it."""
    route, mirror = envoyroute.route_clusters(DEFAULT)
    policy = {"cluster": mirror, "runtime_fraction": {
        "default_value": {"numerator": numerator, "denominator": "MILLION"}}}
    return json.dumps({"configs": [{"route_config": {"name": str(DEFAULT.ports.app), "virtual_hosts": [
        {"name": "v1", "routes": [{"route": {"cluster": route, "request_mirror_policies": [policy]}}]}]}}]})


def test_apply_reads_the_sidecars_route_after_up_and_the_rollout(fake, tmp_path):
    fake.rule("kubectl", "pilot-agent", stdout=_route_dump(500_000))
    _mesh(fake, tmp_path, route_wait=True).apply(50)
    calls = fake.calls()
    read = _index(calls, "exec", "pilot-agent")
    assert _index(calls, "up", "--refresh") < _index(calls, "--for=condition=available") < read
    assert calls[read][-1] == "config_dump?resource=dynamic_route_configs"


def test_apply_fails_while_the_sidecar_keeps_the_old_share(fake, tmp_path):
    import functools

    fake.rule("kubectl", "pilot-agent", stdout=_route_dump(1_000_000))
    mesh = _mesh(fake, tmp_path, route_wait=True)
    mesh.wait_for_mirror_route = functools.partial(mesh.wait_for_mirror_route, timeout=0.5,
                                                   interval=0.1)
    with pytest.raises(MeshError, match=r"still mirrors 100\.0% .* not the 50% just applied"):
        mesh.apply(50)


# Item 8: kind load on Docker's containerd image store ---------------------------------


def test_load_falls_back_to_an_image_archive(fake, tmp_path):
    fake.rule("kind", "load", "docker-image", exit=1,
              stderr="ERROR: failed to load image: ctr: content digest sha256:abc: not found\n")
    mesh = _mesh(fake, tmp_path)
    mesh.load_image("diffproxy:0.1.0-abc")
    calls = fake.calls()
    save = calls[_index(calls, "save")]
    archive = save[save.index("-o") + 1]
    assert save[-1] == "diffproxy:0.1.0-abc"
    assert calls[_index(calls, "image-archive")] == ["load", "image-archive", "--name", "demo", archive]
    assert not Path(archive).exists()  # the tar does not stay in the run folder


def test_both_loads_failing_says_what_was_tried(fake, tmp_path):
    fake.rule("kind", "load", exit=1, stderr="ctr: content digest sha256:abc: not found\n")
    with pytest.raises(MeshError) as failure:
        _mesh(fake, tmp_path).load_image("diffproxy:0.1.0-abc")
    text = str(failure.value)
    assert "content digest sha256:abc: not found" in text
    assert "#3795" in text and "docker save + kind load image-archive" in text


# Item 11: native sidecars count as injected --------------------------------------------


def test_native_sidecar_counts_as_injected():
    assert kind.has_sidecar(POD_INJECTED)
    assert kind.has_sidecar(POD_NATIVE)
    assert not kind.has_sidecar(POD_BARE)
    # istio-init alone (no restartPolicy: Always) is not a sidecar.
    assert not kind.has_sidecar({"spec": {"initContainers": [{"name": "istio-proxy"}],
                                          "containers": [{"name": "app"}]}})


def test_apply_names_pods_without_a_sidecar(fake, tmp_path):
    fake.rule("kubectl", "get", "pods", stdout=json.dumps({"items": [POD_NATIVE, POD_BARE]}))
    with pytest.raises(MeshError, match=r"pods without an Istio sidecar: mirror-demo/c, diffy/c"):
        _mesh(fake, tmp_path).apply(100)


# Item 14: the demo and the e2e suite each have their stack -----------------------------


def test_stack_files_stay_out_of_git():
    import subprocess

    root = Path(__file__).resolve().parents[2]

    def ignored(name: str) -> bool:
        return subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "--no-index", name],
                              timeout=30).returncode == 0

    assert ignored(f"Pulumi.{kind.DEMO_STACK}.yaml") and ignored(f"Pulumi.{kind.E2E_STACK}.yaml")
    assert ignored("Pulumi.dev.yaml") and ignored(".pulumi-state/x")
    assert not ignored("Pulumi.yaml")


def test_demo_and_e2e_use_separate_stacks(fake, tmp_path):
    _mesh(fake, tmp_path, kind.DEMO_STACK).apply(100)
    _mesh(fake, tmp_path, kind.E2E_STACK).apply(0)
    configs = {a[a.index("--stack") + 1]: a for a in fake.calls("pulumi") if "set-all" in a}
    assert set(configs) == {kind.DEMO_STACK, kind.E2E_STACK}
    assert "mirrorPercentage=100" in configs[kind.DEMO_STACK]
    assert "mirrorPercentage=0" in configs[kind.E2E_STACK]


# Item 2: the set-up's own limit ----------------------------------------------------------


def test_the_set_up_limit_lets_a_running_pulumi_up_finish_then_fails(fake, tmp_path):
    # Killed mid-update, the CLI would leave the stack locked for the clean-up's destroy.
    import time

    fake.rule("pulumi", "up", stdout="Updating (kind-demo)\n+ istio-base creating\n+ istiod created\n",
              pace=1.0)
    mesh = _mesh(fake, tmp_path)
    started = time.monotonic()
    with pytest.raises(MeshError, match="set-up did not finish within 0.3s"):
        with kind.time_limit(0.3, "set-up"):
            mesh.apply(100)
    assert time.monotonic() - started >= 2.0
    assert [a for a in fake.finished("pulumi") if "up" in a]  # ran to its end
    assert not any("wait" in a for a in fake.calls("kubectl"))  # and nothing after it
    # Outside a pulumi command the limit interrupts at once.
    with pytest.raises(MeshError, match="within 0.2s"):
        with kind.time_limit(0.2, "set-up"):
            time.sleep(30)


def test_time_limit_interrupts_then_gives_back_an_outer_alarm():
    import signal
    import time

    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 500)  # an outer limit, as pytest-timeout's
    try:
        with pytest.raises(MeshError, match="set-up did not finish within 0.2s"):
            with kind.time_limit(0.2, "set-up"):
                time.sleep(30)
        assert 490 < signal.getitimer(signal.ITIMER_REAL)[0] <= 500
        # A sooner outer alarm stays in charge: the inner limit does not replace it.
        with kind.time_limit(1000, "set-up"):
            assert signal.getitimer(signal.ITIMER_REAL)[0] <= 500
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
