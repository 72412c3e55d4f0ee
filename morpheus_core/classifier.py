"""The Morpheus Keras network as a window classifier for the statistics engine.

:class:`KerasWindowClassifier` implements the engine's compiled path
(:mod:`morpheus_core.engine`): per block of windows, :meth:`~KerasWindowClassifier.prepare_block`
(NumPy: moments, cut, standardise), :meth:`~KerasWindowClassifier.start_block` (the
network, :mod:`morpheus_core.inference`) and :meth:`~KerasWindowClassifier.finish_block`
(softmax, votes and fold, :mod:`morpheus_core.accumulate`), compiled for the Keras
backend in use. Keras and the backend are imported when a classifier is built.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from morpheus_core.accumulate import block_sums
from morpheus_core.windows import cut_windows, standardization_scale, standardize_windows, window_moments

__all__ = ["PAD_STEPS", "KerasWindowClassifier"]

#: A partly valid block (next to NaN or zero-valued pixels, or at the image's edge)
#: evaluates some of its windows, a different number in each block. On backends that
#: compile per input shape (JAX) its windows are padded to a multiple of 1 / PAD_STEPS
#: of the block; on TensorFlow its logits are, before the compiled fold (traced once,
#: with a batch of any size; XLA then compiles at most PAD_STEPS sizes per block shape).
PAD_STEPS = 4


class KerasWindowClassifier:
    """Run a Morpheus Keras model on windows, compiled once.

    Calling it gives probabilities of standardised windows through the Keras model
    (the plain network). :func:`classify_image` uses :meth:`prepare_block` (moments,
    cut, standardise; NumPy), :meth:`start_block` (the network through
    :class:`~morpheus_core.inference.InferenceNetwork`) and :meth:`finish_block`
    (softmax, votes and the fold of the block into per-pixel sums,
    :func:`~morpheus_core.accumulate.block_sums`), compiled: a ``tf.function`` for the
    network (oneDNN kernels) and an XLA function for the rest on TensorFlow, ``jax.jit``
    functions on JAX.

    Parameters
    ----------
    model : keras.Model
        A network from :func:`morpheus_core.model.build_model`, full-window or cropped.
    border : int
        Border excluded from counting; the full network's output is cropped by it.
    cut_on_device : bool, optional
        Cut and standardise windows on the accelerator from the block's pixels instead
        of on the host (default: when the backend sees a GPU). Same windows, bit for
        bit.
    """

    def __init__(self, model: Any, *, border: int = 5, cut_on_device: bool | None = None) -> None:
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
        #: Cut and standardise the windows on the accelerator from the block's pixels
        #: (no host copies of windows); default: where the backend has a GPU. On a CPU
        #: NumPy's strided gather is faster than a gather op.
        self.cut_on_device = _has_gpu(self._backend) if cut_on_device is None else bool(cut_on_device)
        self._cut = self._compile_cut()
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
        kernels; XLA's CPU convolutions are slower), ``jax.jit`` on JAX.
        """
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
        """The fold of one block shape; on TensorFlow with an input signature, so that
        blocks with other numbers of evaluated windows do not trace it again.
        """
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

            inner = self.window - 2 * self.border
            logits = tf.TensorSpec((None if compact else grid, inner, inner, self.n_classes), tf.float32)
            if not compact:
                fold = tf.function(
                    lambda x: block_sums(x, rows, cols, stride), jit_compile=True, input_signature=[logits]
                )
                return lambda x, index, mask: fold(x)
            specs = [logits, tf.TensorSpec((None,), tf.int32), tf.TensorSpec((grid,), tf.float32)]
            return tf.function(post, jit_compile=True, input_signature=specs)
        if self._backend == "jax":
            import jax

            return jax.jit(post)
        return post

    def prepare_block(
        self,
        image_hwc: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        rows: int,
        cols: int,
        stride: int = 1,
        index: np.ndarray | None = None,
    ) -> tuple:
        """Host work for one block: window moments, then the standardised windows (or,
        with ``cut_on_device``, the block's pixels and each window's offset and affine).

        Parameters
        ----------
        image_hwc : numpy.ndarray
            ``(H, W, bands)`` float32 image.
        ys, xs : numpy.ndarray
            Anchors of the evaluated windows of the block (image coordinates), in grid
            order.
        rows, cols, stride : int
            The block's anchor grid.
        index : numpy.ndarray, optional
            Grid position ``i * cols + j`` of each window when only some windows of
            the grid are evaluated; None when all are.

        Returns
        -------
        tuple
            Opaque value for :meth:`start_block`. NumPy only, so it may be prepared in
            another thread while the network runs on the previous block.
        """
        moments = window_moments(image_hwc, ys, xs, self.window)
        if not (np.isfinite(moments[0]).all() and np.isfinite(moments[1]).all()):
            raise ValueError(
                "a window to classify holds a non-finite pixel: windows must lie wholly on "
                "valid data (morpheus_core.windows.valid_anchors)"
            )
        grid = rows * cols
        mask = None
        if index is not None:
            index = np.asarray(index, np.int32)
            mask = np.zeros(grid, np.float32)
            mask[index] = 1.0
        if self.cut_on_device:
            inputs, padded = self._device_inputs(image_hwc, ys, xs, moments, rows, cols, stride, index)
        else:
            windows = standardize_windows(cut_windows(image_hwc, ys, xs, self.window), moments)
            windows, padded = self._pad(windows, index, grid)
            inputs = (windows,)
        return inputs, padded, mask, (rows, cols, stride)

    def start_block(self, prepared: tuple) -> tuple:
        """Run the network on a prepared block; the logits stay on the device.

        Returns an opaque value for :meth:`finish_block`, which may run in another
        thread while the next block's network runs.
        """
        inputs, index, mask, shape = prepared
        if len(inputs) == 1:
            logits = self._logits(inputs[0])
        else:
            # A separate call: the network's graph stays the one of the host path, so
            # the results are bit-identical (the windows never leave the device).
            logits = self._logits(self._cut(*inputs))
        return logits, index, mask, shape

    def _pad(self, windows: np.ndarray, index: np.ndarray | None, grid: int) -> tuple:
        """On backends that compile per input shape (JAX), pad a partly evaluated block
        to a multiple of 1 / PAD_STEPS of the grid (padding goes to the spare slot).
        """
        if index is None or self._backend == "tensorflow":
            return windows, index
        n = len(index)
        padded = _padded_size(n, grid)
        if padded > n:
            windows = np.concatenate([windows, np.zeros((padded - n,) + windows.shape[1:], windows.dtype)])
            index = np.concatenate([index, np.full(padded - n, grid, np.int32)])
        return windows, index

    def _pad_logits(self, logits: Any, index: np.ndarray, grid: int) -> tuple:
        """TensorFlow: pad a partly evaluated block's logits (on the device) to a multiple
        of 1 / PAD_STEPS of the grid, so that the fold compiles for few batch sizes; the
        padding goes to the spare slot, which the fold drops (the same sums).
        """
        import tensorflow as tf

        n = len(index)
        padded = _padded_size(n, grid)
        if padded == n:
            return logits, index
        logits = tf.concat([logits, tf.zeros((padded - n, *logits.shape[1:]), logits.dtype)], axis=0)
        return logits, np.concatenate([index, np.full(padded - n, grid, np.int32)])

    def _device_inputs(
        self,
        image_hwc: np.ndarray,
        ys: np.ndarray,
        xs: np.ndarray,
        moments: tuple[np.ndarray, np.ndarray],
        rows: int,
        cols: int,
        stride: int,
        index: np.ndarray | None,
    ) -> tuple:
        """The block's pixels (not its windows), each window's offset and affine."""
        n_win = self.window
        first = 0 if index is None else int(index[0])
        i, j = divmod(first, cols)
        y0, x0 = int(ys[0]) - i * stride, int(xs[0]) - j * stride  # the grid's origin
        size_y, size_x = (rows - 1) * stride + n_win, (cols - 1) * stride + n_win
        region = image_hwc[y0 : y0 + size_y, x0 : x0 + size_x]
        if region.shape[:2] != (size_y, size_x):  # last blocks: one shape for the compiler
            region = np.pad(region, ((0, size_y - region.shape[0]), (0, size_x - region.shape[1]), (0, 0)))
        mean = moments[0].astype(np.float32)
        scale = standardization_scale(moments[1], n_win * n_win * image_hwc.shape[-1]).astype(np.float32)
        anchors, _ = self._pad(np.stack([ys - y0, xs - x0], axis=1).astype(np.int32), index, rows * cols)
        affine, index = self._pad(np.stack([mean, scale], axis=1), index, rows * cols)
        return (np.ascontiguousarray(region, np.float32), anchors, affine), index

    def _compile_cut(self) -> Callable[..., Any]:
        from keras import ops

        n_win = self.window

        def cut(region: Any, anchors: Any, affine: Any) -> Any:
            bands = region.shape[-1]
            width = ops.shape(region)[1]
            flat = ops.reshape(region, (-1, bands))
            offsets = ops.arange(n_win, dtype="int32")
            rows = ops.expand_dims(ops.expand_dims(anchors[:, 0], -1) + offsets, -1)  # (n, N, 1)
            cols = ops.expand_dims(ops.expand_dims(anchors[:, 1], -1) + offsets, 1)  # (n, 1, N)
            windows = ops.take(flat, rows * width + cols, axis=0)  # (n, N, N, bands)
            # Bit-identical to standardize_windows: (x - float32 mean) * float32 scale.
            mean = ops.reshape(affine[:, 0], (-1, 1, 1, 1))
            scale = ops.reshape(affine[:, 1], (-1, 1, 1, 1))
            return (windows - mean) * scale

        if self._backend == "tensorflow":
            import tensorflow as tf

            specs = [
                tf.TensorSpec((None, None, self.network.n_bands), tf.float32),
                tf.TensorSpec((None, 2), tf.int32),
                tf.TensorSpec((None, 2), tf.float32),
            ]
            return tf.function(cut, input_signature=specs)
        if self._backend == "jax":
            import jax

            return jax.jit(cut)
        return cut

    def finish_block(self, started: tuple) -> np.ndarray:
        """Softmax, votes and fold of a started block: ``(Y, X, 2C + C // 2)`` sums."""
        logits, index, mask, (rows, cols, stride) = started
        if index is not None and self._backend == "tensorflow":
            logits, index = self._pad_logits(logits, index, rows * cols)
        return np.asarray(self._post(rows, cols, stride, index is not None)(logits, index, mask))

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, K, K, C)`` of the counted inner region of standardised
        ``(B, N, N, bands)`` windows, through the plain Keras model.
        """
        out = np.asarray(self._fn(windows))
        if self._crop:
            c = self._crop
            out = out[:, c:-c, c:-c]
        return out.astype(np.float32, copy=False)


def _padded_size(n: int, grid: int) -> int:
    """``n`` windows of a ``grid``-window block rounded up to a multiple of 1 / PAD_STEPS of it."""
    quantum = -(-grid // PAD_STEPS)
    return min(grid, -(-n // quantum) * quantum)


def _has_gpu(backend: str) -> bool:
    """Whether the Keras backend runs on a GPU in this process."""
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
        if backend == "jax":
            import jax

            return jax.default_backend() != "cpu"
    except Exception:  # pragma: no cover - a broken accelerator setup means no GPU
        return False
    return False
