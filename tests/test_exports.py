"""Every module says what it exports (``__all__``), is at most 450 lines, and exports only what it
defines: a name has one home, and packages (``__init__``) are the only re-exporters."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("morpheus_core", "pipeline")


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if p.name != "__main__.py")


def _exported(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return list(ast.literal_eval(node.value)) if node.value is not None else []
    return None


def _defined(tree: ast.Module) -> set[str]:
    """Names bound at the top level by definitions and assignments (not imports)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node in tree.body:
            names.add(node.name)
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        elif isinstance(node, (ast.If, ast.Try)):
            sub = ast.Module(body=[*node.body, *getattr(node, "orelse", [])], type_ignores=[])
            names |= _defined(sub)
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def test_every_module_has_all():
    missing = [str(p.relative_to(REPO)) for p in _modules() if _exported(ast.parse(p.read_text())) is None]
    assert missing == []


def test_modules_export_only_what_they_define():
    offenders = {}
    for path in _modules():
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        foreign = sorted(set(_exported(tree) or []) - _defined(tree))
        if foreign:
            offenders[str(path.relative_to(REPO))] = foreign
    assert offenders == {}


def test_the_check_sees_a_re_export():
    tree = ast.parse("from x import y\nz = 1\n__all__ = ['y', 'z']\n")
    assert set(_exported(tree)) - _defined(tree) == {"y"}


#: Longest module, in lines: a longer one is two modules.
MAX_LINES = 450


def test_no_module_is_longer_than_the_limit():
    long = {str(p.relative_to(REPO)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
