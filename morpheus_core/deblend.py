"""Algorithm 2 of the paper (section 4.2): deblending segments on the flux image.

Each segment of Algorithm 1 is treated on its own, on the cut-out of its bounding box:

* **internal markers** (the default): local maxima of the flux image (F160W by
  default) inside the segment, at least ``min_distance`` pixels apart, at most
  ``nd_max`` of them (``skimage.feature.peak_local_max``, brightest first). With more
  than one peak, a watershed of the negative flux from those peaks splits the
  segment; the children are numbered 1, 2, ... in order of peak brightness.
* **external markers** (value-added mode): known source positions inside the segment.
  With more than one, a watershed of the negative flux splits the segment between
  them; with exactly one, the whole segment is that source's; with none, the segment
  belongs to no catalogued source and is dropped.

Children keep their parent: a segment 8 split in two gives objects ``8.1`` and
``8.2`` (the paper's notation); an unsplit segment stays ``8`` (``sub_id`` 0).

Differences from the released reference code, on purpose: peaks are searched inside
the segment's own pixels (``labels=``) with ``exclude_border=False``, so a source
near its segment's bounding-box edge can still be a peak (the reference excluded
peaks within ``min_distance`` of the cut-out's edge, which silently disables
deblending of segments smaller than ``2 * min_distance``), and holes of a segment
(other segments inside it) are never reassigned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

__all__ = [
    "DEFAULT_MIN_DISTANCE",
    "DEFAULT_ND_MAX",
    "Deblended",
    "deblend",
    "number_children",
    "object_label",
    "split_by_markers",
    "split_by_peaks",
]

#: Minimum distance between two flux peaks, in pixels. The reference code uses 20; on
#: the demo sky (0.06"/px) 20 px left 3 of 24 bright isolated sources merged with a
#: neighbour 20-30 px away (centroids off by up to 18 px), 10 px none (see docs).
DEFAULT_MIN_DISTANCE = 10
#: Maximum number of children of one segment (the reference code's default).
DEFAULT_ND_MAX = 20


def _check(flux: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    flux = np.asarray(flux, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if flux.shape != mask.shape:
        raise ValueError(f"flux {flux.shape} and segment mask {mask.shape} differ in shape")
    return flux, mask


def split_by_peaks(
    flux: np.ndarray, mask: np.ndarray, *, min_distance: int = DEFAULT_MIN_DISTANCE, nd_max: int = DEFAULT_ND_MAX
) -> np.ndarray:
    """Split one segment at its flux peaks (internal markers).

    Parameters
    ----------
    flux : numpy.ndarray
        ``(h, w)`` flux image cut-out (non-finite values count as no flux).
    mask : numpy.ndarray
        ``(h, w)`` bool, the segment's pixels.
    min_distance : int
        Minimum separation of two peaks in pixels (``peak_local_max``'s
        ``min_distance``).
    nd_max : int
        Maximum number of children.

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` int32: 0 off the segment; 1 everywhere on it when it is not split,
        else the child number 1..k (1 the brightest peak).
    """
    if min_distance < 1 or nd_max < 1:
        raise ValueError(f"min_distance and nd_max must be >= 1, got {min_distance} and {nd_max}")
    flux, mask = _check(flux, mask)
    flux = np.where(np.isfinite(flux), flux, 0.0)
    out = mask.astype(np.int32)
    if mask.sum() < 2:
        return out
    peaks = peak_local_max(
        flux, min_distance=int(min_distance), num_peaks=int(nd_max), labels=mask.astype(np.int32), exclude_border=False
    )
    if len(peaks) < 2:
        return out
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
    return watershed(-flux, markers, mask=mask).astype(np.int32)


def split_by_markers(flux: np.ndarray, mask: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """Split one segment between known source positions (external markers).

    Parameters
    ----------
    flux : numpy.ndarray
        ``(h, w)`` flux image cut-out.
    mask : numpy.ndarray
        ``(h, w)`` bool, the segment's pixels.
    markers : numpy.ndarray
        ``(h, w)`` int, a source's identifier (> 0) at its pixel, 0 elsewhere.

    Returns
    -------
    numpy.ndarray
        ``(h, w)`` int64 source identifier of every segment pixel, 0 off the segment
        or when no source lies in it.
    """
    flux, mask = _check(flux, mask)
    markers = np.where(mask, np.asarray(markers, dtype=np.int64), 0)
    ids = np.unique(markers[markers > 0])
    if len(ids) == 0:
        return np.zeros(mask.shape, dtype=np.int64)
    if len(ids) == 1:
        return np.where(mask, ids[0], 0).astype(np.int64)
    flux = np.where(np.isfinite(flux), flux, 0.0)
    return watershed(-flux, markers, mask=mask).astype(np.int64)


def object_label(parent_id: int, sub_id: int) -> str:
    """The paper's object label: ``"8"`` for an unsplit segment, ``"8.2"`` for a child."""
    return f"{parent_id}.{sub_id}" if sub_id else f"{parent_id}"


@dataclass(frozen=True)
class Deblended:
    """A deblended segmentation map and its objects.

    Attributes
    ----------
    segmap : numpy.ndarray
        ``(H, W)`` int32 object ``id`` of every pixel, 0 off objects.
    id, parent_id, sub_id : numpy.ndarray
        Per object, sorted by ``id`` (1..N, ordered by ``(parent_id, sub_id)``).
        ``sub_id`` is 0 for an unsplit segment.
    """

    segmap: np.ndarray
    id: np.ndarray
    parent_id: np.ndarray
    sub_id: np.ndarray

    @property
    def labels(self) -> list[str]:
        """The paper's ``8.1``-style label of every object."""
        return [object_label(int(p), int(s)) for p, s in zip(self.parent_id, self.sub_id)]


def number_children(parents: np.ndarray, n_children: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object ids for segments with given numbers of children.

    Parameters
    ----------
    parents : numpy.ndarray
        Segment labels, ascending.
    n_children : numpy.ndarray
        Children of each (1 = not split).

    Returns
    -------
    id, parent_id, sub_id : numpy.ndarray
        One row per object: ids 1..N in ``(parent_id, sub_id)`` order; ``sub_id`` 0
        for an unsplit segment, 1..k for children.
    """
    parents = np.asarray(parents, dtype=np.int64)
    n_children = np.asarray(n_children, dtype=np.int64)
    parent_id = np.repeat(parents, n_children)
    starts = np.cumsum(n_children) - n_children
    sub_id = np.arange(len(parent_id)) - np.repeat(starts, n_children) + 1
    sub_id[np.repeat(n_children == 1, n_children)] = 0
    return np.arange(1, len(parent_id) + 1, dtype=np.int64), parent_id, sub_id


def deblend(
    segmap: np.ndarray, flux: np.ndarray, *, min_distance: int = DEFAULT_MIN_DISTANCE, nd_max: int = DEFAULT_ND_MAX
) -> Deblended:
    """Algorithm 2 with internal markers on a whole image.

    Parameters
    ----------
    segmap : numpy.ndarray
        ``(H, W)`` int segment labels of Algorithm 1 (0 off sources).
    flux : numpy.ndarray
        ``(H, W)`` flux image (F160W by default).
    min_distance, nd_max
        As in :func:`split_by_peaks`.

    Returns
    -------
    Deblended
        The deblended map and the ``id`` / ``parent_id`` / ``sub_id`` of its objects.
    """
    segmap = np.asarray(segmap)
    flux, _ = _check(flux, segmap != 0)
    parents, counts, pieces = [], [], []
    for index, box in enumerate(ndi.find_objects(segmap)):
        if box is None:
            continue
        label = index + 1
        children = split_by_peaks(flux[box], segmap[box] == label, min_distance=min_distance, nd_max=nd_max)
        parents.append(label)
        counts.append(int(children.max()))
        pieces.append((box, children))
    ids, parent_id, sub_id = number_children(np.array(parents, dtype=np.int64), np.array(counts, dtype=np.int64))
    first_id = np.cumsum(counts) - np.array(counts) + 1  # id of each parent's first object
    out = np.zeros(segmap.shape, dtype=np.int32)
    for (box, children), first in zip(pieces, first_id):
        on = children > 0
        out[box][on] = children[on] + first - 1
    return Deblended(out, ids, parent_id, sub_id)
