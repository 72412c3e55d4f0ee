"""What the map's tiles show: the layers of the viewer drawn from one level of the pyramid.

A level of the pyramid (:mod:`pipeline.pyramid`) is a stack of :data:`PLANES`, the
block means of full-resolution quantities over ``f x f`` pixels (``f = 2**(Z - z)``
at level ``z``):

- area fractions (plain means): ``inside`` (pixels of the image, not the padding of
  the last tiles), ``cov`` (the mosaic's coverage), ``clsw`` (classified pixels,
  ``n > 0``) and ``outline`` (pixels on the boundary of a deblended object);
- weighted means: the three bands of the colour composite over covered pixels
  (weight ``cov``), the five class images and the morphological colour image over
  classified pixels (weight ``clsw``).

:func:`reduce_planes` averages a level into the next coarser one exactly (a weighted
mean of weighted means, with the weights' own means), so every level equals the
float64 block mean of the full image. :func:`render` draws one layer as RGBA:

========================  =========================================================
``bands``                 Lupton et al. (2004) asinh RGB of H, J, V
                          (:func:`astropy.visualization.make_lupton_rgb`)
``colour``                the morphological colour image of paper section 6
                          (:func:`morpheus_core.colour.colour_image`, averaged)
``spheroid`` ... ``background``  the class image in the paper's colour: spheroid red,
                          disk blue, irregular green, point source yellow,
                          background white-black (intensity = probability)
``segmentation``          outlines of the deblended objects
``coverage``              white where all bands have data, black where not
========================  =========================================================
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass

import numpy as np

from morpheus_core import CLASSES

__all__ = ["CLASS_COLOURS", "LAYERS", "PLANES", "LuptonSettings", "encode_png", "reduce_planes", "render"]

#: The planes of a level, in storage order.
PLANES = ("inside", "cov", "clsw", "outline", "band_r", "band_g", "band_b",
          *(f"p_{c}" for c in CLASSES), "colour_r", "colour_g", "colour_b")
_INDEX = {name: i for i, name in enumerate(PLANES)}
#: Weight plane of each weighted plane (the others are plain area means).
_WEIGHT = {**{f"band_{c}": "cov" for c in "rgb"}, **{f"p_{c}": "clsw" for c in CLASSES},
           **{f"colour_{c}": "clsw" for c in "rgb"}}

#: The paper's colour of each class image (intensity scales with the probability).
CLASS_COLOURS = {"spheroid": (255, 0, 0), "disk": (0, 0, 255), "irregular": (0, 255, 0),
                 "point_source": (255, 255, 0), "background": (255, 255, 255)}
_OUTLINE_COLOUR = (0, 255, 255)

#: Layers of the map, bottom to top: name -> label shown in the layer list.
LAYERS = {"bands": "H, J, V colour composite (asinh)", "colour": "morphological colour (section 6)",
          **{c: f"{c.replace('_', ' ')} (p)" for c in CLASSES},
          "segmentation": "segmentation outlines (deblended objects)", "coverage": "coverage"}


@dataclass(frozen=True)
class LuptonSettings:
    """Parameters of the asinh colour composite (:func:`astropy.visualization.make_lupton_rgb`).

    Attributes
    ----------
    minimum : tuple of float
        Value subtracted from each of the red (H), green (J) and blue (V) bands.
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
        return cls(minimum=tuple(float(v) for v in data["minimum"]), stretch=float(data["stretch"]),
                   Q=float(data["Q"]))


def reduce_planes(planes: np.ndarray, factor: int = 2) -> np.ndarray:
    """Average a level's planes over ``factor x factor`` blocks (the next coarser level).

    Area planes are plain means; weighted planes are ``sum(w v) / sum(w)`` with their
    weight plane ``w`` (0 where the block has no weight), so that reducing twice by 2
    equals reducing once by 4, and any level equals the block mean of the full image.

    Parameters
    ----------
    planes : numpy.ndarray
        ``(len(PLANES), h, w)``; ``h`` and ``w`` multiples of ``factor``.
    factor : int
        Block size.

    Returns
    -------
    numpy.ndarray
        ``(len(PLANES), h // factor, w // factor)`` float64.
    """
    p, h, w = planes.shape
    if p != len(PLANES) or h % factor or w % factor:
        raise ValueError(f"planes must be ({len(PLANES)}, h, w) with h, w multiples of {factor}, got {planes.shape}")
    blocks = np.asarray(planes, dtype=np.float64).reshape(p, h // factor, factor, w // factor, factor)
    out = blocks.mean(axis=(2, 4))
    for name, weight in _WEIGHT.items():
        wsum = (blocks[_INDEX[weight]] * blocks[_INDEX[name]]).sum(axis=(1, 3))
        norm = blocks[_INDEX[weight]].sum(axis=(1, 3))
        out[_INDEX[name]] = np.divide(wsum, norm, out=np.zeros_like(wsum), where=norm > 0)
    return out


def _plane(planes: np.ndarray, name: str) -> np.ndarray:
    return planes[_INDEX[name]]


def render(layer: str, planes: np.ndarray, *, factor: int, lupton: LuptonSettings) -> np.ndarray:
    """One layer of one level as an RGBA image.

    Parameters
    ----------
    layer : str
        A key of :data:`LAYERS`.
    planes : numpy.ndarray
        ``(len(PLANES), h, w)`` planes of the level (row 0 = lowest ``y``, as FITS).
    factor : int
        Full-resolution pixels per side of one pixel of this level (outlines are
        drawn with an opacity of ``factor`` x their area fraction, so that a line
        across a block stays visible at every zoom).
    lupton : LuptonSettings
        The colour composite's parameters.

    Returns
    -------
    numpy.ndarray
        ``(h, w, 4)`` uint8, transparent outside the layer's data, rows as ``planes``.
    """
    h, w = planes.shape[1:]
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    if layer == "bands":
        from astropy.visualization import make_lupton_rgb

        rgba[..., :3] = make_lupton_rgb(_plane(planes, "band_r"), _plane(planes, "band_g"), _plane(planes, "band_b"),
                                        minimum=list(lupton.minimum), stretch=lupton.stretch, Q=lupton.Q)
        alpha = _plane(planes, "cov") > 0
    elif layer == "colour":
        rgb = np.stack([_plane(planes, f"colour_{c}") for c in "rgb"], axis=-1)
        rgba[..., :3] = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)
        alpha = _plane(planes, "clsw") > 0
    elif layer in CLASS_COLOURS:
        p = np.clip(_plane(planes, f"p_{layer}"), 0.0, 1.0)[..., None]
        rgba[..., :3] = np.round(p * np.asarray(CLASS_COLOURS[layer], dtype=np.float64)).astype(np.uint8)
        alpha = _plane(planes, "clsw") > 0
    elif layer == "segmentation":
        rgba[..., :3] = _OUTLINE_COLOUR
        rgba[..., 3] = np.round(np.clip(_plane(planes, "outline") * factor, 0.0, 1.0) * 255.0).astype(np.uint8)
        return rgba
    elif layer == "coverage":
        rgba[..., :3] = np.round(np.clip(_plane(planes, "cov"), 0.0, 1.0) * 255.0).astype(np.uint8)[..., None]
        alpha = _plane(planes, "inside") > 0
    else:
        raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
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
