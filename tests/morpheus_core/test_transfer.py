"""Networks for other bands and classes (morpheus_core.transfer.transfer_weights, build_for_card,
load_model with a card, training.fit.initial_model)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from morpheus_core.cards import RELEASED_CARD, Band, ModelCard
from morpheus_core.model import build_for_card
from morpheus_core.transfer import FINAL_LAYER, FIRST_LAYERS, transfer_weights
from morpheus_core.weights import load_model

#: Six bands whose nearest released bands (log wavelength) are V, Z, J, H, H, H: every
#: released band is used, H three times.
SIX = ModelCard(
    bands=tuple(Band(f"b{i}", "", w) for i, w in enumerate((0.6, 0.9, 1.2, 1.5, 1.6, 2.0))),
    classes=("disk", "star", "background"),
    pixel_scale_arcsec=0.03,
)
MAPPING = [2, 3, 1, 0, 0, 0]  # hand-built: V, Z, J, H, H, H


@pytest.fixture(scope="module")
def source():
    """A released-shaped network with seeded random weights (BN statistics too)."""
    keras.utils.set_random_seed(3)
    model = build_for_card(RELEASED_CARD)
    rng = np.random.default_rng(3)
    model.set_weights(
        [
            rng.normal(size=w.shape).astype(np.float32)
            if w.ndim > 1
            else rng.uniform(0.5, 1.5, size=w.shape).astype(np.float32)
            for w in model.get_weights()
        ]
    )
    return model


def test_transfer_copies_what_fits_and_maps_bands_and_classes(source):
    target = build_for_card(SIX)
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in target.layers if layer.weights}
    report = transfer_weights(source, target, source_card=RELEASED_CARD, target_card=SIX)
    counts = np.bincount(MAPPING, minlength=4)
    bn_src, bn_new = source.get_layer(FIRST_LAYERS[0]).get_weights(), target.get_layer(FIRST_LAYERS[0]).get_weights()
    for a, b in zip(bn_src, bn_new):
        np.testing.assert_array_equal(b, a[MAPPING])
    k_src, b_src = source.get_layer(FIRST_LAYERS[1]).get_weights()
    k_new, b_new = target.get_layer(FIRST_LAYERS[1]).get_weights()
    for j, m in enumerate(MAPPING):
        np.testing.assert_allclose(k_new[:, :, j, :], k_src[:, :, m, :] / counts[m], rtol=1e-7)
    np.testing.assert_array_equal(b_new, b_src)
    # Final layer: disk and background copied from their released channels, star left as initialised.
    k_src, b_src = source.get_layer(FINAL_LAYER).get_weights()
    k_new, b_new = target.get_layer(FINAL_LAYER).get_weights()
    np.testing.assert_array_equal(k_new[..., 0], k_src[..., 1])
    np.testing.assert_array_equal(k_new[..., 2], k_src[..., 4])
    np.testing.assert_array_equal(k_new[..., 1], before[FINAL_LAYER][0][..., 1])
    assert (b_new[0], b_new[2]) == (b_src[1], b_src[4])
    for layer in target.layers:
        if layer.weights and layer.name not in (*FIRST_LAYERS, FINAL_LAYER):
            assert report[layer.name] == "copied"
            for a, b in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    assert "b3<-H" in report[FIRST_LAYERS[1]] and "b0<-V" in report[FIRST_LAYERS[1]]


def test_wavelength_init_reproduces_the_first_layer_on_copied_bands(source):
    """New bands holding exactly their source band's image give the released first-layer response."""
    target = build_for_card(SIX)
    transfer_weights(source, target, source_card=RELEASED_CARD, target_card=SIX)
    x = np.random.default_rng(0).normal(size=(3, 40, 40, 4)).astype(np.float32)
    first = FIRST_LAYERS[1]
    sub_src = keras.Model(source.inputs, source.get_layer(first).output)
    sub_new = keras.Model(target.inputs, target.get_layer(first).output)
    np.testing.assert_allclose(np.asarray(sub_new(x[..., MAPPING])), np.asarray(sub_src(x)), rtol=1e-5, atol=1e-5)


def test_random_first_layer_keeps_the_targets_initialisation(source):
    target = build_for_card(SIX)
    before = [w.copy() for w in target.get_layer(FIRST_LAYERS[1]).get_weights()]
    report = transfer_weights(source, target, source_card=RELEASED_CARD, target_card=SIX, first_layer="random")
    for a, b in zip(before, target.get_layer(FIRST_LAYERS[1]).get_weights()):
        np.testing.assert_array_equal(a, b)
    assert report[FIRST_LAYERS[1]].startswith("initialised")
    with pytest.raises(ValueError, match="first_layer"):
        transfer_weights(source, target, source_card=RELEASED_CARD, target_card=SIX, first_layer="nearest")


def test_weights_file_round_trip_with_a_card(tmp_path, source):
    model = build_for_card(SIX)
    transfer_weights(source, model, source_card=RELEASED_CARD, target_card=SIX)
    path = tmp_path / "six.weights.h5"
    model.save_weights(path)
    full = load_model(path, card=SIX)
    cropped = load_model(path, card=SIX, crop=True)
    assert full.input_shape[-1] == 6 and full.output_shape[-1] == 3 and cropped.output_shape[1] == 30
    x = np.random.default_rng(1).normal(size=(2, 40, 40, 6)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(cropped(x)), np.asarray(full(x))[:, 5:-5, 5:-5], rtol=0, atol=1e-6)
    from morpheus_core.weights import ReleasedWeightsError

    with pytest.raises(ReleasedWeightsError, match="cannot load"):
        load_model(path)  # the released card's 4 bands do not fit
    with pytest.raises(ReleasedWeightsError, match="released weights take"):
        load_model(None, card=SIX)
