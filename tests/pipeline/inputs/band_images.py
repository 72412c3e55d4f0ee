"""Band images for the tests of pipeline.inputs: seeded FITS files on a TAN grid near GOODS-S."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

BANDS = ("H", "J", "V", "Z")
SHAPE = (97, 131)  # odd sizes: a 4 x 5 grid of 32-pixel chunks with ragged edges


def make_wcs(shape: tuple[int, int], crval=(53.12, -27.81)) -> WCS:
    """TAN WCS near GOODS-S with 0.06 arcsec pixels."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [(shape[1] + 1) / 2, (shape[0] + 1) / 2]
    w.wcs.cd = [[-0.06 / 3600, 0.0], [0.0, 0.06 / 3600]]
    return w


def write_band(path: Path, data: np.ndarray, wcs: WCS | None = None) -> Path:
    header = (wcs or make_wcs(data.shape)).to_header()
    fits.PrimaryHDU(data=data, header=header).writeto(path)
    return path


def random_image(seed: int, shape=SHAPE, dtype=np.float32) -> np.ndarray:
    # Offset keeps every pixel away from 0.0, so coverage is all True unless a test
    # puts zeros or NaN in on purpose.
    return (np.random.default_rng(seed).normal(size=shape) + 10.0).astype(dtype)
