"""The layout of `diffproxy/`: no import cycles, and the stages depend only downstream
(the store never reaches back into the pipeline or the proxy port); and no import cycle
anywhere in the repository's own packages."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "diffproxy"
# Every first-party package (pyproject.toml's isort list), tests included.
FIRST_PARTY = ("bench", "candidate", "components", "diffproxy", "localmesh", "tests", "toolbox",
               "topology")


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(packages: tuple[str, ...] = ("diffproxy",)) -> dict[str, set[str]]:
    """Module -> the modules of `packages` it imports, wherever the import statement is
    (a function-local import closes a cycle just the same, only later)."""
    modules = {_module(p): p for package in packages for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports pkg.mod (grimp's reading too); `from pkg
                # import name` imports pkg.
                candidates = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                              for a in node.names]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found.update(c for c in candidates if c in modules and c != name)
        graph[name] = found
    return graph


def _assert_acyclic(graph: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_no_module_of_diffproxy_imports_itself_back():
    graph = _imports()
    _assert_acyclic(graph)
    assert "diffproxy.pipeline" in graph and "diffproxy.store" in graph


def test_no_import_cycle_in_the_repository():
    graph = _imports(FIRST_PARTY)
    _assert_acyclic(graph)
    assert {"topology.model", "localmesh.stack", "toolbox.procs", "bench.wrk"} <= set(graph)


def test_the_cycle_check_finds_a_cycle_behind_a_function_local_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
    try:
        _assert_acyclic(graph)
    except AssertionError as exc:
        assert "import cycle: a -> b -> c -> a" in str(exc)
    else:
        raise AssertionError("a cycle went unnoticed")


def test_stages_only_depend_downstream():
    graph = _imports()
    upstream = {"diffproxy.receive", "diffproxy.forward", "diffproxy.pipeline", "diffproxy.service"}
    for module in ("diffproxy.model", "diffproxy.store", "diffproxy.sampling", "diffproxy.lift",
                   "diffproxy.compare", "diffproxy.headers", "diffproxy.transport"):
        assert not graph[module] & upstream, f"{module} imports {graph[module] & upstream}"
    assert graph["diffproxy.model"] == set()  # the nouns import no stage
