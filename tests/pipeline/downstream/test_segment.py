"""Stage 1, pipeline.downstream.segment: Algorithm 1 per chunk equals it on the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from morpheus_core.segmentation import segment_sources
from pipeline.downstream.segment import no_source_message, segment_chunks
from pipeline.settings import DETECTION_RULES
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene
from tests.pipeline.stage_fixtures import stage_context

IMAGES = {"rank": "background", "mean": "mean_background"}


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE, SOURCES)


@pytest.mark.parametrize("detection", list(DETECTION_RULES))
def test_chunked_mask_equals_whole_image(tmp_path, scene, detection):
    context = stage_context(tmp_path, scene)
    rule = DETECTION_RULES[detection]
    out = segment_chunks(None, context, threshold=rule["threshold"], halo=8, max_halo=256, detection=detection)
    source_image = None if rule["sources"] == rule["background"] else scene[IMAGES[rule["sources"]]]
    whole = segment_sources(
        scene[IMAGES[rule["background"]]], scene["n"] > 0, threshold=rule["threshold"], source_background=source_image
    )
    np.testing.assert_array_equal(zarr.open_group(str(context.segmentation.path))["mask"][:], whole.astype(np.uint8))
    assert out.approximate_chunks == []
    assert list(out.chunk_halos) == [b.name for b in context.boxes]
    assert set(out.chunk_halos.values()) <= {8, 16, 32, 64, 128, 256}


def test_external_sources_are_marked_as_on_the_whole_image(tmp_path, scene):
    context = stage_context(tmp_path, scene)
    # (y, x, id): a faint sky position, one on a source, one on a chunk corner
    pixels = np.array([[30, 150, 1], [64, 100, 2], [64, 64, 3]], dtype=np.int64)
    segment_chunks(None, context, threshold=0.0, halo=8, max_halo=256, source_pixels=pixels)
    marked = np.zeros(SHAPE, dtype=np.uint8)
    marked[pixels[:, 0], pixels[:, 1]] = 1
    whole = segment_sources(scene["background"], scene["n"] > 0, threshold=0.0, sources=marked)
    np.testing.assert_array_equal(zarr.open_group(str(context.segmentation.path))["mask"][:], whole.astype(np.uint8))


def test_a_halo_too_small_is_reported_approximate(tmp_path, scene):
    out = segment_chunks(None, stage_context(tmp_path, scene), threshold=0.3, halo=2, max_halo=4, detection="mean")
    assert out.approximate_chunks and set(out.approximate_chunks) <= set(out.chunk_halos)
    assert all(out.chunk_halos[name] == 4 for name in out.approximate_chunks)


def test_no_source_message_names_the_rule_and_the_smallest_background(tmp_path, scene):
    context = stage_context(tmp_path, scene)
    message = no_source_message(context, "paper", 0.0)
    assert "rank-vote background <= 0.0" in message and "smallest rank-vote background 0" in message
    assert "--detection mixed" in message
    message = no_source_message(context, "mean", 0.3)
    assert "mean background" in message and "larger --threshold" in message
