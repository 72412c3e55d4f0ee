"""Weights moved between Morpheus networks: other bands and classes, full and cropped.

:func:`transfer_weights` starts a network for another model card (other bands, other
classes) from trained weights, mapping new bands to old ones by wavelength
(:func:`~morpheus_core.cards.nearest_bands`); :func:`copy_weights` fills the cropped
network from the full-window one (or back). Both work on the networks of
:func:`morpheus_core.model.build_model` through their layers' ``get_weights`` and
``set_weights`` (NumPy arrays), so this module itself needs no Keras.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from morpheus_core.cards import ModelCard, nearest_bands

if TYPE_CHECKING:
    import keras

__all__ = ["FINAL_LAYER", "FIRST_LAYERS", "copy_weights", "transfer_weights"]

#: Layers whose weights depend on the number of input bands (batch normalisation of
#: the input, first convolution) and on the number of classes (final convolution).
FIRST_LAYERS = ("downconv-0_conv-0_bn", "downconv-0_conv-0_conv")
FINAL_LAYER = "final_conv_conv"


def transfer_weights(
    source: keras.Model,
    target: keras.Model,
    *,
    source_card: ModelCard,
    target_card: ModelCard,
    first_layer: str = "wavelength",
) -> dict[str, str]:
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
        Full-window networks of :func:`~morpheus_core.model.build_for_card` for ``source_card`` and
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
        if (
            [w.shape for w in src] == [w.shape for w in new]
            and not (layer.name in FIRST_LAYERS and source_card.band_names != target_card.band_names)
            and not (layer.name == FINAL_LAYER and source_card.classes != target_card.classes)
        ):
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
            shared = [
                (k, source_card.classes.index(c)) for k, c in enumerate(target_card.classes) if c in source_card.classes
            ]
            for k, m in shared:
                kernel[..., k] = src[0][..., m]
                bias[k] = src[1][m]
            layer.set_weights([kernel, bias])
            report[layer.name] = (
                f"classes {', '.join(target_card.classes[k] for k, _ in shared)} copied, others initialised"
            )
        else:
            raise ValueError(
                f"layer {layer.name}: shapes {[w.shape for w in src]} and {[w.shape for w in new]} "
                "differ and it is not a band or class layer"
            )
    return report


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy weights layer by layer (matched by name) between Morpheus networks.

    The full-window and cropped networks share all weighted layers, so either can
    be filled from the other.
    """
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
