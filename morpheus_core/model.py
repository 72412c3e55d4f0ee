"""The Morpheus U-Net (paper Table 1) in Keras 3, and the released weights.

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
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from morpheus_core import BANDS, BORDER, CLASSES, PRECISIONS, WINDOW  # noqa: F401 (re-exported)
from morpheus_core.bicubic import bicubic_matrix
from morpheus_core.cards import RELEASED_CARD, ModelCard, nearest_bands

#: Hyper-parameters of the released model (``morpheus/core/model_config.json``).
DOWN_FILTERS = (8, 16, 32)
NUM_DOWN_CONVS = 4
INTERMEDIATE_FILTERS = 16
UP_FILTERS = (8, 16, 32)
NUM_UP_CONVS = 2
DROPOUT_RATE = 0.5
BN_EPSILON = 1e-3  # TF1 default
BN_MOMENTUM = 0.99  # TF1 default

RELEASED_PACKAGE = "morpheus-astro"
RELEASED_VERSION = "0.5.1"
RELEASED_CHECKPOINT = "model-440"
_OPTIMIZER_MARKERS = ("/Adam", "beta1_power", "beta2_power")


class ReleasedWeightsError(RuntimeError):
    """The released Morpheus weights cannot be found or do not fit the network."""


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
    x = layers.BatchNormalization(
        epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn", dtype=dtype
    )(x)
    x = layers.Conv2D(
        filters, 3, padding=padding, activation="relu", name=f"{name}_conv", dtype=dtype
    )(x)
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

    logits = layers.Conv2D(
        n_classes, 3, padding="valid" if crop else "same", name="final_conv_conv", dtype=dtype
    )(x)
    outputs = layers.Activation("softmax", dtype="float32", name="softmax")(logits)
    name = "morpheus_cropped" if crop else "morpheus"
    return keras.Model(inputs, outputs, name=name)


def released_weights_dir() -> Path:
    """Return the folder holding the released TF1 checkpoint of morpheus-astro 0.5.1.

    The package is used for its weight files only; its Python code is never imported.

    Raises
    ------
    ReleasedWeightsError
        If the package is not installed or its checkpoint files are missing.
    """
    try:
        dist = importlib.metadata.distribution(RELEASED_PACKAGE)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ReleasedWeightsError(
            f"the released Morpheus weights come from the PyPI package "
            f"'{RELEASED_PACKAGE}=={RELEASED_VERSION}', which is not installed: "
            f"pip install '{RELEASED_PACKAGE}=={RELEASED_VERSION}'"
        ) from exc
    if dist.version != RELEASED_VERSION:
        raise ReleasedWeightsError(
            f"found {RELEASED_PACKAGE} {dist.version}, need {RELEASED_VERSION} "
            f"(the weights this port was checked against)"
        )
    for f in dist.files or ():
        if f.name == "checkpoint" and "model_weights" in f.parts:
            folder = Path(dist.locate_file(f)).parent
            break
    else:
        raise ReleasedWeightsError(
            f"{RELEASED_PACKAGE} {dist.version} lists no model_weights/checkpoint file"
        )
    for suffix in (".index", ".data-00000-of-00001"):
        path = folder / f"{RELEASED_CHECKPOINT}{suffix}"
        if not path.is_file():
            raise ReleasedWeightsError(f"released checkpoint file missing: {path}")
    return folder


def read_released_checkpoint() -> dict[str, np.ndarray]:
    """Read every non-optimizer tensor of the released checkpoint.

    Returns
    -------
    dict of str to numpy.ndarray
        Checkpoint variable name (e.g. ``downconv-0/conv-0/conv/kernel``) to value.
    """
    import tensorflow as tf  # the TF1 checkpoint format needs TensorFlow's reader

    prefix = str(released_weights_dir() / RELEASED_CHECKPOINT)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as exc:  # corrupted or unreadable files
        raise ReleasedWeightsError(f"cannot read checkpoint {prefix}: {exc}") from exc
    names = reader.get_variable_to_shape_map()
    return {
        name: reader.get_tensor(name)
        for name in sorted(names)
        if not any(marker in name for marker in _OPTIMIZER_MARKERS)
    }


def _checkpoint_names(layer_name: str, kind: str) -> list[str]:
    """Checkpoint variable names of one Keras layer, in Keras weight order."""
    # "downconv-0_conv-1_bn" -> "downconv-0/conv-1"; "intermediate-conv_bn" ->
    # "intermediate-conv"; "final_conv_conv" -> "final_conv".
    scope = layer_name.rsplit("_", 1)[0].replace("_conv-", "/conv-")
    if kind == "bn":
        base = f"{scope}/batch_normalization/"
        return [base + v for v in ("gamma", "beta", "moving_mean", "moving_variance")]
    return [f"{scope}/conv/kernel", f"{scope}/conv/bias"]


def assign_checkpoint(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    """Fill every weight of ``model`` from TF1 checkpoint tensors, each used once.

    Raises
    ------
    ReleasedWeightsError
        If a layer finds no tensor, a shape differs, or a tensor is left over.
    """
    unused = set(tensors)
    for layer in model.layers:
        if not layer.weights:
            continue
        kind = "bn" if isinstance(layer, layers.BatchNormalization) else "conv"
        names = _checkpoint_names(layer.name, kind)
        missing = [n for n in names if n not in tensors]
        if missing:
            raise ReleasedWeightsError(f"layer {layer.name}: checkpoint lacks {missing}")
        values = [tensors[n] for n in names]
        for name, value, weight in zip(names, values, layer.weights):
            if tuple(value.shape) != tuple(weight.shape):
                raise ReleasedWeightsError(
                    f"{name}: checkpoint shape {value.shape} != layer shape {weight.shape}"
                )
            if name not in unused:
                raise ReleasedWeightsError(f"checkpoint tensor {name} used twice")
            unused.discard(name)
        layer.set_weights(values)
    if unused:
        raise ReleasedWeightsError(f"checkpoint tensors not mapped: {sorted(unused)}")


def load_released_model(*, crop: bool = False, precision: str = "float32") -> keras.Model:
    """Build the network and load the released morpheus-astro 0.5.1 weights into it.

    Parameters
    ----------
    crop : bool
        Build the cropped network (see :func:`build_model`).
    precision : {"float32", "bfloat16"}
        Compute precision (see :func:`build_model`).

    Returns
    -------
    keras.Model
        The released Morpheus classifier.

    Raises
    ------
    ReleasedWeightsError
        If the morpheus-astro package or its checkpoint is missing or does not map.
    """
    model = build_model(crop=crop, precision=precision)
    assign_checkpoint(model, read_released_checkpoint())
    return model


def build_for_card(card: ModelCard, *, crop: bool = False, precision: str = "float32") -> keras.Model:
    """The network a model card describes: its bands, classes, window and border.

    Parameters
    ----------
    card : ModelCard
        The card (:mod:`morpheus_core.cards`).
    crop, precision
        As :func:`build_model`.
    """
    return build_model(len(card.bands), len(card.classes), card.window, crop=crop, border=card.border,
                       precision=precision)


def load_model(weights: str | Path | None = None, *, crop: bool = False, precision: str = "float32",
               card: ModelCard | None = None) -> keras.Model:
    """Load the released weights, or a Keras weights file written by training.

    Parameters
    ----------
    weights : str or Path, optional
        A ``.weights.h5`` file saved from :func:`build_model`'s network; None for the
        released weights.
    crop, precision
        As :func:`build_model`.
    card : ModelCard, optional
        The weights' card (bands, classes, window); default the released one's
        (:data:`morpheus_core.cards.RELEASED_CARD`).
    """
    card = RELEASED_CARD if card is None else card
    if weights is None:
        if (card.band_names, card.classes, card.window) != (BANDS, CLASSES, WINDOW):
            raise ReleasedWeightsError(f"the released weights take bands {', '.join(BANDS)} and give classes "
                                       f"{', '.join(CLASSES)}, not those of the card ({card.describe()})")
        return load_released_model(crop=crop, precision=precision)
    path = Path(weights)
    if not path.is_file():
        raise ReleasedWeightsError(f"weights file not found: {path}")
    full = build_for_card(card, precision=precision)
    try:
        full.load_weights(path)
    except Exception as exc:
        raise ReleasedWeightsError(f"cannot load weights from {path}: {exc}") from exc
    if not crop:
        return full
    model = build_for_card(card, crop=True, precision=precision)
    copy_weights(full, model)
    return model


#: Layers whose weights depend on the number of input bands (batch normalisation of
#: the input, first convolution) and on the number of classes (final convolution).
FIRST_LAYERS = ("downconv-0_conv-0_bn", "downconv-0_conv-0_conv")
FINAL_LAYER = "final_conv_conv"


def transfer_weights(source: keras.Model, target: keras.Model, *, source_card: ModelCard,
                     target_card: ModelCard, first_layer: str = "wavelength") -> dict[str, str]:
    """Initialise a network for other bands or classes from trained weights.

    Every weighted layer whose weights have the same shapes in both networks is
    copied. The layers whose shapes change:

    - the input batch normalisation and the first convolution (their input channels
      are the bands): with ``first_layer="wavelength"``, each new band ``j`` takes the
      channel of the source band nearest in log wavelength, ``m(j)``
      (:func:`~morpheus_core.cards.nearest_bands`): batch-normalisation parameters
      and statistics are copied, and the kernel slice is
      ``K_new[:, :, j, :] = K_src[:, :, m(j), :] / N(m(j))`` with ``N(m)`` the number
      of new bands mapped to source band ``m``, so that new bands that saw the same
      image as their source band would give the same first-layer response; the bias
      is copied. With ``first_layer="random"`` both keep ``target``'s initialisation;
    - the final convolution (its output channels are the classes): each class of the
      target that the source also has (by name) takes its kernel column and bias; the
      other classes keep ``target``'s initialisation.

    Parameters
    ----------
    source, target : keras.Model
        Full-window networks of :func:`build_for_card` for ``source_card`` and
        ``target_card``; ``target`` is changed in place.
    source_card, target_card : ModelCard
        Their cards.
    first_layer : {"wavelength", "random"}
        How the band-dependent layers start.

    Returns
    -------
    dict of str to str
        Layer name -> what was done (``copied``, ``mapped ...``, ``initialised``).
    """
    if first_layer not in ("wavelength", "random"):
        raise ValueError(f"first_layer must be 'wavelength' or 'random', got {first_layer!r}")
    if (source_card.window, source_card.border) != (target_card.window, target_card.border):
        raise ValueError("source and target must have the same window and border")
    mapping = nearest_bands(target_card.bands, source_card.bands) if first_layer == "wavelength" else None
    report = {}
    for layer in target.layers:
        if not layer.weights:
            continue
        src = source.get_layer(layer.name).get_weights()
        new = layer.get_weights()
        if [w.shape for w in src] == [w.shape for w in new] and not (
                layer.name in FIRST_LAYERS and source_card.band_names != target_card.band_names) and not (
                layer.name == FINAL_LAYER and source_card.classes != target_card.classes):
            layer.set_weights(src)
            report[layer.name] = "copied"
        elif layer.name in FIRST_LAYERS:
            if mapping is None:
                report[layer.name] = "initialised (random)"
                continue
            counts = np.bincount(mapping, minlength=len(source_card.bands))
            if layer.name.endswith("_bn"):
                values = [w[mapping] for w in src]
            else:
                kernel = src[0][:, :, mapping, :] / counts[mapping][None, None, :, None]
                values = [kernel.astype(src[0].dtype), src[1]]
            layer.set_weights(values)
            pairs = ", ".join(f"{b.name}<-{source_card.bands[m].name}" for b, m in zip(target_card.bands, mapping))
            report[layer.name] = f"mapped by wavelength ({pairs})"
        elif layer.name == FINAL_LAYER:
            kernel, bias = new
            shared = [(k, source_card.classes.index(c)) for k, c in enumerate(target_card.classes)
                      if c in source_card.classes]
            for k, m in shared:
                kernel[..., k] = src[0][..., m]
                bias[k] = src[1][m]
            layer.set_weights([kernel, bias])
            report[layer.name] = (f"classes {', '.join(target_card.classes[k] for k, _ in shared)} copied, "
                                  "others initialised")
        else:
            raise ValueError(f"layer {layer.name}: shapes {[w.shape for w in src]} and {[w.shape for w in new]} "
                             "differ and it is not a band or class layer")
    return report


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy weights layer by layer (matched by name) between Morpheus networks.

    The full-window and cropped networks share all weighted layers, so either can
    be filled from the other.
    """
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
