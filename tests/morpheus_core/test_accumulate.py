"""Compiled block sums: softmax, packed votes, fold."""

from __future__ import annotations

import numpy as np
import pytest

from morpheus_core.accumulate import VOTE_BASE, block_sums, count_map, unpack_votes, vote_channels


def _reference(logits, rows, cols, stride, mask):
    """Float64 NumPy fold of the same features, window by window."""
    k, c = logits.shape[1], logits.shape[-1]
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    top = logits.argmax(-1)  # first maximum
    out = np.zeros(((rows - 1) * stride + k, (cols - 1) * stride + k, 3 * c))
    for w in range(rows * cols):
        if not mask[w]:
            continue
        i, j = divmod(w, cols)
        onehot = np.eye(c)[top[w]]
        out[i * stride : i * stride + k, j * stride : j * stride + k] += np.concatenate([p[w], p[w] ** 2, onehot], -1)
    return out


@pytest.mark.parametrize("rows,cols,stride", [(6, 3, 1), (4, 5, 2), (3, 2, 3)])
def test_block_sums_equal_float64_fold_with_exact_votes(rows, cols, stride):
    import tensorflow as tf

    rng = np.random.default_rng(rows * 10 + stride)
    k, c = 7, 5
    logits = (rng.normal(size=(rows * cols, k, k, c)) * 3).astype(np.float32)
    logits[0, 0, 0] = [2.0, 2.0, 1.0, 2.0, 0.0]  # exact tie: the first maximum wins
    logits[1, 1, 1] = [0.0, 0.0, 0.0, 0.0, 0.0]
    mask = np.ones(rows * cols, np.float32)
    mask[[1, rows * cols - 1]] = 0
    fn = tf.function(lambda g, m: block_sums(g, rows, cols, stride, m), jit_compile=True)
    got = np.asarray(fn(logits, mask)).astype(np.float64)
    ref = _reference(logits, rows, cols, stride, mask)
    assert got.shape == ref.shape[:2] + (2 * c + vote_channels(c),)
    # Float32 softmax and block sums of <= 49 terms: 1e-5 absolute is generous.
    np.testing.assert_allclose(got[..., : 2 * c], ref[..., : 2 * c], rtol=0, atol=1e-5)
    n = ref[..., 2 * c :].sum(-1).round().astype(np.int64)
    votes = unpack_votes(np.moveaxis(got[..., 2 * c :], -1, 0), n, c)
    np.testing.assert_array_equal(votes, np.moveaxis(ref[..., 2 * c :], -1, 0).round().astype(np.int64))


def test_unpack_votes_round_trip_up_to_900_windows():
    rng = np.random.default_rng(1)
    votes = rng.integers(0, 181, size=(5, 6, 7))
    votes[:, 0, 0] = [900, 0, 0, 0, 0]
    votes[:, 0, 1] = [0, 0, 0, 0, 900]
    n = votes.sum(0)
    packed = np.stack([votes[0] + VOTE_BASE * votes[1], votes[2] + VOTE_BASE * votes[3]]).astype(np.float64)
    np.testing.assert_array_equal(unpack_votes(packed, n, 5), votes)


@pytest.mark.parametrize("stride", [1, 2])
def test_count_map_is_the_number_of_counting_windows(stride):
    rng = np.random.default_rng(stride)
    h, w, window, border = 33, 29, 10, 2
    ys = np.arange(0, h - window + 1, stride)
    xs = np.arange(0, w - window + 1, stride)
    evaluated = rng.random((ys.size, xs.size)) < 0.7
    expected = np.zeros((h, w), np.int64)
    for a, y in enumerate(ys):
        for b, x in enumerate(xs):
            if evaluated[a, b]:
                expected[y + border : y + window - border, x + border : x + window - border] += 1
    np.testing.assert_array_equal(count_map(evaluated, ys, xs, (h, w), window, border), expected)
