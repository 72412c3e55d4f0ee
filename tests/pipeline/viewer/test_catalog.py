"""The run's catalog as the map shows it (``pipeline.viewer.catalog``)."""

from __future__ import annotations

import shutil

import numpy as np
from astropy.table import Table

from pipeline.downstream.driver import run_downstream
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.settings import DownstreamSettings
from pipeline.viewer.catalog import catalog_columns, map_catalog
from tests.pipeline.view_runs import mosaic_wcs


def test_rows_brightest_first_at_pixel_centres(scene_dir):
    table = Table.read(scene_dir / "catalog" / "catalog.parquet")
    shown = map_catalog(RunLayout(Location(scene_dir)), mosaic_wcs(scene_dir), ["H", "J", "V", "Z"], "H")
    order = np.argsort(-np.asarray(table["flux_H"], dtype=np.float64), kind="stable")
    assert len(order) > 20 and shown["data"]["name"] == [str(v) for v in table["id"][order]]
    np.testing.assert_array_equal(shown["data"]["mx"], np.asarray(table["x"], dtype=np.float64)[order] + 0.5)
    np.testing.assert_array_equal(shown["data"]["my"], np.asarray(table["y"], dtype=np.float64)[order] + 0.5)
    assert [c for c, _ in shown["columns"]] == [
        c for c, _ in catalog_columns(list(table.colnames), ["H", "J", "V", "Z"])
    ]
    assert map_catalog(RunLayout(Location(scene_dir / "nothing")), mosaic_wcs(scene_dir), ["H"], "H") is None


def test_the_map_keeps_the_internal_catalog_beside_a_value_added_one(scene_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(scene_dir, copy, ignore=shutil.ignore_patterns("viewer"))
    internal = Table.read(scene_dir / "catalog" / "catalog.parquet")
    markers = Table({"id": [f"src-{i}" for i in range(5)], "ra": internal["ra"][:5], "dec": internal["dec"][:5]})
    markers.write(tmp_path / "markers.csv")
    run_downstream(copy, DownstreamSettings(markers=str(tmp_path / "markers.csv")), echo=lambda *_: None)
    # the value-added catalog is written beside the internal one, which the map keeps showing
    shown = map_catalog(RunLayout(Location(copy)), mosaic_wcs(copy), ["H", "J", "V", "Z"], "H")
    assert sorted(shown["data"]["name"]) == sorted(str(i) for i in internal["id"])
    added = Table.read(copy / "catalog" / "value_added.parquet")
    assert sorted(added["source_id"]) == [f"src-{i}" for i in range(5)]
