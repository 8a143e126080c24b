"""The same demo on a kind cluster: images built and loaded, the Pulumi program run through
the Automation API with a local file state backend, the console port-forwarded.

`KindMesh` offers the e2e suite the same methods as `LocalMesh` (send, received,
kill_candidate, api_url). It needs a working Docker engine, kind, kubectl and the Pulumi CLI;
`missing_tools()` names whichever is absent. Istio is installed by the Pulumi program.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from localmesh import accesslog, processes, traffic
from localmesh.errors import MeshError
from localmesh.ports import pick
from localmesh.stack import PROJECT_ROOT, Received, default_run_dir
from topology import DEFAULT, Topology, kube

PULUMI_STACK = "kind"
# Istio before 1.28 sends mirrored copies with `-shadow` appended to the host.
PLAIN_HOST_SINCE = (1, 28)
STATUS_MARK = "__localmesh_status__"


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
    stack_name: str = PULUMI_STACK
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


def parse_version(image_or_tag: str) -> tuple[int, int] | None:
    match = re.search(r"(\d+)\.(\d+)(?:\.\d+)?", image_or_tag.rsplit(":", 1)[-1])
    return (int(match[1]), int(match[2])) if match else None


def host_form_for(version: tuple[int, int] | None) -> str:
    return "plain" if version is None or version >= PLAIN_HOST_SINCE else "shadow"


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
        self._supervisor = processes.Supervisor(self.run_dir)
        self._console_port: int | None = None
        self._topology = settings.topology
        self._stack = None
        self.candidate_killed = False

    # Cluster, images, stack ---------------------------------------------------------------

    @property
    def kube_env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.settings.kubeconfig_path)}

    def kubectl(self, *args: str, timeout: float = 300, input_text: str | None = None) -> str:
        return _run([self.tools.kubectl, *args], "kubectl", env=self.kube_env, timeout=timeout,
                    input_text=input_text)

    def ensure_cluster(self) -> None:
        name = self.settings.cluster_name
        existing = _run([self.tools.kind, "get", "clusters"], "kind get clusters").split()
        self.settings.kubeconfig_path.parent.mkdir(parents=True, exist_ok=True)
        if name in existing:
            self._log(f"reusing kind cluster {name}")
            _run([self.tools.kind, "export", "kubeconfig", "--name", name,
                  "--kubeconfig", str(self.settings.kubeconfig_path)], "kind export kubeconfig")
            return
        self._log(f"creating kind cluster {name} (a few minutes the first time) ...")
        _run([self.tools.kind, "create", "cluster", "--name", name,
              "--kubeconfig", str(self.settings.kubeconfig_path)], "kind create cluster", capture=False)

    @property
    def built_images(self) -> tuple[tuple[str, str], ...]:
        """(image, Dockerfile) for the two images no registry has: ours."""
        images = self._topology.images
        built = {images.diffproxy: "diffproxy/Dockerfile", images.httpbin: "candidate/Dockerfile",
                 images.candidate: "candidate/Dockerfile"}
        return tuple(built.items())

    def build_images(self) -> None:
        for image, dockerfile in self.built_images:
            if not (PROJECT_ROOT / dockerfile).is_file():
                raise MeshError(f"{dockerfile} is missing; cannot build {image}")
            self._log(f"docker build {image}")
            _run([self.tools.docker, "build", "-t", image, "-f", str(PROJECT_ROOT / dockerfile),
                  str(PROJECT_ROOT)], f"docker build {image}", capture=False)

    def load_images(self, loader: Callable[[str], None] | None = None) -> None:
        """`loader` defaults to `kind load docker-image`; the suite passes pytest-kind's."""
        for image, _ in self.built_images:
            self._log(f"kind load docker-image {image}")
            if loader is not None:
                loader(image)
            else:
                _run([self.tools.kind, "load", "docker-image", "--name", self.settings.cluster_name,
                      image], f"kind load docker-image {image}")

    def _workspace_stack(self):
        if self._stack is not None:
            return self._stack
        from pulumi import automation as auto

        state = self.settings.state_dir.resolve()
        state.mkdir(parents=True, exist_ok=True)
        env = {
            "PULUMI_BACKEND_URL": state.as_uri(),
            # The local file backend encrypts config secrets with a passphrase; the demo has none.
            "PULUMI_CONFIG_PASSPHRASE": "",
            "KUBECONFIG": str(self.settings.kubeconfig_path),
            "PATH": str(Path(sys.executable).parent) + ":" + self.kube_env.get("PATH", ""),
        }
        self._stack = auto.create_or_select_stack(
            stack_name=self.settings.stack_name, work_dir=str(PROJECT_ROOT),
            opts=auto.LocalWorkspaceOptions(env_vars=env))
        return self._stack

    def stack_config(self, mirror_percentage: float) -> dict[str, str]:
        # Keys declared in Pulumi.yaml; kind names a cluster's context kind-<name>.
        return {"mirrorPercentage": f"{mirror_percentage:g}",
                "kubeContext": f"kind-{self.settings.cluster_name}",
                **self.settings.extra_config}

    def apply(self, mirror_percentage: float | None = None) -> None:
        """`pulumi up` with the given mirror percentage, then wait for every Deployment."""
        from pulumi import automation as auto

        if mirror_percentage is not None:
            self._topology = self._topology.with_(mirror_percentage=mirror_percentage)
        stack = self._workspace_stack()
        stack.set_all_config({k: auto.ConfigValue(v) for k, v in
                              self.stack_config(self._topology.mirror_percentage).items()})
        self._log(f"pulumi up (stack {self.settings.stack_name}, mirror {self._topology.mirror_percentage:g}%) ...")
        try:
            stack.up(on_output=self._log)
        except auto.errors.CommandError as exc:
            raise MeshError(f"pulumi up failed: {str(exc).strip().splitlines()[-1]}") from None
        for ns in dict.fromkeys((self._topology.app_namespace, self._topology.diffy_namespace)):
            self.kubectl("-n", ns, "wait", "--for=condition=available", "deployment", "--all",
                         "--timeout=300s", timeout=330)

    def destroy(self) -> None:
        from pulumi import automation as auto

        self._log("pulumi destroy ...")
        try:
            self._workspace_stack().destroy(on_output=self._log)
        except auto.errors.CommandError as exc:
            raise MeshError(f"pulumi destroy failed: {str(exc).strip().splitlines()[-1]}") from None

    def delete_cluster(self) -> None:
        self._log(f"kind delete cluster {self.settings.cluster_name}")
        _run([self.tools.kind, "delete", "cluster", "--name", self.settings.cluster_name],
             "kind delete cluster")

    def port_forward_console(self, local_port: int | None = None) -> int:
        t = self._topology
        port = pick({"console": local_port})["console"]
        managed = self._supervisor.start("port-forward-console", [
            self.tools.kubectl, "--kubeconfig", str(self.settings.kubeconfig_path),
            "-n", t.diffy_namespace, "port-forward", "--address", "127.0.0.1",
            f"svc/{t.diffproxy_name}", f"{port}:{t.ports.console}"])
        processes.wait_ready(managed, processes.http_ready(f"http://127.0.0.1:{port}/api/1/info"),
                             60.0, port)
        self._console_port = port
        return port

    def stop(self) -> None:
        self._supervisor.stop_all()

    # The suite's view ---------------------------------------------------------------------

    def use_console_port(self, port: int) -> None:
        """For a port-forward started elsewhere (pytest-kind's)."""
        self._console_port = port

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
        """The installed Istio's: the stack's `istioVersion` output, else istiod's image tag."""
        outputs = self._workspace_stack().outputs()
        if "istioVersion" in outputs:
            return host_form_for(parse_version(str(outputs["istioVersion"].value)))
        image = self.kubectl("-n", "istio-system", "get", "deployment", "istiod", "-o",
                             "jsonpath={.spec.template.spec.containers[0].image}")
        return host_form_for(parse_version(image))

    def send(self, path: str, n: int = 1) -> list[traffic.Reply]:
        return self.send_paths(list(traffic.expand([path], n)))

    def send_paths(self, paths: list[str]) -> list[traffic.Reply]:
        """curl from the sleep pod, through its sidecar, as the original demo does."""
        t = self._topology
        base = f"http://{t.service}:{t.ports.app}"
        script = "".join(
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
    mesh.ensure_cluster()
    mesh.build_images()
    mesh.load_images()
    mesh.apply(settings.topology.mirror_percentage)
    try:
        port = mesh.port_forward_console()
        paths = list(traffic.expand(traffic.DEMO_PATHS, 3 * len(traffic.DEMO_PATHS)))
        replies = mesh.send_paths(paths)
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
    mesh = KindMesh(settings)
    name = settings.cluster_name
    if name not in _run([mesh.tools.kind, "get", "clusters"], "kind get clusters").split():
        print(f"no kind cluster named {name}; nothing to remove")
        return 0
    mesh.ensure_cluster()  # exports its kubeconfig for Pulumi
    # Resources first: Pulumi's state must not outlive the cluster it describes.
    if settings.state_dir.is_dir():
        mesh.destroy()
    mesh.delete_cluster()
    return 0
