"""Object-level classification (paper section 5) and the source catalog (section 8).

The catalog's columns, with units and descriptions, are made by :func:`object_catalog`
from the merged per-object sums of :mod:`morpheus_core.object_sums` (Eq. 16 class
fractions and their uncertainties, centroids, band fluxes, the brightest pixel).

Agreement (Eq. 17): ``a(Q) = 1 - H(Q) / log(n_c)`` with the entropy ``H`` over the
``n_c = 5`` classes: 1 for a single class, 0 for an even split.

Detection flag (the paper's Table 4): 0 outside the classified area, 1 where
``background = 0`` at the source position, 2 where ``0 < background < 1``, 3 where
``background = 1``. For objects found by Algorithm 1 the position is the object's
brightest pixel in the weighting band; for catalogued sources (value-added mode) it is
the catalogued position.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from astropy import units as u
from astropy.table import MaskedColumn, Table
from astropy.wcs import WCS

from morpheus_core import BANDS, CLASSES

__all__ = ["MORPHOLOGIES", "agreement", "aperture_mask", "detection_flag", "image_unit", "object_catalog"]

#: The morphological classes (all but background); the dominant class is one of these.
MORPHOLOGIES: tuple[str, ...] = CLASSES[:-1]

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
        Output of :func:`~morpheus_core.object_sums.merge_object_sums` (one row per
        object, in catalog order).
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the image (RA/Dec columns are omitted when None).
    width : int
        Width of the whole image (to decode the brightest pixel's flat index).
    classes, band_names : sequence of str
        Class and band names as in :func:`~morpheus_core.object_sums.object_sums`.
    flux_unit : str or astropy.units.Unit, optional
        Unit of the band images (a ``BUNIT`` value, read by :func:`image_unit`).
    missing : numpy.ndarray, optional
        bool per row: rows with no pixels (masked in the output).
    fractions : sequence of str
        Names of the extra class images given to
        :func:`~morpheus_core.object_sums.object_sums` (``fractions``); each adds
        ``p_<name>_<class>`` columns (Eq. 16 on those images).

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
