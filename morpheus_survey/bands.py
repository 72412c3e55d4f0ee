"""Band images given as arrays: named, put in the network's band order, checked.

:func:`band_stack` takes what a notebook holds (``{"H": h, "J": j, ...}``, or one
``(bands, y, x)`` array with its band names) and returns one ``(band, y, x)`` float32
array in the order of the network's model card, NumPy or Dask as given. Bands are
matched to the card by name or filter in any case (``h``, ``H`` and ``F160W`` are the
released network's H), by the same rule as a mosaic's band files
(:func:`pipeline.inputs.preflight.order_bands`).

:func:`morpheus_core.windows.observed_pixels` is the coverage rule of an ingested mosaic
(:mod:`pipeline.inputs.ingest`): a pixel is classified only where every band is
finite and non-zero, so NaN (unobserved) and exactly 0.0 (the Hubble Legacy Fields'
censored or unobserved pixels) are left out, as ``python -m pipeline run`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputError

__all__ = ["BandStack", "band_stack", "is_dask"]


def is_dask(array: Any) -> bool:
    """Whether ``array`` is a Dask array (without importing Dask for NumPy input)."""
    return type(array).__module__.split(".")[0] == "dask"


@dataclass(frozen=True)
class BandStack:
    """Band images stacked in the network's order.

    Attributes
    ----------
    image : numpy.ndarray or dask.array.Array
        ``(band, y, x)`` float32.
    bands : tuple of str
        The network's band names, in channel order.
    given : tuple of str
        The names the caller gave them, in the same order.
    """

    image: Any
    bands: tuple[str, ...]
    given: tuple[str, ...]

    @property
    def lazy(self) -> bool:
        """Whether the bands are Dask arrays."""
        return is_dask(self.image)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return tuple(self.image.shape[1:])


def _named(images: Any, bands: Sequence[str] | None, card_bands: Sequence[str]) -> dict[str, Any]:
    """``images`` as ``{name: 2-D array}`` in the order given."""
    if isinstance(images, Mapping):
        if bands is not None:
            raise InputError("classify: give band names either as the keys of images or as bands=, not both")
        named = {str(name): image for name, image in images.items()}
    else:
        if not hasattr(images, "ndim"):
            images = np.asarray(images)
        if images.ndim != 3:
            raise InputError(
                f"classify: images must be a dict of 2-D band images or one (band, y, x) array, got "
                f"an array of shape {tuple(images.shape)}"
            )
        names = list(card_bands) if bands is None else [str(b) for b in bands]
        if len(names) != images.shape[0]:
            raise InputError(
                f"classify: bands names {len(names)} band(s) ({', '.join(names)}) but images has "
                f"{images.shape[0]} along its first axis"
            )
        named = {name: images[i] for i, name in enumerate(names)}
    for name, image in named.items():
        if not hasattr(image, "ndim"):
            named[name] = image = np.asarray(image)
        if image.ndim != 2:
            raise InputError(f"classify: band {name!r} must be a 2-D image, got shape {tuple(image.shape)}")
    shapes = {name: tuple(image.shape) for name, image in named.items()}
    if len(set(shapes.values())) > 1:
        first = next(iter(shapes))
        other = next(n for n, s in shapes.items() if s != shapes[first])
        raise InputError(
            f"classify: band {other!r} has shape {shapes[other]}, band {first!r} {shapes[first]}; "
            "the bands must be on one pixel grid"
        )
    return named


def band_stack(images: Any, bands: Sequence[str] | None, card: Any) -> BandStack:
    """Stack band images in the order of the network's model card.

    Parameters
    ----------
    images : dict or array
        ``{band name: 2-D image}`` in any order (NumPy or Dask arrays), or one
        ``(band, y, x)`` array.
    bands : sequence of str, optional
        With a 3-D ``images``: the name of each plane (default: the card's bands, in
        its order).
    card : morpheus_core.cards.ModelCard
        The network's model card.

    Returns
    -------
    BandStack
        The bands in the card's order, float32; a Dask array if any band was one.

    Raises
    ------
    InputError
        Images that are not 2-D, of different shapes, a band the network does not
        take, or one of its bands missing.
    """
    from pipeline.inputs.preflight import order_bands

    named = _named(images, bands, card.band_names)
    names = list(named)
    # order_bands matches names, not arrays: each name stands for its position here.
    ordered = order_bands(
        {name: Path(str(i)) for i, name in enumerate(names)}, card, where="classify(images=...)", read_filters=False
    )
    chosen = [names[int(str(position))] for position in ordered.values()]
    planes = [named[name] for name in chosen]
    if any(is_dask(p) for p in planes):
        import dask.array as da

        first = next(p for p in planes if is_dask(p))
        planes = [p if is_dask(p) else da.from_array(p, chunks=first.chunks) for p in planes]
        image = da.stack([p.astype(np.float32) for p in planes]).rechunk({0: -1})
    else:
        image = np.stack([np.asarray(p, dtype=np.float32) for p in planes])
    return BandStack(image, tuple(ordered), tuple(chosen))
