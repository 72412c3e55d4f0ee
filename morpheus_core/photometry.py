"""Photometry and shapes of catalogued objects, measured by photutils' ``SourceCatalog``.

Next to the paper's columns (Eq. 16 fractions, agreement, ``flux_<band>`` sums), the
catalog carries what astronomers compare with SExtractor and photutils: the centroid,
bounding box, segment and Kron fluxes with their errors, Kron and half-light radii,
second-moment shape, Gini and AB magnitudes. Everything is computed by
:class:`photutils.segmentation.SourceCatalog` (``aperture_mask_method='correct'``,
``kron_params`` :data:`KRON_PARAMS`, no local background) on the deblended map:

- shape columns (centroid, bounding box, moments, Kron radius, half-light radius) come
  from the *shape band* (F160W by default, the flux band of Eq. 16);
- every band's Kron flux is measured in the shape band's Kron aperture (photutils'
  ``detection_catalog``, SExtractor's dual-image mode), its segment flux over the
  object's pixels.

**Cutouts.** A ``SourceCatalog`` reads pixels outside an object's segment: the Kron
radius is measured in the ellipse of 6 second-moment radii (``semimajor_sigma``)
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
objects (labels, every band, error and mask), :func:`measure_objects` gives what one
``SourceCatalog`` over the whole image gives, up to float rounding of the positions
(``tests/morpheus_core/test_photometry.py``), and it refuses a cutout that misses part
of a box.

Nulls are NaN in the returned frame; column units and descriptions, and the astropy
Table with masked nulls: :mod:`morpheus_core.photometry_columns`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from astropy import units as u
from photutils.segmentation import SegmentationImage, SourceCatalog

from morpheus_core.magnitudes import N_SIGMA_LIMIT, ab_magnitudes
from morpheus_core.photometry_columns import SHAPE_COLUMNS, band_columns

__all__ = ["BOX_COLUMNS", "KRON_PARAMS", "measure_band", "measure_objects", "measurement_boxes"]

#: photutils' default Kron parameters: scale of the Kron radius, smallest (unscaled) Kron
#: radius, smallest circular radius (pixels).
KRON_PARAMS: tuple[float, float, float] = (2.5, 1.4, 0.0)
#: Largest unscaled Kron radius photutils keeps (larger values are returned as NaN).
_KRON_MEASURE_SCALE = 6.0

#: Columns of :func:`measurement_boxes`: half-open full-image pixel ranges.
BOX_COLUMNS: tuple[str, ...] = ("y_start", "y_stop", "x_start", "x_stop")

_PHOTUTILS_SHAPE = {
    "x_centroid": "x_centroid",
    "y_centroid": "y_centroid",
    "semimajor_sigma": "semimajor_axis",
    "semiminor_sigma": "semiminor_axis",
    "ellipticity": "ellipticity",
    "orientation": "orientation",
    "equivalent_radius": "equivalent_radius",
    "gini": "gini",
    "kron_radius": "kron_radius",
}


def _compact(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 1..k (photutils allocates per label up to the largest one)."""
    on = labels > 0
    present = np.unique(labels[on])
    missing = np.setdiff1d(ids, present)
    if missing.size:
        raise ValueError(f"object ids {missing[:10].tolist()} have no pixel in the labels given")
    compact = np.zeros(labels.shape, dtype=np.int32)
    compact[on] = np.searchsorted(present, labels[on]) + 1
    return compact, np.searchsorted(present, ids) + 1


def _check_frame(
    labels: np.ndarray, offset: tuple[int, int], image_shape: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[int, int]]:
    y0, x0 = (int(v) for v in offset)
    if image_shape is None:
        if (y0, x0) != (0, 0):
            raise ValueError(f"a cutout at offset {(y0, x0)} needs image_shape (the whole image's shape)")
        image_shape = labels.shape
    image_shape = (int(image_shape[0]), int(image_shape[1]))
    h, w = labels.shape
    if y0 < 0 or x0 < 0 or y0 + h > image_shape[0] or x0 + w > image_shape[1]:
        raise ValueError(f"cutout {labels.shape} at offset {(y0, x0)} does not fit in the image {image_shape}")
    return (y0, x0), image_shape


def _prepare(array: np.ndarray | None, shape: tuple[int, int], name: str) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} and labels must have the same shape, got {array.shape} and {shape}")
    return array


def _catalog(
    compact: np.ndarray,
    segm: SegmentationImage,
    data: np.ndarray,
    *,
    error,
    mask,
    background,
    kron_params,
    detection: SourceCatalog | None,
    name: str,
) -> SourceCatalog:
    data = _prepare(data, compact.shape, name)
    if background is not None:
        data = data - (np.asarray(background, dtype=np.float64) if np.ndim(background) else float(background))
    bad = ~np.isfinite(data)
    if mask is not None:
        bad |= mask
    return SourceCatalog(
        data,
        segm,
        error=_prepare(error, compact.shape, f"error of {name}"),
        mask=bad,
        kron_params=kron_params,
        aperture_mask_method="correct",
        local_bkg_width=0,
        detection_catalog=detection,
    )


def _value(cat: SourceCatalog, attr: str) -> np.ndarray:
    return np.atleast_1d(np.asarray(u.Quantity(getattr(cat, attr)).value, dtype=np.float64))


def _boxes(cat: SourceCatalog, offset: tuple[int, int], image_shape: tuple[int, int], radius: np.ndarray) -> np.ndarray:
    """``(n, 4)`` boxes (y_start, y_stop, x_start, x_stop), clipped to the image.

    The segment grown by one pixel and the square of half-side ``radius`` around the
    centroid, plus one pixel.
    """
    y0, x0 = offset
    ymin, ymax = _value(cat, "bbox_ymin") + y0 - 1, _value(cat, "bbox_ymax") + y0 + 2
    xmin, xmax = _value(cat, "bbox_xmin") + x0 - 1, _value(cat, "bbox_xmax") + x0 + 2
    xc, yc = _value(cat, "x_centroid") + x0, _value(cat, "y_centroid") + y0
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
    a = _value(cat, "semimajor_axis")
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
        As for :func:`measure_objects`.

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
    offset, image_shape = _check_frame(labels, offset, image_shape)
    if ids.size == 0:
        frame = pd.DataFrame({c: np.array([], np.int64) for c in BOX_COLUMNS}, index=pd.Index(ids, name="id"))
        frame["kron_measured"] = np.array([], bool)
        return frame
    compact, keys = _compact(labels, ids)
    segm = SegmentationImage(compact)
    kron_params = tuple(kron_params)
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and mask.shape != labels.shape:
        raise ValueError(f"mask and labels must have the same shape, got {mask.shape} and {labels.shape}")
    cat = _catalog(
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
    kron_radius = np.where(near, _value(cat, "kron_radius"), bound) if near.any() else bound
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
        ((_value(cat, "bbox_ymin") == 0) & (y0 > 0))
        | ((_value(cat, "bbox_xmin") == 0) & (x0 > 0))
        | ((_value(cat, "bbox_ymax") == h - 1) & (y0 + h < image_shape[0]))
        | ((_value(cat, "bbox_xmax") == w - 1) & (x0 + w < image_shape[1]))
    )
    if cut.any():
        raise ValueError(
            f"objects {ids[cut][:10].tolist()} reach the edge of the cutout at offset {offset} "
            f"(shape {shape}) inside the image {image_shape}: pass a cutout holding their segments"
        )


def measure_objects(
    labels: np.ndarray,
    bands: Mapping[str, np.ndarray],
    ids: Sequence[int],
    *,
    shape_band: str = "H",
    errors: Mapping[str, np.ndarray | None] | None = None,
    mask: np.ndarray | None = None,
    backgrounds: Mapping[str, float | np.ndarray] | None = None,
    offset: tuple[int, int] = (0, 0),
    image_shape: tuple[int, int] | None = None,
    zeropoints: Mapping[str, float | None] | None = None,
    kron_params: Sequence[float] = KRON_PARAMS,
    n_sigma: float = N_SIGMA_LIMIT,
) -> pd.DataFrame:
    """Shapes, segment and Kron photometry and AB magnitudes of objects of a labelled map.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(h, w)`` int deblended object ids (0 off objects): the whole image or a cutout
        holding every requested object's :func:`measurement_boxes` box.
    bands : mapping of str to numpy.ndarray
        Band name -> ``(h, w)`` image of the same pixels (converted to float64);
        non-finite pixels are unobserved.
    ids : sequence of int
        Objects to measure (rows in this order).
    shape_band : str
        The band of the shape columns and of the Kron apertures (F160W by default).
    errors : mapping of str to numpy.ndarray, optional
        Band -> ``(h, w)`` 1-sigma error per pixel (e.g. :func:`morpheus_core.noise.total_error`);
        a band without one gets NaN flux errors.
    mask : numpy.ndarray, optional
        ``(h, w)`` bool, True on unobserved pixels (excluded from every sum).
    backgrounds : mapping of str to float or numpy.ndarray, optional
        Band -> background level subtracted before measuring.
    offset : tuple of int
        ``(y0, x0)`` of the cutout in the whole image: positions and boxes are reported
        in full-image pixels.
    image_shape : tuple of int, optional
        Shape of the whole image (needed with a nonzero ``offset``). With it, the
        function checks that the cutout holds every object's measurement box.
    zeropoints : mapping of str to float or None, optional
        Band -> AB zero point (:func:`morpheus_core.magnitudes.ab_zeropoint`); bands
        without one get no magnitude columns.
    kron_params : sequence of float
        photutils' ``kron_params`` (default :data:`KRON_PARAMS`).
    n_sigma : float
        Significance of the ``maglim_*`` upper limits.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``id``: the :data:`SHAPE_COLUMNS` from ``shape_band``, then per band
        the :func:`~morpheus_core.photometry_columns.band_columns`; NaN is null. Units
        and descriptions: :func:`~morpheus_core.photometry_columns.column_info`.

    Raises
    ------
    ValueError
        For arrays of other shapes, ids without pixels, an unknown ``shape_band``, or a
        cutout smaller than an object's measurement box.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be a 2-D array, got shape {labels.shape}")
    if shape_band not in bands:
        raise ValueError(f"shape band {shape_band!r} is not one of the bands given {list(bands)}")
    ids = np.asarray(ids, dtype=np.int64).ravel()
    offset, image_shape = _check_frame(labels, offset, image_shape)
    errors, backgrounds, zeropoints = dict(errors or {}), dict(backgrounds or {}), dict(zeropoints or {})
    mask = None if mask is None else np.asarray(mask, dtype=bool)
    if mask is not None and mask.shape != labels.shape:
        raise ValueError(f"mask and labels must have the same shape, got {mask.shape} and {labels.shape}")
    index = pd.Index(ids, name="id")
    order = [shape_band] + [b for b in bands if b != shape_band]
    if ids.size == 0:
        names = list(SHAPE_COLUMNS) + [
            c for b in order for c in band_columns(b, magnitudes=zeropoints.get(b) is not None)
        ]
        return pd.DataFrame(
            {c: np.array([], np.int64 if c.startswith("bbox_") else np.float64) for c in names}, index=index
        )
    compact, keys = _compact(labels, ids)
    segm = SegmentationImage(compact)
    kron_params = tuple(kron_params)
    shape_cat = _catalog(
        compact,
        segm,
        bands[shape_band],
        error=errors.get(shape_band),
        mask=mask,
        background=backgrounds.get(shape_band),
        kron_params=kron_params,
        detection=None,
        name=f"band {shape_band}",
    )
    cat = shape_cat.select_labels(keys)
    if image_shape != labels.shape or offset != (0, 0):
        _check_box(cat, ids, labels.shape, offset, image_shape, kron_params)
    y0, x0 = offset
    out = {name: _value(cat, attr) for name, attr in _PHOTUTILS_SHAPE.items()}
    out["x_centroid"] = out["x_centroid"] + x0
    out["y_centroid"] = out["y_centroid"] + y0
    for name, shift in (("bbox_xmin", x0), ("bbox_xmax", x0), ("bbox_ymin", y0), ("bbox_ymax", y0)):
        out[name] = (_value(cat, name) + shift).astype(np.int64)
    out["half_light_radius"] = np.atleast_1d(np.asarray(u.Quantity(cat.flux_radius(0.5)).value, np.float64))
    frame = pd.DataFrame({name: out[name] for name in SHAPE_COLUMNS}, index=index)
    for band in order:
        band_cat = (
            cat
            if band == shape_band
            else _catalog(
                compact,
                segm,
                bands[band],
                error=errors.get(band),
                mask=mask,
                background=backgrounds.get(band),
                kron_params=kron_params,
                detection=shape_cat,
                name=f"band {band}",
            ).select_labels(keys)
        )
        for kind, flux_attr, err_attr in (
            ("segment", "segment_flux", "segment_flux_err"),
            ("kron", "kron_flux", "kron_flux_err"),
        ):
            flux, err = _value(band_cat, flux_attr), _value(band_cat, err_attr)
            if errors.get(band) is None:
                err = np.full_like(flux, np.nan)
            frame[f"{kind}_flux_{band}"], frame[f"{kind}_fluxerr_{band}"] = flux, err
        zp = zeropoints.get(band)
        if zp is not None:
            for kind in ("segment", "kron"):
                mag, magerr, maglim = ab_magnitudes(
                    frame[f"{kind}_flux_{band}"].to_numpy(),
                    frame[f"{kind}_fluxerr_{band}"].to_numpy(),
                    zp,
                    n_sigma=n_sigma,
                )
                frame[f"mag_{kind}_{band}"], frame[f"magerr_{kind}_{band}"] = mag, magerr
                frame[f"maglim_{kind}_{band}"] = maglim
    return frame


def _check_box(
    cat: SourceCatalog,
    ids: np.ndarray,
    shape: tuple[int, int],
    offset: tuple[int, int],
    image_shape: tuple[int, int],
    kron_params: Sequence[float],
) -> None:
    """Refuse a cutout that misses part of an object's measurement box."""
    near = _boxes(cat, offset, image_shape, _radius(cat, kron_params, None))
    inside = _inside(near, offset, shape)
    boxes = near.copy()
    if inside.all():  # the Kron radii measured here are the whole image's: check their apertures
        boxes = _boxes(cat, offset, image_shape, _radius(cat, kron_params, _value(cat, "kron_radius")))
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


def measure_band(
    labels: np.ndarray,
    data: np.ndarray,
    ids: Sequence[int],
    *,
    band: str = "H",
    error: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    background: float | np.ndarray | None = None,
    offset: tuple[int, int] = (0, 0),
    image_shape: tuple[int, int] | None = None,
    zeropoint: float | None = None,
    kron_params: Sequence[float] = KRON_PARAMS,
    n_sigma: float = N_SIGMA_LIMIT,
) -> pd.DataFrame:
    """:func:`measure_objects` on one band (its shape columns and its ``_<band>`` columns).

    Parameters
    ----------
    labels, ids, mask, offset, image_shape, kron_params, n_sigma
        As for :func:`measure_objects`.
    data : numpy.ndarray
        ``(h, w)`` image of the band.
    band : str
        Its name (the columns' suffix).
    error : numpy.ndarray, optional
        ``(h, w)`` 1-sigma error per pixel.
    background : float or numpy.ndarray, optional
        Background level subtracted first.
    zeropoint : float, optional
        AB zero point (no magnitude columns without one).

    Returns
    -------
    pandas.DataFrame
        As :func:`measure_objects` with ``bands={band: data}``.
    """
    return measure_objects(
        labels,
        {band: data},
        ids,
        shape_band=band,
        errors={band: error},
        mask=mask,
        backgrounds=None if background is None else {band: background},
        offset=offset,
        image_shape=image_shape,
        zeropoints={band: zeropoint},
        kron_params=kron_params,
        n_sigma=n_sigma,
    )
