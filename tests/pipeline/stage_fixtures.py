"""Shared inputs of the stage tests (test_segment, test_labels, test_deblend, test_measure, test_colour)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from morpheus_core.deblend import deblend
from morpheus_core.segmentation import label_segments, segment_sources
from pipeline.downstream.context import StageContext
from pipeline.rundir.location import Location
from tests.pipeline.downstream_scene import CHUNK, SHAPE, segmentation_store, write_run


def whole_image_stages(scene: dict[str, np.ndarray], *, threshold: float = 0.0, min_distance: int = 6):
    """The core functions on the whole scene: mask, segments, deblended result (paper rule)."""
    mask = segment_sources(scene["background"], scene["n"] > 0, threshold=threshold)
    segments, _ = label_segments(mask)
    return mask, segments, deblend(segments, scene["bands"][0], min_distance=min_distance)


def run_stores(tmp_path, scene) -> tuple[Location, Location]:
    """The classification and mosaic stores of a run directory holding ``scene``."""
    run_dir = write_run(tmp_path / "run", scene)
    assert scene["n"].shape == SHAPE
    return Location(run_dir / "classification.zarr"), Location(run_dir / "mosaic.zarr")


def stage_context(tmp_path, scene, chunk: int = CHUNK, **data: np.ndarray) -> StageContext:
    """The context of a run directory holding ``scene``, its segmentation store a fresh one
    at ``tmp_path / "seg.zarr"`` (arrays zero or from ``data``), as a stage test needs it.
    """
    run_dir = write_run(tmp_path / "run", scene)
    seg = segmentation_store(tmp_path / "seg.zarr", scene["n"].shape, chunk, **data)
    return replace(StageContext.from_run(Location(run_dir), chunk=chunk), segmentation=seg)


def assert_catalog_equal(table, reference) -> None:
    """Every column of ``reference`` equal in ``table``: numbers to 1e-10 relative (chunk
    sums merged in another order than the whole image's), other columns exactly."""
    for name in reference.colnames:
        if reference[name].dtype.kind in "fi":
            np.testing.assert_allclose(
                np.asarray(table[name], float), np.asarray(reference[name], float), rtol=1e-10, atol=1e-12, err_msg=name
            )
        else:
            assert list(table[name]) == list(reference[name]), name
