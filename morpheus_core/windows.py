"""Unit-stride windows: anchors, coverage, cutting and per-window standardisation.

A window is identified by its *anchor*, the image pixel at its top-left corner. For an
image of ``H x W`` pixels and windows of ``N x N``, anchors run over
``0 <= y <= H - N`` and ``0 <= x <= W - N`` in steps of the stride.

Coverage rule
-------------
A pixel is *valid* when it is finite in every band (and, if a coverage mask is given,
marked covered there). A window is evaluated only if all its pixels are valid, so the
network never sees a NaN, a fill value or a censored pixel, and a pixel near invalid
data is counted only by the windows that lie wholly on valid data. Pixels no evaluated
window counts get ``n = 0`` and no classification, exactly like the pixels within the
border of the image (paper section 2.3). Skipped windows also cost nothing, which
matters for mosaics whose footprint is much smaller than their bounding box.
"""

from __future__ import annotations

import numpy as np


def valid_pixels(image: np.ndarray, coverage: np.ndarray | None = None) -> np.ndarray:
    """Return the ``(H, W)`` mask of pixels finite in every band (and covered).

    Parameters
    ----------
    image : numpy.ndarray
        ``(bands, H, W)`` image.
    coverage : numpy.ndarray, optional
        ``(H, W)`` boolean mask, True where the data may be used.
    """
    valid = np.isfinite(image).all(axis=0)
    if coverage is not None:
        if coverage.shape != valid.shape:
            raise ValueError(
                f"coverage and image must have the same (H, W), got {coverage.shape} "
                f"and {valid.shape}"
            )
        valid &= coverage.astype(bool)
    return valid


def valid_anchors(valid: np.ndarray, window: int) -> np.ndarray:
    """Return the mask of anchors whose ``window x window`` window is wholly valid.

    Parameters
    ----------
    valid : numpy.ndarray
        ``(H, W)`` boolean pixel mask.
    window : int
        Window size.

    Returns
    -------
    numpy.ndarray
        ``(H - window + 1, W - window + 1)`` boolean mask (empty if the image is
        smaller than a window).
    """
    h, w = valid.shape
    if h < window or w < window:
        return np.zeros((max(h - window + 1, 0), max(w - window + 1, 0)), dtype=bool)
    bad = np.zeros((h + 1, w + 1), dtype=np.int64)
    np.cumsum(np.cumsum(~valid, axis=0), axis=1, out=bad[1:, 1:])
    box = bad[window:, window:] - bad[:-window, window:] - bad[window:, :-window] + bad[:-window, :-window]
    return box == 0


def cut_windows(image_hwc: np.ndarray, ys: np.ndarray, xs: np.ndarray, window: int) -> np.ndarray:
    """Gather windows at the given anchors.

    Parameters
    ----------
    image_hwc : numpy.ndarray
        ``(H, W, bands)`` image (channels last, as the network takes it).
    ys, xs : numpy.ndarray
        1-D integer anchor coordinates, one pair per window.
    window : int
        Window size.

    Returns
    -------
    numpy.ndarray
        ``(len(ys), window, window, bands)`` copy of the windows.
    """
    h, w, bands = image_hwc.shape
    view = np.lib.stride_tricks.as_strided(
        image_hwc,
        shape=(h - window + 1, w - window + 1, window, window, bands),
        strides=image_hwc.strides[:2] + image_hwc.strides,
        writeable=False,
    )
    return view[ys, xs]


def standardize_windows(windows: np.ndarray) -> np.ndarray:
    """Standardise each window on its own, all bands jointly.

    Implements TensorFlow's ``per_image_standardization`` as the released model
    expects it (MORPHEUS-FACTS.md): ``(x - mean(x)) / max(std(x), 1 / sqrt(size))``
    with the population standard deviation over the whole ``window x window x bands``
    block. Moments are accumulated in float64, the result is float32.

    Parameters
    ----------
    windows : numpy.ndarray
        ``(B, N, N, bands)`` windows.

    Returns
    -------
    numpy.ndarray
        Standardised float32 windows of the same shape.
    """
    b = windows.shape[0]
    flat = windows.reshape(b, -1)
    size = flat.shape[1]
    mean = flat.mean(axis=1, dtype=np.float64)
    centred = flat - mean[:, None].astype(windows.dtype)
    var = np.einsum("ij,ij->i", centred, centred, dtype=np.float64) / size
    scale = 1.0 / np.maximum(np.sqrt(var), 1.0 / np.sqrt(size))
    centred *= scale[:, None].astype(centred.dtype)
    return centred.reshape(windows.shape).astype(np.float32, copy=False)
