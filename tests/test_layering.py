"""Import layering (issue #14): the core never imports the orchestration layer, and the
commands that only read or post-process a run work where Keras is not installed (a
login node with only the analysis stack)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Run ``python -m pipeline ARGS`` with the deep-learning frameworks made unimportable.
_BLOCKED = """
import runpy, sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow", "jax", "torch"):
            raise ImportError(f"{name} is not installed here (blocked by the test)")
sys.meta_path.insert(0, _Block())
sys.argv = ["pipeline", *sys.argv[1:]]
runpy.run_module("pipeline", run_name="__main__")
"""


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_core_never_imports_the_pipeline():
    offenders = {str(p.relative_to(REPO)): sorted(n for n in _imports(p) if n.split(".")[0] == "pipeline")
                 for p in (REPO / "morpheus_core").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def _blocked(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKED, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


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
