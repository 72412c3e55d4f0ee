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

__all__ = [
    "MOMENTS_RTOL",
    "cut_windows",
    "standardization_scale",
    "standardize_windows",
    "valid_anchors",
    "observed_pixels",
    "valid_pixels",
    "window_moments",
]


def observed_pixels(image):
    """The pixels a mosaic observed: finite and non-zero in every band.

    NaN marks unobserved pixels and exactly 0.0 the Hubble Legacy Fields' unobserved or
    censored ones; this is the coverage mask an ingested mosaic records.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        ``(bands, H, W)`` image.

    Returns
    -------
    numpy.ndarray or dask.array.Array
        ``(H, W)`` boolean mask, of the same kind as ``image``.
    """
    return (np.isfinite(image) & (image != 0)).all(axis=0)


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
            raise ValueError(f"coverage and image must have the same (H, W), got {coverage.shape} and {valid.shape}")
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


def standardize_windows(windows: np.ndarray, moments: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Standardise each window on its own, all bands jointly.

    Implements TensorFlow's ``per_image_standardization`` as the released model
    expects it (the released code applies it to each window): ``(x - mean(x)) / max(std(x), 1 / sqrt(size))``
    with the population standard deviation over the whole ``window x window x bands``
    block. Moments are accumulated in float64, the result is float32.

    Parameters
    ----------
    windows : numpy.ndarray
        ``(B, N, N, bands)`` windows.
    moments : tuple of numpy.ndarray, optional
        ``(mean, var)`` float64 of each window if already known (e.g. from
        :func:`window_moments`); standardising then costs two passes over the
        windows, done in place when ``windows`` is a float32 array.

    Returns
    -------
    numpy.ndarray
        Standardised float32 windows of the same shape.
    """
    b = windows.shape[0]
    flat = windows.reshape(b, -1)
    size = flat.shape[1]
    if moments is None:
        mean = flat.mean(axis=1, dtype=np.float64)
        centred = flat - mean[:, None].astype(windows.dtype)
        var = np.einsum("ij,ij->i", centred, centred, dtype=np.float64) / size
    else:
        mean, var = moments
        centred = flat.astype(np.float32, copy=False)
        centred -= mean[:, None].astype(np.float32)
    centred *= standardization_scale(var, size)[:, None].astype(centred.dtype)
    return centred.reshape(windows.shape).astype(np.float32, copy=False)


def standardization_scale(var: np.ndarray, size: int) -> np.ndarray:
    """``1 / max(std, 1 / sqrt(size))`` (float64), the factor of
    :func:`standardize_windows`, which computes ``(x - mean) * scale`` with both
    rounded to the windows' dtype.
    """
    return 1.0 / np.maximum(np.sqrt(var), 1.0 / np.sqrt(size))


#: Relative accuracy :func:`window_moments` guarantees for the variance (and, relative
#: to the standard deviation, for the mean); float32 rounding is 6e-8.
MOMENTS_RTOL = 1e-11


def window_moments(image_hwc: np.ndarray, ys: np.ndarray, xs: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance of each window, from summed-area tables.

    Equal to the float64 two-pass moments that :func:`standardize_windows` uses (all
    bands jointly) to ``MOMENTS_RTOL``, at a cost proportional to the pixels of the
    anchors' bounding region instead of ``window**2`` per window. The region is
    centred on its mean before the tables are summed; a window whose table sums are so
    large (a bright source nearby) that their float64 rounding could exceed
    ``MOMENTS_RTOL`` of its variance is recomputed directly.

    Parameters
    ----------
    image_hwc : numpy.ndarray
        ``(H, W, bands)`` image.
    ys, xs : numpy.ndarray
        1-D integer anchor coordinates, one pair per window.
    window : int
        Window size.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mean, var)``, float64 arrays of ``len(ys)``.
    """
    y0, x0 = int(ys.min()), int(xs.min())
    region = image_hwc[y0 : int(ys.max()) + window, x0 : int(xs.max()) + window].astype(np.float64)
    size = window * window * image_hwc.shape[-1]
    a, b = ys - y0, xs - x0
    # The region is the anchors' bounding box, so it may hold pixels that none of the
    # windows contains (NaN footprints, fill values between the evaluated windows of
    # a partly valid block). They must not reach any window's sums: non-finite values
    # are zeroed (a window that contains one gets NaN moments, as the two-pass
    # formula gives), and the centre is the mean of the finite values.
    finite = np.isfinite(region)
    holes = None if finite.all() else ~finite
    if holes is None:  # the engine's case: it zeroes invalid pixels itself
        centre = region.mean()
        region -= centre
    else:
        region[holes] = 0.0
        centre = region.sum() / max(int(finite.sum()), 1)  # mean of the finite values
        region -= centre
        region[holes] = 0.0
    sums = []
    for values in (region.sum(axis=-1), np.square(region).sum(axis=-1), np.abs(region).sum(axis=-1)):
        table = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
        np.cumsum(np.cumsum(values, axis=0), axis=1, out=table[1:, 1:])
        box = table[a + window, b + window] - table[a, b + window] - table[a + window, b] + table[a, b]
        sums.append((box, table[a + window, b + window]))
    (s, _), (q, q_corner), (_, abs_corner) = sums
    mean_c = s / size
    var = np.maximum(q / size - mean_c * mean_c, 0.0)
    # Rounding bound of the table differences (4 corners, two cumulative sums each).
    eps = 8 * np.finfo(np.float64).eps
    err_mean = eps * abs_corner / size
    err_var = eps * q_corner / size + 2 * np.abs(mean_c) * err_mean
    floor = 1.0 / size  # variance below the standardisation floor 1/sqrt(size)**2
    scale = np.maximum(var, floor)
    inexact = (err_var > MOMENTS_RTOL * scale) | (err_mean > MOMENTS_RTOL * np.sqrt(scale))
    mean = mean_c + centre
    if holes is not None:
        bad = ~valid_anchors(~holes.any(axis=-1), window)[a, b]
        mean[bad] = np.nan
        var[bad] = np.nan
        inexact &= ~bad
    redo = np.nonzero(inexact)[0]
    if redo.size:
        direct = cut_windows(image_hwc, ys[redo], xs[redo], window).reshape(redo.size, -1).astype(np.float64)
        mean[redo] = direct.mean(axis=1)
        var[redo] = np.square(direct - mean[redo, None]).mean(axis=1)
    return mean, var
