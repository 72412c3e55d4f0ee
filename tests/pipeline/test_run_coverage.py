"""A chunked run of the released network on a mosaic with a footprint edge.

The whole pipeline (ingest, tiles on Dask workers through the compiled engine, exact
merge) on a mosaic shaped like a real one: a tilted NaN edge of the footprint, as in a
rotated HLF field, and zero-censored star cores, compared with a whole-image run of
the same network through the engine's generic path (plain Keras calls, NumPy fold):
an independent code path for the windows next to the masked pixels, where the compiled
path used to be wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits

from morpheus_core.classifier import KerasWindowClassifier
from morpheus_core.engine import classify_image
from morpheus_core.simulate import render_sky
from morpheus_core.stats import finalize
from morpheus_core.weights import load_released_model
from pipeline.run import run
from pipeline.settings import RunSettings

SHAPE = (101, 131)  # odd sizes; tile 40 -> 3 x 4 tiles


class _Generic:
    """The released network through the engine's generic path."""

    def __init__(self, clf):
        self.clf, self.window, self.border, self.n_classes = clf, clf.window, clf.border, clf.n_classes

    def __call__(self, windows):
        return self.clf(windows)


def _write_footprint_mosaic(folder: Path) -> tuple[Path, np.ndarray]:
    sky = render_sky(SHAPE, seed=21, n_galaxies=8, n_stars=3, censored_regions=3)
    images = sky.images.copy()
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    images[:, yy > 0.45 * xx + 62] = np.nan  # the footprint's tilted lower-left edge
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, band in enumerate(("H", "J", "V", "Z")):
        fits.PrimaryHDU(images[i], header=sky.wcs.to_header()).writeto(folder / f"edge_{band}.fits")
        entries.append(f'{band} = "edge_{band}.fits"')
    toml = folder / "mosaics.toml"
    toml.write_text(f"[mosaics.edge]\nbands = {{ {', '.join(entries)} }}\n")
    return toml, images


@pytest.mark.slow
def test_chunked_released_run_equals_whole_image_next_to_a_footprint_edge(tmp_path):
    toml, images = _write_footprint_mosaic(tmp_path / "data")
    censored = (images == 0).any(axis=0)
    unobserved = ~np.isfinite(images).all(axis=0)
    assert censored.any() and unobserved.mean() > 0.1
    config = RunSettings(
        mosaic="edge", mosaics_file=toml, run_dir=tmp_path / "run", tile=40, workers=1, progress=False, batch_size=256
    )
    summary = run(config, echo=lambda *_: None)
    assert summary.tiles == 12 and not summary.failed
    group = zarr.open_group(str(tmp_path / "run" / "classification.zarr"), mode="r")
    got = {k: np.asarray(group[k][:]) for k in ("mean", "variance", "rank", "n")}

    coverage = np.isfinite(images).all(0) & (images != 0).all(0)  # HLF: 0 = censored or unobserved
    clf = KerasWindowClassifier(load_released_model(crop=True))
    whole = finalize(classify_image(images, _Generic(clf), coverage=coverage, batch_size=256))
    np.testing.assert_array_equal(got["n"], whole.n)
    assert (got["n"][~coverage] == 0).all() and got["n"].max() == 900
    # Pixels within 40 px of the masked pixels: the band the compiled path got wrong.
    from scipy.ndimage import distance_transform_edt

    near = (distance_transform_edt(coverage) <= 40) & (whole.n > 0)
    assert near.sum() > 2000
    # Tiles batch the windows differently from the whole image, which may change the
    # float32 rounding of the network by a few ulps; stored as float32: 2e-6.
    np.testing.assert_allclose(got["mean"], whole.mean, rtol=0, atol=2e-6)
    np.testing.assert_allclose(got["variance"], whole.variance, rtol=0, atol=2e-6)
    # Rank votes equal except where the top two mean probabilities nearly tie.
    top2 = np.sort(whole.mean, axis=0)[-2:]
    untied = (top2[1] - top2[0]) > 1e-5
    np.testing.assert_allclose(got["rank"][:, untied], whole.rank[:, untied], rtol=0, atol=1e-7)
    assert untied[near].mean() > 0.99
