"""Stage 5, pipeline.downstream.colour: the colour image per chunk equals it on the whole image."""

from __future__ import annotations

import numpy as np
import zarr

from morpheus_core.colour import colour_image
from morpheus_core.tiling import chunk_boxes
from pipeline.downstream.colour import colour_chunks
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene, segmentation_store
from tests.pipeline.stage_fixtures import run_stores


def test_colour_chunks_equal_whole_image(tmp_path):
    scene = make_scene(SHAPE, SOURCES)
    class_store, _ = run_stores(tmp_path, scene)
    seg = segmentation_store(tmp_path / "seg.zarr", SHAPE, 48)
    colour_chunks(None, class_store, seg, chunk_boxes(SHAPE, 48))  # chunks unlike the stores' 32
    np.testing.assert_array_equal(zarr.open_group(str(seg.path))["colour"][:],
                                  colour_image(scene["rank"], scene["n"] > 0))
