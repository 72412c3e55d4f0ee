"""The box of the image each object's photometry reads (the cutout rule).

A ``SourceCatalog`` (:mod:`morpheus_core.photutils_catalog`) reads pixels outside an
object's segment: the Kron radius is measured in the ellipse of 6 second-moment radii (``semimajor_sigma``)
around the centroid, the Kron flux in the ellipse of ``kron_params[0] * kron_radius``
of them, the half-light radius in the circle of that ellipse's semi-major axis; inside
each region the pixels of other segments are replaced by the pixels mirrored through
the centroid (within the region clipped to the image), and unobserved pixels are left
out. An object's *measurement box* is therefore its segment's bounding box grown by one
pixel (for the flags), and the square of half-side ``R`` around its centroid, plus one
pixel against rounding, clipped to the image, with

    R = max(6 * a, kron_params[0] * kron_radius * a, kron_params[2])   (a = semimajor_sigma)

The Kron radius needs the ``6 * a`` square; where it is not known yet, its largest
value ``max(6, kron_params[1])`` bounds ``R`` (photutils returns NaN above 6).
:func:`measurement_boxes` gives each object's box from a cutout holding its segment:
exact (``kron_measured``) for the objects whose ``6 * a`` square the cutout holds,
else the bound (so a cutout generously around the segments, e.g. a chunk with a halo,
gives the smallest boxes). Measured on a cutout holding the boxes of a group of
objects (labels, every band, error and mask),
:func:`morpheus_core.photometry.measure_objects` gives what one ``SourceCatalog`` over
the whole image gives, up to float rounding of the positions
(``tests/morpheus_core/test_photometry.py``), and it refuses a cutout that misses part
of a box (:func:`check_measurement_boxes`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from photutils.segmentation import SegmentationImage, SourceCatalog

from morpheus_core.photutils_catalog import KRON_PARAMS, catalog_values, check_cutout, compact_labels, source_catalog

__all__ = ["BOX_COLUMNS", "check_measurement_boxes", "measurement_boxes"]

#: Largest unscaled Kron radius photutils keeps (larger values are returned as NaN).
_KRON_MEASURE_SCALE = 6.0

#: Columns of :func:`measurement_boxes`: half-open full-image pixel ranges.
BOX_COLUMNS: tuple[str, ...] = ("y_start", "y_stop", "x_start", "x_stop")


def _boxes(cat: SourceCatalog, offset: tuple[int, int], image_shape: tuple[int, int], radius: np.ndarray) -> np.ndarray:
    """``(n, 4)`` boxes (y_start, y_stop, x_start, x_stop), clipped to the image.

    The segment grown by one pixel and the square of half-side ``radius`` around the
    centroid, plus one pixel.
    """
    y0, x0 = offset
    ymin, ymax = catalog_values(cat, "bbox_ymin") + y0 - 1, catalog_values(cat, "bbox_ymax") + y0 + 2
    xmin, xmax = catalog_values(cat, "bbox_xmin") + x0 - 1, catalog_values(cat, "bbox_xmax") + x0 + 2
    xc, yc = catalog_values(cat, "x_centroid") + x0, catalog_values(cat, "y_centroid") + y0
    ok = np.isfinite(xc) & np.isfinite(yc) & np.isfinite(radius)
    r = np.where(ok, radius, 0.0)
    xc, yc = np.where(ok, xc, xmin), np.where(ok, yc, ymin)
    boxes = np.stack(
        [
            np.minimum(ymin, np.floor(yc - r + 0.5) - 1),
            np.maximum(ymax, np.floor(yc + r + 1.5) + 1),
            np.minimum(xmin, np.floor(xc - r + 0.5) - 1),
            np.maximum(xmax, np.floor(xc + r + 1.5) + 1),
        ],
        axis=1,
    )
    limits = np.array([image_shape[0], image_shape[0], image_shape[1], image_shape[1]], dtype=np.float64)
    return np.clip(boxes, 0, limits).astype(np.int64)


def _radius(cat: SourceCatalog, kron_params: Sequence[float], kron_radius: np.ndarray | None) -> np.ndarray:
    """Half-side of the region an object's Kron radius, Kron flux and half-light radius read.

    With ``kron_radius`` None: the region of the Kron radius's own measurement (6
    second-moment radii, or the smallest circle); else that and the Kron aperture's
    semi-major axis (the half-light radius's largest circle), ``kron_radius`` being
    photutils' (NaN: no aperture).
    """
    a = catalog_values(cat, "semimajor_axis")
    circle = kron_params[2] if len(kron_params) == 3 else 0.0
    radius = np.maximum(_KRON_MEASURE_SCALE * a, circle)
    if kron_radius is not None:
        aperture = np.where(np.isfinite(kron_radius), kron_params[0] * kron_radius * a, 0.0)
        radius = np.maximum(radius, aperture)
    return radius


def _inside(boxes: np.ndarray, offset: tuple[int, int], shape: tuple[int, int]) -> np.ndarray:
    y0, x0 = offset
    return (boxes[:, 0] >= y0) & (boxes[:, 1] <= y0 + shape[0]) & (boxes[:, 2] >= x0) & (boxes[:, 3] <= x0 + shape[1])


def measurement_boxes(
    labels: np.ndarray,
    data: np.ndarray,
    ids: Sequence[int],
    *,
    offset: tuple[int, int] = (0, 0),
    image_shape: tuple[int, int] | None = None,
    mask: np.ndarray | None = None,
    background: float | np.ndarray | None = None,
    kron_params: Sequence[float] = KRON_PARAMS,
) -> pd.DataFrame:
    """The image box each object's measurement reads (the cutout rule of the module docstring).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(h, w)`` int deblended object ids of a cutout (0 off objects) that holds each
        requested object's segment whole; the more it holds around them, the more
        boxes are exact rather than bounds.
    data : numpy.ndarray
        ``(h, w)`` shape-band image of the same cutout (the moments are flux-weighted).
    ids : sequence of int
        Objects to place.
    offset : tuple of int
        ``(y0, x0)`` of the cutout in the whole image.
    image_shape : tuple of int, optional
        Shape of the whole image; default: the cutout is the whole image.
    mask, background, kron_params
        As for :func:`~morpheus_core.photometry.measure_objects`.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``id``: :data:`BOX_COLUMNS`, half-open full-image ranges clipped to
        the image, and ``kron_measured`` (bool: the box uses the object's Kron radius,
        else its upper bound). Reading ``[y_start:y_stop, x_start:x_stop]`` (labels,
        bands, errors, mask) around every object of a group and measuring there
        reproduces the whole-image catalog.

    Raises
    ------
    ValueError
        When an id has no pixel, or a segment reaches a cutout edge that is not an
        image edge (it may continue outside).
    """
    labels = np.asarray(labels)
    ids = np.asarray(ids, dtype=np.int64).ravel()
    offset, image_shape = check_cutout(labels, offset, image_shape)
    if ids.size == 0:
        frame = pd.DataFrame({c: np.array([], np.int64) for c in BOX_COLUMNS}, index=pd.Index(ids, name="id"))
        frame["kron_measured"] = np.array([], bool)
        return frame
    compact, keys = compact_labels(labels, ids)
    segm = SegmentationImage(compact)
    kron_params = tuple(kron_params)
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and mask.shape != labels.shape:
        raise ValueError(f"mask and labels must have the same shape, got {mask.shape} and {labels.shape}")
    cat = source_catalog(
        compact,
        segm,
        data,
        error=None,
        mask=mask,
        background=background,
        kron_params=kron_params,
        detection=None,
        name="data",
    ).select_labels(keys)
    _check_whole(cat, ids, labels.shape, offset, image_shape)
    near = _inside(_boxes(cat, offset, image_shape, _radius(cat, kron_params, None)), offset, labels.shape)
    # Largest Kron radius photutils keeps: max(6, kron_params[1]) (above 6 it returns NaN).
    bound = np.full(len(ids), max(_KRON_MEASURE_SCALE, kron_params[1]))
    kron_radius = np.where(near, catalog_values(cat, "kron_radius"), bound) if near.any() else bound
    boxes = _boxes(cat, offset, image_shape, _radius(cat, kron_params, kron_radius))
    frame = pd.DataFrame(boxes, columns=list(BOX_COLUMNS), index=pd.Index(ids, name="id"))
    frame["kron_measured"] = near
    return frame


def _check_whole(
    cat: SourceCatalog, ids: np.ndarray, shape: tuple[int, int], offset: tuple[int, int], image_shape: tuple[int, int]
) -> None:
    """Refuse segments cut by a cutout edge that is not an image edge."""
    y0, x0 = offset
    h, w = shape
    cut = (
        ((catalog_values(cat, "bbox_ymin") == 0) & (y0 > 0))
        | ((catalog_values(cat, "bbox_xmin") == 0) & (x0 > 0))
        | ((catalog_values(cat, "bbox_ymax") == h - 1) & (y0 + h < image_shape[0]))
        | ((catalog_values(cat, "bbox_xmax") == w - 1) & (x0 + w < image_shape[1]))
    )
    if cut.any():
        raise ValueError(
            f"objects {ids[cut][:10].tolist()} reach the edge of the cutout at offset {offset} "
            f"(shape {shape}) inside the image {image_shape}: pass a cutout holding their segments"
        )


def check_measurement_boxes(
    cat: SourceCatalog,
    ids: np.ndarray,
    shape: tuple[int, int],
    offset: tuple[int, int],
    image_shape: tuple[int, int],
    kron_params: Sequence[float],
) -> None:
    """Refuse a cutout that misses part of an object's measurement box.

    Parameters
    ----------
    cat : photutils.segmentation.SourceCatalog
        The shape band's catalog of the objects, measured on the cutout.
    ids : numpy.ndarray
        Their object ids (for the message).
    shape : tuple of int
        Shape of the cutout.
    offset : tuple of int
        ``(y0, x0)`` of the cutout in the whole image.
    image_shape : tuple of int
        Shape of the whole image.
    kron_params : sequence of float
        photutils' ``kron_params``.

    Raises
    ------
    ValueError
        Naming the objects whose box (:func:`measurement_boxes`) the cutout misses.
    """
    near = _boxes(cat, offset, image_shape, _radius(cat, kron_params, None))
    inside = _inside(near, offset, shape)
    boxes = near.copy()
    if inside.all():  # the Kron radii measured here are the whole image's: check their apertures
        boxes = _boxes(cat, offset, image_shape, _radius(cat, kron_params, catalog_values(cat, "kron_radius")))
        inside = _inside(boxes, offset, shape)
    if not inside.all():
        y0, x0 = offset
        bad = np.flatnonzero(~inside)[:5]
        detail = ", ".join(
            f"id {ids[i]} needs rows {boxes[i, 0]}:{boxes[i, 1]} columns {boxes[i, 2]}:{boxes[i, 3]}" for i in bad
        )
        raise ValueError(
            f"the cutout rows {y0}:{y0 + shape[0]}, columns {x0}:{x0 + shape[1]} misses part of "
            f"the measurement box of {int((~inside).sum())} objects ({detail}); "
            "cut it with measurement_boxes"
        )
