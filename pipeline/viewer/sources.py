"""What a tile pyramid is built from: the run's stores, and their full-resolution planes.

:func:`open_sources` opens a finished run's stores (the classification through
:func:`pipeline.rundir.verified.finished_classification`, the one answer to "is the
classification finished?") and says what the map shows of them (:class:`Sources`):
the colour composite's bands, the run's classes, and the segmentation's outlines when
the segmentation is finished. :func:`read_full_resolution` reads the planes of one box
of the full-resolution image (:func:`pipeline.viewer.tiles.plane_names`) from them:
the pyramid's finest level, square by square.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from morpheus_core import CLASSES
from morpheus_core.colour import colour_image
from morpheus_core.tiling import Box
from pipeline.errors import InputError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.rundir.verified import finished_classification
from pipeline.viewer.composite import RGB_BANDS, band_wavelengths, composite_bands
from pipeline.viewer.tiles import plane_names

__all__ = ["Sources", "open_sources", "read_full_resolution"]


@dataclass(frozen=True)
class Sources:
    """The stores of a run that a tile pyramid is built from, and what the map shows of them.

    Small and picklable: every task of the build's first pass gets one and opens the
    stores itself.

    Attributes
    ----------
    mosaic : Location
        ``mosaic.zarr``: ``image`` (band, y, x), ``coverage`` (y, x).
    classification : Location
        ``classification.zarr``: ``mean``, ``rank`` (class, y, x), ``n`` (y, x).
    segmentation : Location or None
        ``segmentation.zarr`` (its ``deblended`` labels draw the outlines); ``None``
        when the run has no finished segmentation (no outline layer).
    rgb : tuple of int
        Channels of the mosaic's bands shown as red, green and blue
        (:func:`pipeline.viewer.composite.composite_bands`).
    shape : tuple of int
        ``(H, W)`` of the full-resolution image.
    classes : tuple of str
        The run's classes in channel order (one class image each).
    composite : tuple of str
        The names of the bands of ``rgb``.
    """

    mosaic: Location
    classification: Location
    segmentation: Location | None
    rgb: tuple[int, int, int]
    shape: tuple[int, int]
    classes: tuple[str, ...] = CLASSES
    composite: tuple[str, str, str] = RGB_BANDS


def _open(location: Location, what: str) -> Any:
    """Open a store of the run, or say which one is missing or unreadable."""
    if not location.is_zarr_group():
        raise InputError(f"{location}: {what} not found; is this a finished run directory?")
    try:
        return location.open_group(mode="r")
    except Exception as exc:  # zarr raises many types on damaged metadata
        raise InputError(f"{location}: cannot read the {what} ({type(exc).__name__}: {exc})") from exc


def open_sources(run_dir: Location) -> tuple[Sources, dict[str, Any]]:
    """The stores of a finished run that its tile pyramid is built from.

    Parameters
    ----------
    run_dir : Location
        The run directory; its classification must be finished. The segmentation's
        outlines are shown when its segmentation is marked ``complete``.

    Returns
    -------
    tuple of (Sources, dict)
        The sources, and the stores' attributes (``mosaic``, ``classification``,
        ``segmentation``: ``None`` without a finished segmentation): what the pyramid
        shows depends on nothing else.

    Raises
    ------
    InputError
        Not a run directory; its classification is missing, unfinished or damaged
        (:func:`pipeline.rundir.verified.finished_classification`); its mosaic store is
        missing or unreadable; or its class images and classes disagree.
    """
    layout = RunLayout(run_dir)
    cls = finished_classification(run_dir)
    mosaic = _open(layout.mosaic, "mosaic store (mosaic.zarr)")
    seg_attrs = None
    if layout.segmentation.is_zarr_group():
        seg_attrs = _open(layout.segmentation, "segmentation (segmentation.zarr)").attrs.asdict()
        if not seg_attrs.get("complete", False):
            seg_attrs = None
    classes = tuple(str(c) for c in cls.attrs.get("classes", CLASSES))
    if len(classes) != cls["mean"].shape[0]:
        raise InputError(
            f"{layout.classification}: {cls['mean'].shape[0]} class images but classes "
            f"{list(classes)} in its attributes"
        )
    bands = [str(b) for b in mosaic.attrs["bands"]]
    rgb = composite_bands(bands, band_wavelengths(bands, cls.attrs.get("model_card")))
    sources = Sources(
        layout.mosaic,
        layout.classification,
        layout.segmentation if seg_attrs else None,
        rgb,
        tuple(int(v) for v in cls["n"].shape),
        classes,
        tuple(bands[i] for i in rgb),
    )
    attrs = {"mosaic": mosaic.attrs.asdict(), "classification": cls.attrs.asdict(), "segmentation": seg_attrs}
    return sources, attrs


def read_full_resolution(sources: Sources, box: Box) -> np.ndarray:
    """The planes of a box of the full-resolution image.

    The composite's bands where the mosaic is covered, class images and the
    morphological colour image (:func:`morpheus_core.colour.colour_image` of the
    rank-vote images with the run's classes, as ``colour.png``) where classified, 0
    elsewhere; ``outline`` marks pixels of a deblended object with a 4-neighbour
    outside it (read with a one-pixel halo; outside the image counts as outside).

    Parameters
    ----------
    sources : Sources
        The run's stores.
    box : morpheus_core.tiling.Box
        The pixels, inside ``sources.shape``.

    Returns
    -------
    numpy.ndarray
        ``(P, h, w)`` float64, the planes of :func:`pipeline.viewer.tiles.plane_names`
        of ``sources.classes``.
    """
    ys, xs = box.slices
    mosaic = sources.mosaic.open_group(mode="r")
    cls = sources.classification.open_group(mode="r")
    cov = np.asarray(mosaic["coverage"][ys, xs], dtype=bool)
    image = np.asarray(mosaic["image"][:, ys, xs], dtype=np.float64)[list(sources.rgb)]
    classified = np.asarray(cls["n"][ys, xs]) > 0
    mean = np.asarray(cls["mean"][:, ys, xs], dtype=np.float64)
    colour = colour_image(cls["rank"][:, ys, xs], classified, classes=sources.classes).astype(np.float64) / 255.0
    planes = np.zeros((len(plane_names(sources.classes)), *box.shape))
    planes[0] = 1.0
    planes[1], planes[2] = cov, classified
    if sources.segmentation is not None:
        planes[3] = _outline(sources.segmentation.open_group(mode="r")["deblended"], box, sources.shape)
    planes[4:7] = np.where(cov, image, 0.0)
    planes[7 : 7 + mean.shape[0]] = np.where(classified, mean, 0.0)
    planes[7 + mean.shape[0] :] = np.moveaxis(colour, -1, 0)
    return planes


def _outline(labels: Any, box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of an object (label > 0) with a 4-neighbour of another label (or outside the image)."""
    y0, y1, x0, x1 = max(box.y0 - 1, 0), min(box.y1 + 1, shape[0]), max(box.x0 - 1, 0), min(box.x1 + 1, shape[1])
    halo = np.zeros((box.shape[0] + 2, box.shape[1] + 2), dtype=np.int64)
    halo[y0 - box.y0 + 1 : y1 - box.y0 + 1, x0 - box.x0 + 1 : x1 - box.x0 + 1] = labels[y0:y1, x0:x1]
    core = halo[1:-1, 1:-1]
    edge = (core != halo[:-2, 1:-1]) | (core != halo[2:, 1:-1]) | (core != halo[1:-1, :-2]) | (core != halo[1:-1, 2:])
    return ((core > 0) & edge).astype(np.float64)
