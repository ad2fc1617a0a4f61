"""The package's shape: no import circle (lazy and type-only imports included) and layers that
point one way. An AST walk over the sources, so a wrong-way import fails here before it ships.

Rooms, from the bottom up (a room may import its own and the ones listed for it):

    base      lionloop/{errors,records,rundir,processes,thinking}.py, lionloop/config/
    stores    stores/                    base
    teacher   lionloop/teacher/          base, stores
    student   lionloop/student/          base
    embedding lionloop/embedding.py      base, student
    plugin    lionloop/plugin/ + lionloop/__init__.py   base, stores, teacher, student
    plugins   plugins/ (built-in plugins)  the plugin API and what it stands on (never the loop)
    loop      lionloop/loop/             all of the above but plugins (reached via entry points)
    inspect   lionloop/inspect/          base, stores, embedding (never the loop)
    bench     lionloop/bench/            loop, inspect, plugin, ... (never plugins/ directly)
    testing   lionloop/testing/          anything but bench and cli
    cli       lionloop/cli/              anything
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> the import name it installs as (pyproject's package-dir).
TREES = {"lionloop": "lionloop", "plugins": "lionloop.plugins", "stores": "lionloop.stores"}

BASE = {"errors", "config", "records", "rundir", "processes", "thinking"}
ALLOWED = {
    "base": {"base"},
    "stores": {"base", "stores"},
    "teacher": {"base", "stores", "teacher"},
    "student": {"base", "student"},
    "embedding": {"base", "student", "embedding"},
    "plugin": {"base", "stores", "teacher", "student", "plugin"},
    "plugins": {"base", "stores", "teacher", "student", "embedding", "plugin", "plugins"},
    "loop": {"base", "stores", "teacher", "student", "embedding", "plugin", "loop"},
    "inspect": {"base", "stores", "embedding", "inspect"},
    "bench": {"base", "stores", "teacher", "student", "embedding", "plugin", "loop", "inspect", "bench"},
    "testing": {"base", "stores", "teacher", "student", "embedding", "plugin", "plugins", "loop", "inspect",
                "testing"},
    "cli": {"base", "stores", "teacher", "student", "embedding", "plugin", "loop", "inspect", "bench", "cli"},
}


def modules() -> dict[str, Path]:
    out = {}
    for folder, name in TREES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([name, *parts])] = path
    return out


def room(module: str) -> str:
    parts = module.split(".")
    if module == "lionloop":
        return "plugin"  # the top level is the plugin API's face
    second = parts[1]
    if second in BASE:
        return "base"
    if second in ALLOWED:
        return second
    return {"plugins": "plugins", "stores": "stores", "embedding": "embedding"}[second]


def imports(path: Path, module: str, known: dict[str, Path]) -> set[str]:
    """Every lionloop module `path` imports, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the submodule when there is one.
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for name in names:
            if not name.startswith("lionloop"):
                continue
            while name and name not in known:  # `import lionloop.x.y` names the module it reaches
                name = name.rsplit(".", 1)[0] if "." in name else ""
            if name and name != module:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(p, m, known) for m, p in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_package() -> None:
    g = graph()
    assert "lionloop.loop.nodes" in g and "lionloop.plugins.lion" in g and "lionloop.stores.pool" in g
    # Lazy imports count: the CLI imports the runner inside its commands.
    assert "lionloop.loop.runner" in g["lionloop.cli.app"]
    # The walk would see a wrong-way import: a made-up edge is caught by the layer rule below.
    assert "loop" not in ALLOWED["inspect"]


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_cycle_finder_finds_a_planted_circle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]


def test_layers_point_one_way() -> None:
    wrong = defaultdict(list)
    for mod, deps in graph().items():
        for dep in deps:
            if room(dep) not in ALLOWED[room(mod)]:
                wrong[f"{room(mod)} -> {room(dep)}"].append(f"{mod} imports {dep}")
    assert not wrong, dict(wrong)


def test_plugin_api_is_one_import() -> None:
    import lionloop
    import lionloop.plugin

    assert lionloop.__all__ == lionloop.plugin.__all__
    missing = [n for n in lionloop.__all__ if not hasattr(lionloop, n)]
    assert not missing
    for name in ("hookimpl", "GeneratorSpec", "GeneratorOptions", "Candidate", "Instruction", "TeacherRequest",
                 "siblings", "RoundContext"):
        assert name in lionloop.__all__, name
