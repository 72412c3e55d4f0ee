"""The Morpheus training loss (paper section 3.3).

``L_tot = lambda_w * L^w + lambda_D * L^D`` (Eq. 11, both weights 1 in the paper):

- ``L^w`` (Eq. 5-9): per-pixel cross entropy ``-sum_k q_ijk log p_ijk`` between the
  target distribution ``q`` and the softmax output ``p``, multiplied by the weight
  ``w_k`` of the pixel's dominant target class and averaged over pixels. Eq. 5 of the
  paper writes ``p`` and ``q`` the other way round; the usual cross entropy (and the
  released training code, ``softmax_cross_entropy_with_logits``) is meant.
- ``L^D`` (Eq. 10): the Dice loss between ``sigmoid(b)``, ``b`` the *background
  logit* (before the softmax), and the background mask ``m = q_background``.

Two details of Eq. 7 are settings, because the paper and the released training code
(morpheus-astro ``morpheus/core/model.py``, which produced the released weights)
differ:

``normalize`` (default True, as the released code)
    The bracket of Eq. 7 is a *mean* over pixels rather than a sum, i.e. ``w_k`` is
    Eq. 7 multiplied by the number of pixels. Then ``L^w`` is the sum over the classes
    present of each class's mean cross entropy (exactly so for one-hot targets), which
    is of order one like ``L^D``; with the literal sum, ``L^w`` is smaller by the
    number of pixels (1,600 per 40x40 window) and ``L^D`` dominates Eq. 11.
``per_image`` (default False, as the released code)
    The weights are computed over the whole batch; True computes them per image, as
    the paper's wording ("in a given image") suggests.

The Dice loss is computed per image and averaged over the batch in both.

All functions take Keras tensors or NumPy arrays, channels last: ``logits`` and ``q``
are ``(batch, N, M, n_c)`` and the background is the last class (as in
:data:`morpheus_core.CLASSES`).
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = [
    "LAMBDA_D",
    "LAMBDA_W",
    "MorpheusLoss",
    "class_weights",
    "dice_loss",
    "morpheus_loss",
    "weighted_cross_entropy",
]

#: lambda_w and lambda_D of Eq. 11 in the paper.
LAMBDA_W = 1.0
LAMBDA_D = 1.0


def _grouped(x: Any, per_image: bool) -> Any:
    """Reshape ``(B, ..., C)`` to ``(G, P, C)``: one group per image or one in all."""
    c = x.shape[-1]
    if per_image:
        return ops.reshape(x, (ops.shape(x)[0], -1, c))
    return ops.reshape(x, (1, -1, c))


def class_weights(q: Any, *, per_image: bool = False, normalize: bool = True) -> Any:
    """Class weights ``w_k`` of Eq. 7.

    ``w_k = [sum_ij max(q_ij) delta(k, argmax q_ij)]^-1``: the inverse of the summed
    dominant-class probability of the pixels whose dominant target class is ``k``.
    Classes that are nobody's dominant class get weight 0 (the paper ignores them).

    Parameters
    ----------
    q : tensor or numpy.ndarray
        ``(B, N, M, n_c)`` target distributions.
    per_image : bool
        Compute one weight vector per image instead of one for the batch.
    normalize : bool
        Average instead of sum over the pixels inside the bracket (the released
        code; ``w_k`` of Eq. 7 times the number of pixels).

    Returns
    -------
    tensor
        ``(B, n_c)`` if ``per_image`` else ``(1, n_c)``.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.zeros((1, 2, 2, 5)); q[..., 4] = 1; q[0, 0, 0] = [0.5, 0.5, 0, 0, 0]
    >>> np.asarray(class_weights(q, normalize=False)).round(3).tolist()
    [[2.0, 0.0, 0.0, 0.0, 0.333]]
    """
    g = _grouped(ops.convert_to_tensor(q), per_image)
    n_c = g.shape[-1]
    dominant = ops.one_hot(ops.argmax(g, axis=-1), n_c, dtype=g.dtype)
    total = ops.sum(dominant * ops.max(g, axis=-1, keepdims=True), axis=1)
    if normalize:
        total = total / ops.cast(ops.shape(g)[1], g.dtype)
    present = total > 0
    return ops.where(present, 1.0 / ops.where(present, total, 1.0), 0.0)


def weighted_cross_entropy(logits: Any, q: Any, *, per_image: bool = False, normalize: bool = True) -> Any:
    """Mean class-weighted cross entropy ``L^w`` of Eq. 9.

    Parameters
    ----------
    logits : tensor or numpy.ndarray
        ``(B, N, M, n_c)`` network outputs before the softmax (``x`` of Eq. 4).
    q : tensor or numpy.ndarray
        ``(B, N, M, n_c)`` target distributions (each pixel sums to 1).
    per_image, normalize : bool
        How the weights of Eq. 7 are computed (:func:`class_weights`).

    Returns
    -------
    tensor
        Scalar: ``mean_ij w_{k_ij} * (-sum_k q_ijk log softmax(x_ij)_k)`` over all
        pixels of all images.
    """
    logits = ops.convert_to_tensor(logits)
    q = ops.cast(ops.convert_to_tensor(q), logits.dtype)
    ce = -ops.sum(q * ops.log_softmax(logits, axis=-1), axis=-1)  # Eq. 5, (B, N, M)
    g = _grouped(q, per_image)
    w = class_weights(q, per_image=per_image, normalize=normalize)  # (G, n_c)
    w_pixel = ops.take_along_axis(w, ops.argmax(g, axis=-1), axis=1)  # Eq. 8, (G, P)
    return ops.mean(w_pixel * ops.reshape(ce, ops.shape(w_pixel)))


def dice_loss(background_logits: Any, mask: Any) -> Any:
    """Dice loss ``L^D`` of Eq. 10, per image, averaged over the batch.

    ``L^D = 1 - 2 sum(S(b) m) / sum(S(b) + m)`` with ``S`` the logistic sigmoid.

    Parameters
    ----------
    background_logits : tensor or numpy.ndarray
        ``(B, N, M)`` background logits ``b`` (not softmax-normalised).
    mask : tensor or numpy.ndarray
        ``(B, N, M)`` background mask ``m`` (1 background, 0 source).

    Returns
    -------
    tensor
        Scalar in [0, 1): 0 when ``S(b) = m``, close to 1 when they do not overlap.
    """
    b = ops.convert_to_tensor(background_logits)
    s = ops.sigmoid(b)
    m = ops.cast(ops.convert_to_tensor(mask), s.dtype)
    axes = tuple(range(1, len(s.shape)))
    overlap = ops.sum(s * m, axis=axes)
    total = ops.sum(s + m, axis=axes)  # > 0: the sigmoid is positive
    return ops.mean(1.0 - 2.0 * overlap / total)


def morpheus_loss(
    logits: Any,
    q: Any,
    *,
    lambda_w: float = LAMBDA_W,
    lambda_d: float = LAMBDA_D,
    per_image: bool = False,
    normalize: bool = True,
) -> Any:
    """Total loss ``L_tot = lambda_w L^w + lambda_D L^D`` of Eq. 11.

    The Dice mask is the background channel of ``q`` (the last class), the Dice input
    the background logit.

    Parameters
    ----------
    logits, q : tensor or numpy.ndarray
        ``(B, N, M, n_c)`` logits and target distributions, background last.
    lambda_w, lambda_d : float
        Weights of the two terms (1 and 1 in the paper).
    per_image, normalize : bool
        See :func:`class_weights`.

    Returns
    -------
    tensor
        Scalar loss.
    """
    logits = ops.convert_to_tensor(logits)
    q = ops.cast(ops.convert_to_tensor(q), logits.dtype)
    lw = weighted_cross_entropy(logits, q, per_image=per_image, normalize=normalize)
    ld = dice_loss(logits[..., -1], q[..., -1])
    return lambda_w * lw + lambda_d * ld


@keras.saving.register_keras_serializable(package="morpheus_core")
class MorpheusLoss(keras.losses.Loss):
    """:func:`morpheus_loss` as a Keras loss: ``y_true`` = q, ``y_pred`` = logits."""

    def __init__(
        self,
        lambda_w: float = LAMBDA_W,
        lambda_d: float = LAMBDA_D,
        per_image: bool = False,
        normalize: bool = True,
        name: str = "morpheus_loss",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.lambda_w, self.lambda_d = float(lambda_w), float(lambda_d)
        self.per_image, self.normalize = bool(per_image), bool(normalize)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        """The loss of a batch (:func:`morpheus_loss`)."""
        return morpheus_loss(
            y_pred,
            y_true,
            lambda_w=self.lambda_w,
            lambda_d=self.lambda_d,
            per_image=self.per_image,
            normalize=self.normalize,
        )

    def get_config(self) -> dict:
        """Serialisable settings of the loss."""
        return {
            **super().get_config(),
            "lambda_w": self.lambda_w,
            "lambda_d": self.lambda_d,
            "per_image": self.per_image,
            "normalize": self.normalize,
        }
