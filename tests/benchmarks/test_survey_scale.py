"""benchmarks/survey_scale.py: the mosaic has the features of real data, and a small
run is measured stage by stage."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("survey_scale", REPO / "benchmarks" / "survey_scale.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mosaic_has_a_footprint_edge_censored_cores_and_the_survey_density(tmp_path):
    survey = _module()
    toml, n = survey.make_mosaic(tmp_path, 800)
    assert n == round(survey.DENSITY * 800**2) == 320
    assert 'H = "survey_H.fits"' in toml.read_text()
    images = [fits.getdata(tmp_path / f"survey_{b}.fits") for b in survey.BANDS]
    nan = np.isnan(images[0])
    assert 0.05 < nan.mean() < 0.3 and all((np.isnan(im) == nan).all() for im in images)  # one footprint
    assert nan[:, -1].any() and not nan[:, 0].any()
    zeros = images[0] == 0.0
    assert zeros.sum() >= 9 and all((im[zeros] == 0.0).all() for im in images)  # censored star cores
    finite = images[0][~nan]
    assert 0.9 < np.median(np.abs(finite - np.median(finite))) / 0.6745 < 1.2  # noise sigma ~1
    assert fits.getheader(tmp_path / "survey_H.fits")["CTYPE1"] == "RA---TAN"


@pytest.mark.slow
def test_a_small_survey_run_is_measured_stage_by_stage(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/survey_scale.py",
            "--sides",
            "500",
            "--tile",
            "256",
            "--json",
            str(tmp_path / "out.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "out.json").read_text())["500"]
    survey = _module()
    assert set(survey.STAGES) <= set(result["stages"])
    assert result["objects"] > 0 and result["windows"] > 0
    assert result["disk"]["partials"] == 0 and result["run_dir_bytes"] < 1.3 * result["products_bytes"]
    assert 0 < result["stages"]["classify"]["worker_mb"] < 3000 and 0 < result["driver_peak_mb"] < 2000
    for row in ("| classify |", "| deblending |", "objects catalogued", "run directory / products"):
        assert row in proc.stdout, row
