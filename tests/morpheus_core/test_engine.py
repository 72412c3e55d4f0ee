"""The unit-stride statistics engine: exactness, counts, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morpheus_core.classifier import KerasWindowClassifier
from morpheus_core.engine import classify_image
from morpheus_core.stats import finalize
from morpheus_core.testing import StandInClassifier
from morpheus_core.tiling import assemble, plan_tiles
from morpheus_core.windows import standardize_windows


def _scene(rng, h, w, bands=4):
    img = rng.normal(size=(bands, h, w)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(max(1, h * w // 1500)):
        y, x, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 4)
        img += (rng.uniform(5, 50, size=(bands, 1, 1)) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))).astype(
            np.float32
        )
    return img


def _brute_force(image, clf, stride=1, valid=None):
    """Float64 two-pass reference: collect every counted value per pixel."""
    n_win, b = clf.window, clf.border
    _, h, w = image.shape
    samples = [[[] for _ in range(w)] for _ in range(h)]
    hwc = np.moveaxis(image, 0, -1)
    for y in range(0, h - n_win + 1, stride):
        for x in range(0, w - n_win + 1, stride):
            if valid is not None and not valid[y : y + n_win, x : x + n_win].all():
                continue
            out = clf(standardize_windows(hwc[None, y : y + n_win, x : x + n_win].copy()))[0]
            for dy in range(out.shape[0]):
                for dx in range(out.shape[1]):
                    samples[y + b + dy][x + b + dx].append(out[dy, dx])
    c = clf.n_classes
    n = np.zeros((h, w), int)
    mean = np.zeros((c, h, w))
    var = np.zeros((c, h, w))
    votes = np.zeros((c, h, w), int)
    for y in range(h):
        for x in range(w):
            if samples[y][x]:
                v = np.array(samples[y][x], dtype=np.float64)
                n[y, x] = len(v)
                mean[:, y, x] = v.mean(0)
                var[:, y, x] = v.var(0)
                votes[:, y, x] = np.bincount(v.argmax(1), minlength=c)
    return n, mean, var, votes


def test_counts_and_votes_at_unit_stride(standin, rng):
    img = _scene(rng, 80, 91)
    stats = classify_image(img, standin)

    def per_axis(size):  # windows along one axis whose inner 30 pixels cover each pixel
        anchors = np.arange(size - 40 + 1)
        return np.array([((anchors + 5 <= p) & (p <= anchors + 34)).sum() for p in range(size)])

    np.testing.assert_array_equal(stats.n, np.outer(per_axis(80), per_axis(91)))
    assert stats.n.max() == 900 and (stats.n[34:-35, 34:-35] == 900).all()
    for edge in (stats.n[:5], stats.n[-5:], stats.n[:, :5], stats.n[:, -5:]):
        assert (edge == 0).all()
    np.testing.assert_array_equal(stats.votes.sum(0), stats.n)


def test_moments_match_float64_two_pass_reference():
    clf = StandInClassifier(window=16, border=3)
    img = _scene(np.random.default_rng(5), 30, 37)
    stats = classify_image(img, clf, batch_size=37)
    n, mean, var, votes = _brute_force(img, clf)
    np.testing.assert_array_equal(stats.n, n)
    np.testing.assert_array_equal(stats.votes, votes)
    # Sums of <= 100 float32 values in [0, 1] in float64: agreement to ~1e-14.
    np.testing.assert_allclose(stats.mean, mean, rtol=0, atol=1e-12)
    var_engine = np.divide(stats.m2, stats.n, out=np.zeros_like(stats.m2), where=stats.n > 0)
    np.testing.assert_allclose(var_engine, var, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    h=st.integers(10, 60),
    w=st.integers(10, 60),
    tile_y=st.integers(3, 40),
    tile_x=st.integers(3, 40),
    stride=st.integers(1, 3),
    batch=st.integers(1, 300),
)
def test_tiled_equals_whole_for_any_tiling(seed, h, w, tile_y, tile_x, stride, batch):
    clf = StandInClassifier(window=16, border=3)
    img = _scene(np.random.default_rng(seed), h, w)
    whole = classify_image(img, clf, stride=stride)
    parts = [
        (
            t,
            classify_image(
                img[:, t.read_slices[0], t.read_slices[1]],
                clf,
                stride=stride,
                anchor_start=t.anchor_start,
                anchor_stop=t.anchor_stop,
                batch_size=batch,
            ),
        )
        for t in plan_tiles((h, w), (tile_y, tile_x), window=16, stride=stride)
    ]
    tiled = assemble((h, w), parts)
    np.testing.assert_array_equal(tiled.n, whole.n)
    np.testing.assert_array_equal(tiled.votes, whole.votes)
    # Different groupings of the same float64 sums: rounding only (~1e-15).
    np.testing.assert_allclose(tiled.mean, whole.mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tiled.m2, whole.m2, rtol=0, atol=1e-10)


def test_odd_image_whole_equals_tiles_with_released_model(released_classifier):
    img = _scene(np.random.default_rng(11), 97, 131)
    whole = classify_image(img, released_classifier, batch_size=512)
    parts = [
        (
            t,
            classify_image(
                img[:, t.read_slices[0], t.read_slices[1]],
                released_classifier,
                anchor_start=t.anchor_start,
                anchor_stop=t.anchor_stop,
                batch_size=200,
            ),
        )
        for t in plan_tiles((97, 131), (40, 50))
    ]
    assert len(parts) >= 9
    tiled = assemble((97, 131), parts)
    np.testing.assert_array_equal(tiled.n, whole.n)
    a, b = finalize(whole), finalize(tiled)
    # Batch composition may change the network's float32 rounding: 1e-5.
    np.testing.assert_allclose(a.mean, b.mean, rtol=0, atol=1e-5)
    np.testing.assert_allclose(a.variance, b.variance, rtol=0, atol=1e-5)
    top2 = np.sort(a.mean, axis=0)[-2:]
    untied = (top2[1] - top2[0]) > 1e-5
    np.testing.assert_array_equal(tiled.votes[:, untied], whole.votes[:, untied])


def test_full_and_cropped_network_give_identical_statistics(released_full, released_classifier):
    img = _scene(np.random.default_rng(12), 64, 70)
    full = classify_image(img, KerasWindowClassifier(released_full))
    cropped = classify_image(img, released_classifier)
    np.testing.assert_array_equal(full.n, cropped.n)
    np.testing.assert_array_equal(full.votes, cropped.votes)
    np.testing.assert_allclose(full.mean, cropped.mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        full.m2 / np.maximum(full.n, 1), cropped.m2 / np.maximum(cropped.n, 1), rtol=0, atol=1e-6
    )


def test_non_finite_pixels_are_outside_coverage():
    clf = StandInClassifier(window=16, border=3)
    rng = np.random.default_rng(8)
    img = _scene(rng, 40, 44)
    img[:, 20:23, 10:12] = np.nan
    img[2, 5, 30] = np.inf
    valid = np.isfinite(img).all(0)
    stats = classify_image(img, clf)
    result = finalize(stats)
    for cube in (result.mean, result.variance, result.rank):
        assert np.isfinite(cube).all()
    assert (stats.n[~valid] == 0).all()
    n, mean, _, votes = _brute_force(img, clf, valid=valid)
    np.testing.assert_array_equal(stats.n, n)
    np.testing.assert_array_equal(stats.votes, votes)
    # An explicit coverage mask (e.g. HLF zero-censored pixels) acts the same way.
    coverage = np.ones((40, 44), bool)
    coverage[30, 40] = False
    masked = classify_image(img, clf, coverage=coverage)
    assert masked.n[30, 40] == 0 and masked.n.sum() < stats.n.sum()


def test_image_smaller_than_a_window_gives_empty_statistics(standin):
    stats = classify_image(np.ones((4, 20, 50), np.float32), standin)
    assert stats.n.sum() == 0


def test_bad_arguments(standin):
    with pytest.raises(ValueError, match="bands, H, W"):
        classify_image(np.ones((50, 50), np.float32), standin)
    with pytest.raises(ValueError, match="stride"):
        classify_image(np.ones((4, 50, 50), np.float32), standin, stride=0)


class _Generic:
    """The same network through the engine's generic path (probabilities, NumPy fold)."""

    def __init__(self, clf):
        self.clf, self.window, self.border, self.n_classes = clf, clf.window, clf.border, clf.n_classes

    def __call__(self, windows):
        return self.clf(windows)


@pytest.mark.parametrize("stride", [1, 2])
def test_compiled_path_equals_float64_generic_path(released_classifier, stride):
    img = _scene(np.random.default_rng(13), 71, 83)
    img[:, 30:32, 50] = np.nan  # holes make partly evaluated blocks
    coverage = np.ones((71, 83), bool)
    coverage[60, 10:14] = False
    compiled = classify_image(img, released_classifier, stride=stride, coverage=coverage, batch_size=120)
    generic = classify_image(img, _Generic(released_classifier), stride=stride, coverage=coverage, batch_size=120)
    np.testing.assert_array_equal(compiled.n, generic.n)
    assert compiled.n.max() > 0 and (compiled.n[30:32, 50] == 0).all()
    np.testing.assert_array_equal(compiled.votes, generic.votes)
    # Same network; the compiled softmax may differ by 2 float32 ulps (1.2e-7 near 1)
    # and block sums are float32 (~1e-8 of the mean): 5e-7 / 1e-6 bound both.
    np.testing.assert_allclose(compiled.mean, generic.mean, rtol=0, atol=5e-7)
    var_c = compiled.m2 / np.maximum(compiled.n, 1)
    var_g = generic.m2 / np.maximum(generic.n, 1)
    np.testing.assert_allclose(var_c, var_g, rtol=0, atol=1e-6)


def test_bfloat16_runs_end_to_end_with_deviation_report(released_classifier):
    import inspect

    from morpheus_core.model import build_model
    from morpheus_core.stats import deviation_report
    from morpheus_core.weights import load_released_model

    assert inspect.signature(build_model).parameters["precision"].default == "float32"
    assert released_classifier.network.compute_dtype == "float32"
    bf16 = KerasWindowClassifier(load_released_model(crop=True, precision="bfloat16"))
    assert bf16.network.compute_dtype == "bfloat16"
    img = _scene(np.random.default_rng(14), 60, 66)
    ref = finalize(classify_image(img, released_classifier))
    low = finalize(classify_image(img, bf16))
    report = deviation_report(ref, low)
    assert report["counted_pixels"] == int((ref.n > 0).sum()) > 0
    # Measured on synthetic scenes: top class unchanged on >= 99.9% of pixels, mean
    # images within ~0.01; loose bounds here, the benchmark reports the figures.
    assert report["top_rank_changed"] < 0.01
    assert 0 < report["max_abs_diff_mean"] < 0.1
    with pytest.raises(ValueError, match="same pixels"):
        deviation_report(ref, finalize(classify_image(img[:, :50], released_classifier)))


def test_concurrent_calls_with_the_compiled_path_do_not_mix(released_classifier):
    from concurrent.futures import ThreadPoolExecutor

    images = [_scene(np.random.default_rng(20 + i), 52, 60) for i in range(3)]
    sequential = [classify_image(img, released_classifier, batch_size=96) for img in images]
    with ThreadPoolExecutor(3) as pool:
        concurrent = list(pool.map(lambda img: classify_image(img, released_classifier, batch_size=96), images * 2))
    for i, got in enumerate(concurrent):
        expected = sequential[i % 3]
        np.testing.assert_array_equal(got.n, expected.n)
        np.testing.assert_array_equal(got.votes, expected.votes)
        np.testing.assert_allclose(got.mean, expected.mean, rtol=0, atol=1e-12)


def test_windows_cut_on_the_device_give_identical_statistics(released_cropped, released_classifier):
    # The GPU path (block pixels sent, windows cut and standardised there), run on the
    # CPU: the same float32 windows bit for bit, hence the same statistics.
    device = KerasWindowClassifier(released_cropped, cut_on_device=True)
    assert not released_classifier.cut_on_device  # CPU default: NumPy's gather is faster
    img = _scene(np.random.default_rng(15), 61, 74)
    img[:, 40, 30:33] = np.nan
    for stride in (1, 2):
        a = classify_image(img, device, stride=stride, batch_size=100)
        b = classify_image(img, released_classifier, stride=stride, batch_size=100)
        np.testing.assert_array_equal(a.n, b.n)
        np.testing.assert_array_equal(a.votes, b.votes)
        np.testing.assert_array_equal(a.mean, b.mean)
        np.testing.assert_array_equal(a.m2, b.m2)
