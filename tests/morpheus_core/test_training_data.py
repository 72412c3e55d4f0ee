"""Votes to targets (section 3.1) and the synthetic training set (``morpheus_core.training.data``)."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core.profiles import gaussian_psf
from morpheus_core.training.data import (
    VOTE_CLASSES,
    TrainingObject,
    detection_segmap,
    draw_votes,
    pixel_targets,
    split_train_test,
    synthetic_training_set,
    vote_distribution,
)


def test_vote_classes_order():
    assert VOTE_CLASSES == ("spheroid", "disk", "irregular", "point_source", "unknown")


def test_unknown_votes_redistributed_or_object_removed():
    votes = np.array(
        [
            [2, 1, 0, 0, 1],  # unknown minor: its vote shared 2:1 -> q = (2/3, 1/3, 0, 0)
            [1, 0, 0, 0, 3],  # unknown primary: removed
            [0, 2, 0, 0, 2],  # tie with unknown: kept, q = disk
            [0, 0, 0, 0, 0],  # no votes: removed
            [1, 1, 1, 1, 0],
        ]
    )
    q, keep = vote_distribution(votes)
    np.testing.assert_array_equal(keep, [True, False, True, False, True])
    np.testing.assert_allclose(q[0], [2 / 3, 1 / 3, 0, 0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(q[2], [0, 1, 0, 0], rtol=0, atol=0)
    np.testing.assert_allclose(q[4], [0.25] * 4, rtol=0, atol=0)
    assert np.isnan(q[1]).all() and np.isnan(q[3]).all()
    # Redistributing proportionally keeps the ratios between the known classes.
    assert q[0, 0] / q[0, 1] == pytest.approx(2.0)


def test_vote_distribution_input_checks():
    with pytest.raises(ValueError, match="n_objects, 5"):
        vote_distribution(np.ones((3, 4)))
    with pytest.raises(ValueError, match=">= 0"):
        vote_distribution(np.array([[1, -1, 0, 0, 0]]))


def test_pixel_targets_inside_and_outside_the_segmentation_map():
    mask = np.zeros((5, 6), bool)
    mask[1:3, 2:5] = True
    q = np.array([0.1, 0.6, 0.3, 0.0])
    t = pixel_targets(mask, q)
    assert t.shape == (5, 6, 5) and t.dtype == np.float32
    np.testing.assert_allclose(t[mask], np.tile([0.1, 0.6, 0.3, 0.0, 0.0], (6, 1)), rtol=0, atol=1e-7)
    np.testing.assert_array_equal(t[~mask], np.tile([0, 0, 0, 0, 1.0], (24, 1)))
    np.testing.assert_allclose(t.sum(axis=-1), 1.0, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="distribution"):
        pixel_targets(mask, np.array([0.5, 0.6, 0, 0]))


def test_training_object_checks_shapes():
    with pytest.raises(ValueError, match="image must be"):
        TrainingObject("x", np.zeros((8, 8, 4), np.float32), np.zeros((8, 7), bool), np.ones(4) / 4)
    image = np.ones((8, 8, 4), np.float32)
    image[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        TrainingObject("x", image, np.zeros((8, 8), bool), np.ones(4) / 4)


def test_split_train_test_is_seeded():
    a = split_train_test(101, test_fraction=0.2, seed=4)
    assert a.sum() == 20
    np.testing.assert_array_equal(a, split_train_test(101, test_fraction=0.2, seed=4))
    assert not np.array_equal(a, split_train_test(101, test_fraction=0.2, seed=5))


def test_detection_segmap_finds_the_source_and_falls_back(rng):
    image = rng.normal(size=(64, 64))
    psf = gaussian_psf(3.0, 25)
    image[20:45, 18:43] += 400.0 * psf  # peak ~ 400 * 0.1 = 40 sigma
    mask = detection_segmap(image, 1.0, 3.0, x=30.0, y=32.0)
    assert mask[32, 30] and not mask[:5].any() and not mask[:, :5].any()
    assert 20 < mask.sum() < 400
    # Pure noise: no region at the centre -> a disk of radius FWHM (29 pixels).
    empty = detection_segmap(rng.normal(size=(64, 64)) * 1e-3, 1.0, 3.0, x=30.0, y=32.0)
    assert empty.sum() == 29 and empty[32, 30]


def test_draw_votes_follow_the_confusion_rows(rng):
    votes = np.array([draw_votes(rng, "disk") for _ in range(300)])
    assert votes.sum(axis=1).min() >= 3 and votes.sum(axis=1).max() <= 10
    frac = votes.sum(axis=0) / votes.sum()
    # Row "disk" = (0.10, 0.74, 0.11, 0.02, 0.03); ~2000 votes: +-0.05 is > 4 sigma.
    np.testing.assert_allclose(frac, [0.10, 0.74, 0.11, 0.02, 0.03], rtol=0, atol=0.05)


@pytest.fixture(scope="module")
def synthetic():
    return synthetic_training_set(24, seed=11, size=64)


def test_synthetic_set_is_seeded(synthetic):
    again = synthetic_training_set(3, seed=11, size=64)
    for a, b in zip(synthetic[:3], again):
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.segmap, b.segmap)
        np.testing.assert_array_equal(a.votes, b.votes)


def test_synthetic_objects_in_k15_format(synthetic):
    classes = {o.morph_class for o in synthetic}
    assert len(classes) >= 3
    not_one_hot = 0
    for o in synthetic:
        assert o.images.shape == (4, 64, 64) and o.images.dtype == np.float32
        assert np.isfinite(o.images).all() and np.abs(o.images).max() > 0
        cy, cx = round(o.truth["y"]), round(o.truth["x"])
        assert o.segmap[cy, cx] == 1 and set(np.unique(o.segmap)) <= {0, 1}
        assert o.segmap.mean() <= 0.5  # sky is left around the object (max_segmap_fraction)
        assert 3 <= o.votes.sum() <= 10
        not_one_hot += np.count_nonzero(o.votes[:4]) > 1
        obj = o.training_object()
        if obj is not None:
            assert obj.image.shape == (64, 64, 4)
            np.testing.assert_allclose(obj.target.sum(axis=-1), 1.0, rtol=0, atol=1e-6)
    assert not_one_hot >= 5  # labels are distributions, not only one-hot
