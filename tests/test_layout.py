"""The package's layout: its import graph has no cycle, and the file layer imports nothing
of fastbp (CONTRIBUTING.md, "One place for each concept")."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fastbp"
MODULES = {path.stem: path for path in PACKAGE.glob("*.py")}


def imports_of(name):
    """The fastbp modules that module `name` imports anywhere in it, functions included;
    a name imported from the package itself (``from . import x``) counts as the module x, or
    as the package's __init__ when x is no module."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").split(".")[0] == "fastbp"):
            module = node.module if node.level == 1 else ".".join(node.module.split(".")[1:])
            if module:
                found.add(module.split(".")[0])
            else:
                found.update(a.name if a.name in MODULES else "__init__" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] if "." in a.name else "__init__"
                         for a in node.names if a.name.split(".")[0] == "fastbp")
    return found - {name}


def cycle_in(graph):
    """One cycle of the directed graph {node: successors} as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for successor in sorted(graph.get(node, ())):
            if state.get(successor) == "open":
                return path[path.index(successor):] + [successor]
            if successor not in state:
                found = visit(successor, path + [successor])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_graph_has_no_cycle():
    graph = {name: imports_of(name) for name in MODULES}
    assert graph["__init__"] >= {"network", "estimators", "io", "training"}   # (the walk sees imports)
    assert cycle_in(graph) is None, " -> ".join(cycle_in(graph))


def test_the_file_layer_imports_nothing_of_fastbp():
    assert imports_of("io") == set()
