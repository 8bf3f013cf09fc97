"""The packages stay layered: no import cycle between modules, no import from a lower layer to a higher one.

STYLE.md §1: models (networks) < index (storage) < shapes (the demo world) < pipeline, query < serve.
Every import statement counts, at module top or inside a function: a deferred import still ties two
files together. Read with `ast`, so nothing is imported to check it.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# rank of each package; a module may import its own package and those of lower rank only
LAYERS = {"models": 0, "index": 1, "shapes": 2, "pipeline": 3, "query": 3, "serve": 4}
# what sits above every package: scripts, tests and benchmarks (a library module never imports them)
TOP = {"tests", "benchmarks", "build_index", "conftest"}


def module_name(path: Path) -> str:
    """`index/io.py` -> `index.io`; `index/__init__.py` -> `index`."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def library_modules() -> dict[str, Path]:
    """Every module of the six packages, by dotted name."""
    return {module_name(p): p for pkg in LAYERS for p in sorted((ROOT / pkg).rglob("*.py"))}


def imported(node: ast.AST, module: str, is_package: bool, known: set[str]) -> list[str]:
    """The modules one import statement loads, named as they are (`from a import b` is `a.b` if that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(node.level - 1):  # `from .. import x`: one package up per extra dot
        base = base.rpartition(".")[0]
    source = ".".join(filter(None, [base if node.level else "", node.module or ""]))
    names = [f"{source}.{alias.name}" for alias in node.names]
    submodules = [name for name in names if name in known]
    # `from pkg import sub` loads pkg.sub; `from pkg import name` loads pkg (its __init__)
    return submodules + ([source] if len(submodules) < len(names) else [])


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules (of the six packages, or scripts and tests above them) it imports anywhere in it."""
    modules = library_modules()
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(imported(node, name, path.name == "__init__.py", known))
        ours = {t for t in targets if t.split(".")[0] in LAYERS or t.split(".")[0] in TOP}
        graph[name] = {t for t in ours if t != name}
    return graph


def layer(module: str) -> float:
    """The rank of a module's package (scripts and tests rank above everything)."""
    return LAYERS.get(module.split(".")[0], float("inf"))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """`a -> b` for every import of a module of a higher layer, or of the same rank in another package."""
    found = []
    for a, targets in graph.items():
        for b in sorted(targets):
            same_package = a.split(".")[0] == b.split(".")[0]
            if layer(b) > layer(a) or (layer(b) == layer(a) and not same_package):
                found.append(f"{a} -> {b}")
    return sorted(found)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_the_parser_sees_deferred_and_relative_imports(tmp_path):
    """The checker itself: an import inside a function and a relative import are both edges."""
    code = "def f():\n    from index.io import atomic_path\n"
    node = ast.parse(code).body[0].body[0]
    assert imported(node, "models.checkpoint", False, {"index.io"}) == ["index.io"]
    relative = ast.parse("from . import io, nothing\n").body[0]
    assert sorted(imported(relative, "index.atlas", False, {"index.io"})) == ["index", "index.io"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert upward_imports({"models.x": {"index.io"}, "query.y": {"pipeline.z", "index.io"}}) == [
        "models.x -> index.io",
        "query.y -> pipeline.z",
    ]


def test_every_package_is_read():
    """All six packages are found, so an empty walk cannot pass the checks below."""
    graph = import_graph()
    assert {name.split(".")[0] for name in graph} == set(LAYERS)
    assert sum(len(targets) for targets in graph.values()) > 100


def test_no_import_cycle():
    """No two modules import each other, directly or through others."""
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_upward_import():
    """No module imports a package of a higher layer (models < index < shapes < pipeline, query < serve)."""
    found = upward_imports(import_graph())
    assert not found, "imports from a lower layer to a higher one: " + "; ".join(found)


def test_only_entry_points_import_a_cli_module():
    """The CLIs are thin layers on top: no library or server module imports query.cli, pipeline.cli or serve.cli
    (the logic a CLI and the page share lives in the library, e.g. query/opening.py)."""
    clis = {"query.cli", "pipeline.cli", "serve.cli", "models.convert"}
    entry = clis | {"query.__main__", "pipeline.__main__", "serve.__main__"}
    found = [f"{m} -> {t}" for m, ts in import_graph().items() if m not in entry for t in ts if t in clis]
    assert not found, "CLI modules imported by the library: " + "; ".join(found)
