"""Catalog files: the catalog table in Parquet, CSV, FITS and the AAS machine-readable
format (:data:`~pipeline.rundir.layout.CATALOG_FORMATS`), written atomically.

Units and descriptions travel in every format that holds them; masked values become
Parquet nulls, FITS and MRT blanks, empty CSV fields (no ``<name>.mask`` columns); the
machine-readable table is rounded to sensible digits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.table import Table

from pipeline.rundir.location import atomic_path

__all__ = ["write_catalog_table"]


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits (fluxes of any scale)."""
    safe = np.where(np.isfinite(values) & (values != 0), np.abs(values), 1.0)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(safe)))
    return np.round(values * scale) / scale


def _write_parquet(table: Table, path: Path) -> None:
    """Parquet with masked values as nulls (astropy would add ``<name>.mask`` columns).

    astropy writes the table with the masked columns filled, so its schema metadata
    (units, descriptions, table meta) describes plain columns; the masked entries of
    those columns are then rewritten as Parquet nulls (pandas reads NaN or None).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    masks = {name: np.ma.getmaskarray(table[name]) for name in table.colnames
             if getattr(table[name], "mask", None) is not None and np.ma.getmaskarray(table[name]).any()}
    plain = table.copy(copy_data=False)
    for name in masks:
        col = table[name]
        fill = "" if col.dtype.kind in "US" else 0
        plain.replace_column(name, Table({name: col.filled(fill)})[name])
        plain[name].unit, plain[name].description = col.unit, col.description
    plain.write(path, format="parquet", overwrite=True)
    if not masks:
        return
    arrow = pq.read_table(path)
    for name, mask in masks.items():
        i = arrow.schema.get_field_index(name)
        values = arrow.column(i).combine_chunks()
        arrow = arrow.set_column(i, arrow.schema.field(i),
                                 pa.array(values.to_numpy(zero_copy_only=False), type=values.type, mask=mask))
    pq.write_table(arrow, path)


def write_catalog_table(table: Table, path: Path, fmt: str) -> Path:
    """Write a catalog table atomically in one of :data:`~pipeline.rundir.layout.CATALOG_FORMATS`.

    Masked values become nulls (Parquet), blanks (FITS, MRT) or empty fields (CSV);
    the machine-readable table rounds floats to sensible digits.

    Parameters
    ----------
    table : astropy.table.Table
        The catalog, with units and descriptions.
    path : pathlib.Path
        Destination; an existing file is replaced.
    fmt : str
        A value of :data:`~pipeline.rundir.layout.CATALOG_FORMATS`.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    with atomic_path(path) as tmp:
        out = table.copy()
        if fmt in ("csv", "ascii.mrt"):
            out.meta = {}
        if fmt == "ascii.mrt":  # a publication table: sensible digits, not float64 noise
            for name in out.colnames:
                col = out[name]
                if col.dtype.kind != "f":
                    continue
                mask = np.ma.getmaskarray(col).copy()
                values = np.ma.getdata(col).astype(np.float64)
                if name.startswith(("ra", "dec")):
                    values = np.round(values, 7)
                elif name.startswith(("x", "y", "p_", "sigma_", "agreement", "background")):
                    values = np.round(values, 4)
                else:
                    values = _significant(values, 6)
                col[:] = values
                if mask.any():
                    col.mask = mask
        if fmt == "parquet":
            _write_parquet(out, tmp)
        else:  # FITS and MRT write masked values as blanks/nulls of their own
            out.write(tmp, format="ascii.csv" if fmt == "csv" else fmt, overwrite=True)
    return path

