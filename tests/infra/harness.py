"""Run a real Pulumi program (`__main__.py`, an example's, or a function) against Pulumi's
mock engine.

The Python language host runs a program as `runpy.run_path(<project dir>)` inside
`run_in_stack`; this does the same, with `pulumi.runtime.set_mocks` standing in for the
engine. Each run gets an empty `contextvars.Context` (the SDK keeps its settings, config and
root stack in context variables) and its own event loop, so runs cannot see each other.
"""

from __future__ import annotations

import asyncio
import contextvars
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.mocks import MockMonitor, MockResourceArgs
from pulumi.runtime.stack import run_in_stack

ROOT = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
STACK = "test"


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    inputs: dict
    parent: str
    provider: str
    dependencies: list[str]
    custom: bool
    import_id: str = ""  # set: the resource adopts an existing object (and deletes it on destroy)
    retain_on_delete: bool = False
    # Earlier identities: a URN, or (name, type, parent URN) of an alias spec ("": unchanged).
    aliases: list[str | tuple[str, str, str]] = field(default_factory=list)


@dataclass
class ProgramRun:
    resources: list[Registration] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str) -> Registration:
        found = [r for r in self.resources if r.type == type_ and r.name == name]
        assert len(found) == 1, f"{type_} {name}: {len(found)} registrations"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.resources if r.urn == urn)

    def kube(self, type_: str, ident: str) -> Registration:
        """The one Kubernetes object of `type_` called `ident` ("namespace/name", or "name"
        for cluster-scoped ones) on the cluster, whatever its Pulumi name."""
        found = [r for r in self.of_type(type_) if object_id(r) == ident]
        assert len(found) == 1, f"{type_} {ident}: {len(found)} registrations"
        return found[0]

    def kube_objects(self) -> list[dict]:
        """Every Kubernetes object as the program sent it: apiVersion, kind and its fields."""
        objects = []
        for r in self.resources:
            if not r.custom or not r.type.startswith("kubernetes:") or "helm" in r.type:
                continue
            if r.type.startswith("pulumi:providers:"):
                continue
            objects.append(dict(r.inputs))
        return objects


def object_id(r: Registration) -> str:
    """"namespace/name" of a Kubernetes object as sent; its Pulumi name for anything else."""
    meta = r.inputs.get("metadata") if r.type.startswith("kubernetes:") else None
    if not isinstance(meta, dict) or "name" not in meta:
        return r.name
    return f"{meta['namespace']}/{meta['name']}" if "namespace" in meta else meta["name"]


class _Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args: MockResourceArgs):
        # Kubernetes resources report what they were given, as the provider does on create.
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args):
        return {}, None


class _RecordingMonitor(MockMonitor):
    """MockMonitor that also keeps what the engine would see: parent, provider, dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks, run: ProgramRun) -> None:
        super().__init__(mocks)
        self._run = run

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        from pulumi.runtime import rpc

        self._run.resources.append(Registration(
            urn=response.urn, type=request.type, name=request.name,
            inputs=rpc.deserialize_properties(request.object), parent=request.parent,
            provider=request.provider, dependencies=list(request.dependencies),
            custom=request.custom, import_id=request.importId,
            retain_on_delete=bool(getattr(request, "retainOnDelete", False)),
            aliases=[a.urn if a.HasField("urn") else (a.spec.name, a.spec.type, a.spec.parentUrn)
                     for a in request.aliases]))
        return response


def run_program(config: dict[str, Any] | None = None, into: ProgramRun | None = None,
                project_dir: Path = ROOT, preview: bool = False) -> ProgramRun:
    """Run `project_dir`'s __main__.py with `config` (short keys, values as `pulumi config
    set` stores them), as `pulumi up` would (`preview`: as `pulumi preview`).

    `into` collects the registrations even when the program raises.
    """
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())["name"]
    return run_function(lambda: runpy.run_path(str(project_dir), run_name="__main__"),
                        config, into, project=project, preview=preview)


def run_function(program: Callable[[], None], config: dict[str, Any] | None = None,
                 into: ProgramRun | None = None, project: str = PROJECT,
                 preview: bool = False) -> ProgramRun:
    """Run `program` as a whole Pulumi program; what it registers and exports is recorded."""
    run = into if into is not None else ProgramRun()
    settings = {k: str(v) for k, v in (config or {}).items()}
    return contextvars.Context().run(_run, program, settings, run, project, preview)


def _run(body: Callable[[], None], config: dict[str, str], run: ProgramRun, project: str,
         preview: bool) -> ProgramRun:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    path_added = str(ROOT) not in sys.path
    if path_added:
        sys.path.insert(0, str(ROOT))
    try:
        mocks = _Mocks()
        pulumi.runtime.set_mocks(mocks, project=project, stack=STACK, preview=preview,
                                 monitor=_RecordingMonitor(mocks, run))
        # set_mocks registers a root stack; the language host makes its own in run_in_stack.
        pulumi.runtime.settings.set_root_resource(None)
        pulumi.runtime.set_all_config({f"{project}:{k}": v for k, v in config.items()})
        stacks: list[Any] = []

        def program() -> None:
            stacks.append(pulumi.runtime.settings.get_root_resource())
            body()

        loop.run_until_complete(run_in_stack(program))
        stack = stacks[0]
        for name, value in stack.outputs.items():
            run.outputs[name] = loop.run_until_complete(
                pulumi.Output.from_input(value).future())
        return run
    finally:
        if path_added:
            sys.path.remove(str(ROOT))
        loop.close()
        asyncio.set_event_loop(None)
