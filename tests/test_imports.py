"""The package's import graph: no circle among its modules (imports inside functions count: they
only hide one), the storage side (SOURCE in, OUT out) imports none of the stages, and only the
runtime imports Ray."""
from __future__ import annotations

import ast
from pathlib import Path

import vidclust

PACKAGE = Path(vidclust.__file__).parent
# the modules of the storage side and of the stages, by file name (wherever their folder)
STORAGE_SIDE = {"storage", "sources", "shards", "layout", "contract", "writer_lock", "runinfo"}
STAGES = {"decode", "embed", "cluster", "describe", "report", "stats", "aggregate"}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package, less the package itself (every
    submodule runs it first: importing it closes no circle)."""
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["vidclust", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if len(parts) > 1:
            mods[".".join(parts)] = path
    return mods


def _imports(path: Path, mods: dict[str, Path]) -> set[str]:
    """The package's modules a file imports, at its top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # `from vidclust import api`
    return {m for m in found if m in mods}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, mods) - {m} for m, p in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_no_import_circle():
    assert _cycles(_graph()) == []


def test_the_graph_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _file_name(module: str) -> str:
    return module.rsplit(".", 1)[-1]


def test_the_storage_side_imports_no_stage():
    graph = _graph()
    storage_side = [m for m in graph if _file_name(m) in STORAGE_SIDE]
    assert len(storage_side) == len(STORAGE_SIDE)
    assert {m: sorted(d for d in graph[m] if _file_name(d) in STAGES) for m in storage_side} == \
        {m: [] for m in storage_side}


RAY_PLATFORM = {"runtime"}  # the one module that imports Ray (issue 20: Ray behind one door)


def _imports_ray(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "ray" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ray":
            return True
    return False


def test_only_the_runtime_imports_ray():
    """Stages are plain functions and objects over plain data; Ray work goes through the runtime's
    verbs (imports inside functions count)."""
    importers = sorted(m for m, p in _modules().items() if _imports_ray(p))
    assert importers and {_file_name(m) for m in importers} <= RAY_PLATFORM, importers


TOP_LEVEL = ("api", "cli", "config", "errors", "stage", "vectors", "formatting", "example", "__main__")
PLATFORM = ("runtime", "store", "models")  # the folders every half may use
HALVES = ("embedding", "clustering", "descriptions", "reporting", "statistics")  # one per half of the job


def _folder(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in PLATFORM + HALVES) else ""


def test_the_platform_folders_import_no_half():
    """runtime/, store/ and models/ are what the halves stand on: none of them imports a half."""
    graph = _graph()
    platform = [m for m in graph if _folder(m) in PLATFORM]
    assert {_folder(m) for m in platform} == set(PLATFORM)
    assert {m: sorted(d for d in graph[m] if _folder(d) in HALVES) for m in platform} == \
        {m: [] for m in platform}


def test_every_module_is_in_a_folder():
    """Only the package's entry points stay at its top (the API, the CLI, config and the errors
    every part raises); everything else belongs to a platform folder or a half."""
    top = sorted(m for m in _graph() if not _folder(m))
    assert set(top) <= {f"vidclust.{name}" for name in TOP_LEVEL}, top
