"""The classification's FITS products: the class images, the window counts and the coverage mask.

:func:`write_classification_products` streams each plane of ``classification.zarr``
to its own FITS file (:func:`pipeline.products.fits.write_fits_image_strips`), with
the mosaic's WCS and the run's provenance.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from morpheus_core import CLASSES
from pipeline.products.fits import write_fits_image_strips
from pipeline.products.provenance import Card
from pipeline.rundir.layout import FITS_SUFFIX, RunLayout
from pipeline.rundir.location import Location

__all__ = ["write_classification_products"]


class _Plane:
    """One plane ``array[index]`` of a 3-D array (Zarr), read lazily row-strip by row-strip."""

    def __init__(self, array: Any, index: int) -> None:
        self.array, self.index = array, index
        self.shape = tuple(array.shape[1:])

    def __getitem__(self, rows: slice) -> Any:
        return self.array[self.index, rows]


def write_classification_products(out_root: Path, *, classification: Any, coverage: Any, wcs_header: str,
                                  cards: Mapping[str, Card], strip: int) -> list[Path]:
    """Write the classification images, ``n`` and the coverage mask as FITS under ``out_root``, in row strips.

    Parameters
    ----------
    out_root : pathlib.Path
        The run directory (or a local folder to upload from); the files go to its
        ``fits/`` folder (created if missing).
    classification : zarr.Group
        The finished classification store (``mean``, ``variance``, ``rank``, ``n``).
    coverage : array-like
        The mosaic's coverage mask.
    wcs_header : str
        The mosaic's WCS header.
    cards : mapping
        Provenance keywords (:func:`pipeline.products.provenance.provenance`).
    strip : int
        Rows per strip.

    Returns
    -------
    list of pathlib.Path
        The 15 class images (``<class>_{mean,var,rank}.fits``), ``n.fits`` and
        ``coverage.fits``.
    """
    layout = RunLayout(Location(out_root))
    fits_dir = layout.fits.path
    fits_dir.mkdir(parents=True, exist_ok=True)
    written = []
    classes = tuple(classification.attrs.get("classes", CLASSES))  # the model card's
    for kind, suffix in FITS_SUFFIX.items():
        cube = classification[kind]
        for i, name in enumerate(classes):
            written.append(write_fits_image_strips(
                layout.class_image(kind, name).path, _Plane(cube, i), strip=strip, wcs_header=wcs_header,
                provenance=cards, extname=f"{name.upper()}_{suffix.upper()}"))
    written.append(write_fits_image_strips(layout.fits_file("n").path, classification["n"], strip=strip,
                                           wcs_header=wcs_header, provenance=cards, extname="N",
                                           comments=["windows that counted each pixel"]))
    written.append(write_fits_image_strips(layout.fits_file("coverage").path, coverage, strip=strip,
                                           wcs_header=wcs_header, provenance=cards, extname="COVERAGE",
                                           comments=["1 where every band has valid data"]))
    return written
