"""The compiled engine next to masked pixels, against independent references.

Real mosaics have NaN footprints, zero-censored star cores and masked rows, and their
edges fall anywhere relative to the engine's blocks and the pipeline's tiles. A block
whose windows are only partly valid is exactly where the compiled path differs from
the generic one (moments from summed-area tables over the block's bounding box,
compact scatter of the evaluated windows, device-side cutting), so every property here
draws random coverage masks and checks the compiled path against:

- the generic path (the same network through plain Keras calls and a NumPy fold);
- a brute-force float64 evaluation: every covering window, standardised in float64,
  through the float64 NumPy reference of the network (``numpy_reference``, which
  shares no code with ``morpheus_core``), accumulated window by window;
- an independent count of the windows that lie wholly on valid data.

On the engine before the fix, a block whose bounding box held a NaN pixel got NaN
moments; ReLU turned the NaN windows into a fixed wrong output, so pixels within ~60 px
of a footprint edge were misclassified with the right counts (mean off by up to 0.997).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morpheus_core.classifier import KerasWindowClassifier
from morpheus_core.engine import block_shape, classify_image
from morpheus_core.tiling import assemble, plan_tiles
from morpheus_core.windows import window_moments

from .numpy_reference import forward, load_checkpoint_arrays, standardize

WINDOW, BORDER = 40, 5

# Tolerances. Compiled vs generic: the same float32 weights, but the compiled path runs
# the network as written in morpheus_core.inference and the generic one as Keras
# layers, in batches of other sizes, so oneDNN may round differently (a few float32
# ulps of a probability, 6e-8 each near 1), and the compiled block sums are float32
# (~3e-8 of the mean). Largest difference measured over the examples here: 5.4e-7 (a
# pixel counted by few windows); bound 1e-6 for the mean, 2e-6 for the variance.
# Against the float64 network: float32 standardisation and network rounding move a
# probability by up to ~5e-6 (the port test's bound), so 2e-5.
ATOL_SAME_NETWORK = 1e-6
ATOL_SAME_NETWORK_VAR = 2e-6
ATOL_FLOAT64 = 2e-5
#: Top-two margin below which float32 and float64 may rank differently.
TIE = 1e-4


class _Generic:
    """The same network through the engine's generic path (probabilities, NumPy fold)."""

    def __init__(self, clf):
        self.clf, self.window, self.border, self.n_classes = clf, clf.window, clf.border, clf.n_classes

    def __call__(self, windows):
        return self.clf(windows)


@pytest.fixture(scope="module")
def device_classifier(released_cropped):
    return KerasWindowClassifier(released_cropped, cut_on_device=True)


@pytest.fixture(scope="module")
def float64_weights():
    return load_checkpoint_arrays()


def _sky(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noise with a few compact and extended sources, in four bands (float32)."""
    img = rng.normal(scale=0.02, size=(4, h, w))
    yy, xx = np.mgrid[:h, :w]
    for _ in range(max(2, h * w // 900)):
        y, x, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1.0, 5.0)
        img += rng.uniform(0.05, 2.0, size=(4, 1, 1)) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    return img.astype(np.float32)


@st.composite
def masked_skies(draw, max_h: int = 80, max_w: int = 88):
    """A sky with random coverage defects of the kinds real mosaics have.

    Returns ``(image, coverage, stride, batch)``: NaN blocks (unobserved footprint),
    single zero pixels and masked rows/columns (censored, through ``coverage``), and
    defects put on the engine's block boundaries for the drawn batch size.
    """
    h = draw(st.integers(WINDOW + 1, max_h))
    w = draw(st.integers(WINDOW + 1, max_w))
    stride = draw(st.sampled_from([1, 1, 2, 3]))
    batch = draw(st.integers(8, 200))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    image = _sky(rng, h, w)
    coverage = np.ones((h, w), bool)
    rows, cols = block_shape(len(range(0, h - WINDOW + 1, stride)), len(range(0, w - WINDOW + 1, stride)), batch)
    kinds = draw(
        st.lists(
            st.sampled_from(["nan_block", "zero_pixel", "row", "column", "block_edge", "corner"]),
            min_size=1,
            max_size=4,
        )
    )
    for kind in kinds:
        y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        if kind == "nan_block":
            image[:, y : y + draw(st.integers(1, 12)), x : x + draw(st.integers(1, 12))] = np.nan
        elif kind == "zero_pixel":  # a censored pixel: 0 in the data, off the coverage
            image[:, y, x] = 0.0
            coverage[y, x] = False
        elif kind == "row":
            coverage[y] = False
        elif kind == "column":
            image[draw(st.integers(0, 3)), :, x] = np.nan  # one band missing
        elif kind == "block_edge":  # a hole on the first pixel row/column of a block's windows
            by = (draw(st.integers(0, max(0, (h - WINDOW) // max(rows * stride, 1)))) * rows * stride) % h
            bx = (draw(st.integers(0, max(0, (w - WINDOW) // max(cols * stride, 1)))) * cols * stride) % w
            image[:, by, bx : bx + 2] = np.nan
        else:  # an unobserved corner, as at a footprint edge
            image[:, : draw(st.integers(1, h // 2)), : draw(st.integers(1, w // 2))] = np.nan
    return image, coverage, stride, batch


def _valid(image: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    return np.isfinite(image).all(axis=0) & coverage


def _evaluated_anchors(valid: np.ndarray, stride: int) -> list[tuple[int, int]]:
    """Anchors of windows wholly on valid pixels, by direct inspection (no tables)."""
    h, w = valid.shape
    return [
        (y, x)
        for y in range(0, h - WINDOW + 1, stride)
        for x in range(0, w - WINDOW + 1, stride)
        if valid[y : y + WINDOW, x : x + WINDOW].all()
    ]


def _float64_reference(image, coverage, stride, weights):
    """Every evaluated window through the float64 NumPy network, accumulated one by one."""
    valid = _valid(image, coverage)
    anchors = _evaluated_anchors(valid, stride)
    _, h, w = image.shape
    n = np.zeros((h, w), np.int64)
    s1 = np.zeros((5, h, w))
    s2 = np.zeros((5, h, w))
    votes = np.zeros((5, h, w), np.int64)
    ties = np.zeros((h, w), np.int64)  # counted samples whose top two are within TIE
    hwc = np.moveaxis(image.astype(np.float64), 0, -1)
    inner = WINDOW - 2 * BORDER
    for start in range(0, len(anchors), 64):
        group = anchors[start : start + 64]
        windows = np.stack([hwc[y : y + WINDOW, x : x + WINDOW] for y, x in group])
        probs = forward(weights, standardize(windows))[:, BORDER:-BORDER, BORDER:-BORDER]  # (b, K, K, 5)
        top2 = np.sort(probs, axis=-1)[..., -2:]
        close = (top2[..., 1] - top2[..., 0]) < TIE
        onehot = probs.argmax(axis=-1)[..., None] == np.arange(5)
        for (y, x), p, v, c in zip(group, probs, onehot, close):
            sl = (slice(y + BORDER, y + BORDER + inner), slice(x + BORDER, x + BORDER + inner))
            n[sl] += 1
            s1[(slice(None), *sl)] += np.moveaxis(p, -1, 0)
            s2[(slice(None), *sl)] += np.moveaxis(p * p, -1, 0)
            votes[(slice(None), *sl)] += np.moveaxis(v, -1, 0)
            ties[sl] += c
    mean = np.divide(s1, n, out=np.zeros_like(s1), where=n > 0)
    var = np.divide(s2, n, out=np.zeros_like(s2), where=n > 0) - mean * mean
    return n, mean, var, votes, ties


def _compiled(clf, image, coverage, stride, batch, overlap):
    saved = clf.overlap
    clf.overlap = overlap
    try:
        return classify_image(image, clf, stride=stride, coverage=coverage, batch_size=batch)
    finally:
        clf.overlap = saved


def _variance(stats):
    return stats.m2 / np.maximum(stats.n, 1)


def _assert_same_network(compiled, generic):
    np.testing.assert_array_equal(compiled.n, generic.n)
    np.testing.assert_array_equal(compiled.votes, generic.votes)
    np.testing.assert_allclose(compiled.mean, generic.mean, rtol=0, atol=ATOL_SAME_NETWORK)
    np.testing.assert_allclose(_variance(compiled), _variance(generic), rtol=0, atol=ATOL_SAME_NETWORK_VAR)


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(case=masked_skies(), overlap=st.booleans(), on_device=st.booleans())
def test_compiled_path_equals_generic_path_for_any_coverage(
    released_classifier, device_classifier, case, overlap, on_device
):
    image, coverage, stride, batch = case
    clf = device_classifier if on_device else released_classifier
    compiled = _compiled(clf, image, coverage, stride, batch, overlap)
    generic = classify_image(image, _Generic(released_classifier), stride=stride, coverage=coverage, batch_size=batch)
    valid = _valid(image, coverage)
    # Counts from a direct inspection of which windows lie on valid data.
    n = np.zeros(valid.shape, np.int64)
    for y, x in _evaluated_anchors(valid, stride):
        n[y + BORDER : y + WINDOW - BORDER, x + BORDER : x + WINDOW - BORDER] += 1
    np.testing.assert_array_equal(compiled.n, n)
    assert (compiled.n[~valid] == 0).all()
    assert np.isfinite(compiled.mean).all() and np.isfinite(compiled.m2).all()
    _assert_same_network(compiled, generic)


@settings(
    max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(case=masked_skies(max_h=58, max_w=62), overlap=st.booleans(), on_device=st.booleans())
def test_compiled_path_matches_a_float64_numpy_network_for_any_coverage(
    released_classifier, device_classifier, float64_weights, case, overlap, on_device
):
    image, coverage, stride, batch = case
    clf = device_classifier if on_device else released_classifier
    compiled = _compiled(clf, image, coverage, stride, batch, overlap)
    n, mean, var, votes, ties = _float64_reference(image, coverage, stride, float64_weights)
    np.testing.assert_array_equal(compiled.n, n)
    # A vote can move only where float32 and float64 nearly tie.
    moved = np.abs(compiled.votes - votes).sum(axis=0)
    assert (moved <= 2 * ties).all(), f"{int((moved > 2 * ties).sum())} pixels changed votes without a near tie"
    np.testing.assert_allclose(compiled.mean, mean, rtol=0, atol=ATOL_FLOAT64)
    np.testing.assert_allclose(_variance(compiled), var, rtol=0, atol=ATOL_FLOAT64)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(case=masked_skies(max_h=96, max_w=104), tile_y=st.integers(20, 60), tile_x=st.integers(20, 60))
def test_tiled_compiled_run_equals_whole_generic_run_with_masks_on_tile_edges(
    released_classifier, case, tile_y, tile_x
):
    image, coverage, stride, batch = case
    h, w = coverage.shape
    # Defects exactly on tile boundaries (a NaN column and a censored row).
    image[:, :, min(tile_x, w - 1)] = np.nan
    coverage[min(tile_y, h - 1), : w // 2] = False
    whole = classify_image(image, _Generic(released_classifier), stride=stride, coverage=coverage, batch_size=batch)
    parts = [
        (
            t,
            classify_image(
                image[:, t.read_slices[0], t.read_slices[1]],
                released_classifier,
                stride=stride,
                coverage=coverage[t.read_slices],
                anchor_start=t.anchor_start,
                anchor_stop=t.anchor_stop,
                batch_size=batch,
            ),
        )
        for t in plan_tiles((h, w), (tile_y, tile_x), window=WINDOW, stride=stride)
    ]
    tiled = assemble((h, w), parts)
    np.testing.assert_array_equal(tiled.n, whole.n)
    np.testing.assert_array_equal(tiled.votes, whole.votes)
    np.testing.assert_allclose(tiled.mean, whole.mean, rtol=0, atol=ATOL_SAME_NETWORK)
    np.testing.assert_allclose(_variance(tiled), _variance(whole), rtol=0, atol=ATOL_SAME_NETWORK_VAR)


def test_a_tilted_footprint_edge_leaves_the_classification_next_to_it_unchanged(released_classifier, float64_weights):
    """A tilted footprint edge, small: the unobserved area beyond a (rotated) footprint edge
    must not change the pixels next to it; the compiled path equals a direct float64
    evaluation there."""
    rng = np.random.default_rng(12)
    image = _sky(rng, 74, 84)
    yy, xx = np.mgrid[:74, :84]
    image[:, yy < 0.4 * xx - 8] = np.nan
    coverage = np.ones(image.shape[1:], bool)
    compiled = classify_image(image, released_classifier, coverage=coverage, batch_size=256)
    n, mean, _, _, _ = _float64_reference(image, coverage, 1, float64_weights)
    np.testing.assert_array_equal(compiled.n, n)
    np.testing.assert_allclose(compiled.mean, mean, rtol=0, atol=ATOL_FLOAT64)


def test_window_moments_ignore_invalid_pixels_outside_the_windows():
    rng = np.random.default_rng(3)
    image = rng.normal(size=(70, 90, 4)) * 0.1 + 3.0
    image[:20, :25] = np.nan  # a footprint corner inside the anchors' bounding box
    image[50, 60, 2] = np.inf
    image[65, 5] = -1e30  # a fill value (finite) in the box too
    ys, xs = np.mgrid[0:31, 0:51]
    ys, xs = ys.ravel(), xs.ravel()
    mean, var = window_moments(image.astype(np.float32), ys, xs, WINDOW)
    for k in range(0, len(ys), 97):
        win = image[ys[k] : ys[k] + WINDOW, xs[k] : xs[k] + WINDOW].astype(np.float32).astype(np.float64)
        if not np.isfinite(win).all():
            assert np.isnan(mean[k]) and np.isnan(var[k])
            continue
        np.testing.assert_allclose(mean[k], win.mean(), rtol=1e-11, atol=1e-11 * win.std())
        np.testing.assert_allclose(var[k], win.var(), rtol=1e-10)
    holes = np.array([not np.isfinite(image[y : y + WINDOW, x : x + WINDOW]).all() for y, x in zip(ys, xs)])
    np.testing.assert_array_equal(np.isnan(mean), holes)
    np.testing.assert_array_equal(np.isnan(var), holes)


def _tracing_counts(clf) -> dict[str, int]:
    """How often each compiled function of a classifier was traced (TensorFlow)."""
    functions = {"network": clf._logits, "cut": clf._cut, **{f"fold {key}": fn for key, fn in clf._posts.items()}}
    return {
        name: int(fn.experimental_get_tracing_count())
        for name, fn in functions.items()
        if hasattr(fn, "experimental_get_tracing_count")
    }


@pytest.mark.parametrize("on_device", [False, True])
def test_blocks_of_many_sizes_next_to_zero_valued_pixels_trace_each_function_once(
    released_cropped, released_classifier, on_device
):
    """A sky with zero-valued (censored) pixels scattered over it: the blocks next to them
    evaluate some of their windows, a different number in each block; the compiled fold
    must not be traced again for each (TensorFlow's "triggered tf.function retracing"
    warning), and the result still equals the generic path (the same network through
    Keras, folded in NumPy)."""
    import logging

    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tracing counts are TensorFlow's")
    rng = np.random.default_rng(31)
    image = _sky(rng, 90, 96)
    coverage = np.ones(image.shape[1:], bool)
    for y, x in zip(rng.integers(0, 90, 4), rng.integers(0, 96, 4)):  # censored star cores: 0 in the data
        image[:, y : y + 2, x : x + 2] = 0.0
    coverage &= (image != 0).all(axis=0)
    clf = KerasWindowClassifier(released_cropped, cut_on_device=on_device)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("tensorflow").addHandler(handler)
    try:
        compiled = classify_image(image, clf, coverage=coverage, batch_size=32)
    finally:
        logging.getLogger("tensorflow").removeHandler(handler)
    _, _, index_sizes = _block_sizes(coverage, batch=32)
    assert len(index_sizes) >= 4, "the case must have partly evaluated blocks of several sizes"
    counts = _tracing_counts(clf)
    assert counts and all(count <= 1 for count in counts.values()), counts
    assert not [r for r in records if "retracing" in r.getMessage()]
    generic = classify_image(image, _Generic(released_classifier), coverage=coverage, batch_size=32)
    _assert_same_network(compiled, generic)


def _block_sizes(coverage: np.ndarray, *, batch: int) -> tuple[int, int, set[int]]:
    """The engine's block grid and the numbers of evaluated windows of its partial blocks,
    by direct inspection."""
    h, w = coverage.shape
    ny, nx = h - WINDOW + 1, w - WINDOW + 1
    rows, cols = block_shape(ny, nx, batch)
    ok = np.zeros((ny, nx), bool)
    for y, x in _evaluated_anchors(coverage, 1):
        ok[y, x] = True
    sizes = {int(ok[i : i + rows, j : j + cols].sum()) for i in range(0, ny, rows) for j in range(0, nx, cols)}
    return rows, cols, sizes - {0, rows * cols}
