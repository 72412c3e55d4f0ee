"""docs/python.md runs top to bottom: its ```python blocks, in order, in a folder holding
a small synthetic field (with an unobserved footprint and censored zeros), with the
sky-like stand-in network in place of the released one. Then what the walkthrough made
is checked against the run's own files, read independently with astropy and pandas."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from morpheus_core.simulate import render_sky

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "python.md"
MODEL_LINE = 'MODEL = "released"'
SHAPE = (100, 120)


def _write_field(folder: Path) -> None:
    """The four bands of a seeded synthetic sky as FITS files on one grid, with a
    corner never observed (NaN) and a few censored pixels (0.0) in one band."""
    sky = render_sky(SHAPE, seed=4, n_galaxies=6, n_stars=2)
    images = np.array(sky.images, dtype=np.float32)
    images[:, 80:, :25] = np.nan
    images[1, 40:43, 60:62] = 0.0
    folder.mkdir()
    for band, image in zip("HJVZ", images):
        fits.PrimaryHDU(image, header=sky.wcs.to_header()).writeto(folder / f"{band}.fits")


def _code(text: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 8, "the walkthrough's code blocks"
    code = "\n".join(blocks)
    assert code.count(MODEL_LINE) == 1, f"one {MODEL_LINE!r} line chooses the network"
    return code.replace(MODEL_LINE, 'MODEL = "standin-sky"')


def test_the_python_walkthrough_runs_and_agrees_with_the_run_files(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    _write_field(tmp_path / "my_field")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "walkthrough"}
    exec(compile(_code(DOC.read_text()), str(DOC), "exec"), namespace)  # noqa: S102 - the docs' own code

    result, lazy, run, df = namespace["result"], namespace["lazy"], namespace["run"], namespace["df"]
    # classify() on the arrays equals the pipeline's classification of the same pixels.
    stored = run.classification
    np.testing.assert_array_equal(result["n"].values, stored["n"].values)
    np.testing.assert_array_equal(result["rank"].values, stored["rank"].values)
    # float64 merges of the same float32 outputs, stored as float32
    np.testing.assert_allclose(result["mean"].values, stored["mean"].values, rtol=0, atol=1e-6)
    np.testing.assert_allclose(result["variance"].values, stored["variance"].values, rtol=0, atol=1e-6)
    assert result["n"].values[80:, :25].max() == 0 and result["n"].values.max() > 0
    np.testing.assert_array_equal(lazy["rank"].values, result["rank"].values)  # tiles of 64 vs one tile
    # The products as astropy reads them from the run's files.
    fits_dir = tmp_path / "runs" / "my_field" / "fits"
    np.testing.assert_array_equal(
        run.segmentation["deblended"].values, fits.getdata(fits_dir / "segmap_deblended.fits")
    )
    np.testing.assert_array_equal(
        fits.getdata(tmp_path / "spheroid_rank.fits"), fits.getdata(fits_dir / "spheroid_rank.fits")
    )
    csv = pd.read_csv(tmp_path / "runs" / "my_field" / "catalog" / "catalog.csv", comment="#")
    assert len(df) == len(csv) == namespace["summary"].downstream.catalog_rows > 0
    np.testing.assert_array_equal(df["id"].to_numpy(), csv["id"].to_numpy())
    np.testing.assert_allclose(df["ra"].to_numpy(), csv["ra"].to_numpy(), rtol=0, atol=1e-9)
    spheroids = namespace["spheroids"]
    assert set(spheroids["dominant_class"]) <= {"spheroid"} and (spheroids["detection_flag"] == 1).all()
    expected = ((csv["dominant_class"] == "spheroid") & (csv["detection_flag"] == 1)).sum()
    assert len(spheroids) == expected
    first = df.iloc[0]
    assert namespace["pixels"].sum() == first["area"]  # the object's pixels in the map are its area
