"""Training metrics of paper section 3.5: pixel accuracy (Eq. 14) and background IoU
(Eq. 15).

Both pool all pixels of all images given (as the running metrics of the released
training code do), so the value for an evaluation set does not depend on how it is cut
into batches. Accuracies are fractions in [0, 1]; the paper quotes percentages.
"""

from __future__ import annotations

import numpy as np

from morpheus_core import CLASSES

__all__ = ["IOU_THRESHOLDS", "background_iou", "evaluate", "pixel_accuracy"]

#: Background thresholds ``B`` of Table 3.
IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9)


def _check_pair(p: np.ndarray, q: np.ndarray) -> None:
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")


def pixel_accuracy(p: np.ndarray, q: np.ndarray, classes: tuple[str, ...] = CLASSES) -> dict[str, float]:
    """Pixel accuracy ``A`` of Eq. 14, over all pixels and per dominant target class.

    A pixel is correct when the dominant class of the output (Eq. 13) equals the
    dominant class of the target (Eq. 6). The accuracy of class ``k`` is that fraction
    among the pixels whose dominant target class is ``k`` (Table 3 rows).

    Parameters
    ----------
    p, q : numpy.ndarray
        ``(..., n_c)`` output and target distributions (logits work as well as
        probabilities for ``p``: only the argmax is used).
    classes : tuple of str
        Class names in channel order.

    Returns
    -------
    dict
        ``{"all": A, <class>: A_k, ...}`` as fractions; NaN for a class that is no
        pixel's dominant target class.
    """
    p, q = np.asarray(p), np.asarray(q)
    _check_pair(p, q)
    if p.shape[-1] != len(classes):
        raise ValueError(f"got {p.shape[-1]} classes, expected {len(classes)} ({classes})")
    k_p = p.reshape(-1, p.shape[-1]).argmax(axis=1)
    k_q = q.reshape(-1, q.shape[-1]).argmax(axis=1)
    hit = k_p == k_q
    out = {"all": float(hit.mean()) if hit.size else float("nan")}
    for k, name in enumerate(classes):
        sel = k_q == k
        out[name] = float(hit[sel].mean()) if sel.any() else float("nan")
    return out


def background_iou(
    p_background: np.ndarray, q_background: np.ndarray, thresholds: tuple[float, ...] = IOU_THRESHOLDS
) -> np.ndarray:
    """Intersection over union of the background regions, Eq. 15.

    ``IoU(B) = |{p_b > B} & {q_b > B}| / |{p_b > B} | {q_b > B}|``.

    Parameters
    ----------
    p_background, q_background : numpy.ndarray
        Output (softmax) and target background images of any matching shape.
    thresholds : tuple of float
        The thresholds ``B``.

    Returns
    -------
    numpy.ndarray
        ``(len(thresholds),)`` float64; NaN where both regions are empty.
    """
    pb, qb = np.asarray(p_background), np.asarray(q_background)
    _check_pair(pb, qb)
    out = np.empty(len(thresholds))
    for i, b in enumerate(thresholds):
        in_p, in_q = pb > b, qb > b
        union = np.count_nonzero(in_p | in_q)
        out[i] = np.count_nonzero(in_p & in_q) / union if union else np.nan
    return out


def evaluate(
    p: np.ndarray,
    q: np.ndarray,
    classes: tuple[str, ...] = CLASSES,
    thresholds: tuple[float, ...] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """All metrics of Table 3 with flat names, for logging.

    Parameters
    ----------
    p, q : numpy.ndarray
        ``(..., n_c)`` softmax outputs and targets, background last.

    Returns
    -------
    dict
        ``accuracy`` (all classes), ``accuracy_<class>`` and ``iou_<B>`` (e.g.
        ``iou_0.5``).
    """
    acc = pixel_accuracy(p, q, classes)
    out = {"accuracy": acc.pop("all")}
    out.update({f"accuracy_{name}": value for name, value in acc.items()})
    iou = background_iou(np.asarray(p)[..., -1], np.asarray(q)[..., -1], thresholds)
    out.update({f"iou_{b:g}": float(v) for b, v in zip(thresholds, iou)})
    return out
