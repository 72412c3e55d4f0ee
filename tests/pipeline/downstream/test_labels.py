"""Stage 2, pipeline.downstream.labels: chunk labels joined across faces equal a whole-image label."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from scipy import ndimage as ndi

from morpheus_core.segmentation import label_segments
from pipeline.downstream.labels import label_chunks
from tests.pipeline.downstream_scene import make_scene
from tests.pipeline.stage_fixtures import stage_context


def _blobs(shape, seed):
    """A seeded random mask of blobs of all sizes, many crossing chunk faces and corners."""
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.normal(size=shape), 2.0) > 0.05


@pytest.mark.parametrize("shape, chunk, seed", [((150, 170), 32, 0), ((64, 200), 17, 1), ((40, 40), 64, 2)])
def test_labels_equal_whole_image_label_in_raster_order(tmp_path, shape, chunk, seed):
    mask = _blobs(shape, seed)
    context = stage_context(tmp_path, make_scene(shape, []), chunk, mask=mask.astype(np.uint8))
    table = label_chunks(None, context)
    whole, count = label_segments(mask)
    np.testing.assert_array_equal(zarr.open_group(str(context.segmentation.path))["segments"][:], whole)
    assert len(table) == count > 5 and list(table.index) == list(range(1, count + 1))
    for label, box in enumerate(ndi.find_objects(whole), start=1):
        row = table.loc[label]
        assert (row["ymin"], row["ymax"], row["xmin"], row["xmax"]) == (
            box[0].start,
            box[0].stop,
            box[1].start,
            box[1].stop,
        )
        first = np.flatnonzero(whole.ravel() == label)[0]
        assert row["first"] == first


def test_an_empty_mask_has_no_segment(tmp_path):
    context = stage_context(tmp_path, make_scene((50, 60), []), 32)
    table = label_chunks(None, context)
    assert len(table) == 0 and list(table.columns) == ["ymin", "ymax", "xmin", "xmax", "first"]
    assert not zarr.open_group(str(context.segmentation.path))["segments"][:].any()
