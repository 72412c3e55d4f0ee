"""Stage 4, pipeline.downstream.measure: sums per chunk merged give the whole-image catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from morpheus_core import BANDS, CLASSES
from morpheus_core.catalog import object_catalog
from morpheus_core.object_sums import merge_object_sums, object_sums
from morpheus_core.simulate import make_wcs
from pipeline.downstream.measure import internal_catalog, value_added_catalog
from pipeline.inputs.markers import read_markers
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene
from tests.pipeline.stage_fixtures import assert_catalog_equal, stage_context, whole_image_stages


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE, SOURCES)


def test_internal_catalog_equals_whole_image(tmp_path, scene):
    _, segments, result = whole_image_stages(scene)
    context = stage_context(tmp_path, scene, segments=segments, deblended=result.segmap)
    assert context.bands == tuple(BANDS) and context.flux_band == "H"  # the mosaic's bands; no recorded card: H
    objects = pd.DataFrame(
        {
            "parent_id": result.parent_id,
            "sub_id": result.sub_id,
            "segment_flag": np.zeros(len(result.id), dtype=np.int16),
        },
        index=pd.Index(result.id, name="id"),
    )
    wcs = make_wcs(SHAPE)
    table = internal_catalog(None, context, objects)
    flux = scene["bands"][0]
    sums = merge_object_sums(
        [
            object_sums(
                result.segmap,
                flux=flux,
                mean=scene["rank"],
                variance=scene["variance"],
                bands=scene["bands"],
                band_names=BANDS,
                fractions={"mean": scene["mean"]},
            )
        ]
    )
    reference = object_catalog(sums, wcs=wcs, width=SHAPE[1], band_names=BANDS, fractions=("mean",))
    assert list(table["id"]) == list(result.id) and list(table["label"]) == result.labels
    assert_catalog_equal(table, reference)
    assert all(f"p_{c}" in table.colnames and f"p_mean_{c}" in table.colnames for c in CLASSES)


def test_value_added_catalog_has_a_row_per_source(tmp_path, scene):
    _, segments, result = whole_image_stages(scene)
    wcs = make_wcs(SHAPE)
    # (x, y): the large source, empty sky (aperture), the unclassified border, off the image
    xy = np.array([[64, 64], [150, 30], [1, 1], [400, 400]], dtype=float)
    ra, dec = wcs.pixel_to_world_values(xy[:, 0], xy[:, 1])
    path = tmp_path / "markers.csv"
    Table({"id": [1, 2, 3, 4], "ra": ra, "dec": dec}).write(path, format="ascii.csv")
    markers = read_markers(str(path), wcs=wcs, shape=SHAPE)
    deblended = np.where(segments == segments[64, 64], 1, 0).astype(np.int32)  # source 1 owns its segment
    context = stage_context(tmp_path, scene, segments=segments, deblended=deblended)
    table = value_added_catalog(None, context, markers)
    assert list(table["source_id"]) == [1, 2, 3, 4]
    assert list(table["object_id"]) == [1, 0, 0, 0] and list(table["aperture"]) == [0, 1, 0, 0]
    assert table["area"][0] == (deblended == 1).sum() and 100 < table["area"][1] < 120
    assert list(table["detection_flag"]) == [1, 3, 0, 0] and np.ma.is_masked(table["area"][3])
