"""Fixtures of the tests of pipeline.inputs."""

from __future__ import annotations

import pytest

from tests.pipeline.inputs.band_images import BANDS, random_image, write_band


@pytest.fixture
def band_files(tmp_path):
    arrays = {b: random_image(i) for i, b in enumerate(BANDS)}
    paths = {b: write_band(tmp_path / f"band_{b}.fits", a) for b, a in arrays.items()}
    return paths, arrays
