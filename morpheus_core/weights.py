"""Weights for the Morpheus U-Net: the released checkpoint and Keras weights files.

The released weights are the TF1 checkpoint ``model-440`` of the PyPI package
morpheus-astro 0.5.1 (used for its files only, its code is never imported):
:func:`released_weights_dir` finds it, :func:`read_released_checkpoint` reads its
tensors (TensorFlow's checkpoint reader), :func:`assign_checkpoint` puts each into
the layer of :func:`~morpheus_core.model.build_model` it belongs to, exactly once.
:func:`load_model` gives a network with the released weights or with a Keras weights
file written by training (``.weights.h5``, any model card).
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import keras
import numpy as np
from keras import layers

from morpheus_core import BANDS, CLASSES, WINDOW
from morpheus_core.cards import RELEASED_CARD, ModelCard
from morpheus_core.model import build_for_card, build_model
from morpheus_core.transfer import copy_weights

__all__ = [
    "RELEASED_CHECKPOINT",
    "RELEASED_PACKAGE",
    "RELEASED_VERSION",
    "ReleasedWeightsError",
    "assign_checkpoint",
    "load_model",
    "load_released_model",
    "read_released_checkpoint",
    "released_weights_dir",
]

RELEASED_PACKAGE = "morpheus-astro"
RELEASED_VERSION = "0.5.1"
RELEASED_CHECKPOINT = "model-440"
_OPTIMIZER_MARKERS = ("/Adam", "beta1_power", "beta2_power")


class ReleasedWeightsError(RuntimeError):
    """The released Morpheus weights cannot be found or do not fit the network."""


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
        raise ReleasedWeightsError(f"{RELEASED_PACKAGE} {dist.version} lists no model_weights/checkpoint file")
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
                raise ReleasedWeightsError(f"{name}: checkpoint shape {value.shape} != layer shape {weight.shape}")
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
        Build the cropped network (see :func:`~morpheus_core.model.build_model`).
    precision : {"float32", "bfloat16"}
        Compute precision (see :func:`~morpheus_core.model.build_model`).

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


def load_model(
    weights: str | Path | None = None, *, crop: bool = False, precision: str = "float32", card: ModelCard | None = None
) -> keras.Model:
    """Load the released weights, or a Keras weights file written by training.

    Parameters
    ----------
    weights : str or Path, optional
        A ``.weights.h5`` file saved from :func:`~morpheus_core.model.build_model`'s network; None for the
        released weights.
    crop, precision
        As :func:`~morpheus_core.model.build_model`.
    card : ModelCard, optional
        The weights' card (bands, classes, window); default the released one's
        (:data:`morpheus_core.cards.RELEASED_CARD`).
    """
    card = RELEASED_CARD if card is None else card
    if weights is None:
        if (card.band_names, card.classes, card.window) != (BANDS, CLASSES, WINDOW):
            raise ReleasedWeightsError(
                f"the released weights take bands {', '.join(BANDS)} and give classes "
                f"{', '.join(CLASSES)}, not those of the card ({card.describe()})"
            )
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
