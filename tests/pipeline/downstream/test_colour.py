"""Stage 5, pipeline.downstream.colour: the colour image per chunk equals it on the whole image."""

from __future__ import annotations

import numpy as np
import zarr

from morpheus_core.colour import colour_image
from pipeline.downstream.colour import colour_chunks
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene
from tests.pipeline.stage_fixtures import stage_context


def test_colour_chunks_equal_whole_image(tmp_path):
    scene = make_scene(SHAPE, SOURCES)
    context = stage_context(tmp_path, scene, 48)  # chunks unlike the stores' 32
    colour_chunks(None, context)
    np.testing.assert_array_equal(
        zarr.open_group(str(context.segmentation.path))["colour"][:], colour_image(scene["rank"], scene["n"] > 0)
    )
