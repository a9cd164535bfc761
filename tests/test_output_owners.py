"""One owner per output file: every file of clusters/ and report/ is named in vidclust/store/layout.py
and opened through its reader or writer in vidclust/store/contract.py only. A name of one of them as a
string anywhere else in vidclust/ (a path built by hand, a second reader with its own checks and
its own "run X first") fails here; comments and docstrings do not count."""
from __future__ import annotations

import ast
import posixpath
from pathlib import Path

from vidclust.store import layout
from vidclust.store.contract import CONTRACT

PACKAGE = Path(__file__).resolve().parents[1] / "vidclust"
OWNERS = {"contract", "layout"}  # module names, wherever their folder
FOLDERS = ("clusters/", "report/")


def owned_names() -> set[str]:
    """The file names of clusters/ and report/: the contract's, and the report page's files
    beside it that the contract lists only as "its PNG files"."""
    names = {posixpath.basename(f.path) for f in CONTRACT if f.path.startswith(FOLDERS)}
    return names | {layout.POINTS_SCRIPT, layout.EXPLORE_SCRIPT, layout.TSNE_PLOT, layout.SWEEP_PLOT,
                    *layout.STATS_PLOTS}


def strings(tree: ast.AST) -> list[ast.Constant]:
    """The string constants of a module (f-strings' parts too), but its docstrings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_the_names_cover_both_folders():
    names = owned_names()
    assert {"metrics.json", "assignments.parquet", "descriptions.parquet", "index.html", "points.js",
            "projection.parquet", "tsne.png", "stats_codec.png"} <= names
    assert all(f.path.startswith(FOLDERS) for f in CONTRACT if posixpath.basename(f.path) in names)


def test_only_the_contract_and_the_layout_name_clusters_and_report_files():
    names = owned_names()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.stem in OWNERS:
            continue
        for node in strings(ast.parse(path.read_text(), filename=str(path))):
            found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}"
                      for name in sorted(names) if name in node.value]
    assert not found, ("clusters/ and report/ files are reached through vidclust.contract's readers and "
                       "writers and named in vidclust.layout only:\n" + "\n".join(found))
