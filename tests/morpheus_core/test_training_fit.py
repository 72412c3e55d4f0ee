"""The seeded training loop (``morpheus_core.training.fit``): a tiny run from scratch."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core import CLASSES
from morpheus_core.training.data import split_train_test, synthetic_training_set
from morpheus_core.training.fit import evaluation_views, initial_model, make_batch, train
from morpheus_core.training.settings import LEARNING_RATE_PAPER, LEARNING_RATE_RELEASED, TrainSettings


@pytest.fixture(scope="module")
def tiny_set():
    objects = [o.training_object() for o in synthetic_training_set(240, seed=3, size=64)]
    objects = [o for o in objects if o is not None]
    test = split_train_test(len(objects), test_fraction=0.2, seed=0)
    return [o for o, t in zip(objects, test) if not t], [o for o, t in zip(objects, test) if t]


def test_hyper_parameters_documented_values():
    s = TrainSettings()
    assert (s.beta_1, s.beta_2, s.epsilon, s.learning_rate) == (0.9, 0.999, 1e-8, 9.929e-5)  # Table 2
    assert (s.lambda_w, s.lambda_d, s.crop, s.window, s.batch_size) == (1.0, 1.0, 60, 40, 200)
    assert LEARNING_RATE_RELEASED == pytest.approx(10 * LEARNING_RATE_PAPER, rel=1e-4)
    with pytest.raises(ValueError, match="learning_rate"):
        TrainSettings(learning_rate=0.0)
    with pytest.raises(ValueError, match="dropout"):
        TrainSettings(dropout=1.0)


def test_batches_are_seeded_standardised_and_aligned(tiny_set):
    train_objs, _ = tiny_set
    x1, y1 = make_batch(train_objs[:8], np.random.default_rng([1, 2]))
    x2, y2 = make_batch(train_objs[:8], np.random.default_rng([1, 2]))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape == (8, 40, 40, 4) and y1.shape == (8, 40, 40, 5)
    # Per-window standardisation: mean 0, std 1 over each 40x40x4 window, except that
    # the divisor is at least 1/80 (per_image_standardization), above the std of
    # sky-dominated windows in electrons/s, which then keep std < 1 (float32: 1e-4).
    np.testing.assert_allclose(x1.reshape(8, -1).mean(axis=1), 0.0, atol=1e-5)
    std = x1.reshape(8, -1).std(axis=1)
    assert std.max() == pytest.approx(1.0, abs=1e-4) and (std <= 1 + 1e-4).all()
    np.testing.assert_allclose(y1.sum(axis=-1), 1.0, atol=1e-6)
    # Source pixels (background target 0) are brighter than sky on average.
    h_band = x1[..., 0]
    assert h_band[y1[..., 4] == 0].mean() > h_band[y1[..., 4] == 1].mean() + 0.5
    xe, _ = evaluation_views(train_objs[:8], seed=0)
    assert not np.array_equal(xe, x1)


def test_initial_weights_are_seeded():
    a, b, c = (initial_model(None, seed=s) for s in (5, 5, 6))
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    kernel = a.get_layer("downconv-0_conv-0_conv").get_weights()[0]
    assert not np.array_equal(kernel, c.get_layer("downconv-0_conv-0_conv").get_weights()[0])
    # TF1 variance_scaling_initializer defaults: truncated normal, std 1/sqrt(fan_in).
    fan_in = 3 * 3 * 4
    assert kernel.std() == pytest.approx(1 / np.sqrt(fan_in), rel=0.25)


def test_short_training_from_scratch_lowers_loss_and_beats_chance(tiny_set):
    train_objs, test_objs = tiny_set
    # Small batches: enough steps (~190) for the batch-norm moving statistics (momentum
    # 0.99) that inference uses to follow the weights.
    settings = TrainSettings(epochs=8, batch_size=8, learning_rate=LEARNING_RATE_RELEASED, seed=0)
    rows = []
    result = train(initial_model(None, seed=0), train_objs, test_objs, settings, on_epoch=rows.append)
    h = result.history
    assert rows == h and [r["epoch"] for r in h] == list(range(9))
    # Mean training loss over the steps of the last epoch vs the first.
    assert h[-1]["loss"] < 0.8 * h[1]["loss"]
    # Held-out loss (inference mode) below that of the initial weights.
    assert min(r["test_loss"] for r in h[1:]) < h[0]["test_loss"] - 0.5
    # Chance: 1/5 per class. Balanced (mean per-class) accuracy of the best epoch.
    best = h[result.best_epoch]
    balanced = np.nanmean([best[f"test_accuracy_{c}"] for c in CLASSES])
    assert result.best_epoch > 0 and balanced > 0.35
    assert best["test_iou_0.5"] > 0.2
