"""Stage 3, pipeline.downstream.deblend: deblending per segment equals Algorithm 2 on the whole image."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from morpheus_core.deblend import split_by_markers
from pipeline.downstream.deblend import deblend_segments
from pipeline.downstream.labels import label_chunks
from pipeline.downstream.large_segments import default_segment_limit
from tests.pipeline.downstream_scene import CHUNK, SHAPE, SOURCES, make_scene
from tests.pipeline.stage_fixtures import stage_context, whole_image_stages


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE, SOURCES)


def _labelled(tmp_path, scene):
    """The stage context after stage 2, and the whole-image reference."""
    mask, segments, result = whole_image_stages(scene)
    context = stage_context(tmp_path, scene, mask=mask.astype(np.uint8))
    table = label_chunks(None, context)
    return context, table, segments, result


def test_deblended_map_and_objects_equal_whole_image(tmp_path, scene):
    context, table, segments, result = _labelled(tmp_path, scene)
    out = deblend_segments(None, context, table, limit=default_segment_limit(CHUNK), min_distance=6, nd_max=5)
    np.testing.assert_array_equal(zarr.open_group(str(context.segmentation.path))["deblended"][:], result.segmap)
    np.testing.assert_array_equal(out.objects.index, result.id)
    np.testing.assert_array_equal(out.objects["parent_id"], result.parent_id)
    np.testing.assert_array_equal(out.objects["sub_id"], result.sub_id)
    assert (out.objects["segment_flag"] == 0).all() and out.oversize_segments == []
    assert out.split_segments == len(set(result.parent_id[result.sub_id > 0])) >= 1


def test_segments_over_the_limit_stay_whole_and_flagged(tmp_path, scene):
    context, table, segments, _ = _labelled(tmp_path, scene)
    area = (table["ymax"] - table["ymin"]) * (table["xmax"] - table["xmin"])
    limit = int(area.max()) - 1  # only the largest segment is over it
    out = deblend_segments(None, context, table, limit=limit, min_distance=6, nd_max=5)
    big = int(area.idxmax())
    assert out.oversize_segments == [big]
    row = out.objects[out.objects["parent_id"] == big]
    assert len(row) == 1 and row["sub_id"].iloc[0] == 0 and row["segment_flag"].iloc[0] == 1
    deblended = zarr.open_group(str(context.segmentation.path))["deblended"][:]
    assert (deblended[segments == big] == row.index[0]).all()


def test_value_added_pixels_go_to_the_sources_as_split_by_markers(tmp_path, scene):
    context, table, segments, _ = _labelled(tmp_path, scene)
    # (y, x, id): two sources on the touching pair's segment, one on a corner source, one on sky
    pixels = np.array([[110, 96, 1], [110, 112, 2], [64, 64, 3], [30, 150, 4]], dtype=np.int64)
    out = deblend_segments(
        None, context, table, limit=default_segment_limit(CHUNK), min_distance=6, nd_max=5, source_pixels=pixels
    )
    assert out.objects is None and out.split_segments == 1
    markers = np.zeros(SHAPE, dtype=np.int64)
    markers[pixels[:, 0], pixels[:, 1]] = pixels[:, 2]
    expected = np.zeros(SHAPE, dtype=np.int32)
    for label in np.unique(segments[pixels[:, 0], pixels[:, 1]]):
        if label == 0:
            continue
        on = segments == label
        expected[on] = split_by_markers(scene["bands"][0], on, np.where(on, markers, 0))[on]
    np.testing.assert_array_equal(zarr.open_group(str(context.segmentation.path))["deblended"][:], expected)
