"""The run's catalog as the map shows it: one marker per row, brightest first.

:func:`map_catalog` reads ``catalog/catalog.parquet`` and gives the columns of a
:class:`~bokeh.models.ColumnDataSource` for the page (:mod:`pipeline.viewer.page`): map
coordinates (pixel centres), the name a marker shows, and the columns a selected
row shows (:func:`catalog_columns`). Rows of a value-added catalog without a measured
centroid are placed at their input position.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.wcs import WCS

from morpheus_core import CLASSES
from pipeline.errors import InputError
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location

__all__ = ["catalog_columns", "map_catalog"]


def catalog_columns(names: list[str], bands: list[str], classes: Sequence[str] = CLASSES) -> list[tuple[str, str]]:
    """The catalog columns a marker's row shows, ``(column, label)``, in order.

    Internal catalogs show ``id``; value-added ones their input ``source_id``,
    ``object_id`` and input position first. The class fractions are ``p_<class>``
    of the run's ``classes``.
    """
    wanted = [
        ("source_id", "input id"),
        ("id", "id"),
        ("object_id", "object id"),
        ("label", "label"),
        ("ra_input", "RA input (deg)"),
        ("dec_input", "Dec input (deg)"),
        ("ra", "RA (deg)"),
        ("dec", "Dec (deg)"),
        ("dominant_class", "dominant class"),
        *((f"p_{c}", f"p {c.replace('_', ' ')}") for c in classes),
        ("agreement", "agreement"),
        ("detection_flag", "detection flag"),
        ("segment_flag", "segment flag"),
        ("area", "area (pix)"),
        *((f"flux_{b}", f"flux {b}") for b in bands),
    ]
    return [(name, label) for name, label in wanted if name in names]


def _read_table(location: Location) -> Any:
    """The catalog as a pandas DataFrame (Parquet, nulls as NaN)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(location.read_bytes())).to_pandas()
    except Exception as exc:  # a damaged file: name it
        raise InputError(f"{location}: cannot read the catalog ({type(exc).__name__}: {exc})") from exc


def map_catalog(
    layout: RunLayout, wcs: WCS, bands: list[str], flux_band: str | None, classes: Sequence[str] = CLASSES
) -> dict[str, Any] | None:
    """The catalog's rows as the map shows them, brightest first (``None``: no catalog).

    Parameters
    ----------
    layout : RunLayout
        The run directory.
    wcs : astropy.wcs.WCS
        The mosaic's WCS (positions of value-added rows without a measured centroid).
    bands : list of str
        The mosaic's bands.
    flux_band : str or None
        Band whose flux orders the rows (the brightest are drawn first when thinning).
    classes : sequence of str
        The run's classes (their ``p_<class>`` columns are shown).

    Returns
    -------
    dict or None
        ``data`` (columns for a :class:`~bokeh.models.ColumnDataSource`: the shown
        columns, ``mx``/``my`` map coordinates, ``name``), ``columns`` (shown, with labels).
    """
    path = layout.catalog / "catalog.parquet"
    if not path.exists():
        return None
    table = _read_table(path)
    shown = catalog_columns(list(table.columns), bands, classes)
    x = table["x"].to_numpy(np.float64) if "x" in table else np.full(len(table), np.nan)
    y = table["y"].to_numpy(np.float64) if "y" in table else np.full(len(table), np.nan)
    if "ra_input" in table:  # value-added rows outside the classified area: their input position
        missing = ~np.isfinite(x)
        if missing.any():
            px, py = wcs.celestial.world_to_pixel_values(
                table["ra_input"].to_numpy(np.float64)[missing], table["dec_input"].to_numpy(np.float64)[missing]
            )
            x[missing], y[missing] = px, py
    keep = np.isfinite(x) & np.isfinite(y)
    flux_col = f"flux_{flux_band}" if flux_band and f"flux_{flux_band}" in table else None
    order = (
        np.argsort(-np.nan_to_num(table[flux_col].to_numpy(np.float64), nan=-np.inf), kind="stable")
        if flux_col
        else np.arange(len(table))
    )
    order = order[keep[order]]
    table = table.iloc[order].reset_index(drop=True)
    ident = "source_id" if "source_id" in table else "id"
    data: dict[str, Any] = {"mx": x[order] + 0.5, "my": y[order] + 0.5, "name": [str(v) for v in table[ident]]}
    for name, _ in shown:
        col = table[name]
        if col.dtype.kind in "biuf":
            data[name] = col.to_numpy(np.float64)
        else:
            data[name] = ["" if v is None else str(v) for v in col]
    if "dominant_class" not in data:
        data["dominant_class"] = [""] * len(table)
    return {"data": data, "columns": shown}
