"""morpheus_survey.open_run on folders that are not finished runs, and on a run whose
segmentation and catalog are missing (a finished run: tests/api/test_docs_python.py)."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_survey import InputError, open_run
from tests.pipeline.downstream_scene import SHAPE, SOURCES, make_scene, write_run


def test_a_folder_without_a_run_is_refused(tmp_path):
    with pytest.raises(InputError, match="no run here"):
        open_run(tmp_path)
    with pytest.raises(InputError, match="no run here"):
        open_run(tmp_path / "missing")


def test_an_unfinished_classification_is_refused(tmp_path):
    run_dir = write_run(tmp_path / "run", make_scene(SHAPE, SOURCES), complete=False)
    with pytest.raises(InputError, match="not finished.*resubmit"):
        open_run(run_dir)


def test_a_classification_without_segmentation_opens_and_says_what_is_missing(tmp_path):
    scene = make_scene(SHAPE, SOURCES)
    run_dir = write_run(tmp_path / "run", scene)
    run = open_run(str(run_dir))
    cls = run.classification
    assert cls["mean"].dims == ("class", "y", "x") and cls["mean"].shape == (5, *SHAPE)
    np.testing.assert_array_equal(cls["rank"].values, scene["rank"])
    np.testing.assert_array_equal(cls["n"].values, scene["n"])
    assert run.wcs.pixel_to_world_values(10, 20) == pytest.approx(
        (float(cls["ra"][20, 10]), float(cls["dec"][20, 10])), abs=1e-12
    )
    with pytest.raises(InputError, match="no segmentation.*python -m pipeline segment --run-dir"):
        run.segmentation
    with pytest.raises(InputError, match="no catalog.*python -m pipeline segment --run-dir"):
        run.catalog
    with pytest.raises(InputError, match="colour.png: no such product"):
        run.path("colour.png")
    assert run.downstream_settings is None
