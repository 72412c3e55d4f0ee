"""Finished runs shared by the map's tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.view_runs import card_run, classified_run, scene_run


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory) -> Path:
    """A finished run of a constructed 300 x 420 scene (two zoom levels, dozens of objects)."""
    return scene_run(tmp_path_factory.mktemp("view-scene") / "run")


@pytest.fixture(scope="session")
def card_dir(tmp_path_factory) -> Path:
    """A finished run of a model with six NIRCam bands and the classes compact, extended, background."""
    return card_run(tmp_path_factory.mktemp("view-card") / "run")


@pytest.fixture(scope="session")
def classified_dir(tmp_path_factory) -> Path:
    """A finished run made by ``pipeline.run.run`` with the stand-in network."""
    return classified_run(tmp_path_factory.mktemp("view-run"))
