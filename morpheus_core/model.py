"""The Morpheus U-Net (paper Table 1) in Keras 3.

The network follows the conventions of the released model (morpheus-astro 0.5.1, its
TF1 graph and checkpoint):
block operation = batch normalisation (epsilon 1e-3) -> 3x3 'same' convolution with
bias -> ReLU (-> dropout in training); contraction blocks of 4 operations with 8, 16,
32 filters, each followed by 2x2 max pooling; one intermediate operation with 16
filters; expansion blocks of 2 operations with 8, 16, 32 filters, each preceded by a
TF1-legacy bicubic upsampling (``align_corners=True``) and the concatenation
``[upsampled, skip]``; a final 3x3 convolution to the class logits and a softmax.

The model is backend neutral (TensorFlow by default, JAX and PyTorch also run it):
the bicubic upsampling is two small matrix products (:mod:`morpheus_core.bicubic`).

``build_model(..., crop=True)`` builds the *cropped* network used by the statistics
engine: only the inner ``window - 2 * border`` pixels of each window's output are ever
counted, so the last expansion block and the final convolution run with 'valid'
padding on the central region that reaches them. On those pixels it computes exactly
the same values as the full-window network, with about a quarter fewer FLOPs.

Weights: :mod:`morpheus_core.weights` loads the released checkpoint or a weights file
into these networks, :mod:`morpheus_core.transfer` moves weights between them.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops

from morpheus_core import BANDS, BORDER, CLASSES, PRECISIONS, WINDOW
from morpheus_core.bicubic import bicubic_matrix
from morpheus_core.cards import ModelCard

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "DOWN_FILTERS",
    "DROPOUT_RATE",
    "INTERMEDIATE_FILTERS",
    "NUM_DOWN_CONVS",
    "NUM_UP_CONVS",
    "UP_FILTERS",
    "BicubicUpsample2D",
    "build_for_card",
    "build_model",
]

#: Hyper-parameters of the released model (``morpheus/core/model_config.json``).
DOWN_FILTERS = (8, 16, 32)
NUM_DOWN_CONVS = 4
INTERMEDIATE_FILTERS = 16
UP_FILTERS = (8, 16, 32)
NUM_UP_CONVS = 2
DROPOUT_RATE = 0.5
BN_EPSILON = 1e-3  # TF1 default
BN_MOMENTUM = 0.99  # TF1 default


@keras.saving.register_keras_serializable(package="morpheus_core")
class BicubicUpsample2D(layers.Layer):
    """Upsample ``(batch, h, w, c)`` by an integer factor like TF1 ``resize_bicubic``.

    Parameters
    ----------
    factor : int
        Size multiplier of both spatial axes.
    crop : int
        Number of output rows/columns dropped on each side (the resized image is never
        materialised outside the kept region).
    """

    def __init__(self, factor: int = 2, crop: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor = int(factor)
        self.crop = int(crop)

    def build(self, input_shape: tuple) -> None:
        """Precompute the row and column interpolation matrices for ``input_shape``."""
        _, h, w, _ = input_shape
        rows = bicubic_matrix(h, h * self.factor)
        cols = bicubic_matrix(w, w * self.factor)
        if self.crop:
            rows = rows[self.crop : -self.crop]
            cols = cols[self.crop : -self.crop]
        self._rows = rows
        self._cols = cols

    def call(self, x: Any) -> Any:
        """Upsample ``(batch, h, w, c)`` to ``(batch, factor * h - 2 crop, ...)``."""
        rows = ops.convert_to_tensor(self._rows, dtype=self.compute_dtype)
        cols = ops.convert_to_tensor(self._cols, dtype=self.compute_dtype)
        x = ops.einsum("oh,bhwc->bowc", rows, x)
        return ops.einsum("pw,bowc->bopc", cols, x)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Output shape for Keras' shape inference."""
        b, h, w, c = input_shape
        return (b, h * self.factor - 2 * self.crop, w * self.factor - 2 * self.crop, c)

    def get_config(self) -> dict:
        """Serialisable settings (``factor``, ``crop``)."""
        return {**super().get_config(), "factor": self.factor, "crop": self.crop}


def _block_op(x: Any, filters: int, name: str, *, padding: str = "same", dtype: Any = None) -> Any:
    """One block operation, Eq. (1): ReLU(CONV_Q(BN(x))), then dropout (training only)."""
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn", dtype=dtype)(x)
    x = layers.Conv2D(filters, 3, padding=padding, activation="relu", name=f"{name}_conv", dtype=dtype)(x)
    return layers.Dropout(DROPOUT_RATE, name=f"{name}_dropout", dtype=dtype)(x)


def build_model(
    n_bands: int = len(BANDS),
    n_classes: int = len(CLASSES),
    window: int = WINDOW,
    *,
    crop: bool = False,
    border: int = BORDER,
    precision: str = "float32",
) -> keras.Model:
    """Build the Morpheus U-Net of paper Table 1.

    Parameters
    ----------
    n_bands : int
        Number of input bands (channels, last axis), 4 for the released model.
    n_classes : int
        Number of output classes, 5 for the released model.
    window : int
        Window size in pixels; must be divisible by 8 (three 2x2 poolings).
    crop : bool
        If True, return only the inner ``window - 2 * border`` pixels of each window,
        computed with 'valid' convolutions on the region that reaches them (exactly the
        values the full network gives there, with fewer FLOPs).
    border : int
        Border width excluded from the output when ``crop`` is True (at least 3).
    precision : {"float32", "bfloat16"}
        ``"bfloat16"`` computes with the Keras ``mixed_bfloat16`` policy (variables in
        float32); the softmax is always float32.

    Returns
    -------
    keras.Model
        Input ``(batch, window, window, n_bands)``, output softmax probabilities
        ``(batch, S, S, n_classes)`` with ``S = window`` or ``window - 2 * border``.
    """
    if window % 8:
        raise ValueError(f"window must be divisible by 8, got {window}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if crop and not 3 <= border < window // 2:
        raise ValueError(f"crop needs 3 <= border < window/2, got border={border}")
    dtype = "mixed_bfloat16" if precision == "bfloat16" else None

    inputs = keras.Input((window, window, n_bands), name="windows")
    x = inputs
    skips = []
    for i, filters in enumerate(DOWN_FILTERS):
        for j in range(NUM_DOWN_CONVS):
            x = _block_op(x, filters, f"downconv-{i}_conv-{j}", dtype=dtype)
        skips.append(x)
        x = layers.MaxPooling2D(2, 2, name=f"downconv-{i}_pool", dtype=dtype)(x)
    x = _block_op(x, INTERMEDIATE_FILTERS, "intermediate-conv", dtype=dtype)

    last = len(UP_FILTERS) - 1
    for i, filters in enumerate(UP_FILTERS):
        skip = skips[-(i + 1)]
        # 'valid' convolutions in the last block and the final layer shrink the map by
        # 2 pixels each: 3 of them need a margin of 3 around the counted region.
        margin = border - 3 if (crop and i == last) else 0
        x = BicubicUpsample2D(2, crop=margin, name=f"upconv-{i}_upsample", dtype=dtype)(x)
        if margin:
            skip = layers.Cropping2D(margin, name=f"upconv-{i}_crop", dtype=dtype)(skip)
        x = layers.Concatenate(axis=-1, name=f"upconv-{i}_concat", dtype=dtype)([x, skip])
        padding = "valid" if (crop and i == last) else "same"
        for j in range(NUM_UP_CONVS):
            x = _block_op(x, filters, f"upconv-{i}_conv-{j}", padding=padding, dtype=dtype)

    logits = layers.Conv2D(n_classes, 3, padding="valid" if crop else "same", name="final_conv_conv", dtype=dtype)(x)
    outputs = layers.Activation("softmax", dtype="float32", name="softmax")(logits)
    name = "morpheus_cropped" if crop else "morpheus"
    return keras.Model(inputs, outputs, name=name)


def build_for_card(card: ModelCard, *, crop: bool = False, precision: str = "float32") -> keras.Model:
    """The network a model card describes: its bands, classes, window and border.

    Parameters
    ----------
    card : ModelCard
        The card (:mod:`morpheus_core.cards`).
    crop, precision
        As :func:`build_model`.
    """
    return build_model(
        len(card.bands), len(card.classes), card.window, crop=crop, border=card.border, precision=precision
    )
