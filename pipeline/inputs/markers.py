"""External source catalogs (value-added mode): positions that seed Algorithms 1 and 2.

A markers file is a table with one row per source: a CSV file (any delimiter astropy
guesses, with a header line) or a FITS binary table. Column names are matched without
regard to case:

* right ascension: ``ra``, ``ra_deg``, ``raj2000``, ``alpha_j2000``, ``ra_icrs``;
* declination: ``dec``, ``dec_deg``, ``dej2000``, ``decj2000``, ``delta_j2000``, ``de_icrs``;
* identifier (optional; default the row number from 1): ``id``, ``source_id``,
  ``number``, ``objid``.

Angles are degrees unless the column carries another angular unit (FITS ``TUNIT``,
ECSV). Positions become pixels with the mosaic's WCS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table
from astropy.wcs import WCS

from pipeline.errors import InputError

__all__ = ["read_markers"]

_RA = ("ra", "ra_deg", "raj2000", "alpha_j2000", "ra_icrs")
_DEC = ("dec", "dec_deg", "dej2000", "decj2000", "delta_j2000", "de_icrs")
_ID = ("id", "source_id", "number", "objid")


def _find(table: Table, names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for name in names:
        if name in lower:
            return lower[name]
    return None


def _degrees(table: Table, column: str, path: Path) -> np.ndarray:
    col = table[column]
    try:
        values = np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)
    except (TypeError, ValueError):
        raise InputError(f"{path}: column {column!r} is not numeric (degrees expected)") from None
    if col.unit is not None and col.unit != u.dimensionless_unscaled:
        try:
            values = (values * col.unit).to_value(u.deg)
        except u.UnitConversionError:
            raise InputError(f"{path}: column {column!r} has unit {col.unit}, not an angle") from None
    return values


def _read(path: Path) -> Table:
    with path.open("rb") as fh:
        magic = fh.read(6)
    try:
        if magic == b"SIMPLE":
            return Table.read(path, format="fits")
        return Table.read(path, format="ascii.ecsv" if path.suffix == ".ecsv" else "ascii.csv")
    except Exception as exc:  # astropy raises many kinds for malformed files
        raise InputError(
            f"{path}: cannot read the markers table ({type(exc).__name__}: {exc}); "
            f"expected a CSV file with a header line or a FITS table"
        ) from None


def read_markers(path: str | Path, *, wcs: WCS, shape: tuple[int, int]) -> dict[str, Any]:
    """Read an external catalog and place its sources on the mosaic's pixel grid.

    Parameters
    ----------
    path : str or Path
        CSV or FITS table with RA/Dec columns (see the module notes).
    wcs : astropy.wcs.WCS
        The mosaic's WCS.
    shape : tuple of int
        The mosaic's ``(height, width)``.

    Returns
    -------
    dict
        ``id``, ``ra``, ``dec`` (deg), ``x``, ``y`` (0-based pixel), ``ix``, ``iy``
        (nearest pixel) and ``inside`` (on the pixel grid), one entry per row.

    Raises
    ------
    InputError
        A missing, unreadable or empty file, no RA/Dec columns, non-numeric or
        non-finite positions, declinations outside [-90, 90].
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: markers file not found")
    table = _read(path)
    if len(table) == 0:
        raise InputError(f"{path}: the markers table has no rows")
    ra_col, dec_col = _find(table, _RA), _find(table, _DEC)
    if ra_col is None or dec_col is None:
        raise InputError(
            f"{path}: no RA/Dec columns (looked for {'/'.join(_RA)} and {'/'.join(_DEC)}; "
            f"found {', '.join(table.colnames)})"
        )
    ra, dec = _degrees(table, ra_col, path), _degrees(table, dec_col, path)
    bad = np.flatnonzero(~np.isfinite(ra) | ~np.isfinite(dec))
    if len(bad):
        rows = ", ".join(str(r + 1) for r in bad[:10])
        raise InputError(f"{path}: missing or non-finite RA/Dec in {len(bad)} row(s) (rows {rows})")
    if np.any(np.abs(dec) > 90):
        raise InputError(f"{path}: declination outside [-90, 90] degrees in column {dec_col!r}")
    id_col = _find(table, _ID)
    ids = np.asarray(table[id_col]) if id_col else np.arange(1, len(table) + 1)
    x, y = wcs.celestial.world_to_pixel_values(ra, dec)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    finite = np.isfinite(x) & np.isfinite(y)
    ix = np.where(finite, np.floor(np.where(finite, x, 0) + 0.5), -1).astype(np.int64)
    iy = np.where(finite, np.floor(np.where(finite, y, 0) + 0.5), -1).astype(np.int64)
    inside = finite & (ix >= 0) & (ix < shape[1]) & (iy >= 0) & (iy < shape[0])
    return {"id": ids, "ra": ra, "dec": dec, "x": x, "y": y, "ix": ix, "iy": iy, "inside": inside}
