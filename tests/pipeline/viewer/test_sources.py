"""What a tile pyramid is built from (``pipeline.viewer.sources``): the run's stores, and the
planes of any box of the full-resolution image against the same planes computed on the
whole image with NumPy and scikit-image (``tests.pipeline.view_runs.reference_planes``)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from morpheus_core import CLASSES
from morpheus_core.tiling import Box
from pipeline.errors import InputError
from pipeline.rundir.location import Location
from pipeline.viewer.sources import Sources, open_sources, read_full_resolution
from pipeline.viewer.tiles import plane_names
from tests.pipeline.view_runs import CARD_CLASSES, card_run, reference_planes, scene_run

SHAPE = (101, 131)
CHUNK = 32
#: Boxes of the image: all of it; crossing chunk faces (y = 32, 64; x = 32, 64, 96) at odd
#: offsets; one row through objects; two corners; objects cut by the image's last row (the
#: outline's halo beyond the image).
BOXES = [
    Box(0, 101, 0, 131),
    Box(30, 70, 31, 97),
    Box(64, 65, 0, 131),
    Box(96, 101, 0, 5),
    Box(0, 1, 130, 131),
    Box(95, 101, 70, 90),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return scene_run(tmp_path_factory.mktemp("sources") / "run", SHAPE, chunk=CHUNK)


def test_sources_of_a_run(run_dir):
    sources, attrs = open_sources(Location(run_dir))
    assert (
        sources.mosaic.path == run_dir / "mosaic.zarr"
        and sources.classification.path == run_dir / "classification.zarr"
    )
    assert sources.segmentation is not None and sources.segmentation.path == run_dir / "segmentation.zarr"
    assert sources.rgb == (0, 1, 2) and sources.composite == ("H", "J", "V")
    assert sources.shape == SHAPE and sources.classes == CLASSES
    assert attrs["classification"]["complete"] and attrs["segmentation"]["complete"]
    assert attrs["mosaic"]["bands"] == ["H", "J", "V", "Z"]
    assert pickle.loads(pickle.dumps(sources)) == sources  # what every task of the first pass gets


@pytest.mark.parametrize("box", BOXES, ids=lambda b: b.name)
def test_a_box_holds_the_planes_of_the_whole_image_there(run_dir, box):
    sources, _ = open_sources(Location(run_dir))
    got = read_full_resolution(sources, box)
    expected = reference_planes(run_dir)[:, box.y0 : box.y1, box.x0 : box.x1]
    assert got.shape == (len(plane_names(CLASSES)), *box.shape) and got.dtype == np.float64
    np.testing.assert_array_equal(got, expected)  # the same float32 values, read, not computed: exact
    assert expected[3].any() or box.shape[0] * box.shape[1] <= 25  # outlines tested, not zeros (not in the corners)


def test_without_a_finished_segmentation_there_are_no_outlines(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("viewer"))
    zarr.open_group(str(copy / "segmentation.zarr"), mode="r+").attrs["complete"] = False
    sources, attrs = open_sources(Location(copy))
    assert sources.segmentation is None and attrs["segmentation"] is None
    planes = read_full_resolution(sources, BOXES[0])
    expected = reference_planes(copy)
    assert not planes[3].any() and expected[3].any()
    np.testing.assert_array_equal(np.delete(planes, 3, axis=0), np.delete(expected, 3, axis=0))
    shutil.rmtree(copy / "segmentation.zarr")
    assert open_sources(Location(copy))[0].segmentation is None


def test_a_model_with_its_own_bands_and_classes(tmp_path):
    run = card_run(tmp_path / "card")
    sources, _ = open_sources(Location(run))
    assert sources.classes == CARD_CLASSES and sources.rgb == (5, 3, 0)  # F444W, F200W, F090W by wavelength
    assert sources.composite == ("F444W", "F200W", "F090W")
    box = Box(10, 50, 20, 75)
    np.testing.assert_array_equal(
        read_full_resolution(sources, box), reference_planes(run, CARD_CLASSES, sources.rgb)[:, 10:50, 20:75]
    )


def test_missing_stores_are_named(run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("viewer"))
    (copy / "mosaic.zarr" / "zarr.json").write_text("{not json")
    with pytest.raises(InputError, match=r"mosaic.zarr: cannot read the mosaic store"):
        open_sources(Location(copy))
    shutil.rmtree(copy / "mosaic.zarr")
    with pytest.raises(InputError, match=r"mosaic.zarr: mosaic store \(mosaic.zarr\) not found"):
        open_sources(Location(copy))
    with pytest.raises(InputError, match="manifest.json"):
        open_sources(Location(tmp_path / "nothing"))
    assert Sources.__doc__ and read_full_resolution.__doc__
