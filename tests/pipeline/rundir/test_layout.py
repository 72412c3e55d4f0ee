"""The run-directory layout (issue #14): one owner for every path, checked against what
a run actually writes."""

from __future__ import annotations

from morpheus_core import CLASSES
from pipeline.rundir.layout import RunLayout
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
    top = {p.name for p in summary.run_dir.iterdir()} - {"pipeline.log", ".lock"}
    named = {p.name for p in layout.run_files()}
    assert top <= named, top - named
    for path in layout.classification_fits():
        assert path.exists(), path
