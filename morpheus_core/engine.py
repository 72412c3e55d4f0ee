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

- *compiled* (a classifier with ``start_block`` and ``finish_block`` methods, e.g.
  :class:`KerasWindowClassifier`): the windows are cut from the image by strided views
  and standardised with moments from summed-area tables (two passes over the windows);
  the network, the softmax, the votes and the fold of the block into per-pixel sums run
  as compiled code (:mod:`morpheus_core.inference`, :mod:`morpheus_core.accumulate`);
  only the small block sums come back and are added in float64. The fold of one block
  runs in a second thread while the network runs on the next (unless the process was
  given one thread);
- *generic* (any callable classifier, e.g. :class:`morpheus_core.testing.StandInClassifier`):
  probabilities come back as numpy arrays and are folded in float64 with NumPy.

Accumulation: within one call the engine sums the probabilities, their squares and the
votes in float64 (a pixel is counted at most ``(N - 2B)**2 = 900`` times per call at
unit stride, so ``M2 = S2 - S1**2 / n`` is exact to ~1e-13 on the generic path; on
the compiled one the per-block sums are float32, which moves the mean by up to ~3e-8,
less than the float32 rounding of the network itself); partial results of
different calls (tiles) then merge with Chan et al.'s parallel formula
(:meth:`morpheus_core.stats.WindowStats.merge_`). Counts and votes are exact on both.

A *window classifier* is any callable mapping standardised windows
``(B, N, N, bands)`` float32 to class probabilities of their counted inner region
``(B, N - 2B, N - 2B, C)``, with attributes ``window``, ``border`` and ``n_classes``;
:class:`KerasWindowClassifier` wraps the Morpheus network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from morpheus_core.accumulate import block_sums, count_map, unpack_votes, vote_channels
from morpheus_core.stats import WindowStats, stats_from_sums
from morpheus_core.windows import (
    cut_windows,
    standardize_windows,
    valid_anchors,
    valid_pixels,
    window_moments,
)

#: Default number of windows per network call.
DEFAULT_BATCH = 512
#: On backends that compile per input shape (JAX), the windows of a partly valid
#: block are padded to a multiple of 1 / PAD_STEPS of the block.
PAD_STEPS = 4


class WindowClassifier(Protocol):
    """What the engine needs from a network."""

    window: int
    border: int
    n_classes: int

    def __call__(self, windows: np.ndarray) -> np.ndarray:  # pragma: no cover - protocol
        ...


class KerasWindowClassifier:
    """Run a Morpheus Keras model on windows, compiled once.

    Calling it gives probabilities of standardised windows through the Keras model
    (the plain network). :meth:`block_sums` is what :func:`classify_image` uses: the
    network through :class:`~morpheus_core.inference.InferenceNetwork`, then softmax,
    votes and the fold of a block into per-pixel sums
    (:func:`~morpheus_core.accumulate.block_sums`), compiled together: a
    ``tf.function`` for the network and an XLA function for the rest on TensorFlow, one
    ``jax.jit`` function on JAX.

    Parameters
    ----------
    model : keras.Model
        A network from :func:`morpheus_core.model.build_model`, full-window or cropped.
    border : int
        Border excluded from counting; the full network's output is cropped by it.
    """

    def __init__(self, model: Any, *, border: int = 5) -> None:
        import keras

        from morpheus_core.inference import InferenceNetwork

        self.model = model
        self.window = int(model.input_shape[1])
        self.border = int(border)
        self.n_classes = int(model.output_shape[-1])
        out = int(model.output_shape[1])
        inner = self.window - 2 * self.border
        if out == self.window:
            self._crop = self.border
        elif out == inner:
            self._crop = 0
        else:
            raise ValueError(f"model output size {out} is neither {self.window} nor {inner}")
        self._backend = keras.backend.backend()
        self._fn = self._compile()
        self.network = InferenceNetwork(model)
        self._logits = self._compile_network()
        self._posts: dict[tuple[int, int, int, bool], Callable[..., Any]] = {}
        self._lock = threading.Lock()
        #: Fold a block (in a second thread) while the next block's network runs,
        #: unless the process was given a single thread (runtime.configure_threads).
        self.overlap = True
        if self._backend == "tensorflow":
            import tensorflow as tf

            self.overlap = tf.config.threading.get_intra_op_parallelism_threads() != 1

    def _compile(self) -> Callable[[np.ndarray], Any]:
        model = self.model
        if self._backend == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec((None, self.window, self.window, model.input_shape[-1]), tf.float32)
            return tf.function(lambda x: model(x, training=False), input_signature=[spec])
        if self._backend == "jax":
            import jax

            state = (
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
            )

            @jax.jit
            def run(x: Any, tv: Any, ntv: Any) -> Any:
                out, _ = model.stateless_call(tv, ntv, x, training=False)
                return out

            return lambda x: run(x, *state)
        return lambda x: model(x, training=False)

    def _inner_logits(self, windows: Any) -> Any:
        logits = self.network(windows)
        if self._crop:
            c = self._crop
            logits = logits[:, c:-c, c:-c, :]
        return logits

    def _compile_network(self) -> Callable[[Any], Any]:
        """The network to inner-region logits: a graph function on TensorFlow (oneDNN
        kernels; XLA's CPU convolutions are slower), ``jax.jit`` on JAX."""
        if self._backend == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec((None, self.window, self.window, self.network.n_bands), tf.float32)
            return tf.function(self._inner_logits, input_signature=[spec])
        if self._backend == "jax":
            import jax

            return jax.jit(self._inner_logits)
        return self._inner_logits

    def _post(self, rows: int, cols: int, stride: int, compact: bool) -> Callable[..., Any]:
        """Compiled softmax, votes and fold of one block's logits (XLA / jax.jit)."""
        key = (rows, cols, stride, compact)
        with self._lock:  # several Dask worker threads may share this classifier
            if key not in self._posts:
                self._posts[key] = self._compile_post(rows, cols, stride, compact)
            return self._posts[key]

    def _compile_post(self, rows: int, cols: int, stride: int, compact: bool) -> Callable[..., Any]:
        from keras import ops

        grid = rows * cols

        def post(logits: Any, index: Any, mask: Any) -> Any:
            if not compact:
                return block_sums(logits, rows, cols, stride)
            # Evaluated windows to their grid slots; one spare slot for padding
            # windows (index == grid), then dropped.
            shape = (grid + 1,) + tuple(logits.shape[1:])
            spread = ops.scatter(ops.expand_dims(index, -1), logits, shape)[:grid]
            return block_sums(spread, rows, cols, stride, mask)

        if self._backend == "tensorflow":
            import tensorflow as tf

            return tf.function(post, jit_compile=True)
        if self._backend == "jax":
            import jax

            return jax.jit(post)
        return post

    def start_block(
        self, windows: np.ndarray, rows: int, cols: int, stride: int = 1, index: np.ndarray | None = None
    ) -> tuple:
        """Run the network on one block's windows (first half of :meth:`block_sums`).

        Returns an opaque value for :meth:`finish_block`, which may run in another
        thread while the next block's network runs.
        """
        grid = rows * cols
        if index is None:
            return self._logits(windows), None, None, (rows, cols, stride)
        index = np.asarray(index, np.int32)
        mask = np.zeros(grid, np.float32)
        mask[index] = 1.0
        if self._backend != "tensorflow":  # compiled per input shape: few sizes
            n = len(index)
            quantum = -(-grid // PAD_STEPS)
            padded = min(grid, -(-n // quantum) * quantum)
            if padded > n:
                windows = np.concatenate([windows, np.zeros((padded - n,) + windows.shape[1:], windows.dtype)])
                index = np.concatenate([index, np.full(padded - n, grid, np.int32)])
        return self._logits(windows), index, mask, (rows, cols, stride)

    def finish_block(self, started: tuple) -> np.ndarray:
        """Softmax, votes and fold of a started block: ``(Y, X, 2C + C // 2)`` sums."""
        logits, index, mask, (rows, cols, stride) = started
        return np.asarray(self._post(rows, cols, stride, index is not None)(logits, index, mask))

    def block_sums(
        self, windows: np.ndarray, rows: int, cols: int, stride: int = 1, index: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-pixel sums of one block of windows (see :mod:`morpheus_core.accumulate`).

        Parameters
        ----------
        windows : numpy.ndarray
            ``(n, N, N, bands)`` standardised float32 windows.
        rows, cols : int
            The block's anchor grid.
        stride : int
            Anchor step.
        index : numpy.ndarray, optional
            ``(n,)`` distinct grid positions ``i * cols + j`` of the windows when only
            some windows of the grid are evaluated; None when all are, in grid order.

        Returns
        -------
        numpy.ndarray
            ``(Y, X, 2C + C // 2)`` float32 block sums.
        """
        return self.finish_block(self.start_block(windows, rows, cols, stride, index))

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        out = np.asarray(self._fn(windows))
        if self._crop:
            c = self._crop
            out = out[:, c:-c, c:-c]
        return out.astype(np.float32, copy=False)


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

    ok = valid_anchors(valid_pixels(image, coverage), n_win)
    hwc = np.ascontiguousarray(np.moveaxis(image, 0, -1), dtype=np.float32)
    rows, cols = block_shape(ys.size, xs.size, batch_size)
    compiled = hasattr(classifier, "start_block") and hasattr(classifier, "finish_block")
    # Accumulated sums over the image (with a margin for the frames of the last
    # blocks). Compiled: S1 (C), S2 (C), packed votes (C // 2); generic: S1, S2, votes.
    n_sums = 2 * n_cls + (vote_channels(n_cls) if compiled else n_cls)
    acc = np.zeros((n_sums, h + rows * stride + inner, w + cols * stride + inner), np.float64)
    evaluated = np.zeros((ys.size, xs.size), bool)

    def finish(started: tuple, y0: int, x0: int) -> None:
        sums = classifier.finish_block(started)
        acc[:, y0 : y0 + sums.shape[0], x0 : x0 + sums.shape[1]] += np.moveaxis(sums, -1, 0)

    # Compiled path: the fold of block k runs in a second thread while the network
    # runs on block k + 1 (one fold at a time, so the accumulator has one writer).
    pool = ThreadPoolExecutor(1) if compiled and getattr(classifier, "overlap", False) else None
    pending: Future | None = None
    try:
        for i0 in range(0, ys.size, rows):
            by = ys[i0 : i0 + rows]
            for j0 in range(0, xs.size, cols):
                bx = xs[j0 : j0 + cols]
                block_ok = ok[np.ix_(by, bx)]
                ii, jj = np.nonzero(block_ok)
                if ii.size == 0:
                    continue
                y0, x0 = by[0] + border, bx[0] + border
                wy, wx = by[ii], bx[jj]
                if compiled:
                    # Every block has the same (rows, cols) grid, so the compiled code
                    # sees one shape; anchors past the edge count as not evaluated.
                    evaluated[i0 : i0 + by.size, j0 : j0 + bx.size] = block_ok
                    windows = standardize_windows(
                        cut_windows(hwc, wy, wx, n_win), window_moments(hwc, wy, wx, n_win)
                    )
                    full = ii.size == rows * cols
                    started = classifier.start_block(windows, rows, cols, stride, None if full else ii * cols + jj)
                    if pool is None:
                        finish(started, y0, x0)
                    else:
                        if pending is not None:
                            pending.result()
                        pending = pool.submit(finish, started, y0, x0)
                else:
                    probs = classifier(standardize_windows(cut_windows(hwc, wy, wx, n_win)))
                    if probs.shape[1:] != (inner, inner, n_cls):
                        raise ValueError(
                            f"classifier returned {probs.shape[1:]}, expected {(inner, inner, n_cls)}"
                        )
                    _fold(acc, probs, block_ok, ii, jj, y0, x0, stride)
                if progress is not None:
                    progress(int(ii.size))
        if pending is not None:
            pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True)

    acc = acc[:, :h, :w]
    if compiled:
        n = count_map(evaluated, ys, xs, (h, w), n_win, border)
        votes = unpack_votes(acc[2 * n_cls :], n, n_cls)
    else:
        votes = np.rint(acc[2 * n_cls :]).astype(np.int32)
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
    page faults that show in the profile)."""
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
