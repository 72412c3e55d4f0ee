"""The whole pipeline with the released model and default settings on a simulated sky, checked against truth."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from pipeline.inputs.demo_mosaics import generate_demo
from pipeline.run import run
from pipeline.settings import RunSettings

SNR_LIMIT = 20.0  # every isolated source brighter than this must be found
ISOLATION_PX = 20.0  # no other truth source this close
EDGE_PX = 25  # and not this close to the image edge (windows need context)


@pytest.mark.slow
def test_bright_isolated_sources_are_detected_at_their_true_position(tmp_path):
    data = tmp_path / "data"
    generate_demo(data, shape=(192, 192), seed=11)
    config = RunSettings(mosaic="demo", run_dir=tmp_path / "run", data_dir=data, tile=96, workers=1, progress=False)
    lines: list[str] = []
    run(config, echo=lines.append)  # default downstream settings: the paper's rule, threshold 0
    assert not any("no sources found" in line for line in lines)
    truth = Table.read(data / "demo_truth.ecsv")
    catalog = Table.read(tmp_path / "run" / "catalog" / "catalog.parquet")
    assert len(catalog) > 0

    xy = np.stack([truth["x"], truth["y"]], axis=1)
    distance = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(distance, np.inf)
    isolated = (distance.min(axis=1) > ISOLATION_PX) & truth["in_coverage"]
    isolated &= (xy.min(axis=1) > EDGE_PX) & (xy.max(axis=1) < 192 - EDGE_PX)
    cat_xy = np.stack([np.asarray(catalog["x"]), np.asarray(catalog["y"])], axis=1)
    nearest = np.hypot(*(xy[:, None, :] - cat_xy[None, :, :]).transpose(2, 0, 1)).min(axis=1)

    bright = isolated & (truth["snr_H"] > SNR_LIMIT)
    assert bright.sum() >= 3, "the scene must hold bright isolated sources to test"
    misses = [
        (int(t["id"]), round(float(t["snr_H"]), 1), round(float(d), 2))
        for t, d in zip(truth[bright], nearest[bright])
        if d > 2.0
    ]
    assert not misses, f"bright isolated sources missed or off by > 2 px (id, snr, distance): {misses}"

    # completeness against truth magnitude, printed for docs/downstream.md (-s shows it)
    found = nearest <= 2.0
    for lo, hi in ((20, 24), (24, 25), (25, 26), (26, 27), (27, 30)):
        sel = isolated & (truth["mag_H"] >= lo) & (truth["mag_H"] < hi)
        if sel.any():
            print(f"H {lo}-{hi}: {found[sel].sum()}/{sel.sum()} isolated sources detected")


def test_user_toml_mosaic_with_default_settings_finds_its_bright_source(tmp_path):
    """A mosaic from a TOML file, default settings (no tuned threshold), the released network."""
    from morpheus_core.simulate import render_sky
    from tests.pipeline.small_runs import write_mosaic

    sky_settings = {"shape": (128, 128), "seed": 5, "mag_range": (20.0, 23.0)}
    toml = write_mosaic(tmp_path / "data", **sky_settings)
    truth = render_sky(n_galaxies=6, n_stars=2, **sky_settings).truth  # write_mosaic's sky (a pure function)
    config = RunSettings(
        mosaic="small", mosaics_file=toml, run_dir=tmp_path / "run", tile=128, stride=2, workers=1, progress=False
    )
    lines: list[str] = []
    run(config, echo=lines.append)
    catalog = Table.read(tmp_path / "run" / "catalog" / "catalog.parquet")
    assert len(catalog) > 0, lines
    assert catalog.meta["DETECT"] == "paper" and catalog.meta["SEGTHR"] == 0.0
    brightest = truth[np.argmin(truth["mag_H"])]
    distance = np.hypot(np.asarray(catalog["x"]) - brightest["x"], np.asarray(catalog["y"]) - brightest["y"])
    assert distance.min() <= 3.0, (float(distance.min()), float(brightest["mag_H"]))
