"""The same demo on a kind cluster: images built and loaded, the Pulumi program run through
the Automation API with a local file state backend, the console port-forwarded.

`KindMesh` offers the e2e suite the same methods as `LocalMesh` (send, received,
kill_candidate, api_url). It needs a working Docker engine, kind, kubectl and the Pulumi CLI;
`missing_tools()` names whichever is absent. Istio is installed by the Pulumi program.

The cluster and the stack's state are kept in step (`prepare`): a cluster created now drops
the stack's old state, a kept cluster whose state is lost is refused, and every `pulumi up`
refreshes first. Images are deployed under tags that carry their image id, so a rebuild
rolls the pods; `docs/cluster.md` lists what was checked of all this, and how.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from localmesh import accesslog, envoyroute, processes, traffic
from localmesh.errors import MeshError
from localmesh.portforward import PortForward
from localmesh.ports import pick
from localmesh.stack import PROJECT_ROOT, Received, default_run_dir
from topology import DEFAULT, Topology, kube
from topology.istio import SUFFIX_DISABLED_SINCE

# Each its own stack, so neither overwrites the other's config (Pulumi.<stack>.yaml).
DEMO_STACK = "kind-demo"
E2E_STACK = "kind-e2e"
# The node image of kind v0.30.0's release notes, by digest: Kubernetes 1.34, inside Istio
# 1.28's supported 1.30-1.34 (kind's own default moves on with each kind release).
NODE_IMAGE = "kindest/node:v1.34.0@sha256:7416a61b42b1662ca6ca89f02028ac133a309a2a30ba309614e8ec94d976dc5a"
ISTIO_KUBERNETES = ((1, 30), (1, 34))  # the Kubernetes versions Istio 1.28 supports
# Istio before 1.28 sends mirrored copies with `-shadow` appended to the host (topology/istio.py).
PLAIN_HOST_SINCE = SUFFIX_DISABLED_SINCE
STATUS_MARK = "__localmesh_status__"
SIDECAR = "istio-proxy"
# Stack config keys of the images this repository builds (Pulumi.yaml), by Images field.
BUILT_IMAGE_KEYS = {"httpbin": "httpbinImage", "candidate": "candidateImage",
                    "diffproxy": "diffproxyImage"}


@dataclass(frozen=True)
class Tools:
    docker: str
    kind: str
    kubectl: str
    pulumi: str


def _docker_engine_works(docker: str) -> bool:
    try:
        return subprocess.run([docker, "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def missing_tools(which: Callable[[str], str | None] = shutil.which,
                  engine_works: Callable[[str], bool] = _docker_engine_works) -> list[str]:
    """Everything the kind backend lacks, as words for one line; empty when all is there."""
    missing: list[str] = []
    docker = which("docker")
    if docker is None:
        missing.append("docker (CLI and a running engine)")
    elif not engine_works(docker):
        missing.append("a working Docker engine (`docker info` failed)")
    for tool, what in (("kind", "kind"), ("kubectl", "kubectl"), ("pulumi", "the Pulumi CLI")):
        if which(tool) is None:
            missing.append(what)
    return missing


def missing_line(missing: list[str]) -> str:
    return "the kind backend cannot run here, missing: " + ", ".join(missing)


def find_tools() -> Tools:
    missing = missing_tools()
    if missing:
        raise MeshError(missing_line(missing))
    return Tools(*(shutil.which(t) or t for t in ("docker", "kind", "kubectl", "pulumi")))


@dataclass(frozen=True)
class KindSettings:
    topology: Topology = DEFAULT
    cluster_name: str = "mirror-demo"
    state_dir: Path = Path(".pulumi-state")
    run_dir: Path | None = None
    kubeconfig: Path | None = None  # None: <state_dir>/<cluster>.kubeconfig
    stack_name: str = DEMO_STACK
    node_image: str = NODE_IMAGE
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig_path(self) -> Path:
        return (self.kubeconfig or self.state_dir / f"{self.cluster_name}.kubeconfig").resolve()


def _run(argv: list[str], what: str, env: dict[str, str] | None = None, timeout: float = 900,
         capture: bool = True, input_text: str | None = None) -> str:
    try:
        done = subprocess.run(argv, capture_output=capture, text=True, env=env, timeout=timeout,
                              input=input_text)
    except subprocess.TimeoutExpired:
        raise MeshError(f"{what} did not finish within {timeout:g}s: {shlex.join(argv)}") from None
    except OSError as exc:
        raise MeshError(f"{what} could not run ({argv[0]}): {exc.strerror}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout or "").strip().splitlines()[-5:] if capture else []
        raise MeshError(f"{what} failed (exit {done.returncode}): {shlex.join(argv)}"
                        + ("\n" + "\n".join(detail) if detail else ""))
    return done.stdout if capture else ""


class _Held:
    """Pulumi commands running now (`held`), and a `time_limit` that expired meanwhile."""
    held = 0
    expired: str | None = None


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise MeshError in the main thread once `seconds` have passed (SIGALRM).

    For the kind e2e set-up, which runs outside pytest-timeout's per-test limit: a child
    running under `_run` is killed by subprocess.run as the error passes through it; a
    `pulumi up` or `destroy` is let finish first (`pulumi_running`). An alarm already armed
    (pytest-timeout's, say) that comes first stays in charge; a later one is re-armed for
    its remaining time afterwards."""
    outer = signal.getitimer(signal.ITIMER_REAL)[0]
    if outer and outer <= seconds:
        yield
        return

    def expired(_signum, _frame):
        message = f"{what} did not finish within {seconds:g}s"
        if _Held.held:
            _Held.expired = message
            return
        raise MeshError(message)

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _Held.expired = None
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 0.001))


@contextlib.contextmanager
def pulumi_running() -> Iterator[None]:
    """A `pulumi up`/`destroy` is not cut short by `time_limit`: the Automation API would
    close the CLI's pipes and the CLI die of SIGPIPE mid-update, leaving its stack locked
    ("the stack is currently locked", for the clean-up's destroy and every later run). The
    limit takes effect when the command returns; Pulumi's own await timeouts bound it."""
    _Held.held += 1
    try:
        yield
    finally:
        _Held.held -= 1
    if not _Held.held and _Held.expired:
        message, _Held.expired = _Held.expired, None
        raise MeshError(message)


def parse_version(image_or_tag: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)(?:\.\d+)?", image_or_tag.rsplit(":", 1)[-1])
    return (int(match[1]), int(match[2])) if match else None


def host_form_for(version: tuple[int, int] | None) -> str:
    return "plain" if version is None or version >= PLAIN_HOST_SINCE else "shadow"


def id_tag(image: str, image_id: str) -> str:
    """`diffproxy:0.1.0` built as sha256:1a2b... -> `diffproxy:0.1.0-1a2b3c4d5e6f`: a new
    build is a new tag, so the Deployment changes and rolls instead of keeping an old pod."""
    digest = image_id.strip().removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{12,}", digest):
        raise MeshError(f"docker reported no image id for {image}: {image_id.strip()!r}")
    name, _, tag = image.rpartition(":")
    if "/" in tag or not name:  # no tag: a registry port, or a bare name
        name, tag = image, "latest"
    return f"{name}:{tag}-{digest[:12]}"


def has_sidecar(pod: dict) -> bool:
    """Injected either way: a regular `istio-proxy` container, or (Istio 1.28 on Kubernetes
    1.33+) a native sidecar, an init container with `restartPolicy: Always`."""
    spec = pod.get("spec", {})
    if any(c.get("name") == SIDECAR for c in spec.get("containers", [])):
        return True
    return any(c.get("name") == SIDECAR and c.get("restartPolicy") == "Always"
               for c in spec.get("initContainers", []))


class KindMesh:
    """One Pulumi stack on one kind cluster; `apply(mirror_percentage)` re-runs `pulumi up`."""

    backend = "kind"

    def __init__(self, settings: KindSettings, tools: Tools | None = None,
                 log: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
        self.settings = settings
        self.tools = tools or find_tools()
        self._log = log
        self.run_dir = (settings.run_dir or default_run_dir()).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._port_forward: PortForward | None = None
        self._console_port: int | None = None
        self._topology = settings.topology
        self._workspace = None
        self._stack = None
        self._image_tags: dict[str, str] = {}
        self.candidate_killed = False

    # Cluster, images, stack ---------------------------------------------------------------

    @property
    def kube_env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.settings.kubeconfig_path)}

    def kubectl(self, *args: str, timeout: float = 300, input_text: str | None = None) -> str:
        return _run([self.tools.kubectl, *args], "kubectl", env=self.kube_env, timeout=timeout,
                    input_text=input_text)

    def cluster_exists(self) -> bool:
        clusters = _run([self.tools.kind, "get", "clusters"], "kind get clusters").split()
        return self.settings.cluster_name in clusters

    def ensure_cluster(self) -> bool:
        """Reuse or create the cluster; True when it was created now."""
        name = self.settings.cluster_name
        self.settings.kubeconfig_path.parent.mkdir(parents=True, exist_ok=True)
        if self.cluster_exists():
            self._log(f"reusing kind cluster {name}")
            _run([self.tools.kind, "export", "kubeconfig", "--name", name,
                  "--kubeconfig", str(self.settings.kubeconfig_path)], "kind export kubeconfig")
            return False
        self._log(f"creating kind cluster {name} ({self.settings.node_image}; a few minutes the first time) ...")
        _run([self.tools.kind, "create", "cluster", "--name", name, "--image", self.settings.node_image,
              "--kubeconfig", str(self.settings.kubeconfig_path)], "kind create cluster", capture=False)
        return True

    def prepare(self) -> None:
        """Cluster, images and a stack that matches the cluster, before the first `apply`."""
        if self.ensure_cluster():
            # Whatever the state says, none of it exists on a cluster made just now.
            if self.stack_exists():
                self._log(f"dropping stack {self.settings.stack_name}: its cluster was re-created")
                self.forget_stack()
        else:
            self._warn_unsupported_kubernetes()
            if not self.stack_exists():
                self._refuse_orphans()
        self.build_images()
        self.load_images()

    def _warn_unsupported_kubernetes(self) -> None:
        """A reused cluster may come from another kind release, with another node image."""
        version = self.kubectl("get", "nodes", "-o",
                               "jsonpath={.items[0].status.nodeInfo.kubeletVersion}").strip()
        parsed = parse_version(version.lstrip("v") if version else "")
        low, high = ISTIO_KUBERNETES
        if parsed is not None and not low <= parsed <= high:
            self._log(f"warning: kind cluster {self.settings.cluster_name} runs Kubernetes {version}, "
                      f"outside {low[0]}.{low[1]}-{high[0]}.{high[1]} that Istio 1.28 supports; "
                      f"delete it to get the pinned {self.settings.node_image}")

    def _refuse_orphans(self) -> None:
        """A kept cluster whose state was lost: every create would fail with AlreadyExists
        (Helm: "cannot re-use a name"). Say so instead, with the way out."""
        t = self._topology
        names = dict.fromkeys((t.app_namespace, t.diffy_namespace, "istio-system"))
        found = self.kubectl("get", "namespace", *names, "--ignore-not-found", "-o", "name").split()
        if found:
            raise MeshError(
                f"kind cluster {self.settings.cluster_name} already has {', '.join(found)} but Pulumi "
                f"stack {self.settings.stack_name} in {self.settings.state_dir} does not exist: its "
                f"state was lost. Delete the cluster (kind delete cluster --name "
                f"{self.settings.cluster_name}) and run again.")

    @property
    def built_images(self) -> tuple[tuple[str, str], ...]:
        """(image, Dockerfile) for the two images no registry has: ours."""
        images = self._topology.images
        built = {images.diffproxy: "diffproxy/Dockerfile", images.httpbin: "candidate/Dockerfile",
                 images.candidate: "candidate/Dockerfile"}
        return tuple(built.items())

    def build_images(self) -> None:
        """Build, then tag each image by its id as well: the stack deploys the id tags."""
        for image, dockerfile in self.built_images:
            if not (PROJECT_ROOT / dockerfile).is_file():
                raise MeshError(f"{dockerfile} is missing; cannot build {image}")
            self._log(f"docker build {image}")
            _run([self.tools.docker, "build", "-t", image, "-f", str(PROJECT_ROOT / dockerfile),
                  str(PROJECT_ROOT)], f"docker build {image}", capture=False)
            image_id = _run([self.tools.docker, "image", "inspect", "--format", "{{.Id}}", image],
                            f"docker image inspect {image}")
            tagged = id_tag(image, image_id)
            _run([self.tools.docker, "tag", image, tagged], f"docker tag {tagged}")
            self._image_tags[image] = tagged

    def deployed_image(self, image: str) -> str:
        return self._image_tags.get(image, image)

    def load_images(self) -> None:
        for image, _ in self.built_images:
            self.load_image(self.deployed_image(image))

    def load_image(self, image: str) -> None:
        """`kind load docker-image`, else `docker save` + `kind load image-archive`: the first
        fails with "content digest ... not found" on Docker's containerd image store
        (kind issues #3795, #4247)."""
        name = self.settings.cluster_name
        self._log(f"kind load docker-image {image}")
        try:
            _run([self.tools.kind, "load", "docker-image", "--name", name, image],
                 f"kind load docker-image {image}")
            return
        except MeshError as first:
            failure = str(first)
        self._log("kind load docker-image failed; retrying with docker save + kind load image-archive")
        archive = self.run_dir / (re.sub(r"[^A-Za-z0-9_.-]", "_", image) + ".tar")
        try:
            _run([self.tools.docker, "save", "-o", str(archive), image], f"docker save {image}")
            _run([self.tools.kind, "load", "image-archive", "--name", name, str(archive)],
                 f"kind load image-archive {image}")
        except MeshError as second:
            raise MeshError(
                f"could not put {image} into kind cluster {name}. {failure}\n"
                f"(on Docker's containerd image store kind cannot find the image's content digest, "
                f"kind issues #3795 and #4247.) The fallback, docker save + kind load image-archive, "
                f"failed too: {second}") from None
        finally:
            archive.unlink(missing_ok=True)

    def _pulumi_env(self) -> dict[str, str]:
        state = self.settings.state_dir.resolve()
        state.mkdir(parents=True, exist_ok=True)
        return {
            "PULUMI_BACKEND_URL": state.as_uri(),
            # The local file backend encrypts config secrets with a passphrase; the demo has none.
            "PULUMI_CONFIG_PASSPHRASE": "",
            "KUBECONFIG": str(self.settings.kubeconfig_path),
            "PATH": str(Path(sys.executable).parent) + ":" + self.kube_env.get("PATH", ""),
        }

    def _local_workspace(self):
        if self._workspace is None:
            from pulumi import automation as auto

            self._workspace = auto.LocalWorkspace(work_dir=str(PROJECT_ROOT),
                                                  env_vars=self._pulumi_env())
        return self._workspace

    def stack_exists(self) -> bool:
        # File backends list project stacks as `name` or `organization/project/name`.
        names = {s.name.rsplit("/", 1)[-1] for s in self._local_workspace().list_stacks()}
        return self.settings.stack_name in names

    def forget_stack(self) -> None:
        """Remove the stack and its state without touching any cluster (`--force`)."""
        self._local_workspace().remove_stack(self.settings.stack_name, force=True)
        self._stack = None

    def _workspace_stack(self):
        if self._stack is None:
            from pulumi import automation as auto

            self._stack = auto.Stack.create_or_select(self.settings.stack_name,
                                                      self._local_workspace())
        return self._stack

    def stack_config(self, mirror_percentage: float) -> dict[str, str]:
        # Keys declared in Pulumi.yaml; kind names a cluster's context kind-<name>.
        images = self._topology.images
        return {"mirrorPercentage": f"{mirror_percentage:g}",
                "kubeContext": f"kind-{self.settings.cluster_name}",
                **{key: self.deployed_image(getattr(images, name))
                   for name, key in BUILT_IMAGE_KEYS.items()},
                **self.settings.extra_config}

    def apply(self, mirror_percentage: float | None = None) -> None:
        """`pulumi up --refresh` with the given mirror percentage, then wait for every
        Deployment, for every pod's sidecar, and for the caller's sidecar to have the route."""
        from pulumi import automation as auto

        if mirror_percentage is not None:
            self._topology = self._topology.with_(mirror_percentage=mirror_percentage)
        stack = self._workspace_stack()
        stack.set_all_config({k: auto.ConfigValue(v) for k, v in
                              self.stack_config(self._topology.mirror_percentage).items()})
        self._log(f"pulumi up (stack {self.settings.stack_name}, mirror {self._topology.mirror_percentage:g}%) ...")
        try:
            # Refresh first: objects deleted behind Pulumi's back are then created again.
            with pulumi_running():
                stack.up(on_output=self._log, refresh=True)
        except auto.errors.CommandError as exc:
            raise MeshError(f"pulumi up failed: {str(exc).strip().splitlines()[-1]}") from None
        namespaces = list(dict.fromkeys((self._topology.app_namespace, self._topology.diffy_namespace)))
        for ns in namespaces:
            self.kubectl("-n", ns, "wait", "--for=condition=available", "deployment", "--all",
                         "--timeout=300s", timeout=330)
        self.check_sidecars(namespaces)
        self.wait_for_mirror_route()

    def check_sidecars(self, namespaces: list[str]) -> None:
        bare: list[str] = []
        for ns in namespaces:
            pods = json.loads(self.kubectl("-n", ns, "get", "pods", "-o", "json"))
            bare += [f"{ns}/{p['metadata']['name']}" for p in pods.get("items", [])
                     if p.get("metadata", {}).get("deletionTimestamp") is None and not has_sidecar(p)]
        if bare:
            raise MeshError(f"pods without an Istio sidecar: {', '.join(bare)} (created before istiod "
                            f"was ready? kubectl rollout restart their Deployments)")

    def mirror_route_percentage(self) -> float | None:
        """The mirrored share the sleep pod's sidecar applies now (None: no route yet)."""
        t = self._topology
        dump = self.kubectl("-n", t.app_namespace, "exec", f"deploy/{t.sleep_name}", "-c", SIDECAR,
                            "--", "pilot-agent", "request", "GET",
                            "config_dump?resource=dynamic_route_configs", timeout=60)
        try:
            parsed = json.loads(dump)
        except ValueError:
            return None
        return envoyroute.mirror_percentage(parsed, *envoyroute.route_clusters(t))

    def wait_for_mirror_route(self, timeout: float = 120.0, interval: float = 1.0) -> None:
        """istiod pushes a changed VirtualService to the sidecars some time after `pulumi up`;
        copies counted before the sleep pod's sidecar has it would use the old percentage."""
        want = self._topology.mirror_percentage
        deadline = time.monotonic() + timeout
        seen = self.mirror_route_percentage()
        while seen is None or abs(seen - want) > 1e-6:
            if time.monotonic() > deadline:
                raise MeshError(f"the sleep pod's sidecar still mirrors {seen}% after {timeout:g}s, "
                                f"not the {want:g}% just applied (istiod has not pushed the route)")
            time.sleep(interval)
            seen = self.mirror_route_percentage()

    def destroy(self) -> None:
        from pulumi import automation as auto

        self._log("pulumi destroy ...")
        try:
            with pulumi_running():
                self._workspace_stack().destroy(on_output=self._log, refresh=True)
        except auto.errors.CommandError as exc:
            raise MeshError(f"pulumi destroy failed: {str(exc).strip().splitlines()[-1]}") from None

    def delete_cluster(self) -> None:
        self._log(f"kind delete cluster {self.settings.cluster_name}")
        _run([self.tools.kind, "delete", "cluster", "--name", self.settings.cluster_name],
             "kind delete cluster")

    def port_forward_console(self, local_port: int | None = None, timeout: float = 60.0) -> int:
        """The console on 127.0.0.1, restarted whenever kubectl exits (a pod restart ends it)."""
        t = self._topology
        port = pick({"console": local_port})["console"]
        forward = PortForward(
            [self.tools.kubectl, "-n", t.diffy_namespace, "port-forward", "--address", "127.0.0.1",
             f"svc/{t.diffproxy_name}", f"{port}:{t.ports.console}"],
            env=self.kube_env, log_path=self.run_dir / "port-forward-console.log",
            ready=processes.http_ready(f"http://127.0.0.1:{port}/api/1/info"), log=self._log)
        forward.start(timeout)
        self._port_forward = forward
        self._console_port = port
        return port

    def stop(self) -> None:
        if self._port_forward is not None:
            self._port_forward.stop()
            self._port_forward = None

    # The suite's view ---------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        if self._console_port is None:
            raise MeshError("the console is not port-forwarded yet")
        return f"http://127.0.0.1:{self._console_port}"

    @property
    def mirror_percentage(self) -> float:
        return self._topology.mirror_percentage

    @property
    def entry_host(self) -> str:
        return f"{self._topology.service}:{self._topology.ports.app}"

    @property
    def host_form(self) -> str:
        """The installed Istio's: the stack's `mirrorHostForm` output (istioVersion and
        istioCompatibilityVersion through topology.Istio), else istiod's image tag."""
        outputs = self._workspace_stack().outputs()
        if "mirrorHostForm" in outputs:
            return str(outputs["mirrorHostForm"].value)
        if "istioVersion" in outputs:
            return host_form_for(parse_version(str(outputs["istioVersion"].value)))
        image = self.kubectl("-n", "istio-system", "get", "deployment", "istiod", "-o",
                             "jsonpath={.spec.template.spec.containers[0].image}")
        return host_form_for(parse_version(image))

    def send(self, path: str, n: int = 1) -> list[traffic.Reply]:
        return self.send_paths(list(traffic.expand([path], n)))

    def send_paths(self, paths: list[str], interval: float = 0.0) -> list[traffic.Reply]:
        """curl from the sleep pod, through its sidecar, as the original demo does."""
        t = self._topology
        base = f"http://{t.service}:{t.ports.app}"
        pause = f"sleep {interval:g}; " if interval > 0 else ""
        script = pause.join(
            f"curl -sS -o - -w '\\n{STATUS_MARK}%{{http_code}}\\n' {shlex.quote(base + p)}; "
            for p in paths) + "true"
        out = self.kubectl("-n", t.app_namespace, "exec", f"deploy/{t.sleep_name}", "-c", t.sleep_name,
                           "--", "sh", "-c", script, timeout=60 + 5 * len(paths))
        return parse_curl_output(out, paths)

    def _logs(self, namespace: str, deployment: str, container: str) -> str:
        return self.kubectl("-n", namespace, "logs", f"deploy/{deployment}", "-c", container,
                            "--tail=-1")

    def received(self) -> Received:
        t = self._topology
        v1 = self._logs(t.app_namespace, kube.app_deployment(t, "v1"), t.service)
        v2 = self._logs(t.app_namespace, kube.app_deployment(t, "v2"), "relay")
        # kubelet probes are TCP, so every logged request line is traffic.
        return Received(v1=len(accesslog.parse(v1)), v2=len(accesslog.parse(v2)))

    def relay_hosts(self) -> list[str] | None:
        """The relay image's log format has no Host; the copies' Host is not observable here."""
        return None

    def kill_candidate(self) -> None:
        t = self._topology
        name = kube.backend_deployment(t, "v2")
        self.kubectl("-n", t.diffy_namespace, "scale", f"deployment/{name}", "--replicas=0")
        selector = ",".join(f"{k}={v}" for k, v in t.backend_labels("v2").items())
        self.kubectl("-n", t.diffy_namespace, "wait", "--for=delete", "pod", "-l", selector,
                     "--timeout=120s", timeout=150)
        self.candidate_killed = True

    def restore_candidate(self) -> None:
        t = self._topology
        name = kube.backend_deployment(t, "v2")
        self.kubectl("-n", t.diffy_namespace, "scale", f"deployment/{name}", "--replicas=1")
        self.kubectl("-n", t.diffy_namespace, "rollout", "status", f"deployment/{name}",
                     "--timeout=180s", timeout=200)
        self.candidate_killed = False


def parse_curl_output(out: str, paths: list[str]) -> list[traffic.Reply]:
    """Split `body\n<mark>status\n` repeated; a failed curl reports status 0."""
    parts = out.split("\n" + STATUS_MARK)
    if len(parts) != len(paths) + 1:
        raise MeshError(f"expected {len(paths)} curl results from the sleep pod, got {len(parts) - 1}")
    replies: list[traffic.Reply] = []
    body = parts[0]
    for path, part in zip(paths, parts[1:]):
        status_text, _, next_body = part.partition("\n")
        replies.append(traffic.Reply(path, int(status_text) if status_text.isdigit() else 0,
                                     body.encode(), ()))
        body = next_body
    return replies


# `python -m localmesh demo --backend kind` and `down` --------------------------------------


def run_demo(settings: KindSettings) -> int:
    mesh = KindMesh(settings)
    mesh.prepare()
    mesh.apply(settings.topology.mirror_percentage)
    try:
        port = mesh.port_forward_console()
        rounds = traffic.demo_rounds(settings.topology.latency.min_samples)
        paths = list(traffic.expand(traffic.DEMO_PATHS, rounds * len(traffic.DEMO_PATHS)))
        replies = mesh.send_paths(paths, interval=traffic.DEMO_INTERVAL)
        print(f"sent {len(replies)} sample requests from the sleep pod through its sidecar")
        t = settings.topology
        py = shlex.quote(sys.executable)
        print(f"""
The mirroring demo is running on kind cluster {settings.cluster_name} (mirror {t.mirror_percentage:g}%).

  console (port-forward)  http://127.0.0.1:{port}/
  kubeconfig              {settings.kubeconfig_path}

Send more traffic (the original demo's command):
  KUBECONFIG={settings.kubeconfig_path} {kube.traffic_command(t)}
See the report:
  {py} -m diffproxy report --url http://127.0.0.1:{port} --fail-on-signal

Press Ctrl-C to stop the port-forward. The cluster keeps running; remove it with:
  {py} -m localmesh down --cluster-name {settings.cluster_name}
""", flush=True)
        from localmesh.demo import stop_signals_raise

        with stop_signals_raise():
            try:
                while True:
                    time.sleep(1.0)
            except KeyboardInterrupt:
                pass
    finally:
        mesh.stop()
    return 0


def run_down(settings: KindSettings) -> int:
    """Destroy the stack, remove it, delete the cluster; a stack whose cluster is already
    gone is removed from the state alone (there is nothing left to destroy)."""
    mesh = KindMesh(settings)
    name, stack = settings.cluster_name, settings.stack_name
    has_stack = mesh.stack_exists()
    if not mesh.cluster_exists():
        if has_stack:
            mesh.forget_stack()
            print(f"no kind cluster named {name}; removed the stale Pulumi stack {stack}")
        else:
            print(f"no kind cluster named {name} and no Pulumi stack {stack}; nothing to remove")
        return 0
    mesh.ensure_cluster()  # exports its kubeconfig for Pulumi
    if has_stack:
        # Resources first: Pulumi's state must not outlive the cluster it describes.
        mesh.destroy()
        mesh.forget_stack()
    mesh.delete_cluster()
    settings.kubeconfig_path.unlink(missing_ok=True)
    return 0
