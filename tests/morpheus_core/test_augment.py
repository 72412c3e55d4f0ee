"""Augmentation of paper section 3.2 (``morpheus_core.training.augment``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from morpheus_core.training.augment import (
    Augmentation,
    augment,
    augmentation_coordinates,
    draw_augmentation,
)

# Large enough that a 60x60 centre crop rotated by any angle stays inside
# (60 * sqrt(2) = 84.9): no mirrored pixels.
SIZE = 90


def _coordinate_image(h: int = SIZE, w: int = SIZE) -> np.ndarray:
    """Bands holding each pixel's own (y, x): bilinear interpolation is exact on them."""
    yy, xx = np.mgrid[:h, :w].astype(np.float64)
    return np.stack([yy, xx], axis=-1)


def test_output_shapes_and_dtype(rng):
    image = rng.normal(size=(84, 84, 4))
    target = rng.random((84, 84, 5))
    for _ in range(5):
        out, tgt = augment(image, target, draw_augmentation(rng))
        assert out.shape == (40, 40, 4) and tgt.shape == (40, 40, 5)
        assert out.dtype == np.float32 and tgt.dtype == np.float32
    out, tgt = augment(image[..., 0], None, Augmentation(), crop=70, window=24)
    assert out.shape == (24, 24) and tgt is None


def test_draw_augmentation_covers_the_parameter_space(rng):
    draws = [draw_augmentation(rng) for _ in range(400)]
    angles = np.array([d.angle for d in draws])
    assert angles.min() >= 0 and angles.max() < 2 * math.pi
    assert angles.min() < 0.2 and angles.max() > 2 * math.pi - 0.2
    # 400 fair coin flips: 200 +- 10 (one sigma), accept +-50.
    assert 150 < sum(d.flip_lr for d in draws) < 250 and 150 < sum(d.flip_ud for d in draws) < 250
    offsets = np.array([d.offset for d in draws])
    assert offsets.min() == 0 and offsets.max() == 20  # all of [0, 60 - 40]


def test_identity_is_a_centre_crop_then_window(rng):
    image = rng.normal(size=(84, 80, 2))
    out, _ = augment(image, None, Augmentation(offset=(3, 17)))
    # centre crop of 60: rows 12..71, cols 10..69; then the window at (3, 17).
    np.testing.assert_array_equal(out, image[15:55, 27:67].astype(np.float32))


def test_quarter_turn_and_flips_are_exact(rng):
    image = rng.normal(size=(60, 60, 3))
    kw = {"crop": 60, "window": 60}
    # +90 degrees counter-clockwise with rows going up (FITS display): np.rot90 by -1.
    out, _ = augment(image, None, Augmentation(angle=math.pi / 2), **kw)
    np.testing.assert_allclose(out, np.rot90(image, k=-1), rtol=0, atol=1e-5)
    out, _ = augment(image, None, Augmentation(flip_lr=True), **kw)
    np.testing.assert_array_equal(out, image[:, ::-1].astype(np.float32))
    out, _ = augment(image, None, Augmentation(flip_ud=True), **kw)
    np.testing.assert_array_equal(out, image[::-1].astype(np.float32))
    # The flips act after the rotation.
    out, _ = augment(image, None, Augmentation(angle=math.pi / 2, flip_lr=True), **kw)
    np.testing.assert_allclose(out, np.rot90(image, k=-1)[:, ::-1], rtol=0, atol=1e-5)


def test_marked_pixel_lands_in_the_same_place(rng):
    # A marked 2x2 block near the centre (a rotated grid can step over a single
    # pixel): the same output pixels must carry the mark in image and target.
    for _ in range(20):
        y0, x0 = rng.integers(40, 48, size=2)
        image = rng.normal(size=(SIZE, SIZE, 4)) * 0.01
        image[y0 : y0 + 2, x0 : x0 + 2, 2] = 100.0
        target = np.zeros((SIZE, SIZE, 5), np.float32)
        target[..., 4] = 1.0
        target[y0 : y0 + 2, x0 : x0 + 2] = [0.2, 0.8, 0, 0, 0]
        aug = draw_augmentation(rng)
        aug = Augmentation(aug.angle, aug.flip_lr, aug.flip_ud, (10, 10))  # keep it in view
        out, tgt = augment(image, target, aug, image_order=0)
        in_image = np.argwhere(out[..., 2] == 100.0)
        in_target = np.argwhere(tgt[..., 1] == np.float32(0.8))
        assert len(in_target) >= 1
        np.testing.assert_array_equal(in_image, in_target)
        # Targets stay distributions and background stays 0/1.
        np.testing.assert_allclose(tgt.sum(axis=-1), 1.0, rtol=0, atol=1e-6)
        assert set(np.unique(tgt[..., 4])) <= {0.0, 1.0}


def test_every_output_pixel_aligned_between_image_and_target(rng):
    # Image bands = input coordinates (bilinear, exact on a linear function); target =
    # a unique label per input pixel (nearest neighbour). Each output pixel's label
    # must be the input pixel nearest to the interpolated coordinates.
    coords_image = _coordinate_image()
    labels = np.arange(SIZE * SIZE, dtype=np.float64).reshape(SIZE, SIZE, 1)
    for _ in range(10):
        aug = draw_augmentation(rng)
        out, tgt = augment(coords_image, labels, aug)
        expected = augmentation_coordinates((SIZE, SIZE), aug)
        # float32 output of values < 90: 1e-5 absolute.
        np.testing.assert_allclose(out[..., 0], expected[0], rtol=0, atol=1e-4)
        np.testing.assert_allclose(out[..., 1], expected[1], rtol=0, atol=1e-4)
        iy, ix = np.divmod(tgt[..., 0].astype(np.int64), SIZE)
        assert np.abs(iy - expected[0]).max() <= 0.5 + 1e-9
        assert np.abs(ix - expected[1]).max() <= 0.5 + 1e-9


def test_rotation_is_about_the_centre(rng):
    # The centre crop's centre stays at the image centre for any angle.
    for angle in rng.uniform(0, 2 * math.pi, size=5):
        c = augmentation_coordinates((SIZE, SIZE), Augmentation(angle=angle), crop=60, window=60)
        centre = c[:, 29:31, 29:31].mean(axis=(1, 2))
        np.testing.assert_allclose(centre, [(SIZE - 1) / 2] * 2, rtol=0, atol=1e-9)
        # Rigid: neighbouring output pixels are one input pixel apart.
        step = np.hypot(*(c[:, 0, 1] - c[:, 0, 0]))
        assert step == pytest.approx(1.0, abs=1e-12)


def test_input_checks(rng):
    with pytest.raises(ValueError, match="at least 60x60"):
        augment(rng.normal(size=(50, 80, 4)), None, Augmentation())
    with pytest.raises(ValueError, match="same \\(H, W\\)"):
        augment(rng.normal(size=(64, 64, 4)), np.zeros((60, 64, 5)), Augmentation())
    with pytest.raises(ValueError, match="offset"):
        augment(rng.normal(size=(64, 64, 4)), None, Augmentation(offset=(21, 0)))
    with pytest.raises(ValueError, match="window <= crop"):
        draw_augmentation(rng, crop=30, window=40)
