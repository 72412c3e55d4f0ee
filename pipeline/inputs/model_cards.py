"""Model cards on disk: beside and inside a weights file, and in products.

A Keras weights file ``NAME.weights.h5`` carries its card (:class:`morpheus_core.cards.ModelCard`)
twice: as ``NAME.card.json`` beside it (to read and edit) and as the HDF5 root
attribute ``morpheus_model_card`` inside it (so that a file copied alone keeps it).
The file beside wins when both exist. A weights file written before cards existed
has neither: it is read as a network of the released bands and classes
(:data:`~morpheus_core.cards.RELEASED_CARD`, with a note in its provenance).

The named networks have built-in cards: ``released`` the released one, ``standin``
and ``standin-sky`` the same bands and classes (they are not classifiers of real data).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from morpheus_core.cards import RELEASED_CARD, ModelCard
from pipeline.errors import InputError

__all__ = [
    "H5_ATTRIBUTE",
    "card_for",
    "card_path",
    "catalog_meta",
    "default_flux_band",
    "header_cards",
    "pixel_scale_arcsec",
    "read_card",
    "recorded_header_cards",
    "write_card",
]

#: HDF5 root attribute of a weights file that holds its card (JSON text).
H5_ATTRIBUTE = "morpheus_model_card"
_WEIGHTS_SUFFIX = ".weights.h5"
#: FITS keyword values are at most 68 characters.
_FITS_VALUE = 68


def card_path(weights: str | Path) -> Path:
    """The card file beside a weights file: ``NAME.weights.h5`` -> ``NAME.card.json``."""
    path = Path(weights)
    name = path.name
    stem = name[: -len(_WEIGHTS_SUFFIX)] if name.endswith(_WEIGHTS_SUFFIX) else path.stem
    return path.with_name(f"{stem}.card.json")


def write_card(weights: str | Path, card: ModelCard) -> Path:
    """Write ``card`` beside ``weights`` and into it (HDF5 root attribute).

    Returns
    -------
    Path
        The card file beside the weights.
    """
    import h5py

    from pipeline.rundir.location import atomic_path

    text = card.to_json()
    path = card_path(weights)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    with h5py.File(weights, "r+") as h5:
        h5.attrs[H5_ATTRIBUTE] = text
    return path


def _inside(weights: Path) -> str | None:
    """The card text stored inside a weights file, if any."""
    try:
        import h5py

        with h5py.File(weights, "r") as h5:
            value = h5.attrs.get(H5_ATTRIBUTE)
    except (OSError, ImportError):
        return None
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def read_card(weights: str | Path) -> ModelCard:
    """The card of a weights file: beside it, else inside it, else the released bands and classes.

    Raises
    ------
    InputError
        A card that is not valid (naming the file and the problem).
    """
    weights = Path(weights)
    beside = card_path(weights)
    if beside.is_file():
        source, text = beside, beside.read_text()
    else:
        source, text = weights, _inside(weights) if weights.is_file() else None
    if text is None:
        return replace(
            RELEASED_CARD,
            name=f"Keras weights {weights.name}",
            provenance={
                "note": "weights file without a model card (written before cards existed): "
                "assumed the released bands, pixel scale and classes"
            },
        )
    try:
        return ModelCard.from_json(text)
    except ValueError as exc:
        raise InputError(f"{source}: {exc}") from None


def card_for(model: str) -> ModelCard:
    """The card of a run's ``model`` setting: a named network, or a weights file's card."""
    from pipeline.settings import MODELS

    if model == "released":
        return RELEASED_CARD
    if model in MODELS:
        return replace(RELEASED_CARD, name=MODELS[model], provenance={"note": MODELS[model]})
    return read_card(model)


def _short(text: str) -> str:
    return text if len(text) <= _FITS_VALUE else text[: _FITS_VALUE - 3] + "..."


def header_cards(card: ModelCard) -> dict[str, tuple[Any, str]]:
    """FITS keywords describing a model card (values cut to 68 characters, comments short
    enough for one 80-character card).

    ``MODBANDS`` (band names, channel order), ``MODFILTS`` (filters), ``MODSCALE``
    (arcsec/px), ``MODCLASS`` (classes), ``MODWIN``/``MODBORD`` (window, border).
    """
    return {
        "MODBANDS": (_short(",".join(card.band_names)), "model bands"),
        "MODFILTS": (_short(",".join(b.filter or b.name for b in card.bands)), "model filters"),
        "MODSCALE": (card.pixel_scale_arcsec, "[arcsec/px] model pixel scale"),
        "MODCLASS": (_short(",".join(card.classes)), "model classes"),
        "MODWIN": (card.window, "model window (px)"),
        "MODBORD": (card.border, "model uncounted border (px)"),
    }


def recorded_header_cards(card_dict: dict[str, Any] | None) -> dict[str, tuple[Any, str]]:
    """:func:`header_cards` of a card recorded as :meth:`ModelCard.to_dict` (none if unrecorded)."""
    return header_cards(ModelCard.from_dict(card_dict)) if card_dict else {}


def catalog_meta(card_dict: dict[str, Any] | None) -> dict[str, Any]:
    """Catalog metadata (the :func:`header_cards` keywords) from a recorded card."""
    return {key: value for key, (value, _) in recorded_header_cards(card_dict).items()}


def pixel_scale_arcsec(wcs_header: str) -> float:
    """Mean pixel scale (arcsec/px) of a celestial WCS header string."""
    import warnings

    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(fits.Header.fromstring(wcs_header))
    scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
    return float(math.sqrt(scales[0] * scales[1]))


def default_flux_band(card: ModelCard | None, bands: list[str]) -> str:
    """The flux band when the user names none: the recorded model card's reddest band
    (:meth:`~morpheus_core.cards.ModelCard.flux_band`; H = F160W for the released
    model); for a run recorded before cards (``card`` None), H if the mosaic has it, else its first band.
    """
    if card is not None:
        return card.flux_band()
    return "H" if "H" in bands else bands[0]
