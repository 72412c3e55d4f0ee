"""The classification's FITS products: the class images, the window counts and the coverage mask.

:func:`write_classification_products` streams each plane of ``classification.zarr``
to its own FITS file (:func:`pipeline.products.fits.write_fits_image_strips`), with
the mosaic's WCS, the run's provenance and a description of what the image holds
(:func:`image_description`: ``CLASSNAM``, ``IMGKIND``, ``BUNIT`` where the values have
a unit, and ``COMMENT`` lines in words).
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

__all__ = ["image_description", "write_classification_products"]


#: What each kind of class image holds (``{name}``: the class), in words.
_KIND_TEXT = {
    "mean": (
        "mean probability of class {name}: the network's probability that the pixel belongs to "
        "{name}, averaged over the windows that counted the pixel (n.fits), normalised so that the classes sum to 1"
    ),
    "variance": (
        "variance of the probability of class {name} over the windows that counted the pixel "
        "(population variance, about the mean image)"
    ),
    "rank": (
        "rank-vote fraction of class {name}: the fraction of the windows that counted the pixel in "
        "which {name} was the most probable class (the vote images sum to 1)"
    ),
}


def image_description(kind: str, name: str | None = None) -> tuple[dict[str, Card], str | None, list[str]]:
    """What one classification FITS image holds: its keywords, ``BUNIT`` and ``COMMENT`` lines.

    Parameters
    ----------
    kind : str
        ``"mean"``, ``"variance"`` or ``"rank"`` (a class image, ``name`` its class),
        ``"n"`` or ``"coverage"``.
    name : str, optional
        The class of a class image.

    Returns
    -------
    cards : dict of str to (value, comment)
        ``CLASSNAM`` and ``IMGKIND`` of a class image; ``IMGKIND`` of the others.
    bunit : str or None
        ``"count"`` for ``n`` (windows); ``None`` for the dimensionless class images and
        the coverage flag (a comment line says so).
    comments : list of str
        The image's content in words.
    """
    if kind in _KIND_TEXT:
        cards = {
            "CLASSNAM": (str(name), "morphological class of this image"),
            "IMGKIND": (kind, "mean, variance or rank (vote fraction)"),
        }
        return (
            cards,
            None,
            [_KIND_TEXT[kind].format(name=name), "dimensionless (no BUNIT); 0 where n = 0 (not classified)"],
        )
    if kind == "n":
        return (
            {"IMGKIND": ("n", "windows that counted each pixel")},
            "count",
            ["number of classification windows that counted each pixel (0: not classified)"],
        )
    if kind == "coverage":
        return (
            {"IMGKIND": ("coverage", "pixels with data in every band")},
            None,
            ["1 where every band has valid data (finite and not 0), else 0; a flag, no unit"],
        )
    raise ValueError(f"kind must be mean, variance, rank, n or coverage, got {kind!r}")


class _Plane:
    """One plane ``array[index]`` of a 3-D array (Zarr), read lazily row-strip by row-strip."""

    def __init__(self, array: Any, index: int) -> None:
        self.array, self.index = array, index
        self.shape = tuple(array.shape[1:])

    def __getitem__(self, rows: slice) -> Any:
        return self.array[self.index, rows]


def write_classification_products(
    out_root: Path, *, classification: Any, coverage: Any, wcs_header: str, cards: Mapping[str, Card], strip: int
) -> list[Path]:
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

    def write(path: Path, source: Any, extname: str, kind: str, name: str | None = None) -> Path:
        described, bunit, comments = image_description(kind, name)
        return write_fits_image_strips(
            path,
            source,
            strip=strip,
            wcs_header=wcs_header,
            provenance={**cards, **described},
            bunit=bunit,
            extname=extname,
            comments=comments,
        )

    for kind, suffix in FITS_SUFFIX.items():
        cube = classification[kind]
        for i, name in enumerate(classes):
            written.append(
                write(
                    layout.class_image(kind, name).path, _Plane(cube, i), f"{name.upper()}_{suffix.upper()}", kind, name
                )
            )
    written.append(write(layout.fits_file("n").path, classification["n"], "N", "n"))
    written.append(write(layout.fits_file("coverage").path, coverage, "COVERAGE", "coverage"))
    return written
