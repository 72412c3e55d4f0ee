"""Running moments, the exact parallel merge and finalisation."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from morpheus_core.stats import WindowStats, finalize, stats_from_sums


def _stats_of(values: list[list[np.ndarray]]) -> WindowStats:
    """Statistics of explicit per-pixel samples via the sums path."""
    h, w = len(values), len(values[0])
    c = values[0][0].shape[1] if values[0][0].size else 5
    s1 = np.zeros((c, h, w))
    s2 = np.zeros((c, h, w))
    votes = np.zeros((c, h, w))
    for y in range(h):
        for x in range(w):
            v = values[y][x].astype(np.float64)
            if v.size:
                s1[:, y, x] = v.sum(0)
                s2[:, y, x] = (v * v).sum(0)
                votes[:, y, x] = np.bincount(values[y][x].argmax(1), minlength=c)
    return stats_from_sums(s1, s2, votes)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 40), st.integers(0, 40))
def test_merge_equals_statistics_of_the_union(seed, na, nb):
    rng = np.random.default_rng(seed)
    a = [[rng.dirichlet(np.ones(5), size=na).astype(np.float32)]]
    b = [[rng.dirichlet(np.ones(5), size=nb).astype(np.float32)]]
    merged = _stats_of(a).merge_(_stats_of(b))
    union = np.concatenate([a[0][0], b[0][0]]).astype(np.float64)
    assert merged.n[0, 0] == na + nb
    if na + nb:
        # float64 two-pass reference; sums of <= 80 values in [0, 1]: 1e-12 is ample.
        np.testing.assert_allclose(merged.mean[:, 0, 0], union.mean(0), rtol=0, atol=1e-12)
        m2 = ((union - union.mean(0)) ** 2).sum(0)
        np.testing.assert_allclose(merged.m2[:, 0, 0], m2, rtol=0, atol=1e-12)


def test_merge_into_a_region_of_a_larger_frame():
    rng = np.random.default_rng(3)
    full = WindowStats.zeros((6, 7))
    part = _stats_of([[rng.dirichlet(np.ones(5), size=3).astype(np.float32) for _ in range(3)] for _ in range(2)])
    full[1:3, 2:5].merge_(part)
    assert full.n.sum() == 18 and (full.n[1:3, 2:5] == 3).all()
    np.testing.assert_array_equal(full.mean[:, 1:3, 2:5], part.mean)


def test_finalize_normalises_and_zeroes_uncounted_pixels():
    rng = np.random.default_rng(4)
    samples = [[rng.dirichlet(np.ones(5), size=k).astype(np.float32) for k in (0, 4, 9)]]
    result = finalize(_stats_of(samples))
    assert result.n.tolist() == [[0, 4, 9]]
    np.testing.assert_allclose(result.mean.sum(0)[0, 1:], 1.0, atol=1e-6)
    np.testing.assert_allclose(result.rank.sum(0)[0, 1:], 1.0, atol=1e-6)
    assert (result.mean[:, 0, 0] == 0).all() and (result.variance[:, 0, 0] == 0).all()
    assert (result.rank[:, 0, 0] == 0).all()
    v = samples[0][2].astype(np.float64)
    np.testing.assert_allclose(result.variance[:, 0, 2], v.var(0), rtol=1e-5, atol=1e-9)
    images = result.images()
    assert len(images) == 16 and images["disk_var"].shape == (1, 3)
