"""The bands of the map's colour composite: H, J, V for the released bands, otherwise
three bands chosen by wavelength from the run's model card (:func:`composite_bands`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from morpheus_core.cards import ModelCard

logger = logging.getLogger(__name__)

__all__ = ["RGB_BANDS", "band_wavelengths", "composite_bands"]

#: Bands of the released colour composite (red, green, blue).
RGB_BANDS = ("H", "J", "V")


def composite_bands(bands: Sequence[str], wavelengths: Sequence[float | None] | None = None) -> tuple[int, int, int]:
    """The bands of the colour composite: indices (red, green, blue) among a mosaic's bands.

    H, J and V (F160W, F125W, F606W: the released composite) when the mosaic has bands
    of those names (any case). Otherwise the bands are ranked from the reddest to the
    bluest when every band has a wavelength, else taken in the mosaic's order (which
    for H, J, V, Z also runs from red to blue): red is the first, blue the last and
    green the middle one (rank ``(n - 1) // 2``). One band gives a grey image (red =
    green = blue); two give red = green = the redder (or first), blue the other.

    Parameters
    ----------
    bands : sequence of str
        The mosaic's bands in channel order.
    wavelengths : sequence of float or None, optional
        Each band's wavelength (any unit; ``None`` where unknown), e.g. from the run's
        model card (:func:`band_wavelengths`).

    Returns
    -------
    tuple of int
        Channels of the red, green and blue bands (repeated when there are fewer than three).

    Raises
    ------
    ValueError
        No band, or ``wavelengths`` of another length than ``bands``.

    Examples
    --------
    >>> composite_bands(["H", "J", "V", "Z"])
    (0, 1, 2)
    >>> composite_bands(["F090W", "F150W", "F200W", "F444W"], [0.90, 1.50, 1.99, 4.40])
    (3, 2, 0)
    >>> composite_bands(["r"])
    (0, 0, 0)
    """
    bands = [str(b) for b in bands]
    if not bands:
        raise ValueError("a colour composite needs at least one band, got none")
    if wavelengths is not None and len(wavelengths) != len(bands):
        raise ValueError(
            f"wavelengths must have one value per band: {len(bands)} bands {bands}, got {len(wavelengths)} wavelengths"
        )
    upper = [b.upper() for b in bands]
    if all(b in upper for b in RGB_BANDS):
        return tuple(upper.index(b) for b in RGB_BANDS)
    order = list(range(len(bands)))
    if wavelengths is not None and all(w is not None for w in wavelengths):
        order.sort(key=lambda i: -float(wavelengths[i]))  # stable: equal wavelengths keep the mosaic's order
    return order[0], order[(len(order) - 1) // 2], order[-1]


def band_wavelengths(bands: Sequence[str], card: Mapping[str, Any] | None) -> list[float | None] | None:
    """Each mosaic band's wavelength from a recorded model card (``None`` without a usable card).

    A band is the card's band of that name or filter (any case,
    :meth:`morpheus_core.cards.ModelCard.band_index`); ``None`` for a band the card
    does not know or whose wavelength it does not give.
    """
    if not card:
        return None
    try:
        model = ModelCard.from_dict(card)
    except ValueError:
        logger.warning("map: the classification's model card is unreadable; colour composite in band order")
        return None
    indices = [model.band_index(b) for b in bands]
    return [None if i is None else model.bands[i].wavelength_um for i in indices]
