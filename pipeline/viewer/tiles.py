"""What the map's tiles show: the layers of the viewer drawn from one level of the pyramid.

A level of the pyramid (:mod:`pipeline.viewer.pyramid`) is a stack of :data:`PLANES`, the
block means of full-resolution quantities over ``f x f`` pixels (``f = 2**(Z - z)``
at level ``z``):

- area fractions (plain means): ``inside`` (pixels of the image, not the padding of
  the last tiles), ``cov`` (the mosaic's coverage), ``clsw`` (classified pixels,
  ``n > 0``) and ``outline`` (pixels on the boundary of a deblended object);
- weighted means: the three bands of the colour composite over covered pixels
  (weight ``cov``), the class images (one per class of the run, in channel order) and
  the morphological colour image over classified pixels (weight ``clsw``).

The planes and layers follow the run's classes (its model card's, the
classification store's ``classes`` attribute): :func:`plane_names`,
:func:`layer_labels`; the constants :data:`PLANES` and :data:`LAYERS` are those of the
released classes; the classes' colours are :func:`morpheus_core.colour.class_colours`.

:func:`reduce_planes` averages a level into the next coarser one exactly (a weighted
mean of weighted means, with the weights' own means), so every level equals the
float64 block mean of the full image. :func:`render` draws one layer as RGBA:

========================  =========================================================
``bands``                 Lupton et al. (2004) asinh RGB of three bands (H, J, V
                          for the released bands: :func:`pipeline.viewer.composite.composite_bands`)
                          (:func:`astropy.visualization.make_lupton_rgb`)
``colour``                the morphological colour image of paper section 6
                          (:func:`morpheus_core.colour.colour_image`, averaged)
one layer per class       the class image in its colour (:func:`~morpheus_core.colour.class_colours`):
                          the paper's for spheroid (red), disk (blue), irregular
                          (green), point source (yellow); the last class, background,
                          white-black; other classes colours of :data:`PALETTE`
                          (intensity = probability)
``segmentation``          outlines of the deblended objects
``coverage``              white where all bands have data, black where not
========================  =========================================================
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from morpheus_core import CLASSES
from morpheus_core.colour import class_colours
from pipeline.viewer.composite import RGB_BANDS

__all__ = [
    "LAYERS",
    "PLANES",
    "LuptonSettings",
    "class_layers",
    "encode_png",
    "layer_labels",
    "plane_names",
    "reduce_planes",
    "render",
]

#: Planes before the class images: area fractions, then the composite's bands (weight ``cov``).
_HEAD = ("inside", "cov", "clsw", "outline", "band_r", "band_g", "band_b")
#: Planes after the class images: the morphological colour image (weight ``clsw``).
_TAIL = ("colour_r", "colour_g", "colour_b")
#: Index of each plane that is not a class image (the colour planes counted from the end).
_INDEX = {**{name: i for i, name in enumerate(_HEAD)}, **{name: i - len(_TAIL) for i, name in enumerate(_TAIL)}}
#: First weighted plane, first plane weighted by ``clsw`` (the class images, then the colour image).
_FIRST_BAND, _FIRST_CLASS = _HEAD.index("band_r"), len(_HEAD)

_OUTLINE_COLOUR = (0, 255, 255)
#: Layers that are not class images (class layers may not take these keys).
_BELOW, _ABOVE = ("bands", "colour"), ("segmentation", "coverage")
_PLAIN_KEY = re.compile(r"[a-z][a-z0-9_]*")


def plane_names(classes: Sequence[str] = CLASSES) -> tuple[str, ...]:
    """The planes of a level, in storage order, for a run with these classes.

    Parameters
    ----------
    classes : sequence of str
        The run's classes in channel order.

    Returns
    -------
    tuple of str
        ``inside``, ``cov``, ``clsw``, ``outline``, ``band_r``, ``band_g``, ``band_b``,
        ``p_<class>`` per class, ``colour_r``, ``colour_g``, ``colour_b``.
    """
    return (*_HEAD, *(f"p_{c}" for c in classes), *_TAIL)


def class_layers(classes: Sequence[str] = CLASSES) -> dict[str, str]:
    """The layer key of each class image: its name, or ``class-<channel>``.

    A layer key names the tiles' folder and URL (``tiles/<key>/<z>/<x>/<y>.png``): a
    class name that is a plain lower-case identifier (``[a-z][a-z0-9_]*``) and not one
    of the other layers is its own key (all the released classes); any other name
    (``Sa-b``, ``type 1``, ``coverage``) is keyed by its channel.

    Parameters
    ----------
    classes : sequence of str
        The run's classes in channel order.

    Returns
    -------
    dict of str to str
        Layer key -> class, in channel order.
    """
    return {
        (c if _PLAIN_KEY.fullmatch(c) and c not in (*_BELOW, *_ABOVE) else f"class-{i}"): c
        for i, c in enumerate(classes)
    }


def layer_labels(classes: Sequence[str] = CLASSES, composite: Sequence[str] = RGB_BANDS) -> dict[str, str]:
    """The layers of a run's map, bottom to top: key -> label shown in the layer list.

    Parameters
    ----------
    classes : sequence of str
        The run's classes in channel order (one layer each, :func:`class_layers`).
    composite : sequence of str
        The bands of the colour composite (red, green, blue).

    Returns
    -------
    dict of str to str
        ``bands``, ``colour``, the class layers, ``segmentation``, ``coverage``.
    """
    names = list(dict.fromkeys(composite))
    bands = f"{names[0]} (grey, asinh)" if len(names) == 1 else f"{', '.join(names)} colour composite (asinh)"
    return {
        "bands": bands,
        "colour": "morphological colour (section 6)",
        **{key: f"{c.replace('_', ' ')} (p)" for key, c in class_layers(classes).items()},
        "segmentation": "segmentation outlines (deblended objects)",
        "coverage": "coverage",
    }


#: The planes of a level of a run with the released classes.
PLANES = plane_names(CLASSES)
#: Layers of the map of a run with the released classes and bands (:func:`layer_labels`).
LAYERS = layer_labels(CLASSES, RGB_BANDS)


@dataclass(frozen=True)
class LuptonSettings:
    """Parameters of the asinh colour composite (:func:`astropy.visualization.make_lupton_rgb`).

    Attributes
    ----------
    minimum : tuple of float
        Value subtracted from each of the red, green and blue bands (H, J, V for the
        released bands).
    stretch : float
        Linear stretch of the asinh (in band units).
    Q : float
        Asinh softening parameter.
    """

    minimum: tuple[float, float, float]
    stretch: float
    Q: float = 8.0

    def to_json(self) -> dict:
        """The settings as a JSON object."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> LuptonSettings:
        """Read back :meth:`to_json`."""
        return cls(minimum=tuple(float(v) for v in data["minimum"]), stretch=float(data["stretch"]), Q=float(data["Q"]))


def reduce_planes(planes: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average a level's planes over ``factor x factor`` blocks (the next coarser level).

    Area planes are plain means; weighted planes are ``sum(w v) / sum(w)`` with their
    weight plane ``w`` (0 where the block has no weight), so that reducing twice by 2
    equals reducing once by 4, and any level equals the block mean of the full image.

    Parameters
    ----------
    planes : numpy.ndarray
        ``(P, h, w)`` with the planes of :func:`plane_names` (``P = 10 + C`` for ``C``
        classes); ``h`` and ``w`` multiples of ``factor``.
    factor : int
        Block size.

    Returns
    -------
    numpy.ndarray
        ``(P, h // factor, w // factor)`` float64.

    Raises
    ------
    ValueError
        Fewer planes than two classes need, or a size that is not a multiple of ``factor``.
    """
    p, h, w = planes.shape
    least = len(plane_names(CLASSES[-2:]))
    if p < least or h % factor or w % factor:
        raise ValueError(
            f"planes must be (P, h, w) with P >= {least} (10 + the number of classes) and h, w "
            f"multiples of {factor}, got {planes.shape}"
        )
    blocks = np.asarray(planes, dtype=np.float64).reshape(p, h // factor, factor, w // factor, factor)
    out = blocks.mean(axis=(2, 4))
    for index in range(_FIRST_BAND, p):
        weight = _INDEX["cov"] if index < _FIRST_CLASS else _INDEX["clsw"]
        wsum = (blocks[weight] * blocks[index]).sum(axis=(1, 3))
        norm = blocks[weight].sum(axis=(1, 3))
        out[index] = np.divide(wsum, norm, out=np.zeros_like(wsum), where=norm > 0)
    return out


def _plane(planes: np.ndarray, name: str) -> np.ndarray:
    return planes[_INDEX[name]]


def render(
    layer: str, planes: np.ndarray, *, factor: int, lupton: LuptonSettings, classes: Sequence[str] = CLASSES
) -> np.ndarray:
    """One layer of one level as an RGBA image.

    Parameters
    ----------
    layer : str
        A key of :func:`layer_labels` for ``classes``.
    planes : numpy.ndarray
        ``(P, h, w)`` planes of the level (:func:`plane_names` of ``classes``; row 0 =
        lowest ``y``, as FITS).
    factor : int
        Full-resolution pixels per side of one pixel of this level (outlines are
        drawn with an opacity of ``factor`` x their area fraction, so that a line
        across a block stays visible at every zoom).
    lupton : LuptonSettings
        The colour composite's parameters.
    classes : sequence of str
        The run's classes in channel order (default: the released ones).

    Returns
    -------
    numpy.ndarray
        ``(h, w, 4)`` uint8, transparent outside the layer's data, rows as ``planes``.

    Raises
    ------
    ValueError
        An unknown layer, or planes that are not those of ``classes``.
    """
    classes = tuple(classes)
    if planes.shape[0] != len(plane_names(classes)):
        raise ValueError(
            f"planes of {len(classes)} classes must be ({len(plane_names(classes))}, h, w), got {planes.shape}"
        )
    by_key = class_layers(classes)
    h, w = planes.shape[1:]
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    if layer == "bands":
        from astropy.visualization import make_lupton_rgb

        rgba[..., :3] = make_lupton_rgb(
            _plane(planes, "band_r"),
            _plane(planes, "band_g"),
            _plane(planes, "band_b"),
            minimum=list(lupton.minimum),
            stretch=lupton.stretch,
            Q=lupton.Q,
        )
        alpha = _plane(planes, "cov") > 0
    elif layer == "colour":
        rgb = np.stack([_plane(planes, f"colour_{c}") for c in "rgb"], axis=-1)
        rgba[..., :3] = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
        alpha = _plane(planes, "clsw") > 0
    elif layer in by_key:
        name = by_key[layer]
        p = np.clip(planes[_FIRST_CLASS + classes.index(name)], 0.0, 1.0)[..., None]
        rgba[..., :3] = np.round(p * np.asarray(class_colours(classes)[name], dtype=np.float64)).astype(np.uint8)
        alpha = _plane(planes, "clsw") > 0
    elif layer == "segmentation":
        rgba[..., :3] = _OUTLINE_COLOUR
        rgba[..., 3] = np.round(np.clip(_plane(planes, "outline") * factor, 0.0, 1.0) * 255.0).astype(np.uint8)
        return rgba
    elif layer == "coverage":
        rgba[..., :3] = np.round(np.clip(_plane(planes, "cov"), 0.0, 1.0) * 255.0).astype(np.uint8)[..., None]
        alpha = _plane(planes, "inside") > 0
    else:
        raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(layer_labels(classes))}")
    rgba[..., 3] = np.where(alpha, 255, 0)
    return rgba


def encode_png(rgba: np.ndarray) -> bytes:
    """A PNG of an RGBA image whose row 0 is its lowest ``y`` (the PNG's top row is the highest).

    Parameters
    ----------
    rgba : numpy.ndarray
        ``(h, w, 4)`` uint8.

    Returns
    -------
    bytes
        The PNG file's content.
    """
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba[::-1])).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
