"""Loading the released checkpoint into the network (``morpheus_core.weights``)."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

from morpheus_core import weights as weights_mod
from morpheus_core.model import build_model
from morpheus_core.weights import ReleasedWeightsError, assign_checkpoint, read_released_checkpoint


def test_checkpoint_maps_completely_each_tensor_once(released_full):
    tensors = read_released_checkpoint()
    assert len(tensors) == 116
    for layer in released_full.layers:
        for w in layer.weights:
            assert np.isfinite(np.asarray(w)).all()
    # An extra tensor is reported, a missing one is reported.
    with pytest.raises(ReleasedWeightsError, match="not mapped"):
        assign_checkpoint(build_model(), {**tensors, "extra/conv/kernel": np.zeros(1)})
    partial = dict(tensors)
    del partial["final_conv/conv/bias"]
    with pytest.raises(ReleasedWeightsError, match="final_conv_conv"):
        assign_checkpoint(build_model(), partial)


def test_missing_package_gives_clear_error(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(weights_mod.importlib.metadata, "distribution", missing)
    with pytest.raises(ReleasedWeightsError, match=r"morpheus-astro==0\.5\.1"):
        weights_mod.released_weights_dir()
