"""The layout of `diffproxy/`: no import cycles, and the stages depend only downstream
(the store never reaches back into the pipeline or the proxy port)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "diffproxy"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
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
                candidates = [base, *(f"{base}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            found.update(c for c in candidates if c in modules and c != name)
        graph[name] = found
    return graph


def test_no_module_of_diffproxy_imports_itself_back():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            assert state.get(nxt) != 1, "import cycle: " + " -> ".join([*trail, node, nxt])
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [])
    assert "diffproxy.pipeline" in graph and "diffproxy.store" in graph


def test_stages_only_depend_downstream():
    graph = _imports()
    upstream = {"diffproxy.receive", "diffproxy.forward", "diffproxy.pipeline", "diffproxy.service"}
    for module in ("diffproxy.model", "diffproxy.store", "diffproxy.sampling", "diffproxy.lift",
                   "diffproxy.compare", "diffproxy.headers", "diffproxy.transport"):
        assert not graph[module] & upstream, f"{module} imports {graph[module] & upstream}"
    assert graph["diffproxy.model"] == set()  # the nouns import no stage
