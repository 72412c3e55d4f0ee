"""The training loss of paper section 3.3 (``morpheus_core.training.losses``).

Expected values are computed by hand or with plain float64 NumPy loops, independent of
the Keras-ops implementation under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from morpheus_core.training.losses import (
    MorpheusLoss,
    class_weights,
    dice_loss,
    morpheus_loss,
    weighted_cross_entropy,
)

# float64 inputs are computed in float64 by the backend: only rounding differences.
TOL64 = 1e-10


def _np(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _reference_weighted_ce(logits: np.ndarray, q: np.ndarray, *, per_image: bool, normalize: bool) -> float:
    """Eq. 5-9 with explicit loops over images and pixels."""
    b, n, m, c = q.shape
    groups = [list(range(b))] if not per_image else [[i] for i in range(b)]
    total = 0.0
    for group in groups:
        sums = np.zeros(c)
        npix = 0
        for i in group:
            for y in range(n):
                for x in range(m):
                    k = int(np.argmax(q[i, y, x]))
                    sums[k] += q[i, y, x].max()
                    npix += 1
        if normalize:
            sums /= npix
        w = np.array([1.0 / s if s > 0 else 0.0 for s in sums])
        for i in group:
            for y in range(n):
                for x in range(m):
                    z = logits[i, y, x]
                    log_p = z - (z.max() + math.log(np.exp(z - z.max()).sum()))
                    ce = -float((q[i, y, x] * log_p).sum())
                    total += w[int(np.argmax(q[i, y, x]))] * ce
    return total / (b * n * m)


def _reference_dice(b: np.ndarray, mask: np.ndarray) -> float:
    out = []
    for bi, mi in zip(b, mask):
        s = 1.0 / (1.0 + np.exp(-bi))
        out.append(1.0 - 2.0 * (s * mi).sum() / (s + mi).sum())
    return float(np.mean(out))


def _random_case(rng: np.random.Generator, shape=(3, 6, 5)) -> tuple[np.ndarray, np.ndarray]:
    logits = rng.normal(scale=2.0, size=shape + (5,))
    q = np.zeros(shape + (5,))
    source = rng.random(shape) < 0.4
    q[source, :4] = rng.dirichlet(np.ones(4) * 0.7, size=int(source.sum()))
    q[~source, 4] = 1.0
    return logits, q


def test_class_weights_eq7_by_hand():
    # 1 image of 2x2: three background pixels (max q = 1) and one pixel split
    # 0.6 spheroid / 0.4 disk. Eq. 7: w_spheroid = 1/0.6, w_background = 1/3,
    # disk, irregular and point source are nobody's dominant class: 0.
    q = np.zeros((1, 2, 2, 5))
    q[..., 4] = 1.0
    q[0, 1, 0] = [0.6, 0.4, 0.0, 0.0, 0.0]
    w = _np(class_weights(q, normalize=False))
    np.testing.assert_allclose(w, [[1 / 0.6, 0, 0, 0, 1 / 3]], rtol=0, atol=TOL64)
    # normalize=True (the released code): the bracket is a mean over the 4 pixels.
    np.testing.assert_allclose(_np(class_weights(q)), 4 * w, rtol=0, atol=TOL64)


def test_class_weights_per_image_and_per_batch():
    q = np.zeros((2, 2, 2, 5))
    q[..., 4] = 1.0
    q[0, 0, 0] = [0, 0, 0, 1, 0]  # image 0: one point-source pixel
    q[1] = 0.0
    q[1, ..., 1] = 0.5  # image 1: all pixels 0.5 disk / 0.5 irregular -> argmax disk
    q[1, ..., 2] = 0.5
    batch = _np(class_weights(q, normalize=False))
    np.testing.assert_allclose(batch, [[0, 1 / 2.0, 0, 1.0, 1 / 3.0]], rtol=0, atol=TOL64)
    per_image = _np(class_weights(q, per_image=True, normalize=False))
    np.testing.assert_allclose(per_image, [[0, 0, 0, 1.0, 1 / 3.0], [0, 1 / 2.0, 0, 0, 0]], rtol=0, atol=TOL64)


def test_uniform_weights_reduce_to_mean_cross_entropy(rng):
    # Every pixel's dominant class is background with q = 1: with the mean bracket
    # w_background = 1, so L^w is the plain mean of -log p_background.
    logits = rng.normal(size=(2, 4, 4, 5))
    q = np.zeros_like(logits)
    q[..., 4] = 1.0
    log_p = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    expected = float(-log_p[..., 4].mean())
    assert float(weighted_cross_entropy(logits, q)) == pytest.approx(expected, abs=TOL64)
    # Eq. 7 literally (sum bracket): w = 1/32, the loss is 32 times smaller.
    assert float(weighted_cross_entropy(logits, q, normalize=False)) == pytest.approx(expected / 32, abs=TOL64)


def test_single_class_targets(rng):
    logits = rng.normal(size=(1, 3, 3, 5))
    q = np.zeros_like(logits)
    q[..., 2] = 1.0  # all irregular
    expected = float(np.mean(np.log(np.exp(logits).sum(axis=-1)) - logits[..., 2]))
    assert float(weighted_cross_entropy(logits, q)) == pytest.approx(expected, abs=TOL64)


def test_perfect_and_worst_predictions():
    mask = np.zeros((2, 4, 4))
    mask[:, :2] = 1.0  # top half background
    q = np.zeros((2, 4, 4, 5))
    q[..., 4] = mask
    q[..., 1] = 1.0 - mask  # source pixels: disk
    onehot = q.copy()
    perfect = 30.0 * (2 * onehot - 1)  # +30 on the true class, -30 elsewhere
    # -log p_true = log(1 + 4 exp(-60)) ~ 3.5e-26 per pixel.
    assert float(weighted_cross_entropy(perfect, q)) == pytest.approx(0.0, abs=1e-12)
    # S(b) = sigmoid(+-30) = m within 1e-13: the Dice loss vanishes.
    assert float(dice_loss(perfect[..., 4], mask)) == pytest.approx(0.0, abs=1e-12)
    worst = -perfect
    # -log p_true = log(exp(-30) + 4 exp(30)) + 30 = 60 + log 4 (+ 1e-26) per pixel;
    # two classes (disk, background) each with weight 1 / (its pixel fraction 1/2).
    lw = float(weighted_cross_entropy(worst, q))
    assert lw == pytest.approx(2.0 * (60.0 + math.log(4.0)), rel=1e-12)
    # S(b) = 1 - m: no overlap, L^D = 1 - 2 * 16 * sigmoid(-30) / 32 ~ 1 - 9e-14.
    assert float(dice_loss(worst[..., 4], mask)) == pytest.approx(1.0, abs=1e-12)
    total = float(morpheus_loss(worst, q))
    assert total == pytest.approx(lw + 1.0, abs=1e-12)


def test_dice_on_known_masks():
    # b = 0 -> S(b) = 1/2 everywhere. Image 0: 4 of 16 pixels background:
    # 1 - 2 * (0.5 * 4) / (0.5 * 16 + 4) = 1 - 4/12. Image 1: 12 of 16:
    # 1 - 2 * 6 / (8 + 12) = 1 - 12/20. The loss is their mean.
    mask = np.zeros((2, 4, 4))
    mask[0, 0] = 1.0
    mask[1, 1:] = 1.0
    expected = 0.5 * ((1 - 4 / 12) + (1 - 12 / 20))
    assert float(dice_loss(np.zeros((2, 4, 4)), mask)) == pytest.approx(expected, abs=TOL64)


@pytest.mark.parametrize("per_image", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_weighted_cross_entropy_matches_loop_reference(rng, per_image, normalize):
    logits, q = _random_case(rng)
    expected = _reference_weighted_ce(logits, q, per_image=per_image, normalize=normalize)
    got = float(weighted_cross_entropy(logits, q, per_image=per_image, normalize=normalize))
    assert got == pytest.approx(expected, rel=1e-12)


def test_total_loss_is_weighted_sum_eq11(rng):
    logits, q = _random_case(rng)
    lw = _reference_weighted_ce(logits, q, per_image=False, normalize=True)
    ld = _reference_dice(logits[..., 4], q[..., 4])
    assert float(morpheus_loss(logits, q)) == pytest.approx(lw + ld, rel=1e-12)
    assert float(morpheus_loss(logits, q, lambda_w=0.5, lambda_d=2.0)) == pytest.approx(0.5 * lw + 2 * ld, rel=1e-12)


def test_keras_loss_wrapper_float32(rng):
    logits, q = _random_case(rng)
    expected = float(morpheus_loss(logits, q))
    got = float(MorpheusLoss()(q.astype(np.float32), logits.astype(np.float32)))
    # float32 arithmetic on values of order 10: relative 1e-5.
    assert got == pytest.approx(expected, rel=1e-5)
    assert MorpheusLoss.from_config(MorpheusLoss(per_image=True).get_config()).per_image


def test_gradient_reaches_logits(rng):
    import tensorflow as tf

    logits, q = _random_case(rng)
    x = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = morpheus_loss(x, q)
    grad = tape.gradient(loss, x).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).max() > 1e-3
    # Moving a logit along its gradient lowers the loss (a descent direction).
    assert float(morpheus_loss(logits - 1e-3 * grad, q)) < float(loss)
