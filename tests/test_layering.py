"""Import layering: the core never imports the orchestration layer, the pipeline's
subpackages import only downwards (the order of ``pipeline/__init__.py``), and the
commands that only read or post-process a run work where Keras is not installed (a
login node with only the analysis stack)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Makes the deep-learning frameworks unimportable in the process that runs it.
_BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow", "jax", "torch"):
            raise ImportError(f"{name} is not installed here (blocked by the test)")
sys.meta_path.insert(0, _Block())
"""

#: Run ``python -m pipeline ARGS`` with the deep-learning frameworks made unimportable.
_BLOCKED = (
    _BLOCK
    + """
import runpy
sys.argv = ["pipeline", *sys.argv[1:]]
runpy.run_module("pipeline", run_name="__main__")
"""
)

#: Import each module named in ARGS, in order, with the frameworks made unimportable;
#: print {module: null, or the ImportError}.
_IMPORT_EACH = (
    _BLOCK
    + """
import importlib, json
result = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        result[name] = None
    except ImportError as exc:
        result[name] = str(exc)
print(json.dumps(result))
"""
)


def _typing_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (annotations, not dependencies)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            ids.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return ids


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    skip = _typing_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_pipeline():
    offenders = {
        str(p.relative_to(REPO)): sorted(n for n in _imports(p) if n.split(".")[0] == "pipeline")
        for p in (REPO / "morpheus_core").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_only_the_python_api_imports_itself():
    # morpheus_survey is the notebook's facade over both packages, never their dependency.
    offenders = {
        str(p.relative_to(REPO)): sorted(n for n in _imports(p) if n.split(".")[0] == "morpheus_survey")
        for pkg in ("morpheus_core", "pipeline")
        for p in (REPO / pkg).rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


#: The pipeline's units, bottom up; a unit imports only from its own and lower layers.
LAYERS = (
    ("pipeline.errors", "pipeline.timing", "pipeline.quiet", "pipeline.tasks", "pipeline.program"),
    ("pipeline.rundir",),
    ("pipeline.settings",),
    ("pipeline.cluster",),
    ("pipeline.inputs",),
    ("pipeline.products",),
    ("pipeline.classify", "pipeline.downstream"),
    ("pipeline.viewer", "pipeline.training"),
    ("pipeline.run",),
    ("pipeline.cli",),
    ("pipeline.__main__",),
)


def _unit(module: str) -> str | None:
    """The unit (a layer's package or module) that ``module`` belongs to."""
    for layer in LAYERS:
        for unit in layer:
            if module == unit or module.startswith(unit + "."):
                return unit
    return None


def _layer(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def _pipeline_modules() -> dict[str, Path]:
    out = {}
    for path in sorted((REPO / "pipeline").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_every_pipeline_module_has_a_layer():
    assert [m for m in _pipeline_modules() if m != "pipeline" and _unit(m) is None] == []


def test_the_pipeline_imports_only_downwards():
    offenders = {}
    for module, path in _pipeline_modules().items():
        unit = _unit(module)
        if unit is None:
            continue
        for name in _imports(path):
            other = _unit(name)
            if other is None or other == unit:
                continue
            if _layer(other) >= _layer(unit):  # upwards, or sideways into a neighbour
                offenders.setdefault(module, []).append(name)
    assert offenders == {}


def test_the_layering_test_sees_an_upward_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nfrom pipeline.run import run\n"
        "if TYPE_CHECKING:\n    from pipeline.cli import main\n"
    )
    assert _imports(source) == {"typing", "pipeline.run"}
    assert _layer(_unit("pipeline.run")) > _layer(_unit("pipeline.rundir.layout"))


def _blocked(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKED, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_help_and_status_work_without_keras(tmp_path):
    for command in ("run", "segment", "catalog", "status", "resubmit"):
        proc = _blocked(command, "--help")
        assert proc.returncode == 0 and "usage:" in proc.stdout, command + proc.stderr[-2000:]
    proc = _blocked("status", "--run-dir", str(tmp_path / "none"))
    assert proc.returncode == 2 and "no run here" in proc.stderr, proc.stderr[-2000:]


def test_segment_and_catalog_run_without_keras(tmp_path):
    from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene, write_run

    run_dir = write_run(tmp_path / "run", make_scene(SHAPE, SOURCES))
    proc = _blocked("segment", "--run-dir", str(run_dir), "--min-distance", "6")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (run_dir / "catalog" / "catalog.parquet").exists()
    proc = _blocked("catalog", "--run-dir", str(run_dir), "--min-distance", "6")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


def _core_modules() -> list[str]:
    """Every module of morpheus_core, by dotted name (packages by their own name)."""
    names = []
    for path in sorted((REPO / "morpheus_core").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _declared_keras_modules() -> list[str]:
    """The modules morpheus_core's docstring says import Keras (its one list of them)."""
    doc = ast.get_docstring(ast.parse((REPO / "morpheus_core" / "__init__.py").read_text()))
    section = doc.split("Deep-learning frameworks", 1)[1].split("\n\n")
    listed = next(block for block in section if block.lstrip().startswith("- "))
    return re.findall(r"^- ``(morpheus_core[\w.]*)``", listed, flags=re.MULTILINE)


def test_the_declared_keras_free_modules_import_without_the_frameworks():
    declared = _declared_keras_modules()
    modules = _core_modules()
    assert declared and set(declared) <= set(modules), (declared, modules)
    free = [m for m in modules if m not in declared]
    assert {"morpheus_core.cards", "morpheus_core.simulate", "morpheus_core.transfer"} <= set(free)
    # The Keras-free modules first, so that none of them is imported for the first time
    # while one of the declared modules is being imported.
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH, *free, *declared], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {m: result[m] for m in free if result[m] is not None} == {}, "declared Keras-free, but it imports Keras"
    # And the list holds no module that imports without Keras: it is the list of those that need it.
    assert [m for m in declared if result[m] is None] == [], "listed as importing Keras, but it does not"


def test_the_architecture_page_names_the_modules_that_import_keras():
    text = (REPO / "docs" / "architecture.md").read_text()
    sentence = text.split("the modules that import Keras when imported are", 1)[1].split(")", 1)[0]
    named = {f"morpheus_core.{m}" for m in re.findall(r"`([\w.]+)`", sentence)}
    assert named == set(_declared_keras_modules())
