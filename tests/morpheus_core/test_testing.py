"""The sky stand-in network (morpheus_core.testing.SkyStandInClassifier):
batch-independent, and through the engine a rank-vote background of exactly 1 on sky
and 0 on source cores, with morphology varying between sources."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core import BANDS, BORDER, CLASSES, WINDOW
from morpheus_core.engine import classify_image
from morpheus_core.simulate import render_sky
from morpheus_core.stats import finalize
from morpheus_core.testing import SkyStandInClassifier
from morpheus_core.windows import cut_windows, standardize_windows

# A small sky with a few bright, well separated sources (seeded).
SHAPE = (200, 200)
SKY_KW = dict(seed=11, n_galaxies=6, n_stars=2, mag_range=(20.0, 23.5), min_separation_px=40.0, margin_px=30.0)


@pytest.fixture(scope="module")
def sky():
    return render_sky(SHAPE, **SKY_KW)


@pytest.fixture(scope="module")
def classified(sky):
    # Stride 2 keeps the test short; the rank vote means the same at any stride.
    return finalize(classify_image(sky.images, SkyStandInClassifier(), stride=2))


def _windows(sky, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hwc = np.ascontiguousarray(np.moveaxis(sky.images, 0, -1))
    ys = rng.integers(0, SHAPE[0] - WINDOW + 1, n)
    xs = rng.integers(0, SHAPE[1] - WINDOW + 1, n)
    return standardize_windows(cut_windows(hwc, ys, xs, WINDOW))


def test_protocol_shapes_and_probabilities(sky):
    clf = SkyStandInClassifier()
    assert (clf.window, clf.border, clf.n_classes) == (WINDOW, BORDER, len(CLASSES))
    probs = clf(_windows(sky, 5))
    inner = WINDOW - 2 * BORDER
    assert probs.shape == (5, inner, inner, len(CLASSES)) and probs.dtype == np.float32
    assert np.all(np.isfinite(probs)) and np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-6)  # float32 softmax rounding
    assert clf.calls == 1


def test_same_window_bit_identical_in_any_batch(sky):
    clf = SkyStandInClassifier()
    windows = _windows(sky, 97)
    whole = clf(windows)
    order = np.random.default_rng(1).permutation(len(windows))
    shuffled = clf(windows[order])
    assert np.array_equal(shuffled, whole[order])
    for size in (1, 2, 7, 33):
        for start in range(0, len(windows), size):
            part = clf(windows[start : start + size])
            assert np.array_equal(part, whole[start : start + size]), (size, start)
    # Also inside a batch of other content (zeros, a flat window) around it.
    padded = np.concatenate([np.zeros_like(windows[:3]), windows[40:41], windows[::-1][:5]])
    assert np.array_equal(clf(padded)[3], whole[40])


def test_rank_vote_background_is_one_on_sky_and_zero_on_source_cores(sky, classified):
    bg, n = classified.rank[-1], classified.n
    counted = n > 0
    # Sky: counted pixels where the noiseless scene (same seed, same sources) holds
    # less than 0.1 sigma of the band-sum noise within 3 px.
    model = render_sky(SHAPE, **SKY_KW, noise_sigma=0.0).images.sum(axis=0)
    noise = float(np.sqrt((sky.noise_sigma**2).sum()))
    from scipy import ndimage as ndi

    sky_px = counted & (ndi.maximum_filter(model, size=7) < 0.1 * noise)
    assert sky_px.sum() > 0.3 * counted.sum()
    assert np.all(bg[sky_px] == 1.0)
    # Cores: the centre pixel and its 4 neighbours of every bright true source.
    truth = sky.truth[sky.truth["snr_H"] > 30]
    assert len(truth) >= 6
    for x, y in zip(np.round(truth["x"]).astype(int), np.round(truth["y"]).astype(int)):
        for dy, dx in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
            assert counted[y + dy, x + dx]
            assert bg[y + dy, x + dx] == 0.0, (x, y, dy, dx)


def test_morphology_varies_between_sources(sky, classified):
    truth = sky.truth
    x, y = np.round(truth["x"]).astype(int), np.round(truth["y"]).astype(int)
    top = classified.rank[:-1, y, x].argmax(axis=0)  # each source's top class at its centre
    assert len(set(top.tolist())) >= 2
    # Spheroids (red) and point sources (blue on average) do not all share one class.
    assert set(top[truth["morph_class"] == "spheroid"]) != set(top[truth["morph_class"] != "spheroid"])


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="reach"):
        SkyStandInClassifier(reach=5)
    with pytest.raises(ValueError, match="smooth"):
        SkyStandInClassifier(smooth=4)
    with pytest.raises(ValueError, match="n_bands"):
        SkyStandInClassifier(n_bands=1)
    with pytest.raises(ValueError, match="windows must be"):
        SkyStandInClassifier()(np.zeros((2, WINDOW, WINDOW, len(BANDS) + 1), np.float32))
