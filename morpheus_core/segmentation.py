"""Algorithm 1 of the paper (section 4.1): source segmentation from the background image.

The background image ``b`` is cut into three kinds of pixel inside the classified
area (``n > 0``):

* marker 1, certain background: ``b == 1``;
* marker 2, certain source: ``b <= threshold`` (the paper's ``b == 0`` is
  ``threshold = 0``, the default), or a given source position (value-added mode);
* unmarked: everything else, which the watershed assigns to one of the two.

As in the released code, ``b`` is the normalised **rank-vote** background image (the
fraction of counted windows that ranked background first): ``b == 1`` on most sky
pixels, ``b == 0`` on source cores. The normalised mean image almost never reaches
either value, so the paper's markers would be empty there. ``source_background``
lets the source markers come from another image (e.g. the mean background with a
threshold such as 0.3: the *mixed* rule of ``pipeline`` keeps the rank-vote sky
markers, hence the watershed's locality, and takes the mean image's more complete
source markers).

A watershed of the Sobel edge image ``sobel(b)`` from those markers, restricted to the
classified area, gives the source mask; its connected components are the segments.
This follows the released reference code (``segmap_from_classified``): Sobel and
watershed from scikit-image, 4-connectivity for the watershed and for the labels.

Locality, used by the chunked Dask graph (``pipeline.downstream.segment``): a watershed only
floods unmarked pixels, from the markers that touch them, so the outcome of an
unmarked pixel depends only on its connected component of unmarked pixels and a
3-pixel ring around it (Sobel reads one pixel, the seeding markers sit one pixel
further out). :func:`unmarked_components` exposes those components so the graph can
check that the halo it read contains every component reaching the chunk core.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import sobel
from skimage.segmentation import watershed

__all__ = [
    "BACKGROUND_MARKER",
    "SOURCE_MARKER",
    "STRUCTURE",
    "check_threshold",
    "label_segments",
    "segment_sources",
    "unmarked_components",
    "watershed_markers",
]

#: Marker value of certain-background pixels (``b == 1``).
BACKGROUND_MARKER = 1
#: Marker value of certain-source pixels (``b <= threshold`` or a given position).
SOURCE_MARKER = 2
#: 4-connectivity, as ``scipy.ndimage.label``'s default and the reference code.
STRUCTURE = ndi.generate_binary_structure(2, 1)


def check_threshold(threshold: float) -> float:
    """Validate the background threshold of a source marker.

    Parameters
    ----------
    threshold : float
        Largest background value that marks a certain source pixel.

    Returns
    -------
    float
        ``threshold`` as a float.

    Raises
    ------
    ValueError
        If it is not in ``[0, 1)``.
    """
    threshold = float(threshold)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"background threshold must be in [0, 1), got {threshold}")
    return threshold


def watershed_markers(
    background: np.ndarray,
    classified: np.ndarray,
    *,
    threshold: float = 0.0,
    sources: np.ndarray | None = None,
    source_background: np.ndarray | None = None,
) -> np.ndarray:
    """Marker image of Algorithm 1.

    Parameters
    ----------
    background : numpy.ndarray
        ``(H, W)`` background probability image ``b``.
    classified : numpy.ndarray
        ``(H, W)`` bool, pixels with a classification (``n > 0``).
    threshold : float
        Pixels with ``b <= threshold`` are certain sources (default 0, the paper).
    sources : numpy.ndarray, optional
        ``(H, W)``; pixels ``> 0`` are known source positions (the paper's ``p``)
        and become source markers unless ``b == 1`` there.
    source_background : numpy.ndarray, optional
        ``(H, W)`` image whose values ``<= threshold`` mark sources instead of
        ``background``'s (background markers still come from ``background == 1``,
        and win where both apply).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` uint8: 0 unmarked or unclassified, 1 background, 2 source.
    """
    threshold = check_threshold(threshold)
    b = np.asarray(background)
    classified = np.asarray(classified, dtype=bool)
    if b.shape != classified.shape:
        raise ValueError(f"background {b.shape} and classified mask {classified.shape} differ in shape")
    s = b
    if source_background is not None:
        s = np.asarray(source_background)
        if s.shape != b.shape:
            raise ValueError(f"source_background {s.shape} and background {b.shape} differ in shape")
    is_source = s <= threshold
    if sources is not None:
        is_source = is_source | (np.asarray(sources) > 0)
    markers = np.zeros(b.shape, dtype=np.uint8)
    markers[is_source & classified] = SOURCE_MARKER
    markers[(b == 1.0) & classified] = BACKGROUND_MARKER
    return markers


def segment_sources(
    background: np.ndarray,
    classified: np.ndarray,
    *,
    threshold: float = 0.0,
    sources: np.ndarray | None = None,
    source_background: np.ndarray | None = None,
) -> np.ndarray:
    """Source mask of Algorithm 1 (before labelling).

    Parameters
    ----------
    background, classified, threshold, sources, source_background
        As in :func:`watershed_markers`; the Sobel edges are those of ``background``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool, True on source pixels; always False outside ``classified``.
    """
    markers = watershed_markers(
        background, classified, threshold=threshold, sources=sources, source_background=source_background
    )
    edges = sobel(np.asarray(background, dtype=np.float64))
    flooded = watershed(edges, markers, mask=np.asarray(classified, dtype=bool))
    return flooded == SOURCE_MARKER


def label_segments(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Unique labels for contiguous source regions (4-connectivity), in raster order.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` bool source mask.

    Returns
    -------
    labels : numpy.ndarray
        ``(H, W)`` int32, 0 off sources, 1..N numbered by each segment's first pixel
        in row-major order.
    n : int
        Number of segments.
    """
    labels, n = ndi.label(np.asarray(mask, dtype=bool), structure=STRUCTURE)
    return labels.astype(np.int32), int(n)


def unmarked_components(markers: np.ndarray, classified: np.ndarray) -> np.ndarray:
    """Connected components (4-connectivity) of classified pixels without a marker.

    Parameters
    ----------
    markers : numpy.ndarray
        Output of :func:`watershed_markers`.
    classified : numpy.ndarray
        ``(H, W)`` bool classified area.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int32 component labels, 0 where a pixel is marked or unclassified.
    """
    free = (np.asarray(markers) == 0) & np.asarray(classified, dtype=bool)
    labels, _ = ndi.label(free, structure=STRUCTURE)
    return labels.astype(np.int32)
