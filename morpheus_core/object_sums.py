"""Per-object sums of the catalog (paper sections 5 and 8), and their exact merge.

An object's class distribution is the flux-weighted mean of its pixels' classification
images (Eq. 16),

    Q_k = sum_i w_i q_ik / sum_i w_i,        w_i = max(f_i, 0),

with ``f`` the flux image of the weighting band (F160W by default). Negative sky-noise
pixels get weight zero (the paper's Eq. 16 with raw fluxes can leave [0, 1] when an
object holds negative pixels); an object whose flux is nowhere positive is weighted
uniformly. ``Q`` is normalised to sum to one over the five classes.

Uncertainty of ``Q_k``. Each pixel's classification has a standard deviation
``sigma_ik`` over the windows that saw it (the variance image, paper section 2.3).
Neighbouring pixels share most of their windows, so their errors are strongly
correlated; we report

    sigma_Qk = sum_i w_i sigma_ik / sum_i w_i,

which is exact for fully correlated pixel errors and, by the triangle inequality, an
upper bound for any correlation (for independent pixels the error would be
``sqrt(sum w_i^2 sigma_ik^2) / sum w_i``, smaller). It measures how much the windows
disagree, not how well the network is calibrated.

Which class images. The released code computes Eq. 16, ``background_min`` and the
detection flag from its default output, the normalised rank-vote images; pass those
as ``mean`` to :func:`object_sums` to do the same. ``fractions`` adds the flux-weighted
fractions of further class images (e.g. the mean images) as extra columns.

Everything an object needs is a sum, a minimum or an arg-maximum over its pixels, so
:func:`object_sums` of image pieces merge exactly with :func:`merge_object_sums`: the
catalog of a chunked image equals that of the whole image up to float rounding. The
catalog's columns are made from the merged sums by
:func:`morpheus_core.catalog.object_catalog`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from morpheus_core import BANDS, CLASSES

__all__ = ["flux_weighted_fractions", "flux_weights", "merge_object_sums", "object_sums"]

_MIN_COLUMNS = ("background_min",)
_PEAK_COLUMNS = ("peak_flux", "peak_index", "peak_background")


def flux_weights(flux: np.ndarray) -> np.ndarray:
    """Eq. 16 weights: the flux clipped at zero (non-finite pixels weigh nothing)."""
    flux = np.asarray(flux, dtype=np.float64)
    return np.where(np.isfinite(flux) & (flux > 0), flux, 0.0)


def flux_weighted_fractions(cube: np.ndarray, flux: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eq. 16 for one object on whole images: its flux-weighted class fractions.

    The same rules as the catalog (:func:`object_sums` and :func:`~morpheus_core.catalog.object_catalog`):
    weights ``max(flux, 0)`` (:func:`flux_weights`), uniform weights when the object's
    flux is nowhere positive, fractions normalised to sum to one.

    Parameters
    ----------
    cube : numpy.ndarray
        ``(C, H, W)`` class images (rank votes or means).
    flux : numpy.ndarray
        ``(H, W)`` flux image of the weighting band.
    mask : numpy.ndarray
        ``(H, W)`` bool, the object's pixels.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` fractions; NaN when the mask is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    cube = np.asarray(cube, dtype=np.float64)
    if not mask.any():
        return np.full(cube.shape[0], np.nan)
    w = flux_weights(flux)[mask]
    if not (w > 0).any():
        w = np.ones_like(w)
    q = cube[:, mask] @ w / w.sum()
    total = q.sum()
    return q / total if total > 0 else q


def object_sums(
    labels: np.ndarray,
    *,
    flux: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    bands: np.ndarray,
    band_names: Sequence[str] = BANDS,
    classes: Sequence[str] = CLASSES,
    origin: tuple[int, int] = (0, 0),
    width: int | None = None,
    fractions: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Per-object sums over one piece of an image (mergeable with :func:`merge_object_sums`).

    Parameters
    ----------
    labels : numpy.ndarray
        ``(h, w)`` int object ids, 0 off objects.
    flux : numpy.ndarray
        ``(h, w)`` flux image of the weighting band.
    mean : numpy.ndarray
        ``(C, h, w)`` class images whose flux-weighted means are the fractions ``p``
        of Eq. 16 and whose last class (background) gives ``background_min`` and the
        background at the brightest pixel: the normalised rank-vote images as in the
        released code, or the mean images.
    variance : numpy.ndarray
        ``(C, h, w)`` classification variance images (for ``sigma``).
    bands : numpy.ndarray
        ``(B, h, w)`` images whose per-object sums are reported as fluxes.
    band_names, classes : sequence of str
        Names of the ``B`` bands and ``C`` classes.
    origin : tuple of int
        ``(y0, x0)`` of this piece in the whole image.
    width : int, optional
        Width of the whole image (for the flat index of the brightest pixel); default
        the piece's width.
    fractions : mapping of str to numpy.ndarray, optional
        Further ``(C, h, w)`` class images by name (e.g. ``{"mean": mean_images}``),
        summed like ``mean`` into ``wq_<name>_<class>`` and ``q_<name>_<class>`` (for
        :func:`~morpheus_core.catalog.object_catalog`'s ``p_<name>_<class>`` columns).

    Returns
    -------
    pandas.DataFrame
        Indexed by object id: ``area``, ``w`` (sum of weights), ``wq_<class>``,
        ``q_<class>``, ``ws_<class>``, ``s_<class>``, ``wx``, ``wy``, ``sx``, ``sy``,
        ``flux_<band>``, ``background_min``, ``peak_flux``, ``peak_index``,
        ``peak_background``, and ``wq_<name>_<class>``, ``q_<name>_<class>`` per
        entry of ``fractions``.
    """
    labels = np.asarray(labels)
    on = labels > 0
    ids, inverse = np.unique(labels[on], return_inverse=True)
    fractions = dict(fractions or {})
    if len(ids) == 0:
        return _empty_sums(band_names, classes, fractions)
    n = len(ids)
    y0, x0 = origin
    width = labels.shape[1] if width is None else int(width)
    ys, xs = np.nonzero(on)
    ys = ys + y0
    xs = xs + x0
    raw = np.asarray(flux, dtype=np.float64)[on]
    w = flux_weights(raw)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=values, minlength=n)

    data: dict[str, np.ndarray] = {"area": np.bincount(inverse, minlength=n).astype(np.int64), "w": total(w)}
    for k, name in enumerate(classes):
        q = np.asarray(mean[k], dtype=np.float64)[on]
        s = np.sqrt(np.maximum(np.asarray(variance[k], dtype=np.float64)[on], 0.0))
        data[f"wq_{name}"] = total(w * q)
        data[f"q_{name}"] = total(q)
        data[f"ws_{name}"] = total(w * s)
        data[f"s_{name}"] = total(s)
    for key, images in fractions.items():
        for k, name in enumerate(classes):
            q = np.asarray(images[k], dtype=np.float64)[on]
            data[f"wq_{key}_{name}"] = total(w * q)
            data[f"q_{key}_{name}"] = total(q)
    data["wx"], data["wy"] = total(w * xs), total(w * ys)
    data["sx"], data["sy"] = total(xs.astype(np.float64)), total(ys.astype(np.float64))
    for b, name in enumerate(band_names):
        data[f"flux_{name}"] = total(np.nan_to_num(np.asarray(bands[b], dtype=np.float64)[on]))
    background = np.asarray(mean[len(classes) - 1], dtype=np.float64)[on]
    bmin = np.full(n, np.inf)
    np.minimum.at(bmin, inverse, background)
    data["background_min"] = bmin
    # Brightest pixel: the largest flux, ties to the first pixel in raster order.
    flat = ys.astype(np.int64) * width + xs
    key = np.where(np.isfinite(raw), raw, -np.inf)
    order = np.lexsort((flat, -key, inverse))
    first = order[np.r_[0, np.flatnonzero(np.diff(inverse[order])) + 1]]
    data["peak_flux"], data["peak_index"], data["peak_background"] = key[first], flat[first], background[first]
    return pd.DataFrame(data, index=pd.Index(ids.astype(np.int64), name="id"))


def _empty_sums(band_names: Sequence[str], classes: Sequence[str], fractions: Iterable[str] = ()) -> pd.DataFrame:
    columns = ["area", "w"]
    for name in classes:
        columns += [f"wq_{name}", f"q_{name}", f"ws_{name}", f"s_{name}"]
    for key in fractions:
        columns += [c for name in classes for c in (f"wq_{key}_{name}", f"q_{key}_{name}")]
    columns += ["wx", "wy", "sx", "sy", *[f"flux_{b}" for b in band_names], *_MIN_COLUMNS, *_PEAK_COLUMNS]
    frame = pd.DataFrame(
        {c: np.array([], dtype=np.float64) for c in columns}, index=pd.Index(np.array([], dtype=np.int64), name="id")
    )
    return frame.astype({"area": np.int64, "peak_index": np.int64})


def merge_object_sums(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Merge :func:`object_sums` of image pieces (sums add, minima and peaks combine).

    Parameters
    ----------
    parts : iterable of pandas.DataFrame
        Per-piece sums; an object may appear in several.

    Returns
    -------
    pandas.DataFrame
        One row per object id, sorted by id.
    """
    parts = list(parts)
    frames = [p for p in parts if len(p)]
    if not frames:
        return parts[0] if parts else _empty_sums(BANDS, CLASSES)
    both = pd.concat(frames)
    sum_columns = [c for c in both.columns if c not in _MIN_COLUMNS + _PEAK_COLUMNS]
    grouped = both.groupby(level="id", sort=True)
    out = grouped[sum_columns].sum()
    out["background_min"] = grouped["background_min"].min()
    peaks = both.reset_index().sort_values(["id", "peak_flux", "peak_index"], ascending=[True, False, True])
    peaks = peaks.groupby("id", sort=True)[list(_PEAK_COLUMNS)].first()
    return out.join(peaks)
