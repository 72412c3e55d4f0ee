"""Self-checks of the float64 NumPy reference of the Morpheus network."""

from __future__ import annotations

import numpy as np
import pytest

from .numpy_reference import (
    CLASSES,
    bicubic_matrix,
    forward,
    load_checkpoint_arrays,
    standardize,
)

tf = pytest.importorskip("tensorflow")

TRAINABLE = ("kernel", "bias", "gamma", "beta")


@pytest.fixture(scope="module")
def weights() -> dict[str, np.ndarray]:
    return load_checkpoint_arrays()


def _tf_forward(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The network built from plain TF1-style ops (float32), for cross-checking."""
    w = {k: tf.constant(v, tf.float32) for k, v in weights.items()}

    def op(scope, h):
        bn = scope + "/batch_normalization/"
        h, _, _ = tf.compat.v1.nn.fused_batch_norm(
            h,
            w[bn + "gamma"],
            w[bn + "beta"],
            w[bn + "moving_mean"],
            w[bn + "moving_variance"],
            epsilon=1e-3,
            is_training=False,
        )
        h = tf.nn.bias_add(tf.nn.conv2d(h, w[scope + "/conv/kernel"], 1, "SAME"), w[scope + "/conv/bias"])
        return tf.nn.relu(h)

    h, skips = tf.constant(x, tf.float32), []
    for i in range(3):
        for j in range(4):
            h = op(f"downconv-{i}/conv-{j}", h)
        skips.append(h)
        h = tf.nn.max_pool2d(h, 2, 2, "VALID")
    h = op("intermediate-conv", h)
    for i in range(3):
        n = 2 * h.shape[1]
        up = tf.compat.v1.image.resize_bicubic(h, (n, n), align_corners=True)
        h = tf.concat([up, skips[-(i + 1)]], axis=-1)
        for j in range(2):
            h = op(f"upconv-{i}/conv-{j}", h)
    logits = tf.nn.bias_add(tf.nn.conv2d(h, w["final_conv/conv/kernel"], 1, "SAME"), w["final_conv/conv/bias"])
    return tf.nn.softmax(logits).numpy()


@pytest.mark.parametrize("n_in", [5, 10, 20])
def test_bicubic_matrix_matches_tf_legacy_resize(n_in: int) -> None:
    rng = np.random.default_rng(n_in)
    x = rng.standard_normal((2, n_in, n_in, 3)).astype(np.float32)
    expected = tf.compat.v1.image.resize_bicubic(x, (2 * n_in, 2 * n_in), align_corners=True).numpy()
    a = bicubic_matrix(n_in, 2 * n_in)
    got = np.einsum("oi,bijc,pj->bopc", a, x.astype(np.float64), a)
    assert np.abs(got - expected).max() < 1e-6


def test_checkpoint_tensor_and_parameter_counts(weights: dict[str, np.ndarray]) -> None:
    assert len(weights) == 116
    n_trainable = sum(v.size for k, v in weights.items() if k.rsplit("/", 1)[-1] in TRAINABLE)
    assert n_trainable == 75_421
    assert weights["downconv-0/conv-0/conv/kernel"].shape == (3, 3, 4, 8)
    assert weights["final_conv/conv/kernel"].shape == (3, 3, 32, 5)


def test_noise_window_is_mostly_background(weights: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    x = standardize(rng.standard_normal((40, 40, 4)))[None]
    probs = forward(weights, x)
    assert probs.shape == (1, 40, 40, 5) and probs.dtype == np.float64
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-12)
    top = probs[0, 5:35, 5:35].argmax(axis=-1)
    assert (top == CLASSES.index("background")).mean() > 0.5


def test_bright_point_source_is_point_source(weights: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:40, :40]
    psf = 100.0 * np.exp(-((yy - 20) ** 2 + (xx - 20) ** 2) / (2 * 1.5**2))
    window = rng.standard_normal((40, 40, 4)) + psf[..., None]
    probs = forward(weights, standardize(window)[None])[0]
    assert probs[20, 20].argmax() == CLASSES.index("point_source")


def test_forward_matches_tf_ops_graph(weights: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(2)
    x = standardize(rng.standard_normal((8, 40, 40, 4)))
    ref = forward(weights, x)
    got = _tf_forward(weights, x)
    assert np.abs(ref - got).max() < 1e-4


def test_standardize_matches_tf() -> None:
    rng = np.random.default_rng(3)
    window = rng.gamma(2.0, 3.0, size=(40, 40, 4))
    expected = tf.image.per_image_standardization(window.astype(np.float32)).numpy()
    np.testing.assert_allclose(standardize(window), expected, atol=1e-5)
    np.testing.assert_array_equal(standardize(np.full((40, 40, 4), 7.0)), 0.0)
