"""The house: layers import only what is below them, and no module reaches into another's private names.

The layers are those of docs/architecture.md.  Each ``vmapsim`` module belongs to the
group named by its first component (``vmapsim.space.percpu`` -> ``space``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "vmapsim"
_BASE = {"errors", "units", "checks"}
_DATA = _BASE | {"layouts", "profiles"}
_SPACE = _DATA | {"rbtree", "rbtree_log", "chunks", "freetree", "space"}
#: group -> the groups it may import (its own included).
ALLOWED: dict[str, set[str]] = {
    "errors": {"errors"},
    "units": {"units"},
    "checks": {"errors", "checks"},
    "layouts": _BASE | {"layouts"},
    "profiles": _BASE | {"profiles"},
    "rbtree": {"errors", "rbtree"},
    "rbtree_log": {"rbtree", "rbtree_log"},
    "chunks": {"chunks"},
    "freetree": _BASE | {"rbtree", "rbtree_log", "chunks", "freetree"},
    "space": _SPACE,
    "modules": _BASE | {"modules"},
    "procfs": _SPACE | {"procfs"},
    "trace": _SPACE | {"trace"},
    "execmem": _SPACE | {"execmem"},
    "engine": _BASE | {"engine"},
    "loader": _SPACE | {"modules", "engine", "execmem", "loader"},
    "workloads": _SPACE | {"modules", "engine", "execmem", "loader", "workloads"},
    "plot": _SPACE | {"modules", "engine", "execmem", "loader", "report", "plot"},
    "report": _SPACE | {"modules", "engine", "execmem", "loader", "report"},
    "explore": _SPACE | {"modules", "engine", "execmem", "loader", "explore"},
    "scenario": _SPACE | {"modules", "engine", "execmem", "loader", "workloads", "scenario"},
    "sweeps": _SPACE | {"modules", "engine", "execmem", "loader", "workloads", "scenario", "report", "sweeps"},
    "strategies": _SPACE | {"modules", "engine", "execmem", "loader", "workloads", "strategies"},
    "cli": set(),  # the top: anything
}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.name not in ("__init__.py", "__main__.py") or p.parent != ROOT)


def _group(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return rel.parts[0]


def _imported_groups(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vmapsim"):
            names = [node.module] if node.module != "vmapsim" else [f"vmapsim.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("vmapsim.")]
        out |= {n.split(".")[1] for n in names if n.count(".") >= 1}
    return out


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_imports_only_the_layers_below_it(path: Path) -> None:
    group = _group(path)
    assert group in ALLOWED, f"{path}: a group docs/architecture.md and this test do not know"
    if group == "cli":
        return
    bad = _imported_groups(ast.parse(path.read_text())) - ALLOWED[group]
    assert not bad, f"{path.relative_to(ROOT)} ({group}) imports {sorted(bad)}"


def _private_definitions(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, methods, class fields, attributes set on self."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return {n for n in out if n.startswith("_") and not n.startswith("__")}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_uses_another_modules_private_names(path: Path) -> None:
    tree = ast.parse(path.read_text())
    own = _private_definitions(tree)
    foreign = sorted(
        {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in own
        }
    )
    assert foreign == [], f"{path.relative_to(ROOT)} uses private names of other modules: {foreign}"


def test_no_class_is_much_over_400_lines() -> None:
    long = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno and node.end_lineno - node.lineno > 440:
                long.append(f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno} lines)")
    assert long == []


# What a user gets is the repository and the wheel: the package, its docs and benchmarks may cite kernel
# sources and the project's own files, never notes outside it or the tracker's issue numbers.
_OUTSIDE = re.compile(r"\.\./shared|kernel-verified\.md|kernel-vmalloc\.md|DESIGN\.md|\bissue #?\d+", re.IGNORECASE)
_PRODUCT = [ROOT.parent / "README.md", *sorted((ROOT.parent / "docs").rglob("*.md")),
            *sorted((ROOT.parent / "docs").rglob("*.py")),
            *sorted(ROOT.rglob("*.py")), *sorted((ROOT.parent / "benchmarks").rglob("*.py"))]  # fmt: skip


@pytest.mark.parametrize("path", _PRODUCT, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_the_product_cites_only_what_a_user_has(path: Path) -> None:
    hits = [f"{n}: {line.strip()}" for n, line in enumerate(path.read_text().splitlines(), 1) if _OUTSIDE.search(line)]
    assert hits == []
