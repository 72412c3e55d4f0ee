"""Model cards: what a set of Morpheus weights expects and where it came from.

Every set of weights travels with a small card (a JSON document; the file handling
is :mod:`pipeline.inputs.model_cards`): the input bands in channel order (name, filter and
nominal wavelength), the pixel scale it was trained at, the output classes in channel
order, the window and its uncounted border, the input standardisation, and its
provenance (trained from what, by which command, with which metrics). A run matches
a mosaic's bands to the card's by name, in the card's order, and checks its pixel
scale; the products take their class list from the card.

The released weights (morpheus-astro 0.5.1) have :data:`RELEASED_CARD`: H (F160W),
J (F125W), V (F606W), Z (F850LP) at 0.06"/px, classes spheroid, disk, irregular,
point source and background.

:func:`nearest_bands` maps new bands onto a card's bands by wavelength; fine-tuning
uses it to initialise the first convolution of a network with other bands
(:func:`morpheus_core.transfer.transfer_weights`).

No dependency beyond the standard library and NumPy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from morpheus_core import BANDS, BORDER, CLASSES, WINDOW

__all__ = [
    "BACKGROUND",
    "CARD_FORMAT",
    "CARD_VERSION",
    "JWST_NIRCAM_BANDS",
    "RELEASED_BANDS",
    "RELEASED_CARD",
    "STANDARDIZATION",
    "Band",
    "ModelCard",
    "nearest_bands",
    "parse_band",
]

#: ``format`` of a card document.
CARD_FORMAT = "morpheus-model-card"
#: Version of the card document this code writes.
CARD_VERSION = 1
#: The released network's input standardisation (TensorFlow's ``per_image_standardization``
#: of each window, all bands jointly: :func:`morpheus_core.windows.standardize_windows`).
STANDARDIZATION: dict[str, str] = {
    "method": "per_image_standardization",
    "scope": "each window, all bands jointly",
    "formula": "(x - mean(x)) / max(std(x), 1 / sqrt(window * window * n_bands))",
}
#: The class every card ends with: segmentation, the loss and the metrics need it last.
BACKGROUND = "background"


@dataclass(frozen=True)
class Band:
    """One input band of a model.

    Attributes
    ----------
    name : str
        Short name used in mosaics and training sets (``H``, ``F150W``, ...).
    filter : str
        Instrument filter (``F160W``); a mosaic may name the band by either.
    wavelength_um : float, optional
        Nominal (pivot) wavelength in micrometres.
    """

    name: str
    filter: str = ""
    wavelength_um: float | None = None

    def labels(self) -> tuple[str, ...]:
        """The names a mosaic may use for this band (upper case): name and filter."""
        return tuple(dict.fromkeys(s.upper() for s in (self.name, self.filter) if s))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"name": self.name, "filter": self.filter, "wavelength_um": self.wavelength_um}


#: The released model's bands: HST WFC3/IR and ACS/WFC pivot wavelengths.
RELEASED_BANDS: tuple[Band, ...] = (
    Band("H", "F160W", 1.5369),
    Band("J", "F125W", 1.2486),
    Band("V", "F606W", 0.5921),
    Band("Z", "F850LP", 0.9033),
)
assert tuple(b.name for b in RELEASED_BANDS) == BANDS

#: JWST NIRCam wide filters (pivot wavelengths, um) for JWST-like band sets.
JWST_NIRCAM_BANDS: dict[str, Band] = {
    b.name: b
    for b in (
        Band("F090W", "F090W", 0.9022),
        Band("F115W", "F115W", 1.1543),
        Band("F150W", "F150W", 1.5007),
        Band("F200W", "F200W", 1.9886),
        Band("F277W", "F277W", 2.7617),
        Band("F356W", "F356W", 3.5684),
        Band("F410M", "F410M", 4.0822),
        Band("F444W", "F444W", 4.4043),
    )
}


@dataclass(frozen=True)
class ModelCard:
    """What a set of weights expects, and where it came from.

    Attributes
    ----------
    bands : tuple of Band
        Input bands in channel order.
    classes : tuple of str
        Output classes in channel order; the last is ``background``.
    pixel_scale_arcsec : float
        Pixel scale of the images it was trained on (arcsec per pixel).
    window, border : int
        Window size and the border whose outputs are never counted.
    name : str
        Short description (manifests, FITS headers).
    standardization : dict
        How each window is standardised (:data:`STANDARDIZATION`).
    provenance : dict
        Free-form record: ``trained_from``, ``command``, ``metrics``, ``data``, ...

    Raises
    ------
    ValueError
        No band, duplicate band names or filters, fewer than two classes, duplicate
        classes, a last class other than ``background``, a pixel scale that is not
        positive, or a window/border the network cannot have.
    """

    bands: tuple[Band, ...]
    classes: tuple[str, ...]
    pixel_scale_arcsec: float
    window: int = WINDOW
    border: int = BORDER
    name: str = ""
    standardization: Mapping[str, str] = field(default_factory=lambda: dict(STANDARDIZATION))
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bands", tuple(self.bands))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if not self.bands:
            raise ValueError("a model card needs at least one band")
        dupes = sorted(
            {
                x
                for i, a in enumerate(self.bands)
                for b in self.bands[i + 1 :]
                for x in set(a.labels()) & set(b.labels())
            }
        )
        if dupes:
            raise ValueError(f"band names/filters must be unique across bands, repeated: {', '.join(dupes)}")
        for b in self.bands:
            if not b.name:
                raise ValueError("every band needs a name")
            if b.wavelength_um is not None and not (b.wavelength_um > 0 and math.isfinite(b.wavelength_um)):
                raise ValueError(f"band {b.name}: wavelength_um must be > 0, got {b.wavelength_um}")
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be at least two distinct names, got {list(self.classes)}")
        if self.classes[-1] != BACKGROUND:
            raise ValueError(
                f"the last class must be '{BACKGROUND}' (segmentation and the loss use it), got {list(self.classes)}"
            )
        if not (self.pixel_scale_arcsec > 0 and math.isfinite(self.pixel_scale_arcsec)):
            raise ValueError(f"pixel_scale_arcsec must be > 0, got {self.pixel_scale_arcsec}")
        if self.window % 8 or not 3 <= self.border < self.window // 2:
            raise ValueError(
                f"window must be a multiple of 8 and 3 <= border < window/2, got {self.window} and {self.border}"
            )

    # -- views ------------------------------------------------------------------------
    @property
    def band_names(self) -> tuple[str, ...]:
        """The bands' names in channel order."""
        return tuple(b.name for b in self.bands)

    @property
    def morphologies(self) -> tuple[str, ...]:
        """The classes other than background (what experts vote for)."""
        return self.classes[:-1]

    def band_index(self, label: str) -> int | None:
        """Channel of the band a mosaic calls ``label`` (its name or filter, any case)."""
        key = str(label).strip().upper()
        for i, band in enumerate(self.bands):
            if key in band.labels():
                return i
        return None

    def describe(self) -> str:
        """One line: name, bands, scale, classes."""
        bands = ", ".join(
            f"{b.name}" + (f" ({b.filter})" if b.filter and b.filter != b.name else "") for b in self.bands
        )
        return (
            f'{self.name or "model"}: bands {bands}; {self.pixel_scale_arcsec:g}"/px; classes {", ".join(self.classes)}'
        )

    def with_provenance(self, **entries: Any) -> ModelCard:
        """A copy with ``entries`` added to (or replacing those of) the provenance."""
        return replace(self, provenance={**self.provenance, **entries})

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The card as a JSON-ready dict (:meth:`from_dict` reads it back)."""
        return {
            "format": CARD_FORMAT,
            "version": CARD_VERSION,
            "name": self.name,
            "bands": [b.to_dict() for b in self.bands],
            "pixel_scale_arcsec": self.pixel_scale_arcsec,
            "classes": list(self.classes),
            "window": self.window,
            "border": self.border,
            "standardization": dict(self.standardization),
            "provenance": _jsonable(self.provenance),
        }

    def to_json(self) -> str:
        """The card as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def flux_band(self) -> str:
        """The band that deblends and weights Eq. 16 by default: the reddest (longest
        nominal wavelength), as the paper's F160W; the first band if no wavelength is
        known.
        """
        known = [b for b in self.bands if b.wavelength_um is not None]
        return max(known, key=lambda b: b.wavelength_um).name if known else self.bands[0].name

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Read a card written by :meth:`to_dict`.

        Raises
        ------
        ValueError
            Not a card, a newer version, a missing or malformed entry.
        """
        if not isinstance(data, Mapping) or data.get("format") != CARD_FORMAT:
            raise ValueError(f"not a model card (expected format {CARD_FORMAT!r})")
        if int(data.get("version", 0)) > CARD_VERSION:
            raise ValueError(f"model card version {data.get('version')} is newer than this software's ({CARD_VERSION})")
        missing = [k for k in ("bands", "classes", "pixel_scale_arcsec") if k not in data]
        if missing:
            raise ValueError(f"model card lacks {', '.join(missing)}")
        try:
            bands = tuple(
                Band(
                    str(b["name"]),
                    str(b.get("filter") or ""),
                    None if b.get("wavelength_um") is None else float(b["wavelength_um"]),
                )
                for b in data["bands"]
            )
            return cls(
                bands=bands,
                classes=tuple(data["classes"]),
                pixel_scale_arcsec=float(data["pixel_scale_arcsec"]),
                window=int(data.get("window", WINDOW)),
                border=int(data.get("border", BORDER)),
                name=str(data.get("name", "")),
                standardization=dict(data.get("standardization") or STANDARDIZATION),
                provenance=dict(data.get("provenance") or {}),
            )
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"malformed model card ({type(exc).__name__}: {exc})") from None

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        """Read a card from JSON text (:meth:`to_json`)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model card is not valid JSON ({exc})") from None
        return cls.from_dict(data)


def _jsonable(value: Any) -> Any:
    """Provenance made JSON-safe (NaN -> None, tuples -> lists, numpy scalars -> Python)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: The card of the released weights (morpheus-astro 0.5.1, checkpoint model-440).
RELEASED_CARD = ModelCard(
    bands=RELEASED_BANDS,
    classes=CLASSES,
    pixel_scale_arcsec=0.06,
    window=WINDOW,
    border=BORDER,
    name="morpheus-astro 0.5.1 model-440 (released)",
    provenance={
        "trained_from": "scratch (Hausen & Robertson 2020, ApJS 248, 20, section 3)",
        "data": "CANDELS GOODS-S thumbnails with the Kartaltepe et al. (2015) expert votes, "
        "Hubble Legacy Fields v2.0 at 60 mas",
        "command": "morpheus-astro 0.5.1 training code (TF1)",
        "metrics": {
            "test_accuracy": 0.857,
            "test_iou_0.5": 0.89,
            "source": "paper Table 3 (pixel accuracy, background IoU at B = 0.5)",
        },
        "weights": "PyPI morpheus-astro==0.5.1, morpheus/core/model_weights/model-440 (MIT licence)",
    },
)


def nearest_bands(new: Sequence[Band], reference: Sequence[Band] = RELEASED_BANDS) -> list[int]:
    """Map each new band to the reference band nearest in wavelength.

    Distance is ``|ln(lambda_new / lambda_ref)|``: nearest in log wavelength, i.e. by
    wavelength ratio (a colour index compares bands by ratio, and a band at 2 um is
    "as far" from 1 um as 1 um is from 0.5 um). Ties go to the first reference band.
    A new band that has the same name or filter as a reference band maps to it
    whatever its wavelength.

    Parameters
    ----------
    new : sequence of Band
        The new bands (each with a wavelength unless it names a reference band).
    reference : sequence of Band
        The bands of the weights to start from (default: the released ones).

    Returns
    -------
    list of int
        For each new band, the index of its reference band.

    Raises
    ------
    ValueError
        A new band without a wavelength and without a reference band of its name, or
        a reference without wavelengths.
    """
    out = []
    for band in new:
        same = [i for i, ref in enumerate(reference) if set(band.labels()) & set(ref.labels())]
        if same:
            out.append(same[0])
            continue
        if band.wavelength_um is None:
            raise ValueError(
                f"band {band.name} has no wavelength: cannot map it to a band of {', '.join(r.name for r in reference)}"
            )
        dist = []
        for ref in reference:
            if ref.wavelength_um is None:
                raise ValueError(f"reference band {ref.name} has no wavelength")
            dist.append(abs(math.log(band.wavelength_um / ref.wavelength_um)))
        out.append(min(range(len(dist)), key=dist.__getitem__))
    return out


def parse_band(text: str) -> Band:
    """A band from ``NAME``, ``NAME:FILTER`` or ``NAME:FILTER:WAVELENGTH_UM``.

    A bare name known to the released card (``H``) or a NIRCam filter (``F150W``)
    takes its filter and wavelength from there; ``NAME=WAVELENGTH_UM`` gives a
    wavelength without a filter.

    Raises
    ------
    ValueError
        An empty name, or a wavelength that is not a positive number.
    """
    text = str(text).strip()
    known = {label: b for b in (*RELEASED_BANDS, *JWST_NIRCAM_BANDS.values()) for label in b.labels()}
    if "=" in text:
        name, wl = text.split("=", 1)
        parts = [name, "", wl]
    else:
        parts = text.split(":")
    name = parts[0].strip()
    if not name:
        raise ValueError(f"empty band name in {text!r}")
    if len(parts) == 1:
        return known.get(name.upper(), Band(name))
    filt = parts[1].strip() if len(parts) > 1 else ""
    wavelength = None
    if len(parts) > 2 and parts[2].strip():
        try:
            wavelength = float(parts[2])
        except ValueError:
            raise ValueError(f"band {text!r}: wavelength {parts[2]!r} is not a number (micrometres)") from None
    if wavelength is None and filt.upper() in known:
        wavelength = known[filt.upper()].wavelength_um
    return Band(name, filt, wavelength)
