"""Per-block sums of window outputs, as compiled array operations (softmax, votes, fold).

The engine evaluates windows in *blocks*: the windows anchored on an ``r x c`` grid of
anchors (``stride`` apart). :func:`block_sums` turns the network's logits for one block
into the block's per-pixel sums over its counted pixels, in one compiled function
(XLA under ``tf.function(jit_compile=True)`` on TensorFlow, ``jax.jit`` on JAX), so
nothing is done per window in Python and nothing but the small block sums leaves the
device:

- softmax of the logits; the top class of each counted pixel of each window (the first
  maximum, like :func:`numpy.argmax`);
- 12 per-pixel channels: the five probabilities, their squares, and the votes of the
  first four classes packed two per channel (``v0 + 1024 * v1``, ``v2 + 1024 * v3``);
  the votes of the last class are ``n`` minus the others, and ``n`` follows from which
  windows were evaluated (:func:`count_map`);
- the *fold* (col2im): window ``(i, j)`` of the block adds its ``K x K`` inner output at
  ``(i * stride + dy, j * stride + dx)`` of the block frame, written as 2K shifted
  additions (rows, then columns).

Exactness: the votes are sums of integers below 2**24 in float32, hence exact (a pixel
is counted at most ``K**2 = 900`` times per image, so each packed field stays below
1024). The probability sums of one block are float32 sums of at most ``K**2`` terms in
[0, 1], added pairwise; the engine adds the block sums in float64, so the mean it
reports differs from a float64 accumulation by up to ~3e-8 (measured; 2 float32 ulps of
the softmax itself are 1.2e-7), the variance by about twice that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["VOTE_BASE", "block_sums", "count_map", "unpack_votes", "vote_channels"]

#: Packed-vote base: a count per pixel and call never reaches it (at most 900 windows).
VOTE_BASE = 1024


def vote_channels(n_classes: int) -> int:
    """Number of packed vote channels (two classes each, the last class implicit)."""
    return n_classes // 2


def _vote_table(n_classes: int) -> np.ndarray:
    """``(n_classes, vote_channels)`` float32: the packed code of each top class."""
    table = np.zeros((n_classes, vote_channels(n_classes)), np.float32)
    for k in range(n_classes - 1):
        table[k, k // 2] = VOTE_BASE ** (k % 2)
    return table


def block_sums(logits: Any, rows: int, cols: int, stride: int = 1, mask: Any = None) -> Any:
    """Per-pixel sums of one block's window outputs (backend-neutral ``keras.ops``).

    Parameters
    ----------
    logits : tensor
        ``(rows * cols, K, K, C)`` class logits of the counted inner region of each
        window of the block, in grid order (window ``(i, j)`` at ``i * cols + j``).
    rows, cols : int
        Shape of the block's anchor grid.
    stride : int
        Anchor step in pixels.
    mask : tensor, optional
        ``(rows * cols,)`` float32, 1 for the windows that count and 0 for the others
        (not evaluated; their logits are ignored). None: all count.

    Returns
    -------
    tensor
        ``(Y, X, 2C + C // 2)`` float32 with ``Y = (rows - 1) * stride + K`` and
        ``X = (cols - 1) * stride + K``: channels ``[0, C)`` the sums of the
        probabilities, ``[C, 2C)`` of their squares, then the packed votes.
    """
    from keras import ops  # imported here: the engine's generic path needs no Keras

    k, n_classes = int(logits.shape[1]), int(logits.shape[-1])
    p = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    top = ops.argmax(p, axis=-1)
    codes = ops.take(ops.convert_to_tensor(_vote_table(n_classes)), top, axis=0)
    feats = ops.concatenate([p, p * p, codes], axis=-1)
    ch = int(feats.shape[-1])
    if mask is not None:
        feats = feats * ops.reshape(ops.cast(mask, "float32"), (-1, 1, 1, 1))
    g = ops.reshape(feats, (rows, cols, k, k, ch))
    if stride > 1:  # windows stride pixels apart: interleave stride - 1 empty rows/cols
        zeros = ops.zeros_like(g)
        g = ops.reshape(ops.stack([g] + [zeros] * (stride - 1), axis=1), (rows * stride, cols, k, k, ch))
        g = g[: (rows - 1) * stride + 1]
        zeros = ops.zeros_like(g)
        g = ops.reshape(ops.stack([g] + [zeros] * (stride - 1), axis=2), (g.shape[0], cols * stride, k, k, ch))
        g = g[:, : (cols - 1) * stride + 1]
    # Fold rows: window row i, offset dy -> frame row i + dy; then columns likewise.
    # Pairwise sums keep the float32 rounding at ~log2(K) instead of K additions.
    t = _pairwise_sum([ops.pad(g[:, :, dy], ((dy, k - 1 - dy), (0, 0), (0, 0), (0, 0))) for dy in range(k)])
    return _pairwise_sum([ops.pad(t[:, :, dx], ((0, 0), (dx, k - 1 - dx), (0, 0))) for dx in range(k)])


def _pairwise_sum(terms: list) -> Any:
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def unpack_votes(packed: np.ndarray, n: np.ndarray, n_classes: int) -> np.ndarray:
    """Votes per class from the summed packed channels and the counts.

    Parameters
    ----------
    packed : numpy.ndarray
        ``(C // 2, H, W)`` float64 sums of the packed vote channels.
    n : numpy.ndarray
        ``(H, W)`` number of windows that counted each pixel.
    n_classes : int
        ``C``.

    Returns
    -------
    numpy.ndarray
        ``(C, H, W)`` int64 votes; they sum to ``n`` over classes.
    """
    codes = np.rint(packed).astype(np.int64)
    votes = np.empty((n_classes,) + n.shape, np.int64)
    for k in range(n_classes - 1):
        votes[k] = (codes[k // 2] // VOTE_BASE ** (k % 2)) % VOTE_BASE
    votes[-1] = n - votes[:-1].sum(axis=0)
    return votes


def count_map(
    evaluated: np.ndarray, ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], window: int, border: int
) -> np.ndarray:
    """Number of evaluated windows counting each pixel (``n``).

    Parameters
    ----------
    evaluated : numpy.ndarray
        ``(len(ys), len(xs))`` boolean mask of the evaluated anchors.
    ys, xs : numpy.ndarray
        Anchor coordinates of the mask's rows and columns.
    shape : tuple of int
        ``(H, W)`` of the image.
    window, border : int
        Window size and uncounted border.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` int64 counts: the sum of the anchor mask over the ``inner x inner``
        anchors whose counted region covers each pixel (a box sum).
    """
    h, w = shape
    inner = window - 2 * border
    marks = np.zeros((h + 1, w + 1), np.int64)
    marks[np.ix_(ys + border + 1, xs + border + 1)] = evaluated
    table = marks.cumsum(axis=0).cumsum(axis=1)  # table[y, x] = marks[:y, :x].sum()
    ylo = np.clip(np.arange(h) - inner + 1, 0, h)
    xlo = np.clip(np.arange(w) - inner + 1, 0, w)
    yhi, xhi = np.arange(h) + 1, np.arange(w) + 1
    return table[np.ix_(yhi, xhi)] - table[np.ix_(ylo, xhi)] - table[np.ix_(yhi, xlo)] + table[np.ix_(ylo, xlo)]
