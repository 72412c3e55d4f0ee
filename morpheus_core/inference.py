"""The Morpheus network evaluated for inference only: class logits of standardised windows.

:func:`morpheus_core.model.build_model` gives the Keras graph that training and the
port tests use. For classification the engine evaluates the same network, with the same
weights, through :class:`InferenceNetwork`, which differs from calling the Keras model
only in how three operations are written (the function is the same; float rounding may
differ in the last bits; in float32 on oneDNN the output measured bit-identical):

- batch normalisation: in float32, TensorFlow's ``FusedBatchNormV3`` with constant
  parameters, which TensorFlow's graph optimiser rewrites into the same multiply and
  add as the Keras layer (bit-identical output, no gain); in bfloat16, the scale is
  folded into the next convolution's kernel and only the shift ``b / a`` is added in
  bfloat16 (one pass; Keras's ``mixed_bfloat16`` layer casts to float32 and back
  around a multiply and an add, four passes); on other backends XLA fuses the affine
  by itself;
- the bicubic upsampling (:mod:`morpheus_core.bicubic`) is two batched matrix products
  on reshaped activations, without the transposes of an ``einsum``;
- the output is the class logits; the softmax is applied where the statistics are
  accumulated (:mod:`morpheus_core.accumulate`).

Measured on a 2-core CPU (``docs/performance.md``): the ``einsum`` upsampling was 9%
of the cropped Keras network's time and is 3% here; in bfloat16 the batch norm with its
casts was 27% and is 12%.

The layers are read by the names :func:`~morpheus_core.model.build_model` gives them, so
any weights of that network (released or trained) work, full-window or cropped, float32
or bfloat16. The call works on symbolic tensors of any Keras backend (inside
``tf.function`` or ``jax.jit``).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from morpheus_core.model import (
    BN_EPSILON,
    DOWN_FILTERS,
    NUM_DOWN_CONVS,
    NUM_UP_CONVS,
    UP_FILTERS,
    BicubicUpsample2D,
)

__all__ = ["InferenceNetwork"]


class InferenceNetwork:
    """Class logits of a Morpheus network (full-window or cropped), for inference.

    Parameters
    ----------
    model : keras.Model
        A network from :func:`morpheus_core.model.build_model` (any weights).

    Attributes
    ----------
    window, n_bands, n_classes, out_size : int
        Input window size, bands, classes, and output size (window, or its counted
        inner region for the cropped network).
    compute_dtype : str
        ``"float32"`` or ``"bfloat16"`` (from the model's dtype policy).
    """

    def __init__(self, model: keras.Model) -> None:
        self.window = int(model.input_shape[1])
        self.n_bands = int(model.input_shape[-1])
        self.n_classes = int(model.output_shape[-1])
        self.out_size = int(model.output_shape[1])
        self.compute_dtype = str(model.get_layer("final_conv_conv").compute_dtype)
        self._backend = keras.backend.backend()
        self._bn: dict[str, tuple[np.ndarray, ...]] = {}
        self._conv: dict[str, tuple[Any, Any, str]] = {}
        self._up: dict[str, tuple[Any, Any]] = {}
        self._crop: dict[str, int] = {}
        for layer in model.layers:
            name = layer.name
            if isinstance(layer, keras.layers.BatchNormalization):
                gamma, beta, mean, var = (np.asarray(w, np.float32) for w in layer.get_weights())
                if abs(float(layer.epsilon) - BN_EPSILON) > 1e-12:
                    raise ValueError(f"{name}: epsilon {layer.epsilon}, expected {BN_EPSILON}")
                self._bn[name] = (gamma, beta, mean, var)
            elif isinstance(layer, keras.layers.Conv2D):
                kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
                self._conv[name] = (kernel, bias.reshape(1, 1, 1, -1), str(layer.padding))
            elif isinstance(layer, keras.layers.Cropping2D):
                (top, bottom), (left, right) = layer.cropping
                if len({top, bottom, left, right}) != 1:
                    raise ValueError(f"{name}: only symmetric cropping is supported")
                self._crop[name] = int(top)
            elif isinstance(layer, BicubicUpsample2D):
                self._up[name] = (np.asarray(layer._rows[None], np.float32), np.asarray(layer._cols[None], np.float32))
        self._fused_bn = self._backend == "tensorflow"
        # TensorFlow + bfloat16: oneDNN's bfloat16 batch norm measured 37% of the
        # network on an AVX512-BF16 CPU, casting to float32 and back 28%; fold it
        # into the convolutions instead (_fold_batch_norm, 15%).
        self._folded: dict[str, tuple[Any, Any]] = {}
        if self._fused_bn and self.compute_dtype == "bfloat16":
            for name in list(self._bn):
                block = name[: -len("_bn")]
                folded = self._fold_batch_norm(block)
                if folded is not None:
                    self._folded[block] = folded

    def _fold_batch_norm(self, block: str) -> tuple[Any, Any] | None:
        """``conv(a * x + b, W) = conv(x + b / a, W * a)`` per input channel.

        Exact in real arithmetic, also at 'same' borders (the zero padding stays zero).
        In bfloat16 the shift ``b / a`` is itself rounded to 8 bits, so where
        ``a * x + b`` nearly cancels the result is less precise than Keras's float32
        batch norm: on the benchmark tile the top rank-vote class changed on 0 of
        24,649 pixels (Keras's bfloat16: 1), max |diff| of the mean images 0.009
        (Keras's: 0.006); the engine benchmark reports it. None if some ``a`` is 0.
        """
        gamma, beta, mean, var = (v.astype(np.float64) for v in self._bn[f"{block}_bn"])
        a = gamma / np.sqrt(var + BN_EPSILON)
        if np.any(np.abs(a) < 1e-12):
            return None
        b = beta - mean * a
        kernel = self._conv[f"{block}_conv"][0].astype(np.float64)
        scaled = (kernel * a[None, None, :, None]).astype(np.float32)
        return (b / a).astype(np.float32).reshape(1, 1, 1, -1), scaled

    # -- layers -------------------------------------------------------------------
    def _batch_norm(self, x: Any, name: str) -> Any:
        gamma, beta, mean, var = self._bn[name]
        if self._fused_bn:
            import tensorflow as tf

            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                tf.cast(x, tf.float32), gamma, beta, mean=mean, variance=var, epsilon=BN_EPSILON, is_training=False
            )
            return tf.cast(y, x.dtype)
        dtype = x.dtype
        y = ops.batch_normalization(
            ops.cast(x, "float32"), mean, var, axis=-1, offset=beta, scale=gamma, epsilon=BN_EPSILON
        )
        return ops.cast(y, dtype)

    def _const(self, value: np.ndarray) -> Any:
        # NumPy arrays of the compute dtype become graph constants when traced, which
        # grappler and XLA can fold (TensorFlow folds the batch-norm scale into the
        # next convolution's kernel), unlike captured tensors or casts.
        if self.compute_dtype == "float32":
            return value
        import ml_dtypes

        return np.asarray(value, np.float32).astype(getattr(ml_dtypes, self.compute_dtype))

    def _block_op(self, x: Any, name: str) -> Any:
        kernel, bias, padding = self._conv[f"{name}_conv"]
        if name in self._folded:
            shift, kernel = self._folded[name]
            x = ops.add(x, self._const(shift))
        else:
            x = self._batch_norm(x, f"{name}_bn")
        y = ops.conv(x, self._const(kernel), strides=1, padding=padding)
        return ops.relu(ops.add(y, self._const(bias)))

    def _upsample(self, x: Any, name: str) -> Any:
        rows, cols = (self._const(m) for m in self._up[name])
        _, h, w, c = x.shape
        o, p = int(rows.shape[1]), int(cols.shape[1])
        x = ops.matmul(rows, ops.reshape(x, (-1, h, w * c)))  # (b, o, w * c)
        x = ops.matmul(cols, ops.reshape(x, (-1, w, c)))  # (b * o, p, c)
        return ops.reshape(x, (-1, o, p, c))

    # -- network ------------------------------------------------------------------
    def __call__(self, windows: Any) -> Any:
        """Logits ``(batch, out_size, out_size, n_classes)`` float32 of standardised
        ``(batch, window, window, n_bands)`` float32 windows.
        """
        x = ops.cast(windows, self.compute_dtype)
        skips = []
        for i in range(len(DOWN_FILTERS)):
            for j in range(NUM_DOWN_CONVS):
                x = self._block_op(x, f"downconv-{i}_conv-{j}")
            skips.append(x)
            x = ops.max_pool(x, 2, 2, padding="valid")
        x = self._block_op(x, "intermediate-conv")
        for i in range(len(UP_FILTERS)):
            skip = skips[-(i + 1)]
            x = self._upsample(x, f"upconv-{i}_upsample")
            margin = self._crop.get(f"upconv-{i}_crop", 0)
            if margin:
                skip = skip[:, margin:-margin, margin:-margin, :]
            x = ops.concatenate([x, skip], axis=-1)
            for j in range(NUM_UP_CONVS):
                x = self._block_op(x, f"upconv-{i}_conv-{j}")
        kernel, bias, padding = self._conv["final_conv_conv"]
        logits = ops.add(ops.conv(x, self._const(kernel), strides=1, padding=padding), self._const(bias))
        return ops.cast(logits, "float32")
