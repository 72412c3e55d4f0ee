"""Value-added catalogs (``catalog --markers``): maps of their own beside the internal ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.table import Table

from morpheus_core.simulate import make_wcs
from pipeline.downstream.driver import run_downstream
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.settings import DownstreamSettings
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene, write_run

SETTINGS = DownstreamSettings(min_distance=6, halo=8, max_halo=256)


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE, SOURCES)


def _markers(path: Path, xy: np.ndarray) -> str:
    ra, dec = make_wcs(SHAPE).pixel_to_world_values(xy[:, 0], xy[:, 1])
    Table({"ID": [f"s{i}" for i in range(len(xy))], "RA": ra, "DEC": dec}).write(path, format="ascii.csv")
    return str(path)


def _internal_products(layout: RunLayout) -> dict[str, bytes]:
    """Every file of the internal maps, store, catalog, colour image and records, by relative path."""
    root = layout.root.path
    paths = [*layout.segmentation.path.rglob("*"), *(p.path for p in layout.catalog_files()),
             layout.segmap_file("segments").path, layout.segmap_file("deblended").path, layout.colour.path,
             layout.downstream_record.path, layout.segmentation_checksums.path]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths if p.is_file()}


def test_a_value_added_run_leaves_the_internal_products_as_they_are(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    layout = RunLayout(Location(run_dir))
    run_downstream(run_dir, SETTINGS, client=None, echo=lambda *_: None)
    before = _internal_products(layout)
    assert len(before) > 20 and "fits/segmap_deblended.fits" in before and "catalog/objects.reg" in before
    # sources at three of the scene's objects (one on a chunk corner) and on empty sky
    xy = np.array([[32, 32], [100, 64], [64, 64], [150, 30]], dtype=float)
    settings = replace(SETTINGS, markers=_markers(tmp_path / "m.csv", xy))
    summary = run_downstream(run_dir, settings, client=None, echo=lambda *_: None)
    assert _internal_products(layout) == before  # byte for byte, the same files
    # the value-added maps, store and records live beside them, named by the layout
    name = "value_added"
    store = zarr.open_group(str(layout.segmentation_store(name).path), mode="r")
    assert layout.segmentation_store(name).path.name == "segmentation_value_added.zarr"
    assert layout.segmentation_checksums_of(name).exists() and layout.downstream_record_of(name).exists()
    deblended = fits.getdata(layout.segmap_file("deblended", name).path)
    np.testing.assert_array_equal(deblended, store["deblended"][:])
    np.testing.assert_array_equal(fits.getdata(layout.segmap_file("segments", name).path), store["segments"][:])
    # its ids are the markers' rows (row + 1): one object per source with a segment
    table = Table.read(layout.catalog_file("parquet", name).path)
    assert list(table["object_id"][:3]) == [1, 2, 3] and table["object_id"][3] == 0
    assert set(np.unique(deblended)) == {0, 1, 2, 3}
    ix, iy = xy[:3, 0].astype(int), xy[:3, 1].astype(int)
    np.testing.assert_array_equal(deblended[iy, ix], [1, 2, 3])
    assert summary.objects == 3
    # every file of the run directory is one the layout names (what --restart removes)
    named = {p.path for p in layout.run_files()}
    assert {p for p in run_dir.iterdir()} <= named
    named_inside = {p.path for p in [*layout.value_added_files(name), *layout.catalog_files(),
                                     *(layout.segmap_file(a) for a in ("segments", "deblended"))]}
    assert {*layout.fits.path.iterdir(), *layout.catalog.path.iterdir()} <= named_inside
    assert layout.value_added_names() == [name]


def test_each_kind_of_catalog_reuses_its_own_segmentation(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene)
    settings = replace(SETTINGS, markers=_markers(tmp_path / "m.csv", np.array([[32.0, 32.0], [100.0, 64.0]])))
    quiet = {"client": None, "echo": lambda *_: None, "reuse_segmentation": True}
    assert not run_downstream(run_dir, SETTINGS, **quiet).reused_segmentation
    assert not run_downstream(run_dir, settings, **quiet).reused_segmentation
    # alternating: each finds its own store as it left it
    assert run_downstream(run_dir, SETTINGS, **quiet).reused_segmentation
    assert run_downstream(run_dir, settings, **quiet).reused_segmentation
    named = replace(settings, catalog_name="other")
    assert not run_downstream(run_dir, named, **quiet).reused_segmentation
    assert RunLayout(Location(run_dir)).value_added_names() == ["other", "value_added"]
