"""Shared fixtures: the released network (loaded once per session) and a stand-in."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

from morpheus_core.testing import StandInClassifier


@pytest.fixture(scope="session")
def released_full():
    from morpheus_core.weights import load_released_model

    return load_released_model()


@pytest.fixture(scope="session")
def released_cropped():
    from morpheus_core.weights import load_released_model

    return load_released_model(crop=True)


@pytest.fixture(scope="session")
def released_classifier(released_cropped):
    from morpheus_core.classifier import KerasWindowClassifier

    return KerasWindowClassifier(released_cropped)


@pytest.fixture
def standin() -> StandInClassifier:
    return StandInClassifier()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20200520)
