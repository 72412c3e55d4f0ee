"""Photometry and shapes of catalogued objects, measured by photutils' ``SourceCatalog``.

Next to the paper's columns (Eq. 16 fractions, agreement, ``flux_<band>`` sums), the
catalog carries what astronomers compare with SExtractor and photutils: the centroid,
bounding box, segment and Kron fluxes with their errors, Kron and half-light radii,
second-moment shape, Gini and AB magnitudes. Everything is computed by
:class:`photutils.segmentation.SourceCatalog` (``aperture_mask_method='correct'``,
``kron_params`` :data:`~morpheus_core.photutils_catalog.KRON_PARAMS`, no local
background) on the deblended map:

- shape columns (centroid, bounding box, moments, Kron radius, half-light radius) come
  from the *shape band* (F160W by default, the flux band of Eq. 16);
- every band's Kron flux is measured in the shape band's Kron aperture (photutils'
  ``detection_catalog``, SExtractor's dual-image mode), its segment flux over the
  object's pixels.

**Cutouts.** Measured on a cutout holding the measurement boxes of a group of objects
(:func:`morpheus_core.photometry_boxes.measurement_boxes`; labels, every band, error
and mask), :func:`measure_objects` gives what one ``SourceCatalog`` over the whole image
gives, up to float rounding of the positions (``tests/morpheus_core/test_photometry.py``),
and it refuses a cutout that misses part of a box.

Nulls are NaN in the returned frame; column units and descriptions, and the astropy
Table with masked nulls: :mod:`morpheus_core.photometry_columns`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from astropy import units as u
from photutils.segmentation import SegmentationImage

from morpheus_core.magnitudes import N_SIGMA_LIMIT, ab_magnitudes
from morpheus_core.photometry_boxes import check_measurement_boxes
from morpheus_core.photometry_columns import SHAPE_COLUMNS, band_columns
from morpheus_core.photutils_catalog import KRON_PARAMS, catalog_values, check_cutout, compact_labels, source_catalog

__all__ = ["measure_band", "measure_objects"]

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
        holding every requested object's box
        (:func:`~morpheus_core.photometry_boxes.measurement_boxes`).
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
        photutils' ``kron_params`` (default :data:`~morpheus_core.photutils_catalog.KRON_PARAMS`).
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
    offset, image_shape = check_cutout(labels, offset, image_shape)
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
    compact, keys = compact_labels(labels, ids)
    segm = SegmentationImage(compact)
    kron_params = tuple(kron_params)
    shape_cat = source_catalog(
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
        check_measurement_boxes(cat, ids, labels.shape, offset, image_shape, kron_params)
    y0, x0 = offset
    out = {name: catalog_values(cat, attr) for name, attr in _PHOTUTILS_SHAPE.items()}
    out["x_centroid"] = out["x_centroid"] + x0
    out["y_centroid"] = out["y_centroid"] + y0
    for name, shift in (("bbox_xmin", x0), ("bbox_xmax", x0), ("bbox_ymin", y0), ("bbox_ymax", y0)):
        out[name] = (catalog_values(cat, name) + shift).astype(np.int64)
    out["half_light_radius"] = np.atleast_1d(np.asarray(u.Quantity(cat.flux_radius(0.5)).value, np.float64))
    frame = pd.DataFrame({name: out[name] for name in SHAPE_COLUMNS}, index=index)
    for band in order:
        band_cat = (
            cat
            if band == shape_band
            else source_catalog(
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
            flux, err = catalog_values(band_cat, flux_attr), catalog_values(band_cat, err_attr)
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
