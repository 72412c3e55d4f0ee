"""Catalog files: the catalog table in Parquet, CSV, FITS and the AAS machine-readable
format (:data:`~pipeline.rundir.layout.CATALOG_FORMATS`), written atomically.

Every column's unit and description, and the table's metadata (provenance and
settings), travel in every format, where a reader that knows nothing of astropy finds
them:

- **Parquet**: each field's metadata holds ``unit`` and ``description``; the file's
  (schema) metadata holds each entry of the table's metadata by name, beside astropy's
  own serialisation (``table_meta_yaml``) that ``Table.read`` uses.
- **FITS**: ``TUNITn`` (the FITS unit string; a unit the FITS standard lacks, such as
  ``electron/s``, as astropy spells it), ``TCOMMn`` (the description, continued over
  several cards when long) and the description as the ``TTYPEn`` card's comment; the
  metadata as header keywords.
- **MRT**: units (CDS strings; a unit CDS lacks as astropy spells it) and explanations
  in the byte-by-byte description, and a title, authors and table line naming the
  software, the run and the settings; floats rounded to sensible digits.
- **CSV**: a header block of ``#`` comments: the metadata, then one line per column,
  ``name | unit | description`` (pandas: ``read_csv(path, comment="#")``).

Masked values become Parquet nulls, FITS and MRT blanks, empty CSV fields (no
``<name>.mask`` columns).
"""

from __future__ import annotations

import textwrap
import threading
import warnings
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.io.ascii import mrt as astropy_mrt
from astropy.table import Table

from pipeline.products.provenance import SOFTWARE, software_version
from pipeline.rundir.location import atomic_path

__all__ = ["CSV_COLUMNS_LINE", "column_descriptions", "unit_text", "write_catalog_table"]

#: The CSV header line that starts the column block (``name | unit | description`` lines follow).
CSV_COLUMNS_LINE = "columns: name | unit | description"
#: One MRT written at a time (its line wrapping is set for the write).
_MRT_LOCK = threading.Lock()
#: Characters of a description kept as the comment of a FITS ``TTYPEn`` card.
_TTYPE_COMMENT = 47


def unit_text(unit: u.UnitBase | None) -> str:
    """A column's unit as text (astropy's generic format, e.g. ``electron / s``); ``""`` for none."""
    return "" if unit is None else unit.to_string()


def column_descriptions(table: Table) -> list[tuple[str, str, str]]:
    """``(name, unit, description)`` of every column, in order (:func:`unit_text` units)."""
    return [(name, unit_text(table[name].unit), table[name].description or "") for name in table.colnames]


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits (fluxes of any scale)."""
    safe = np.where(np.isfinite(values) & (values != 0), np.abs(values), 1.0)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(safe)))
    return np.round(values * scale) / scale


def _meta_text(meta: dict[str, Any]) -> dict[str, str]:
    """The table's metadata entries as text (``comments`` left out)."""
    return {str(k): str(v) for k, v in meta.items() if k != "comments"}


def _write_parquet(table: Table, path: Path) -> None:
    """Parquet with masked values as nulls, units and descriptions as field metadata.

    astropy writes the table with the masked columns filled, so its schema metadata
    (units, descriptions, table meta) describes plain columns; the masked entries of
    those columns are then rewritten as Parquet nulls (pandas reads NaN or None), and
    every field gets ``unit`` and ``description`` metadata, the file the table's
    metadata by name.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    masks = {
        name: np.ma.getmaskarray(table[name])
        for name in table.colnames
        if getattr(table[name], "mask", None) is not None and np.ma.getmaskarray(table[name]).any()
    }
    plain = table.copy(copy_data=False)
    for name in masks:
        col = table[name]
        fill = "" if col.dtype.kind in "US" else 0
        plain.replace_column(name, Table({name: col.filled(fill)})[name])
        plain[name].unit, plain[name].description = col.unit, col.description
    plain.write(path, format="parquet", overwrite=True)
    arrow = pq.read_table(path)
    for name, mask in masks.items():
        i = arrow.schema.get_field_index(name)
        values = arrow.column(i).combine_chunks()
        arrow = arrow.set_column(
            i, arrow.schema.field(i), pa.array(values.to_numpy(zero_copy_only=False), type=values.type, mask=mask)
        )
    fields = []
    for field, (_, unit, text) in zip(arrow.schema, column_descriptions(table)):
        fields.append(
            field.with_metadata({**(field.metadata or {}), b"unit": unit.encode(), b"description": text.encode()})
        )
    schema = pa.schema(
        fields,
        metadata={
            **(arrow.schema.metadata or {}),
            **{k.encode(): v.encode() for k, v in _meta_text(table.meta).items()},
        },
    )
    pq.write_table(pa.Table.from_arrays(arrow.columns, schema=schema), path)


def _fits_unit(unit: u.UnitBase) -> str:
    """``TUNITn``: the FITS standard's string, else astropy's (``electron/s``)."""
    try:
        return unit.to_string("fits")
    except ValueError:
        return unit.to_string().replace(" ", "")


def _write_fits(table: Table, path: Path) -> None:
    """A FITS binary table with ``TUNITn``, ``TCOMMn`` and the metadata as keywords.

    astropy writes the table (with its own serialisation of units and descriptions
    for ``Table.read``); the cards independent readers use are then added.
    """
    with warnings.catch_warnings():
        # A unit the FITS standard lacks is written below as TUNITn (astropy leaves it out).
        warnings.filterwarnings("ignore", message=".*could not be saved in native FITS format.*")
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)  # long metadata names: HIERARCH cards
        table.write(path, format="fits", overwrite=True)
        with fits.open(path, mode="update") as hdul:
            header = hdul[1].header
            for i, (name, _, text) in enumerate(column_descriptions(table), start=1):
                unit = table[name].unit
                if unit is not None:
                    header.set(f"TUNIT{i}", _fits_unit(unit), after=f"TFORM{i}")
                if text:
                    header[f"TTYPE{i}"] = (name, text[:_TTYPE_COMMENT])
                    header.set(f"TCOMM{i}", text, after=f"TUNIT{i}" if unit is not None else f"TFORM{i}")


def _mrt_lines(table: Table, path: Path) -> tuple[str, str, str]:
    """The MRT's ``Title:``, ``Authors:`` and ``Table:`` lines."""
    meta = table.meta
    run = meta.get("RUNID") or "unrecorded"
    title = f"Title: Morphological catalog of a Morpheus (Hausen & Robertson 2020) classification, run {run}"
    authors = f"Authors: {meta.get('SOFTWARE', SOFTWARE)} {meta.get('SWVERSN', software_version())} pipeline"
    settings = ", ".join(
        f"{k} {meta[k]}" for k in ("MODEL", "DETECT", "SEGTHR", "FLUXBAND", "MARKERS") if meta.get(k) not in (None, "")
    )
    kind = "one row per input source" if "source_id" in table.colnames else "one row per object"
    line = f"Table: {path.name}, {len(table)} rows, {kind}" + (f"; {settings}" if settings else "")
    return title, authors, line


def _write_mrt(table: Table, path: Path, final: Path) -> None:
    """The AAS machine-readable table: sensible digits, CDS units, a real title."""
    out = table.copy()
    out.meta = {}
    for name in out.colnames:
        col = out[name]
        if col.unit is not None:
            try:
                col.unit.to_string("cds")
            except ValueError:  # e.g. electron / s: kept as astropy spells it
                col.unit = u.UnrecognizedUnit(col.unit.to_string().replace(" ", ""))
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
        if mask.all():  # astropy sizes an all-null float column 2 bytes but writes it 0 wide:
            col.format = ".1f"  # with a format it says 0 bytes, and the rows read back aligned
    with _MRT_LOCK, mock.patch.object(astropy_mrt, "wrap", partial(textwrap.wrap, break_on_hyphens=False)):
        # astropy wraps long explanations at hyphens too, and its reader joins the
        # pieces with a space ("rank- vote"): wrap at spaces only.
        out.write(path, format="ascii.mrt", overwrite=True)
    lines = path.read_text().split("\n")
    head = _mrt_lines(table, final)
    for i, prefix in enumerate(("Title:", "Authors:", "Table:")):
        if lines[i].startswith(prefix):
            lines[i] = head[i]
    path.write_text("\n".join(lines))


def _write_csv(table: Table, path: Path) -> None:
    """CSV with a header block of ``#`` comments: the metadata, then the columns."""
    out = table.copy(copy_data=False)
    meta = _meta_text(table.meta)
    rows = len(table)
    comments = [
        f"{meta.get('SOFTWARE', SOFTWARE)} {meta.get('SWVERSN', software_version())}: morphological "
        f"catalog, {rows} rows (Morpheus, Hausen & Robertson 2020)"
    ]
    comments += [f"{key} = {value}" for key, value in meta.items()]
    comments += [CSV_COLUMNS_LINE]
    comments += [f"{name} | {unit} | {text}" for name, unit, text in column_descriptions(table)]
    out.meta = {"comments": comments}
    out.write(path, format="ascii.csv", overwrite=True, comment="# ")


def write_catalog_table(table: Table, path: Path, fmt: str) -> Path:
    """Write a catalog table atomically in one of :data:`~pipeline.rundir.layout.CATALOG_FORMATS`.

    Units, descriptions and the table's metadata travel in each format as the module
    says; masked values become nulls (Parquet), blanks (FITS, MRT) or empty fields
    (CSV); the machine-readable table rounds floats to sensible digits.

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
        if fmt == "parquet":
            _write_parquet(table, tmp)
        elif fmt == "fits":
            _write_fits(table, tmp)
        elif fmt == "ascii.mrt":
            _write_mrt(table, tmp, path)
        elif fmt == "csv":
            _write_csv(table, tmp)
        else:
            raise ValueError(f"unknown catalog format {fmt!r}")
    return path
