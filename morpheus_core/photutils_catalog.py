"""Photutils' ``SourceCatalog`` of one band on a cutout of a labelled map.

What :mod:`morpheus_core.photometry` and :mod:`morpheus_core.photometry_boxes` measure
with: the labels renumbered for photutils (:func:`compact_labels`), the cutout's place
in the whole image checked (:func:`check_cutout`), one ``SourceCatalog`` per band
(:func:`source_catalog`: ``aperture_mask_method='correct'``, ``kron_params``
:data:`KRON_PARAMS`, no local background, unobserved pixels masked) and its columns as
float arrays (:func:`catalog_values`).
"""

from __future__ import annotations

import numpy as np
from astropy import units as u
from photutils.segmentation import SegmentationImage, SourceCatalog

__all__ = ["KRON_PARAMS", "catalog_values", "check_cutout", "compact_labels", "source_catalog"]

#: photutils' default Kron parameters: scale of the Kron radius, smallest (unscaled) Kron
#: radius, smallest circular radius (pixels).
KRON_PARAMS: tuple[float, float, float] = (2.5, 1.4, 0.0)


def compact_labels(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels renumbered 1..k (photutils allocates per label up to the largest one).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(h, w)`` int object ids, 0 off objects.
    ids : numpy.ndarray
        int64 ids of the objects to measure.

    Returns
    -------
    compact : numpy.ndarray
        ``(h, w)`` int32 labels numbered 1..k in the order of the ids present.
    keys : numpy.ndarray
        The compact label of each of ``ids``.

    Raises
    ------
    ValueError
        When an id has no pixel in ``labels``.
    """
    on = labels > 0
    present = np.unique(labels[on])
    missing = np.setdiff1d(ids, present)
    if missing.size:
        raise ValueError(f"object ids {missing[:10].tolist()} have no pixel in the labels given")
    compact = np.zeros(labels.shape, dtype=np.int32)
    compact[on] = np.searchsorted(present, labels[on]) + 1
    return compact, np.searchsorted(present, ids) + 1


def check_cutout(
    labels: np.ndarray, offset: tuple[int, int], image_shape: tuple[int, int] | None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The cutout's offset and the whole image's shape, checked.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(h, w)`` labels of the cutout.
    offset : tuple of int
        ``(y0, x0)`` of the cutout in the whole image.
    image_shape : tuple of int or None
        Shape of the whole image; None: the cutout is the whole image.

    Returns
    -------
    offset, image_shape : tuple of int
        As ints.

    Raises
    ------
    ValueError
        When a nonzero offset comes without ``image_shape``, or the cutout does not fit
        in the image.
    """
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


def source_catalog(
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
    """Photutils' ``SourceCatalog`` of one band on compact labels, as the photometry measures.

    Parameters
    ----------
    compact : numpy.ndarray
        ``(h, w)`` labels of :func:`compact_labels`.
    segm : photutils.segmentation.SegmentationImage
        The segmentation image of ``compact``.
    data : numpy.ndarray
        ``(h, w)`` image of the band (converted to float64; non-finite pixels are
        unobserved).
    error : numpy.ndarray or None
        ``(h, w)`` 1-sigma error per pixel.
    mask : numpy.ndarray or None
        ``(h, w)`` bool, True on unobserved pixels.
    background : float, numpy.ndarray or None
        Background level subtracted first.
    kron_params : sequence of float
        photutils' ``kron_params``.
    detection : photutils.segmentation.SourceCatalog or None
        The shape band's catalog, whose Kron apertures this band is measured in.
    name : str
        What ``data`` is, for the error messages.

    Returns
    -------
    photutils.segmentation.SourceCatalog
        With ``aperture_mask_method='correct'`` and no local background.

    Raises
    ------
    ValueError
        For an image or error of another shape than ``compact``.
    """
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


def catalog_values(cat: SourceCatalog, attr: str) -> np.ndarray:
    """A column of a ``SourceCatalog`` as a 1-D float64 array (units dropped).

    Parameters
    ----------
    cat : photutils.segmentation.SourceCatalog
        The catalog.
    attr : str
        Its attribute (e.g. ``"x_centroid"``).

    Returns
    -------
    numpy.ndarray
        One value per source.
    """
    return np.atleast_1d(np.asarray(u.Quantity(getattr(cat, attr)).value, dtype=np.float64))
