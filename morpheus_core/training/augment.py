"""Data augmentation of paper section 3.2 (Figure 3).

Each training image is rotated by a random angle in [0, 2 pi) about its centre, flipped
left-right with probability 1/2, flipped up-down with probability 1/2, cropped to its
central 60x60 pixels, and a random 40x40 window of that crop goes to the network. The
image and its per-pixel targets go through the same transform.

The whole chain is one affine map from output to input pixel coordinates
(:func:`augmentation_coordinates`), so each output pixel is interpolated once, straight
from the original image (:func:`scipy.ndimage.map_coordinates`): bilinear for the image,
nearest neighbour for the targets (which therefore stay exact distributions and an
exact 0/1 background mask). Pixels that rotate in from outside the image (thumbnails
smaller than ``crop * sqrt(2)``, 85 px for the defaults) are filled by mirroring, the
same way in image and targets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates

from morpheus_core import WINDOW

__all__ = ["CROP", "Augmentation", "augment", "augmentation_coordinates", "draw_augmentation"]

#: Side of the centre crop (section 3.2); the window is the network's, :data:`morpheus_core.WINDOW`.
CROP = 60


@dataclass(frozen=True)
class Augmentation:
    """One draw of the augmentation parameters.

    Attributes
    ----------
    angle : float
        Rotation angle in radians, counter-clockwise as displayed with the origin at
        the lower left (FITS convention).
    flip_lr, flip_ud : bool
        Mirror left-right (x) and up-down (y), after the rotation.
    offset : (int, int)
        ``(dy, dx)`` of the window inside the centre crop, each in
        ``[0, crop - window]``.
    """

    angle: float = 0.0
    flip_lr: bool = False
    flip_ud: bool = False
    offset: tuple[int, int] = (0, 0)


def draw_augmentation(rng: np.random.Generator, *, crop: int = CROP, window: int = WINDOW) -> Augmentation:
    """Draw random augmentation parameters as section 3.2 does.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    crop, window : int
        Centre-crop and window sides.

    Returns
    -------
    Augmentation
    """
    _check_sizes(crop, window)
    return Augmentation(
        angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        flip_lr=bool(rng.integers(2)),
        flip_ud=bool(rng.integers(2)),
        offset=(int(rng.integers(crop - window + 1)), int(rng.integers(crop - window + 1))),
    )


def _check_sizes(crop: int, window: int) -> None:
    if not 1 <= window <= crop:
        raise ValueError(f"need 1 <= window <= crop, got window={window}, crop={crop}")


def augmentation_coordinates(
    shape: tuple[int, int], aug: Augmentation, *, crop: int = CROP, window: int = WINDOW
) -> np.ndarray:
    """Input-pixel coordinates of each output pixel of an augmentation.

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of the input image (at least ``crop`` on each side).
    aug : Augmentation
        The transform.
    crop, window : int
        Centre-crop and window sides.

    Returns
    -------
    numpy.ndarray
        ``(2, window, window)`` float64 ``(y, x)`` input coordinates, 0-based with
        integers at pixel centres.

    Raises
    ------
    ValueError
        If the image is smaller than the crop or the offset leaves the crop.
    """
    _check_sizes(crop, window)
    h, w = int(shape[0]), int(shape[1])
    if h < crop or w < crop:
        raise ValueError(f"image must be at least {crop}x{crop} pixels, got {h}x{w}")
    dy, dx = aug.offset
    if not (0 <= dy <= crop - window and 0 <= dx <= crop - window):
        raise ValueError(f"offset must be in [0, {crop - window}], got {aug.offset}")
    # Output (v, u) -> crop -> rotated-and-flipped image (same frame as the input).
    v, u = np.mgrid[:window, :window].astype(np.float64)
    y = v + dy + (h - crop) // 2
    x = u + dx + (w - crop) // 2
    if aug.flip_ud:
        y = (h - 1) - y
    if aug.flip_lr:
        x = (w - 1) - x
    # Undo the rotation about the image centre. Row index grows downwards on screen
    # but upwards in FITS displays; with y up, content turning counter-clockwise by
    # `angle` means an output point came from the input point turned by -angle.
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    c, s = math.cos(aug.angle), math.sin(aug.angle)
    ry, rx = y - cy, x - cx
    src_x = cx + c * rx + s * ry
    src_y = cy - s * rx + c * ry
    return np.stack([src_y, src_x])


def _sample(channels_last: np.ndarray, coords: np.ndarray, order: int) -> np.ndarray:
    out = np.empty(coords.shape[1:] + channels_last.shape[2:], dtype=np.float32)
    flat = channels_last.reshape(channels_last.shape[:2] + (-1,))
    out_flat = out.reshape(coords.shape[1:] + (-1,))
    for ch in range(flat.shape[-1]):
        out_flat[..., ch] = map_coordinates(flat[..., ch], coords, order=order, mode="mirror", prefilter=False)
    return out


def augment(
    image: np.ndarray,
    target: np.ndarray | None,
    aug: Augmentation,
    *,
    crop: int = CROP,
    window: int = WINDOW,
    image_order: int = 1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply one augmentation to an image and its targets together.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W, bands)`` (or ``(H, W)``) image.
    target : numpy.ndarray or None
        ``(H, W, ...)`` per-pixel targets (distributions, masks) or None.
    aug : Augmentation
        The transform (:func:`draw_augmentation`).
    crop, window : int
        Centre-crop and window sides.
    image_order : int
        Spline order for the image (1: bilinear). Targets always use nearest
        neighbour (order 0).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None)
        float32 ``(window, window, bands)`` image and ``(window, window, ...)``
        targets.

    Raises
    ------
    ValueError
        If image and target differ in ``(H, W)`` or are smaller than ``crop``.
    """
    image = np.asarray(image)
    if target is not None and np.shape(target)[:2] != image.shape[:2]:
        raise ValueError(
            f"image and target must have the same (H, W), got {image.shape[:2]} and {np.shape(target)[:2]}"
        )
    coords = augmentation_coordinates(image.shape[:2], aug, crop=crop, window=window)
    out = _sample(image, coords, image_order)
    out_target = None if target is None else _sample(np.asarray(target), coords, 0)
    return out, out_target
