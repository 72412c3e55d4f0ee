"""Object-level classification (paper section 5) and the source catalog (section 8).

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

Agreement (Eq. 17): ``a(Q) = 1 - H(Q) / log(n_c)`` with the entropy ``H`` over the
``n_c = 5`` classes: 1 for a single class, 0 for an even split.

Detection flag (the paper's Table 4): 0 outside the classified area, 1 where
``background = 0`` at the source position, 2 where ``0 < background < 1``, 3 where
``background = 1``. For objects found by Algorithm 1 the position is the object's
brightest pixel in the weighting band; for catalogued sources (value-added mode) it is
the catalogued position.

Which class images. The released code computes Eq. 16, ``background_min`` and the
detection flag from its default output, the normalised rank-vote images; pass those
as ``mean`` to :func:`object_sums` to do the same. ``fractions`` adds the flux-weighted
fractions of further class images (e.g. the mean images) as extra columns.

Everything an object needs is a sum, a minimum or an arg-maximum over its pixels, so
:func:`object_sums` of image pieces merge exactly with :func:`merge_object_sums`: the
catalog of a chunked image equals that of the whole image up to float rounding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS

from morpheus_core import BANDS, CLASSES

__all__ = [
    "MORPHOLOGIES",
    "agreement",
    "aperture_mask",
    "detection_flag",
    "flux_weighted_fractions",
    "flux_weights",
    "image_unit",
    "merge_object_sums",
    "object_catalog",
    "object_sums",
]

#: The morphological classes (all but background); the dominant class is one of these.
MORPHOLOGIES: tuple[str, ...] = CLASSES[:-1]

_MIN_COLUMNS = ("background_min",)
#: Spellings of ``BUNIT`` words that astropy does not parse (HST: ``ELECTRONS/S``), lower case.
_BUNIT_WORDS = {
    "electrons": "electron",
    "e-": "electron",
    "e": "electron",
    "counts": "count",
    "cts": "count",
    "sec": "s",
    "seconds": "s",
    "photons": "photon",
}
_PEAK_COLUMNS = ("peak_flux", "peak_index", "peak_background")


def agreement(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Agreement of a class distribution, paper Eq. 17.

    Parameters
    ----------
    p : numpy.ndarray
        Class distributions along ``axis`` (normalised to sum to one there).
    axis : int
        The class axis; its length is ``n_c``.

    Returns
    -------
    numpy.ndarray
        ``1 - H(p) / log(n_c)`` with ``H(p) = -sum p log p`` (``0 log 0 = 0``).

    Examples
    --------
    >>> round(float(agreement([0.5, 0.5, 0, 0, 0])), 3)
    0.569
    >>> round(float(agreement([0.9, 0.1, 0, 0, 0])), 3)
    0.798
    """
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, None)
    n_c = p.shape[axis]
    if n_c < 2:
        raise ValueError("agreement needs at least two classes")
    plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return 1.0 - (-plogp.sum(axis=axis)) / np.log(n_c)


def image_unit(bunits: Iterable[str | None]) -> str | None:
    """The unit of the band images from their ``BUNIT`` values, as astropy writes it.

    HST spellings astropy does not parse (``ELECTRONS/S``, ``e-/s``, ``COUNTS/S``) are
    read as electrons or counts per second.

    Parameters
    ----------
    bunits : iterable of str or None
        Each band's ``BUNIT`` (``None`` or empty where the header has none).

    Returns
    -------
    str or None
        The common unit (e.g. ``"electron / s"``); ``None`` when a band has none, a
        value is not a unit, or the bands disagree (then no flux column gets a unit
        rather than a wrong one).

    Examples
    --------
    >>> image_unit(["ELECTRONS/S", "electrons/s"])
    'electron / s'
    >>> image_unit(["nJy", "uJy"]) is None
    True
    """
    units = set()
    for value in bunits:
        text = str(value or "").strip()
        if not text:
            return None
        unit = None
        words = re.sub(r"[A-Za-z-]+", lambda m: _BUNIT_WORDS.get(m[0].lower(), m[0]), text)
        for attempt, fmt in ((text, "fits"), (text, None), (words.lower(), None)):
            try:
                unit = u.Unit(attempt, format=fmt)
                break
            except ValueError:
                continue
        if unit is None or isinstance(unit, u.UnrecognizedUnit):
            return None
        units.add(unit)
    if len(units) != 1:
        return None
    return units.pop().to_string()


def flux_weights(flux: np.ndarray) -> np.ndarray:
    """Eq. 16 weights: the flux clipped at zero (non-finite pixels weigh nothing)."""
    flux = np.asarray(flux, dtype=np.float64)
    return np.where(np.isfinite(flux) & (flux > 0), flux, 0.0)


def flux_weighted_fractions(cube: np.ndarray, flux: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Eq. 16 for one object on whole images: its flux-weighted class fractions.

    The same rules as the catalog (:func:`object_sums` and :func:`object_catalog`):
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


def detection_flag(background: np.ndarray, classified: np.ndarray) -> np.ndarray:
    """Detection flag of the paper's Table 4 from the background at source positions.

    Parameters
    ----------
    background : numpy.ndarray
        Background value at each source position.
    classified : numpy.ndarray
        Whether each position is inside the classified area.

    Returns
    -------
    numpy.ndarray
        int16: 0 not classified, 1 ``b == 0``, 2 ``0 < b < 1``, 3 ``b == 1``.
    """
    b = np.asarray(background, dtype=np.float64)
    flag = np.where(b <= 0.0, 1, np.where(b >= 1.0, 3, 2))
    return np.where(np.asarray(classified, dtype=bool), flag, 0).astype(np.int16)


def aperture_mask(shape: tuple[int, int], x: float, y: float, radius: float) -> np.ndarray:
    """Pixels whose centres lie within ``radius`` of ``(x, y)`` (0-based pixel coordinates)."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (xx - x) ** 2 + (yy - y) ** 2 <= radius**2


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
        :func:`object_catalog`'s ``p_<name>_<class>`` columns).

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


def _column(table: Table, name: str, values, unit=None, description: str = "", mask=None) -> None:
    if mask is not None and np.any(mask):
        table[name] = MaskedColumn(values, mask=mask, unit=unit, description=description)
    else:
        table[name] = values
        table[name].unit = unit
        table[name].description = description


def object_catalog(
    sums: pd.DataFrame,
    *,
    wcs: WCS | None,
    width: int,
    classes: Sequence[str] = CLASSES,
    band_names: Sequence[str] = BANDS,
    flux_unit: str | u.Unit | None = None,
    missing: np.ndarray | None = None,
    fractions: Sequence[str] = (),
) -> Table:
    """Turn merged per-object sums into catalog columns.

    Parameters
    ----------
    sums : pandas.DataFrame
        Output of :func:`merge_object_sums` (one row per object, in catalog order).
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the image (RA/Dec columns are omitted when None).
    width : int
        Width of the whole image (to decode the brightest pixel's flat index).
    classes, band_names : sequence of str
        Class and band names as in :func:`object_sums`.
    flux_unit : str or astropy.units.Unit, optional
        Unit of the band images (a ``BUNIT`` value, read by :func:`image_unit`).
    missing : numpy.ndarray, optional
        bool per row: rows with no pixels (masked in the output).
    fractions : sequence of str
        Names of the extra class images given to :func:`object_sums` (``fractions``);
        each adds ``p_<name>_<class>`` columns (Eq. 16 on those images).

    Returns
    -------
    astropy.table.Table
        Columns ``x``, ``y`` (flux-weighted centroid, 0-based pixels), ``ra``, ``dec``
        (deg), ``x_peak``, ``y_peak``, ``area`` (pix2), ``background_min``,
        ``p_<class>`` (Eq. 16), ``sigma_<class>``, ``dominant_class``, ``agreement``
        (Eq. 17), ``flux_<band>``, then ``p_<name>_<class>`` per ``fractions`` entry;
        each with unit and description.
    """
    n = len(sums)
    missing = np.zeros(n, dtype=bool) if missing is None else np.asarray(missing, dtype=bool)
    area = sums["area"].to_numpy(np.int64)
    has = area > 0
    w = sums["w"].to_numpy(np.float64)
    weighted = w > 0
    safe_w = np.where(weighted, w, 1.0)
    safe_area = np.maximum(area, 1).astype(np.float64)

    def wmean(weighted_sum: str, plain_sum: str) -> np.ndarray:
        return np.where(
            weighted, sums[weighted_sum].to_numpy(np.float64) / safe_w, sums[plain_sum].to_numpy(np.float64) / safe_area
        )

    def normalised(prefix: str) -> tuple[np.ndarray, np.ndarray]:
        q = np.stack([wmean(f"wq_{prefix}{c}", f"q_{prefix}{c}") for c in classes], axis=1)
        norm = q.sum(axis=1, keepdims=True)
        return q, np.where(norm > 0, norm, 1.0)

    p, norm = normalised("")
    sig = np.stack([wmean(f"ws_{c}", f"s_{c}") for c in classes], axis=1)
    p, sig = p / norm, sig / norm
    x, y = wmean("wx", "sx"), wmean("wy", "sy")
    peak = sums["peak_index"].to_numpy(np.int64)
    gone = missing | ~has

    table = Table()
    _column(table, "x", x, u.pix, "flux-weighted centroid x (0-based pixel)", gone)
    _column(table, "y", y, u.pix, "flux-weighted centroid y (0-based pixel)", gone)
    if wcs is not None:
        ra, dec = wcs.celestial.pixel_to_world_values(x, y)
        _column(table, "ra", np.asarray(ra, dtype=np.float64), u.deg, "right ascension of the centroid (ICRS)", gone)
        _column(table, "dec", np.asarray(dec, dtype=np.float64), u.deg, "declination of the centroid (ICRS)", gone)
    _column(table, "x_peak", peak % width, u.pix, "brightest pixel x (0-based) in the weighting band", gone)
    _column(table, "y_peak", peak // width, u.pix, "brightest pixel y (0-based) in the weighting band", gone)
    _column(table, "area", area, u.pix**2, "area of the object: number of pixels assigned to it", gone)
    _column(
        table,
        "background_min",
        sums["background_min"].to_numpy(np.float64),
        None,
        "minimum background probability over the object's pixels",
        gone,
    )
    for k, c in enumerate(classes):
        _column(table, f"p_{c}", p[:, k], None, f"flux-weighted {c} fraction (paper Eq. 16), classes sum to 1", gone)
    for k, c in enumerate(classes):
        _column(
            table,
            f"sigma_{c}",
            sig[:, k],
            None,
            f"uncertainty of p_{c}: flux-weighted mean of the per-pixel standard deviation",
            gone,
        )
    morph = [classes.index(m) for m in classes if m != "background"]
    width_u = f"U{max(12, *(len(c) for c in classes))}"  # U12 for the released classes
    dominant = (
        np.array([classes[morph[i]] for i in np.argmax(p[:, morph], axis=1)], dtype=width_u)
        if n
        else np.array([], dtype=width_u)
    )
    _column(
        table, "dominant_class", dominant, None, "morphological class with the largest p (background excluded)", gone
    )
    _column(
        table,
        "agreement",
        agreement(p, axis=1) if n else np.array([]),
        None,
        "agreement of the class fractions, 1 - H(p)/log(5) (paper Eq. 17)",
        gone,
    )
    name = flux_unit.to_string() if isinstance(flux_unit, u.UnitBase) else image_unit([flux_unit])
    unit = u.Unit(name) if name else None
    for name in band_names:
        _column(
            table,
            f"flux_{name}",
            sums[f"flux_{name}"].to_numpy(np.float64),
            unit,
            f"sum of the {name} band over the object's pixels",
            gone,
        )
    for key in fractions:
        q, q_norm = normalised(f"{key}_")
        for k, c in enumerate(classes):
            _column(
                table,
                f"p_{key}_{c}",
                q[:, k] / q_norm[:, 0],
                None,
                f"flux-weighted {c} fraction of the {key} images (Eq. 16 on them), classes sum to 1",
                gone,
            )
    return table
