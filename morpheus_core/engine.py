"""The unit-stride statistics engine: every window through the network, one pass.

:func:`classify_image` evaluates every window of a ``(bands, H, W)`` image whose anchor
lies in a given rectangle (stride configurable), in large batches, and accumulates per
pixel and class over the counted inner region of each window: count, mean and ``M2``,
and rank votes, all in one pass (the reference code needed two). Window cutting,
standardisation and accumulation are whole-batch array operations; no Python work is
done per window.

A batch is a *block*: the windows anchored on a ``rows x cols`` grid of anchors (tall
blocks, which make the fold cheapest). Windows that touch invalid pixels are not
evaluated.

Two paths, same statistics:

- *compiled* (a classifier with ``prepare_block``, ``start_block`` and
  ``finish_block`` methods, e.g.
  :class:`~morpheus_core.classifier.KerasWindowClassifier`): the windows are cut from the image by strided views
  and standardised with moments from summed-area tables (two passes over the windows);
  the network, the softmax, the votes and the fold of the block into per-pixel sums run
  as compiled code (:mod:`morpheus_core.inference`, :mod:`morpheus_core.accumulate`);
  only the small block sums come back and are added in float64. While the network
  runs on one block, the next is prepared and the previous folded in two other
  threads (unless the process was given one thread);
- *generic* (any callable classifier, e.g. :class:`morpheus_core.testing.StandInClassifier`):
  probabilities come back as numpy arrays and are folded in float64 with NumPy.

Accumulation: within one call the engine sums the probabilities, their squares and the
votes in float64 (a pixel is counted at most ``(N - 2B)**2 = 900`` times per call at
unit stride, so ``M2 = S2 - S1**2 / n`` is exact to ~1e-13 on the generic path; on
the compiled one the per-block sums are float32, which moves the mean by up to ~3e-8,
less than the float32 rounding of the network itself); partial results of
different calls (tiles) then merge with Chan et al.'s parallel formula
(:meth:`morpheus_core.stats.WindowStats.merge_`). Counts and votes are exact on both.

Both paths give the same counts and votes, and means within 1e-6 (the compiled network
and the Keras layers may round a probability differently by a few float32 ulps), for
any coverage mask: ``tests/morpheus_core/test_engine_coverage.py`` checks that on
random NaN blocks, censored pixels, masked rows and columns and masks on block and
tile edges, at strides 1-3, in both thread modes and with device-side cutting, also
against a float64 NumPy network (means within 2e-5). Invalid pixels are zeroed in
the engine's copy of the image: a block's moments and device-side region span the
block's bounding box, which may hold pixels that none of its evaluated windows
contains.

A *window classifier* is any callable mapping standardised windows
``(B, N, N, bands)`` float32 to class probabilities of their counted inner region
``(B, N - 2B, N - 2B, C)``, with attributes ``window``, ``border`` and ``n_classes``;
:class:`morpheus_core.classifier.KerasWindowClassifier`
wraps the Morpheus network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from morpheus_core.accumulate import count_map, unpack_votes, vote_channels
from morpheus_core.stats import WindowStats, stats_from_sums
from morpheus_core.windows import cut_windows, standardize_windows, valid_anchors, valid_pixels

__all__ = ["DEFAULT_BATCH", "WindowClassifier", "anchor_range", "block_shape", "classify_image"]

#: Default number of windows per network call.
DEFAULT_BATCH = 512


class WindowClassifier(Protocol):
    """What the engine needs from a network."""

    window: int
    border: int
    n_classes: int

    def __call__(self, windows: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        """Probabilities of the counted inner region of standardised windows."""


def anchor_range(start: int, stop: int, stride: int) -> np.ndarray:
    """Anchors ``start, start + stride, ...`` below ``stop`` (empty if none)."""
    return np.arange(start, max(stop, start), stride)


def classify_image(
    image: np.ndarray,
    classifier: WindowClassifier,
    *,
    stride: int = 1,
    anchor_start: tuple[int, int] = (0, 0),
    anchor_stop: tuple[int, int] | None = None,
    coverage: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> WindowStats:
    """Classify every window of an image and accumulate per-pixel statistics.

    Parameters
    ----------
    image : numpy.ndarray
        ``(bands, H, W)`` float image, bands in the classifier's order.
    classifier : WindowClassifier
        The network (see module docstring).
    stride : int
        Step between anchors along each axis (1 in the paper).
    anchor_start, anchor_stop : tuple of int
        The rectangle ``[y0, y1) x [x0, x1)`` of anchors (window top-left corners, image
        coordinates) to evaluate, stepping by ``stride`` from ``anchor_start``. Default:
        every window that fits in the image. Tiles of a larger mosaic pass the anchors
        they own (:mod:`morpheus_core.tiling`).
    coverage : numpy.ndarray, optional
        ``(H, W)`` boolean mask of usable pixels; windows touching a non-finite or
        uncovered pixel are not evaluated (:mod:`morpheus_core.windows`).
    batch_size : int
        Approximate number of windows per network call.
    progress : callable, optional
        Called with the number of windows evaluated after each batch.

    Returns
    -------
    WindowStats
        Statistics over the image's ``(H, W)`` frame.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be (bands, H, W), got shape {image.shape}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n_win, border, n_cls = classifier.window, classifier.border, classifier.n_classes
    inner = n_win - 2 * border
    _, h, w = image.shape
    stats = WindowStats.zeros((h, w), n_cls)
    last = (h - n_win + 1, w - n_win + 1)
    stop = last if anchor_stop is None else (min(anchor_stop[0], last[0]), min(anchor_stop[1], last[1]))
    ys = anchor_range(anchor_start[0], stop[0], stride)
    xs = anchor_range(anchor_start[1], stop[1], stride)
    if ys.size == 0 or xs.size == 0:
        return stats

    valid = valid_pixels(image, coverage)
    ok = valid_anchors(valid, n_win)
    hwc = np.array(np.moveaxis(image, 0, -1), dtype=np.float32, order="C")  # a copy, always
    # No evaluated window contains an invalid pixel, but a block's moments and its
    # device-side region are computed over the block's bounding box, which may: zero
    # them (NaN or a fill value there would otherwise leak into every window's
    # standardisation).
    hwc[~valid] = 0.0
    rows, cols = block_shape(ys.size, xs.size, batch_size)
    compiled = all(hasattr(classifier, m) for m in ("prepare_block", "start_block", "finish_block"))
    # Accumulated sums over the image (with a margin for the frames of the last
    # blocks). Compiled: S1 (C), S2 (C), packed votes (C // 2); generic: S1, S2, votes.
    n_sums = 2 * n_cls + (vote_channels(n_cls) if compiled else n_cls)
    acc = np.zeros((n_sums, h + rows * stride + inner, w + cols * stride + inner), np.float64)
    evaluated = np.zeros((ys.size, xs.size), bool)
    blocks = []  # (anchors of the evaluated windows, grid index or None, frame origin)
    for i0 in range(0, ys.size, rows):
        by = ys[i0 : i0 + rows]
        for j0 in range(0, xs.size, cols):
            bx = xs[j0 : j0 + cols]
            block_ok = ok[np.ix_(by, bx)]
            ii, jj = np.nonzero(block_ok)
            if ii.size:
                evaluated[i0 : i0 + by.size, j0 : j0 + bx.size] = block_ok
                full = ii.size == rows * cols
                blocks.append(
                    (by[ii], bx[jj], None if full else ii * cols + jj, block_ok, by[0] + border, bx[0] + border)
                )

    if not compiled:
        for wy, wx, _, block_ok, y0, x0 in blocks:
            probs = classifier(standardize_windows(cut_windows(hwc, wy, wx, n_win)))
            if probs.shape[1:] != (inner, inner, n_cls):
                raise ValueError(f"classifier returned {probs.shape[1:]}, expected {(inner, inner, n_cls)}")
            ii, jj = np.nonzero(block_ok)
            _fold(acc, probs, block_ok, ii, jj, y0, x0, stride)
            if progress is not None:
                progress(int(wy.size))
        acc = acc[:, :h, :w]
        votes = np.rint(acc[2 * n_cls :]).astype(np.int32)
        return stats_from_sums(acc[:n_cls], acc[n_cls : 2 * n_cls], votes)

    def prepare(k: int) -> tuple:
        wy, wx, index = blocks[k][:3]
        return classifier.prepare_block(hwc, wy, wx, rows, cols, stride, index)

    def finish(started: tuple, y0: int, x0: int) -> None:
        sums = classifier.finish_block(started)
        acc[:, y0 : y0 + sums.shape[0], x0 : x0 + sums.shape[1]] += np.moveaxis(sums, -1, 0)

    # A three-stage pipeline: while the network runs on block k (this thread), one
    # thread prepares block k + 1 (NumPy) and another folds block k - 1 (one fold at a
    # time, so the accumulator has one writer). Sequential if the process was given a
    # single thread.
    if getattr(classifier, "overlap", False):
        with ThreadPoolExecutor(1) as preparer, ThreadPoolExecutor(1) as folder:
            pending: Future | None = None
            upcoming = preparer.submit(prepare, 0) if blocks else None
            for k, block in enumerate(blocks):
                prepared = upcoming.result()
                if k + 1 < len(blocks):
                    upcoming = preparer.submit(prepare, k + 1)
                started = classifier.start_block(prepared)
                if pending is not None:
                    pending.result()
                pending = folder.submit(finish, started, block[4], block[5])
                if progress is not None:
                    progress(int(block[0].size))
            if pending is not None:
                pending.result()
    else:
        for k, block in enumerate(blocks):
            finish(classifier.start_block(prepare(k)), block[4], block[5])
            if progress is not None:
                progress(int(block[0].size))

    acc = acc[:, :h, :w]
    n = count_map(evaluated, ys, xs, (h, w), n_win, border)
    votes = unpack_votes(acc[2 * n_cls :], n, n_cls)
    return stats_from_sums(acc[:n_cls], acc[n_cls : 2 * n_cls], votes)


def block_shape(n_rows: int, n_cols: int, batch_size: int) -> tuple[int, int]:
    """Anchor rows and columns per block: about ``batch_size`` windows, tall.

    The fold of a block costs about ``(rows + K) * cols`` per output channel and
    offset, so for a given number of windows tall blocks (8 columns for 512 windows)
    are cheapest.
    """
    cols = max(1, min(n_cols, int(round(np.sqrt(batch_size / 8)))))
    rows = max(1, min(n_rows, batch_size // cols))
    return rows, cols


# One buffer per thread: a Dask worker with several threads classifies several tiles
# at once in this process, and a shared buffer would mix their sums.
_SLAB = threading.local()


def _slab(shape: tuple[int, ...], *, zeroed: bool) -> np.ndarray:
    """A reusable float64 work buffer (fresh allocations of tens of MB per batch cost
    page faults that show in the profile).
    """
    size = int(np.prod(shape))
    buf = getattr(_SLAB, "buf", None)
    if buf is None or buf.size < size:
        buf = _SLAB.buf = np.empty(size, np.float64)
    out = buf[:size].reshape(shape)
    if zeroed:
        out.fill(0.0)
    return out


def _fold(
    acc: np.ndarray,
    probs: np.ndarray,
    block_ok: np.ndarray,
    ii: np.ndarray,
    jj: np.ndarray,
    y0: int,
    x0: int,
    stride: int,
) -> None:
    """Add one block of window outputs into the per-pixel sums (col2im).

    ``probs`` holds the inner outputs of the evaluated windows of a block of anchors
    (``block_ok`` marks them); window ``(i, j)`` of the block counts pixels
    ``(y0 + i * stride + dy, x0 + j * stride + dx)``. The block is laid out as
    ``(dy, dx, channel, i, j)`` so that each of the ``inner**2`` offsets adds one
    contiguous ``(channel, i, j)`` slab into a strided view of the accumulator.
    """
    n, inner, _, n_cls = probs.shape
    r, c = block_ok.shape
    slab = _slab((inner, inner, 3 * n_cls, r, c), zeroed=n != r * c)
    p = probs.transpose(1, 2, 3, 0)  # (dy, dx, C, window), a view
    top = probs.argmax(axis=-1).transpose(1, 2, 0)[:, :, None, :]  # (dy, dx, 1, window)
    classes = np.arange(n_cls)[None, None, :, None]
    if n == r * c:  # every window of the block evaluated: fill in place, no scatter
        grid = slab.reshape(inner, inner, 3 * n_cls, n)
        grid[:, :, :n_cls] = p
        np.square(grid[:, :, :n_cls], out=grid[:, :, n_cls : 2 * n_cls])
        np.equal(top, classes, out=grid[:, :, 2 * n_cls :], casting="unsafe")
    else:
        slab[:, :, :n_cls, ii, jj] = p
        slab[:, :, n_cls : 2 * n_cls, ii, jj] = np.square(p, dtype=np.float64)
        slab[:, :, 2 * n_cls :, ii, jj] = top == classes
    for dy in range(inner):
        rows = acc[:, y0 + dy : y0 + dy + (r - 1) * stride + 1 : stride]
        for dx in range(inner):
            rows[:, :, x0 + dx : x0 + dx + (c - 1) * stride + 1 : stride] += slab[dy, dx]
