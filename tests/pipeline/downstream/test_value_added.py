"""Value-added catalogs (``catalog --markers``): maps of their own beside the internal ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from photutils.segmentation import SegmentationImage, SourceCatalog

from morpheus_core.flags import flag_bit
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
    paths = [
        *layout.segmentation.path.rglob("*"),
        *(p.path for p in layout.catalog_files()),
        layout.segmap_file("segments").path,
        layout.segmap_file("deblended").path,
        layout.colour.path,
        layout.downstream_record.path,
        layout.segmentation_checksums.path,
    ]
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
    named_inside = {
        p.path
        for p in [
            *layout.value_added_files(name),
            *layout.catalog_files(),
            *(layout.segmap_file(a) for a in ("segments", "deblended")),
        ]
    }
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


def test_value_added_photometry_equals_one_source_catalog_of_its_map(tmp_path, scene):
    # A footprint edge (the last 26 columns unobserved) cutting the source at x = 140, and
    # a weight map: the sources with an object get the internal catalog's photometry
    # columns, equal to photutils' SourceCatalog over the whole image with the value-added
    # map; the sources without one get nulls and the no_segment bit.
    cut = {k: v.copy() for k, v in scene.items()}
    cut["bands"][:, :, -26:] = np.nan
    cut["n"][:, -26:] = 0
    for name in ("mean", "rank", "variance"):
        cut[name][:, :, -26:] = 0
    run_dir = write_run(tmp_path / "run", cut)
    weight = np.random.default_rng(5).uniform(2e5, 3e5, SHAPE)
    weight[:, -26:] = 0.0
    mosaic = zarr.open_group(str(run_dir / "mosaic.zarr"), mode="r+")
    mosaic.create_array("weight", data=np.stack([weight] * 4).astype(np.float32), chunks=(4, 32, 32))
    mosaic.attrs.update(
        {
            "error_maps": {"weight": ["H", "J", "V", "Z"], "rms": []},
            "sky_subtracted": True,
            "effective_gain": {},
            "zeropoints": {"H": {"value": 25.9, "source": "test"}},
        }
    )
    # corner source, large source, the touching pair (one segment, two sources), the edge
    # source, empty sky, the unclassified border
    xy = np.array([[32, 32], [64, 64], [96, 110], [112, 110], [140, 128], [150, 30], [1, 1]], dtype=float)
    settings = replace(SETTINGS, markers=_markers(tmp_path / "m.csv", xy))
    run_downstream(run_dir, settings, client=None, echo=lambda *_: None)
    layout = RunLayout(Location(run_dir))
    table = Table.read(layout.catalog_file("parquet", "value_added").path)
    segmap = zarr.open_group(str(layout.segmentation_store("value_added").path), mode="r")["deblended"][:]
    has = np.asarray(table["object_id"]) > 0
    assert list(has) == [True] * 5 + [False] * 2
    # the reference: one SourceCatalog per band over the whole image, H the detection catalog
    data = cut["bands"].astype(np.float64)
    error = np.where(weight > 0, 1 / np.sqrt(np.where(weight > 0, weight, 1)), np.nan)
    mask = ~np.isfinite(data).all(axis=0) | ~np.isfinite(error)
    segm = SegmentationImage(segmap)
    kw = {"mask": mask, "kron_params": (2.5, 1.4, 0.0), "aperture_mask_method": "correct", "local_bkg_width": 0}
    det = SourceCatalog(data[0], segm, error=error, **kw)
    ids = list(np.asarray(table["object_id"])[has])
    cats = {
        b: (det if b == "H" else SourceCatalog(data[i], segm, error=error, detection_catalog=det, **kw)).select_labels(
            ids
        )
        for i, b in enumerate("HJVZ")
    }
    for ours, attr in (
        ("x_centroid", "x_centroid"),
        ("y_centroid", "y_centroid"),
        ("gini", "gini"),
        ("semimajor_sigma", "semimajor_axis"),
        ("kron_radius", "kron_radius"),
    ):
        np.testing.assert_allclose(
            np.asarray(table[ours][has], float),
            u.Quantity(getattr(cats["H"], attr)).value,
            rtol=1e-9,
            atol=1e-9,
            err_msg=ours,
        )
    for band in "HJVZ":
        for ours, attr in (
            ("kron_flux", "kron_flux"),
            ("kron_fluxerr", "kron_flux_err"),
            ("segment_flux", "segment_flux"),
            ("segment_fluxerr", "segment_flux_err"),
        ):
            # Kron apertures on centroids that differ by float rounding (cutout coordinates)
            np.testing.assert_allclose(
                np.asarray(table[f"{ours}_{band}"][has], float),
                u.Quantity(getattr(cats[band], attr)).value,
                rtol=1e-7,
                atol=1e-12,
                err_msg=f"{ours}_{band}",
            )
    # no object: null photometry, the no_segment bit; the detection flag's bits on every row
    written = pq.read_table(layout.catalog_file("parquet", "value_added").path)
    for name in ("kron_flux_H", "segment_flux_J", "x_centroid", "gini", "mag_kron_H"):
        assert written.column(name).is_null().to_pylist() == list(~has), name
    flags = np.asarray(table["flags"])
    assert list(flags & flag_bit("no_segment") > 0) == list(~has)
    detection = np.asarray(table["detection_flag"])
    assert list(flags & flag_bit("background_position") > 0) == list(detection == 3)
    assert list(flags & flag_bit("unclassified_position") > 0) == list(detection == 0) and detection[6] == 0
    # the pair's segment was split between its two sources; the edge source touches the footprint
    assert (flags[2:4] & flag_bit("deblended")).all() and not (flags[[0, 1, 4]] & flag_bit("deblended")).any()
    assert flags[4] & flag_bit("footprint_edge")
    assert table["x_centroid"].unit == u.pix and table["kron_flux_H"].description
    assert "mag_kron_H" in table.colnames and "error_source" in table.meta
