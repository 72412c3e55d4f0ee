"""Smoke tests of benchmarks/detection.py: the quick mode runs end to end and
prints one row per detection rule, photutils included, with and without the
features of real mosaics (``--features edge,censored``); and the features' scoring
on a hand-made sky."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

REPO = Path(__file__).resolve().parents[2]


def run_quick(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {"TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return subprocess.run(
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
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_detection_benchmark_quick_mode_prints_every_rule(tmp_path):
    proc = run_quick(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = (tmp_path / "table.md").read_text()
    for rule in ("paper", "mean", "mixed", "photutils"):
        assert rule in table, rule
    assert "machine:" in proc.stdout
    assert "NaN" not in table  # no features table
    # Classifications cached for reruns, under the keys of earlier runs.
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.npz"))
    assert cached == ["noise-seed1000-160x160-stride4.npz", "sky-seed0-160x160-stride4.npz"]


@pytest.mark.slow
def test_detection_benchmark_quick_mode_with_features_of_real_mosaics(tmp_path):
    proc = run_quick(tmp_path, "--features", "edge,censored")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (tmp_path / "table.md").read_text()
    features = text[text.index("Features of real mosaics") :]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in features.splitlines() if "|" in line}
    for rule in ("paper", "mixed: mean <= 0.3", "photutils 1.5 sigma_pix"):
        (row,) = [r for name, r in rows.items() if name.startswith(rule)]
        # Every class of source is present in the quick sky: "x% (k/n)" with n > 0.
        for cell in row[1:4]:
            assert cell.endswith(")") and not cell.endswith("/0)"), (rule, row)
    cached = sorted(p.name for p in (tmp_path / "cache").rglob("*.npz"))
    assert cached == [
        "noise-seed1000-160x160-nan2-cens0-stride4.npz",
        "sky-seed0-160x160-gNone-s3-nan2-cens2-stride4.npz",
    ]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("detection_benchmark", REPO / "benchmarks" / "detection.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_features_scoring_on_a_hand_made_sky():
    bench = load_benchmark()
    images = np.ones((4, 100, 100))
    images[:, :, 70:] = np.nan  # the footprint: columns 70 and beyond
    images[2, 24:27, 39:42] = 0.0  # a censored core in one band
    truth = Table(
        {
            "x": [30.0, 50.0, 40.0],  # 40 px from NaN (far), 20 px (near), censored
            "y": [50.0, 50.0, 25.0],
            "in_coverage": [True, True, False],
            "snr_H": [50.0, 50.0, 50.0],
            "morph_class": ["disk", "disk", "point_source"],
        }
    )
    yy, xx = np.indices((100, 100))
    objects = np.zeros((100, 100), np.int32)
    objects[np.hypot(xx - 30, yy - 50) <= 3] = 1  # on the far source
    objects[np.hypot(xx - 55, yy - 50) <= 3] = 2  # 5 px off the near one: not matched
    ring = np.hypot(xx - 40, yy - 25)
    objects[(ring >= 6) & (ring <= 8)] = 3  # a ring around the unclassified censored core
    objects[np.hypot(xx - 65, yy - 70) <= 2] = 4  # beside the edge, no source
    flux = np.ones((100, 100))
    ft = bench.FeatureTally()
    bench.score_features_sky(ft, objects, flux, images, truth)
    assert ft.far == [True] and ft.near == [False]
    assert ft.censored == [True] and ft.censored_reached == [True] and ft.censored_star == [True]
    # Within 30 px of NaN: objects 2, 3 (x = 40, exactly 30 px) and 4; 2 and 4 have no source within 3 px.
    assert (ft.sky_edge_detections, ft.sky_edge_spurious) == (3, 2)
    noise = np.where(np.isfinite(images[0]), 0.0, np.nan)
    bench.score_features_noise(ft, objects, noise, 0.06)
    assert ft.noise_edge_detections == 3
    band = 60 * 30  # rows 20-79, columns 40-69 (the image edges' 20 px margin excluded)
    assert ft.noise_edge_area_arcmin2 == pytest.approx(band * (0.06 / 60) ** 2)
