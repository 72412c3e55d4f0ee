"""The catalog files: every column's unit and description, and the catalog's metadata, in
every format, read back with readers that know nothing of how they were written
(pyarrow, astropy.io.fits headers, astropy's MRT reader, the CSV's text)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from pipeline.products.catalog_files import CSV_COLUMNS_LINE, write_catalog_table
from pipeline.rundir.layout import CATALOG_FORMATS

ELECTRON_RATE = u.electron / u.s


def expected_unit(name: str) -> u.UnitBase | None:
    """The unit a catalog column must have, from its name (None: a number without unit)."""
    if (
        name in ("x", "y", "x_peak", "y_peak")
        or name.startswith("bbox_")
        or (name.endswith(("_centroid", "radius", "_sigma")) and not name.startswith("sigma_"))
    ):
        return u.pix
    if name in ("ra", "dec", "ra_input", "dec_input", "orientation"):
        return u.deg
    if name == "area":
        return u.pix**2
    if re.match(r"(segment_|kron_)?flux(err)?_", name):
        return ELECTRON_RATE
    if name.startswith(("mag_", "magerr_", "maglim_")):
        return u.mag
    return None


def _unit(text: str | None) -> u.UnitBase | None:
    """A unit read back as text (FITS, CDS or astropy's spelling); None for none."""
    if text is None or str(text).strip() in ("", "None", "---"):
        return None
    for fmt in ("fits", "cds", None):
        try:
            return u.Unit(str(text), format=fmt)
        except ValueError:
            continue
    raise AssertionError(f"not a unit: {text!r}")


def csv_header(path: Path) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """The CSV's ``#`` header block: the lines before the columns, and each column's (unit, description)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:])
    start = lines.index(CSV_COLUMNS_LINE)
    columns = {}
    for line in lines[start + 1 :]:
        name, unit, text = line.split(" | ", 2)
        columns[name] = (unit, text)
    return lines[:start], columns


def assert_described_in_every_format(stem: Path, reference: Table) -> None:
    """Each format's units and descriptions equal ``reference``'s, read by independent readers."""
    names = reference.colnames
    units = {n: reference[n].unit for n in names}
    texts = {n: reference[n].description for n in names}
    # Parquet: pyarrow's field metadata
    schema = pq.read_schema(stem.with_suffix(".parquet"))
    assert schema.names == names
    for field in schema:
        assert _unit(field.metadata[b"unit"].decode()) == units[field.name], field.name
        assert field.metadata[b"description"].decode() == texts[field.name], field.name
    # FITS: TUNITn, TCOMMn and the TTYPEn card's comment
    with fits.open(stem.with_suffix(".fits")) as hdul:
        header = hdul[1].header
        for i, name in enumerate(names, start=1):
            assert header[f"TTYPE{i}"] == name
            assert _unit(header.get(f"TUNIT{i}")) == units[name], name
            assert header[f"TCOMM{i}"] == texts[name], name
            assert texts[name].startswith(header.comments[f"TTYPE{i}"]) and header.comments[f"TTYPE{i}"], name
    # MRT: astropy's CDS/MRT reader (it prefixes ranges and '?' for nulls to the explanation)
    if stem.with_suffix(".mrt").exists():
        with pytest.warns(u.UnitsWarning) if ELECTRON_RATE in units.values() else _nothing():
            mrt = Table.read(stem.with_suffix(".mrt"), format="ascii.mrt")
        assert mrt.colnames == names
        for name in names:
            assert _unit(None if mrt[name].unit is None else str(mrt[name].unit)) == units[name], name
            assert re.sub(r"^(\[[^]]*\]\s*)?(\?\s*)?", "", mrt[name].description) == texts[name], name
    # CSV: the header block, and the data under it for pandas
    _, columns = csv_header(stem.with_suffix(".csv"))
    assert list(columns) == names
    for name, (unit, text) in columns.items():
        assert _unit(unit) == units[name] and text == texts[name], name
    assert list(pd.read_csv(stem.with_suffix(".csv"), comment="#").columns) == names


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_every_column_of_a_pipeline_catalog_has_a_description_and_its_unit(catalog_run):
    table = Table.read(catalog_run / "catalog" / "catalog.parquet")
    assert len(table) > 3
    for name in table.colnames:
        assert (table[name].description or "").strip(), f"{name} has no description"
        assert table[name].unit == expected_unit(name), (name, table[name].unit)
    # the flux columns' unit comes from the bands' BUNIT (ELECTRONS/S), through the mosaic store
    assert [n for n in table.colnames if n.startswith("flux_")] == ["flux_H", "flux_J", "flux_V", "flux_Z"]
    assert (
        json.loads((catalog_run / "mosaic.zarr" / "zarr.json").read_text())["attributes"]["flux_unit"] == "electron / s"
    )
    assert_described_in_every_format(catalog_run / "catalog" / "catalog", table)


def test_the_metadata_and_the_mrt_title_name_the_software_and_the_run(catalog_run):
    run_id = json.loads((catalog_run / "manifest.json").read_text())["run_id"]
    stem = catalog_run / "catalog" / "catalog"
    file_meta = pq.read_schema(stem.with_suffix(".parquet")).metadata
    assert file_meta[b"RUNID"].decode() == run_id and file_meta[b"SOFTWARE"] == b"morpheus-survey"
    assert file_meta[b"DETECT"] == b"paper" and b"MODEL" in file_meta
    header = fits.getheader(stem.with_suffix(".fits"), 1)
    assert header["RUNID"] == run_id and header["SOFTWARE"] == "morpheus-survey" and header["FLUXBAND"] == "H"
    lines, _ = csv_header(stem.with_suffix(".csv"))
    assert f"RUNID = {run_id}" in lines and "DETECT = paper" in lines and lines[0].startswith("morpheus-survey")
    title, authors, table_line = stem.with_suffix(".mrt").read_text().splitlines()[:3]
    assert title.startswith("Title: ") and run_id in title and "Morpheus" in title
    assert authors.startswith("Authors: morpheus-survey") and "pipeline" in authors
    n = len(Table.read(stem.with_suffix(".parquet")))
    assert table_line.startswith(f"Table: catalog.mrt, {n} rows, one row per object") and "DETECT paper" in table_line


def test_photometry_columns_keep_their_units_and_descriptions_in_every_format(tmp_path):
    """The shape, Kron and magnitude columns of morpheus_core.photometry, written by the catalog writers."""
    from morpheus_core.photometry import measure_objects
    from morpheus_core.photometry_columns import photometry_table

    yy, xx = np.mgrid[:48, :64]
    image = np.zeros((48, 64))
    labels = np.zeros((48, 64), dtype=np.int64)
    for k, (y, x, sy, sx, amp) in enumerate([(14, 16, 2.0, 3.5, 50.0), (30, 44, 3.0, 1.5, 20.0)], start=1):
        image += amp * np.exp(-0.5 * (((yy - y) / sy) ** 2 + ((xx - x) / sx) ** 2))
        labels[(((yy - y) / sy) ** 2 + ((xx - x) / sx) ** 2) <= 9] = k
    image += np.random.default_rng(1).normal(0, 0.05, image.shape)
    frame = measure_objects(
        labels,
        {"H": image, "J": 0.5 * image},
        [1, 2],
        shape_band="H",
        errors={"H": np.full(image.shape, 0.05), "J": np.full(image.shape, 0.05)},
        zeropoints={"H": 25.9, "J": 26.2},
    )
    table = photometry_table(frame, shape_band="H", bands=["H", "J"], flux_unit="electron / s")
    table.meta.update({"RUNID": "r-phot", "SOFTWARE": "morpheus-survey"})
    assert {"semimajor_sigma", "orientation", "kron_flux_H", "mag_kron_J", "kron_radius"} <= set(table.colnames)
    for name in table.colnames:
        assert table[name].unit == expected_unit(name), name
    for suffix, fmt in CATALOG_FORMATS.items():
        write_catalog_table(table, tmp_path / f"phot.{suffix}", fmt)
    assert_described_in_every_format(tmp_path / "phot", table)
    # the values survive too (MRT rounded to 6 significant digits)
    back = Table.read(tmp_path / "phot.fits")
    np.testing.assert_allclose(back["kron_flux_H"], table["kron_flux_H"], rtol=1e-12)
    mrt = Table.read(tmp_path / "phot.mrt", format="ascii.mrt")
    np.testing.assert_allclose(mrt["kron_flux_H"], table["kron_flux_H"], rtol=1e-5)
