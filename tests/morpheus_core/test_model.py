"""The Keras port of the released Morpheus network."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core.bicubic import bicubic_matrix
from morpheus_core.model import build_model
from morpheus_core.windows import standardize_windows
from tests.morpheus_core import numpy_reference as ref


def test_parameter_count_matches_released_model():
    model = build_model()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == 75_421
    assert len(model.weights) == 116  # 75,421 trainable + BN moving statistics


@pytest.mark.parametrize("n_in,n_out", [(5, 10), (10, 20), (20, 40)])
def test_bicubic_matrix_matches_tensorflow_legacy_resize(n_in, n_out, rng):
    import tensorflow as tf

    x = rng.normal(size=(2, n_in, n_in, 3)).astype(np.float32)
    expected = tf.compat.v1.image.resize_bicubic(x, (n_out, n_out), align_corners=True).numpy()
    a = bicubic_matrix(n_in, n_out).astype(np.float64)
    got = np.einsum("oh,pw,bhwc->bopc", a, a, x.astype(np.float64))
    # float32 table weights; TF accumulates in float32: agreement to ~1e-6 of |x|~3.
    assert np.abs(got - expected).max() < 5e-6


def _random_windows(rng, n=6):
    raw = rng.normal(size=(n, 40, 40, 4)).astype(np.float32)
    raw[:, 12:20, 18:30, :] += rng.uniform(2, 20, size=(n, 1, 1, 4)).astype(np.float32)
    return standardize_windows(raw)


def test_port_equals_independent_float64_numpy_forward(released_full, rng):
    windows = _random_windows(rng)
    expected = ref.forward(ref.load_checkpoint_arrays(), windows.astype(np.float64))
    got = np.asarray(released_full(windows, training=False))
    # float32 network against float64 reference: observed ~1e-6; 1e-4 is the port bar.
    assert np.abs(got - expected).max() < 1e-4


def test_cropped_network_equals_full_network_on_counted_pixels(released_full, released_cropped, rng):
    windows = _random_windows(rng, n=16)
    full = np.asarray(released_full(windows, training=False))[:, 5:35, 5:35]
    cropped = np.asarray(released_cropped(windows, training=False))
    assert cropped.shape == (16, 30, 30, 5)
    # Same arithmetic on the same inputs: identical up to kernel-choice rounding.
    assert np.abs(full - cropped).max() < 1e-6


def test_noise_window_is_background(released_full, rng):
    window = standardize_windows(rng.normal(size=(1, 40, 40, 4)).astype(np.float32))
    probs = np.asarray(released_full(window, training=False))[0, 5:35, 5:35]
    top = probs.argmax(axis=-1)
    assert (top == 4).mean() > 0.95  # paper 7.2.1: noise gives background


def test_point_source_is_point_source_at_centre(released_full, rng):
    yy, xx = np.mgrid[:40, :40]
    psf = np.exp(-((yy - 19.5) ** 2 + (xx - 19.5) ** 2) / (2 * 1.5**2))
    raw = rng.normal(size=(1, 40, 40, 4)) + 100 * psf[None, :, :, None]
    probs = np.asarray(released_full(standardize_windows(raw.astype(np.float32)), training=False))[0]
    centre = probs[18:22, 18:22].mean(axis=(0, 1))
    assert centre.argmax() == 3, centre  # point_source (paper 7.2.2)
