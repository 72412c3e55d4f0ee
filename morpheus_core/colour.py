"""The morphological colour image of paper section 6.

Hue from the dominant morphological class (spheroid red, disk blue, irregular green,
point source yellow), saturation the difference between the two largest
morphological class values (white where the model hesitates), value
``1 - background`` (dark sky, bright sources), converted from HSV to RGB with
scikit-image. The hues are those of the released reference code
(``colorize_classified``: 0, 0.7, 0.3 and 0.18 of the colour wheel), so images look
like the published ones. Unclassified pixels (``n = 0``) are black.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import numpy as np
from skimage.color import hsv2rgb

from morpheus_core import CLASSES

__all__ = ["CLASS_COLOURS", "HUES", "PALETTE", "class_colours", "colour_image"]

#: The paper's colour of each released class image in the interactive map and the region
#: files (intensity scales with the probability).
CLASS_COLOURS = {
    "spheroid": (255, 0, 0),
    "disk": (0, 0, 255),
    "irregular": (0, 255, 0),
    "point_source": (255, 255, 0),
    "background": (255, 255, 255),
}
#: Colours of the classes of other models, in channel order: none is one of the paper's
#: (so red always means spheroid), the outlines' cyan or the selection's magenta.
PALETTE = (
    (255, 128, 0),
    (0, 160, 255),
    (170, 0, 255),
    (128, 255, 0),
    (255, 0, 128),
    (0, 255, 170),
    (255, 200, 120),
    (140, 140, 255),
)


#: Hue (fraction of the colour wheel) of each morphological class.
HUES: Mapping[str, float] = {"spheroid": 0.0, "disk": 0.7, "irregular": 0.3, "point_source": 0.18}


def colour_image(
    mean: np.ndarray, classified: np.ndarray | None = None, *, classes: tuple[str, ...] = CLASSES
) -> np.ndarray:
    """Morphological colour image.

    Parameters
    ----------
    mean : numpy.ndarray
        ``(C, H, W)`` normalised class means with a ``background`` class; the four
        morphological classes of :data:`HUES` take their hues, the classes of another
        model (its card's) hues spread evenly around the wheel.
    classified : numpy.ndarray, optional
        ``(H, W)`` bool classified area; other pixels are black.
    classes : tuple of str
        Class names in channel order.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8 RGB.
    """
    mean = np.asarray(mean, dtype=np.float64)
    classes = tuple(classes)
    others = [c for c in classes if c != "background"]
    if sorted(others) == sorted(HUES):
        names, wheel = list(HUES), list(HUES.values())
    else:
        names, wheel = others, [HUES.get(c, i / len(others)) for i, c in enumerate(others)]
    q = mean[[classes.index(name) for name in names]]
    order = np.argsort(-q, axis=0, kind="stable")
    top = np.take_along_axis(q, order[:2], axis=0)
    hues = np.asarray(wheel)[order[0]]
    saturation = np.clip(top[0] - (top[1] if len(top) > 1 else 0.0), 0.0, 1.0)
    value = np.clip(1.0 - mean[classes.index("background")], 0.0, 1.0)
    if classified is not None:
        value = np.where(np.asarray(classified, dtype=bool), value, 0.0)
    rgb = hsv2rgb(np.stack([hues, saturation, value], axis=-1))
    return np.round(rgb * 255.0).astype(np.uint8)


def class_colours(classes: Sequence[str] = CLASSES) -> dict[str, tuple[int, int, int]]:
    """The colour of each class image (full probability; intensity scales with it).

    The released class names take the paper's colours (:data:`CLASS_COLOURS`: spheroid
    red, disk blue, irregular green, point source yellow); the last class is the
    background (the pipeline's convention) and is white; the other classes take the
    colours of :data:`PALETTE` in channel order, then, past its end, hues spread by the
    golden ratio around the colour wheel.

    Parameters
    ----------
    classes : sequence of str
        The run's classes in channel order (background last).

    Returns
    -------
    dict of str to tuple of int
        Class -> ``(r, g, b)`` in 0-255, in channel order.

    Examples
    --------
    >>> class_colours(("compact", "extended", "background"))
    {'compact': (255, 128, 0), 'extended': (0, 160, 255), 'background': (255, 255, 255)}
    """
    classes = tuple(classes)
    out: dict[str, tuple[int, int, int]] = {}
    k = 0
    for i, name in enumerate(classes):
        if i == len(classes) - 1:
            out[name] = CLASS_COLOURS["background"]
        elif name in CLASS_COLOURS and name != "background":
            out[name] = CLASS_COLOURS[name]
        else:
            if k < len(PALETTE):
                out[name] = PALETTE[k]
            else:
                rgb = colorsys.hsv_to_rgb((0.0833 + 0.618034 * (k - len(PALETTE))) % 1.0, 0.8, 1.0)
                out[name] = tuple(int(round(255 * v)) for v in rgb)
            k += 1
    return out
