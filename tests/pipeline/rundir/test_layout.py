"""The run-directory layout: one owner for every path, checked against what a run
actually writes."""

from __future__ import annotations

import numpy as np

from morpheus_core import CLASSES
from morpheus_core.stats import WindowStats
from pipeline.rundir.layout import FITS_FILES, RunLayout
from pipeline.rundir.ledger import Ledger
from pipeline.rundir.location import Location


def test_names_and_restart_order(tmp_path):
    layout = RunLayout(Location(tmp_path))
    assert layout.class_image("variance", "disk").path == tmp_path / "fits" / "disk_var.fits"
    fits = layout.classification_fits()
    assert len(fits) == 3 * len(CLASSES) + 1 and fits[-1].name == "n.fits"
    files = layout.run_files()
    assert files[-1] == layout.manifest  # removed last: an interrupted restart is still a run
    assert layout.staging(layout.classification).name == "classification.zarr.partial"
    assert {layout.segmentation, layout.catalog, layout.colour, layout.downstream_record} <= set(files)


def test_every_file_of_a_finished_run_is_named_by_the_layout(tmp_path):
    from pipeline.run import run
    from tests.pipeline.small_runs import small_config, write_mosaic

    toml = write_mosaic(tmp_path / "m")
    summary = run(small_config(tmp_path / "run", toml, workers=1), echo=lambda *_: None)
    layout = RunLayout(Location(summary.run_dir))
    top = {p.name for p in summary.run_dir.iterdir()} - {layout.log.name, layout.lock.name}
    named = {p.name for p in layout.run_files()}
    assert top <= named, top - named
    for path in layout.classification_fits():
        assert path.exists(), path
    # The files inside the folders too: every product, ledger record and partial.
    products = {
        *layout.classification_fits(),
        *(layout.fits_file(a) for a in FITS_FILES),
        *layout.catalog_files(),
    }  # catalog.{parquet,csv,fits,mrt} and objects.reg
    written = {*layout.fits.path.iterdir(), *layout.catalog.path.iterdir()}
    named = {p.path for p in products}
    assert written <= named and named - written <= {layout.catalog_file("mrt").path}  # MRT: a catalog with rows
    ledger = Ledger(layout.root)
    tiles = sorted(ledger.done_infos([f"t{r:04d}_{c:04d}" for r in range(3) for c in range(4)]))
    assert len(tiles) == 12
    records = {
        layout.merged_record,
        layout.classification_checksums,
        layout.segmentation_checksums,
        layout.executions,
        *(layout.done_record(t) for t in tiles),
    }
    assert set(layout.ledger.path.iterdir()) == {p.path for p in records}
    assert list(layout.partials.path.iterdir()) == []  # removed after the verified merge
    assert {layout.execution_tile(p.name) for p in layout.executions.path.iterdir()} == set(tiles)


def test_the_ledger_writes_only_the_names_the_layout_gives(tmp_path):
    layout = RunLayout(Location(tmp_path / "run"))
    ledger = Ledger(layout.root)
    stats = WindowStats.zeros((3, 4), len(CLASSES))
    ledger.record_start("t0000_0001")
    ledger.save_partial("t0000_0001", stats, {"windows": 0})
    ledger.mark_failed("t0001_0000", "RuntimeError: boom", "Traceback ...")
    assert {p.name for p in layout.ledger.path.iterdir()} == {
        layout.executions.name,
        layout.done_record("t0000_0001").name,
        layout.failed_record("t0001_0000").name,
    }
    assert [p.name for p in layout.partials.path.iterdir()] == [layout.partial("t0000_0001").name]
    (execution,) = layout.executions.path.iterdir()
    assert layout.execution_tile(execution.name) == "t0000_0001"
    listing = [*layout.ledger.listdir(), ".t0002_0000.done.1a2b.tmp"]  # a write in progress is no record
    assert layout.tiles_listed(listing, "done") == {"t0000_0001"}
    assert layout.tiles_listed(listing, "failed") == {"t0001_0000"}
    assert layout.tiles_listed(layout.partials.listdir(), "partial") == {"t0000_0001"}
    np.testing.assert_array_equal(ledger.load_partial("t0000_0001").n, stats.n)
