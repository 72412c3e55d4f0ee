"""Windows: moments from summed-area tables, standardisation."""

from __future__ import annotations

import numpy as np

from morpheus_core.windows import cut_windows, standardize_windows, window_moments


def test_window_moments_equal_direct_float64_moments(rng):
    img = rng.normal(size=(70, 64, 4)) * 0.02
    img[20:30, 20:40] += 500.0  # a bright, nearly flat patch: large mean, small spread
    img = img.astype(np.float32)
    ys, xs = rng.integers(0, 31, 200), rng.integers(0, 25, 200)
    windows = cut_windows(img, ys, xs, 40).reshape(200, -1).astype(np.float64)
    mean, var = window_moments(img, ys, xs, 40)
    # Guaranteed to MOMENTS_RTOL (1e-11) of the variance and of the std for the mean,
    # also next to a 500 e-/s patch with 0.02 noise, where plain summed-area tables
    # lose 1e-8 (those windows are recomputed); 1e-10 leaves room for NumPy's rounding.
    std = windows.std(1)
    assert (np.abs(mean - windows.mean(1)) <= 1e-10 * std).all()
    np.testing.assert_allclose(var, windows.var(1), rtol=1e-10, atol=0)


def test_standardize_with_moments_equals_standardize(rng):
    img = (rng.normal(size=(60, 90, 4)) * 0.01 + 0.03).astype(np.float32)
    img[10:14, 50:53] += 40.0
    ys, xs = rng.integers(0, 21, 300), rng.integers(0, 51, 300)
    expected = standardize_windows(cut_windows(img, ys, xs, 40))
    got = standardize_windows(cut_windows(img, ys, xs, 40), window_moments(img, ys, xs, 40))
    # Same float32 arithmetic; standardize_windows takes the variance of float32
    # centred values, window_moments the exact one: the float32 scale may differ by
    # one rounding step, i.e. ~1e-7 relative.
    np.testing.assert_allclose(got, expected, rtol=2.5e-7, atol=1e-7)
