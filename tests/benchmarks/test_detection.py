"""Smoke test of benchmarks/detection.py: the quick mode runs end to end and
prints one row per detection rule, photutils included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_detection_benchmark_quick_mode_prints_every_rule(tmp_path):
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/detection.py",
            "--quick",
            "--threads",
            "1",
            "--extra-noise",
            "1",
            "--cache",
            str(tmp_path / "cache"),
            "--markdown",
            str(tmp_path / "table.md"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "table.md").read_text()
    for rule in ("paper", "mean", "mixed", "photutils"):
        assert rule in table, rule
    assert "machine:" in proc.stdout
    assert any((tmp_path / "cache").rglob("*.npz"))  # classifications cached for reruns
