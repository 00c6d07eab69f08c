"The import graph of gold/*.py (module- and function-level imports) has no cycle."
import ast
from pathlib import Path

import pytest

GOLD = Path(__file__).resolve().parents[1] / "gold"


def imported_modules(source: str, modules: set[str]) -> set[str]:
    "Sibling modules a module's source imports anywhere (`from .x`, `from . import x`, `from gold.x`, `import gold.x`)."
    deps = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1:
                deps |= {mod.split(".")[0]} if mod else {a.name for a in node.names}
            elif mod == "gold":
                deps |= {a.name for a in node.names}
            elif mod.startswith("gold."):
                deps.add(mod.split(".")[1])
        elif isinstance(node, ast.Import):
            deps |= {a.name.split(".")[1] for a in node.names if a.name.startswith("gold.")}
    return deps & modules


def import_graph(folder: Path) -> dict[str, set[str]]:
    "Module -> the sibling modules it imports, for every public module file of the package folder."
    files = {p.stem: p for p in folder.glob("*.py") if not p.stem.startswith("_")}
    return {m: imported_modules(p.read_text(), set(files)) - {m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One import cycle as [a, b, ..., a], or None (depth-first search)."
    state, stack = {}, []

    def visit(v):
        state[v] = "open"; stack.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == "open":
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = "done"; stack.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_finder_on_made_up_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_parser_sees_every_kind_of_import():
    src = ("from .a import f\nfrom . import b\nimport gold.c\nfrom gold.d import g\nfrom gold import e\n"
           "def late():\n    from gold.f import h\nimport os\nfrom torch import nn\n")
    assert imported_modules(src, set("abcdefz")) == set("abcdef")


def test_gold_imports_are_acyclic():
    graph = import_graph(GOLD)
    assert {"train", "infer", "metrics", "checkpoints"} <= set(graph)
    cycle = find_cycle(graph)
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))
