"""Quality flags of catalogued objects: one integer of bits per object.

:data:`FLAG_BITS` is the table (bit value -> name, meaning); a catalog's ``flags``
column is the sum of the bits set. Every bit warns; 0 means nothing to report. The
paper's detection flag (Table 4, :func:`morpheus_core.catalog.detection_flag`) maps to
three bits, one per value other than 1 (``background = 0`` at the source position, a
certain detection), so it is recoverable from ``flags``.

:func:`object_flags` computes the bits of given objects from the labels, the
unobserved-pixel mask and the band images of a cutout (vectorised over pixels with
NumPy and scipy.ndimage; no loop over objects). The cutout must hold each object's
segment grown by :data:`CENSOR_REACH` pixels (clipped to the image) for the footprint-edge
and censored-core bits to see the neighbours.

A censored core is not classified: a pixel is covered only when non-zero in every band,
and no window touching it is evaluated, so every pixel within :data:`~morpheus_core.BORDER`
(5) pixels of it has ``n = 0`` too. In a catalog of Morpheus' segments the zeros thus
lie outside the objects, :data:`CENSOR_REACH` (6) pixels away at the nearest, and the
segment around them is often a broken ring. ``censored_core`` is set for an object with
an exact-zero pixel within :data:`CENSOR_REACH` pixels (Chebyshev distance, a square
grown around the object's pixels), or holding zero pixels whose other neighbours in it
are all positive. A zero-filled unobserved area (the HLF fills some with zeros, others
with NaN) that close to an object sets it too; NaN-filled areas do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from morpheus_core import BORDER

__all__ = ["CENSOR_REACH", "FLAG_BITS", "FLAG_DESCRIPTION", "flag_bit", "flag_names", "object_flags"]

#: bit value -> (name, meaning).
FLAG_BITS: dict[int, tuple[str, str]] = {
    1: ("deblended", "a child of a segment that Algorithm 2 split (sub_id > 0)"),
    2: ("image_edge", "a pixel of the object lies on the first or last row or column of the image"),
    4: ("footprint_edge", "a pixel of the object touches (8-connectivity) an unobserved pixel"),
    8: ("unobserved_pixels", "the object's pixels include unobserved ones (masked, or non-finite in a band)"),
    16: (
        "censored_core",
        "exact-zero pixels (a censored or saturated core) within 6 pixels of the object "
        "(beyond the 5 unclassified pixels around them), or in it with only positive other "
        "neighbours in it",
    ),
    32: ("oversize_segment", "the object's segment exceeded the deblending limit and was not deblended"),
    64: ("unclassified_position", "detection flag 0: the source position has no classification"),
    128: ("uncertain_detection", "detection flag 2: 0 < background < 1 at the source position"),
    256: ("background_position", "detection flag 3: background = 1 at the source position"),
    512: (
        "no_segment",
        "value-added catalogs: the source has no object in the map (measured in an aperture "
        "or not at all): no photometry",
    ),
}

#: Description of the ``flags`` column.
FLAG_DESCRIPTION = "sum of quality bits: " + "; ".join(f"{bit} {name}" for bit, (name, _) in FLAG_BITS.items())

#: Chebyshev distance (pixels) from an object within which exact zeros set ``censored_core``:
#: one more than the unclassified margin a censored pixel leaves around it.
CENSOR_REACH = BORDER + 1

_BIT = {name: bit for bit, (name, _) in FLAG_BITS.items()}
_NEIGHBOURS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def flag_bit(name: str) -> int:
    """The bit value of the flag called ``name`` (a name of :data:`FLAG_BITS`).

    Examples
    --------
    >>> flag_bit("censored_core")
    16
    """
    return _BIT[name]


def flag_names(flags: int) -> list[str]:
    """Names of the bits set in a ``flags`` value.

    Examples
    --------
    >>> flag_names(1 + 16)
    ['deblended', 'censored_core']
    """
    return [name for bit, (name, _) in FLAG_BITS.items() if int(flags) & bit]


def _shifted(array: np.ndarray, dy: int, dx: int, fill) -> np.ndarray:
    """``out[y, x] = array[y + dy, x + dx]`` (``fill`` outside)."""
    out = np.full(array.shape, fill, dtype=array.dtype)
    h, w = array.shape
    out[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = array[
        max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


def object_flags(
    labels: np.ndarray,
    ids: Sequence[int],
    *,
    offset: tuple[int, int] = (0, 0),
    image_shape: tuple[int, int] | None = None,
    mask: np.ndarray | None = None,
    bands: Sequence[np.ndarray] = (),
    sub_id: Sequence[int] | None = None,
    oversize: Sequence[bool] | None = None,
    detection_flag: Sequence[int] | None = None,
) -> np.ndarray:
    """Quality bits (:data:`FLAG_BITS`) of given objects.

    Parameters
    ----------
    labels : numpy.ndarray
        ``(h, w)`` int deblended object ids of a cutout (0 off objects).
    ids : sequence of int
        Objects (rows of the result, in this order).
    offset : tuple of int
        ``(y0, x0)`` of the cutout in the whole image.
    image_shape : tuple of int, optional
        Shape of the whole image; default: the cutout is the whole image.
    mask : numpy.ndarray, optional
        ``(h, w)`` bool, True on unobserved pixels.
    bands : sequence of numpy.ndarray
        ``(h, w)`` band images: their non-finite pixels are unobserved, their exact
        zeros are looked at for censored cores.
    sub_id : sequence of int, optional
        Per object, its child number (0: its segment was not split).
    oversize : sequence of bool, optional
        Per object, whether its segment was too large to deblend.
    detection_flag : sequence of int, optional
        Per object, the paper's detection flag (0-3).

    Returns
    -------
    numpy.ndarray
        int32 per object; 0 for an id without pixels in the cutout (only the bits
        from ``sub_id``, ``oversize`` and ``detection_flag`` can be set for it).
    """
    labels = np.asarray(labels)
    ids = np.asarray(ids, dtype=np.int64).ravel()
    n = ids.size
    flags = np.zeros(n, dtype=np.int32)
    for name, values in (("sub_id", sub_id), ("oversize", oversize), ("detection_flag", detection_flag)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name} has {len(values)} entries for {n} ids")
    if sub_id is not None:
        flags |= np.where(np.asarray(sub_id) > 0, _BIT["deblended"], 0).astype(np.int32)
    if oversize is not None:
        flags |= np.where(np.asarray(oversize, dtype=bool), _BIT["oversize_segment"], 0).astype(np.int32)
    if detection_flag is not None:
        det = np.asarray(detection_flag)
        if not np.isin(det, (0, 1, 2, 3)).all():
            raise ValueError(f"detection flags must be 0, 1, 2 or 3, got {np.unique(det).tolist()}")
        for value, name in ((0, "unclassified_position"), (2, "uncertain_detection"), (3, "background_position")):
            flags |= np.where(det == value, _BIT[name], 0).astype(np.int32)
    if n == 0:
        return flags

    # Row of each labelled pixel (-1 off the requested objects).
    order = np.argsort(ids)
    pos = np.searchsorted(ids, labels, sorter=order) if n else np.zeros(labels.shape, np.int64)
    pos = np.minimum(pos, n - 1)
    row = np.where((labels > 0) & (ids[order[pos]] == labels), order[pos], -1)

    def any_per_object(pixels: np.ndarray) -> np.ndarray:
        hit = pixels & (row >= 0)
        return np.bincount(row[hit], minlength=n) > 0

    unobserved = np.zeros(labels.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).copy()
    images = [np.asarray(b, dtype=np.float64) for b in bands]
    for image in images:
        if image.shape != labels.shape:
            raise ValueError(f"band images and labels must have the same shape, got {image.shape} and {labels.shape}")
        unobserved |= ~np.isfinite(image)
    if unobserved.shape != labels.shape:
        raise ValueError(f"mask and labels must have the same shape, got {unobserved.shape} and {labels.shape}")

    y0, x0 = (int(v) for v in offset)
    height, width = labels.shape if image_shape is None else (int(image_shape[0]), int(image_shape[1]))
    ys, xs = np.ogrid[: labels.shape[0], : labels.shape[1]]
    on_edge = (ys + y0 == 0) | (ys + y0 == height - 1) | (xs + x0 == 0) | (xs + x0 == width - 1)
    flags |= np.where(any_per_object(np.broadcast_to(on_edge, labels.shape)), _BIT["image_edge"], 0).astype(np.int32)
    flags |= np.where(any_per_object(unobserved), _BIT["unobserved_pixels"], 0).astype(np.int32)
    touches = np.zeros(labels.shape, dtype=bool)
    for dy, dx in _NEIGHBOURS:
        touches |= _shifted(unobserved, dy, dx, False)
    flags |= np.where(any_per_object(touches & ~unobserved), _BIT["footprint_edge"], 0).astype(np.int32)

    censored = np.zeros(n, dtype=bool)
    outside = np.zeros(labels.shape, dtype=bool)  # exact zeros off the objects (censoring leaves them unclassified)
    for image in images:
        outside |= (image == 0.0) & (labels == 0)
    if outside.any():
        size = 2 * CENSOR_REACH + 1
        censored |= any_per_object(ndimage.maximum_filter(outside, size=size, mode="constant", cval=False))
    for image in images:
        zero = (image == 0.0) & ~unobserved & (row >= 0)
        if not zero.any():
            continue
        good = np.zeros(labels.shape, dtype=bool)  # zero pixels with a positive neighbour of the same object
        bad = np.zeros(labels.shape, dtype=bool)  # zero pixels with a non-positive, non-zero one
        for dy, dx in _NEIGHBOURS:
            nb_label = _shifted(labels, dy, dx, 0)
            nb_value = _shifted(image, dy, dx, np.nan)
            same = zero & (nb_label == labels) & (nb_value != 0.0)
            good |= same & (nb_value > 0.0)
            bad |= same & ~(nb_value > 0.0)
        censored |= any_per_object(good) & ~any_per_object(bad)
    flags |= np.where(censored, _BIT["censored_core"], 0).astype(np.int32)
    return flags
