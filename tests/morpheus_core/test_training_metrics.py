"""Pixel accuracy (Eq. 14) and background IoU (Eq. 15), ``morpheus_core.training.metrics``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from morpheus_core.training.metrics import IOU_THRESHOLDS, background_iou, evaluate, pixel_accuracy


def _onehot(classes: list[int], n: int = 5) -> np.ndarray:
    return np.eye(n)[classes]


def test_pixel_accuracy_by_hand():
    # Targets: 3 background, 2 disk, 1 spheroid. Outputs right on 2 background,
    # 1 disk and the spheroid: overall 4/6; background 2/3, disk 1/2, spheroid 1.
    q = _onehot([4, 4, 4, 1, 1, 0])
    p = _onehot([4, 4, 0, 1, 3, 0]) * 0.6 + 0.1  # argmax is the one-hot class
    acc = pixel_accuracy(p, q)
    assert acc["all"] == pytest.approx(4 / 6)
    assert acc["background"] == pytest.approx(2 / 3)
    assert acc["disk"] == pytest.approx(1 / 2)
    assert acc["spheroid"] == 1.0
    assert math.isnan(acc["irregular"]) and math.isnan(acc["point_source"])


def test_pixel_accuracy_uses_dominant_class_of_distributions():
    q = np.array([[0.5, 0.3, 0.2, 0.0, 0.0]])  # dominant target: spheroid
    assert pixel_accuracy(np.array([[0.2, 0.3, 0.1, 0.1, 0.3]]), q)["all"] == 0.0
    assert pixel_accuracy(np.array([[0.4, 0.3, 0.1, 0.1, 0.1]]), q)["all"] == 1.0


def test_pixel_accuracy_checks_shapes():
    with pytest.raises(ValueError, match="same shape"):
        pixel_accuracy(np.zeros((3, 5)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="classes"):
        pixel_accuracy(np.zeros((3, 4)), np.zeros((3, 4)))


def test_background_iou_by_hand():
    qb = np.array([1, 1, 1, 0, 0, 0], float)
    pb = np.array([0.95, 0.75, 0.55, 0.65, 0.1, 0.0])
    # B = 0.5: p > B = {0,1,2,3}, q > B = {0,1,2}: 3 / 4. B = 0.6: p = {0,1,3}:
    # 2 / 4. B = 0.7: {0,1}: 2/3. B = 0.8 and 0.9: {0}: 1/3.
    np.testing.assert_allclose(background_iou(pb, qb), [3 / 4, 2 / 4, 2 / 3, 1 / 3, 1 / 3], rtol=0, atol=1e-15)


def test_background_iou_threshold_is_strict_and_empty_union_is_nan():
    # p_b exactly at the threshold is not above it (Eq. 15: p_b(>B)).
    assert background_iou(np.array([0.5, 1.0]), np.array([1.0, 1.0]), (0.5,))[0] == 0.5
    assert math.isnan(background_iou(np.zeros(4), np.zeros(4), (0.5,))[0])


def test_evaluate_flat_names():
    q = _onehot([4, 4, 1, 0])
    out = evaluate(q * 0.9 + 0.02, q)
    assert out["accuracy"] == 1.0 and out["accuracy_disk"] == 1.0
    assert [k for k in out if k.startswith("iou_")] == [f"iou_{b:g}" for b in IOU_THRESHOLDS]
    assert out["iou_0.9"] == 1.0  # 0.92 > 0.9 on both background pixels, 0.02 elsewhere
