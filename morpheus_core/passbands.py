"""The simulator's passbands: the model cards' bands with a PSF, a zero point and a depth.

A band's name, filter and pivot wavelength have one home, the band tables of
:mod:`morpheus_core.cards` (:data:`~morpheus_core.cards.RELEASED_BANDS`,
:data:`~morpheus_core.cards.JWST_NIRCAM_BANDS`). A :class:`Passband` adds to one of
those :class:`~morpheus_core.cards.Band` objects what the simulator needs to image it:
the FWHM of its Gaussian PSF, its AB zero point and the depth that sets the default
sky noise.

:data:`HST_BANDS` are the released model's bands as the HLF GOODS-S 60 mas mosaics
show them; :data:`NIRCAM_BANDS` a JWST NIRCam-like set meant for 0.03"/px mosaics.

No dependency beyond the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from morpheus_core.cards import JWST_NIRCAM_BANDS, RELEASED_BANDS, Band

__all__ = [
    "DEPTH_5SIGMA_AB",
    "HST_BANDS",
    "NIRCAM_BANDS",
    "PSF_FWHM_ARCSEC",
    "ZERO_POINTS_AB",
    "Passband",
    "reference_band",
]


@dataclass(frozen=True)
class Passband:
    """One simulated band: a card's band and how the simulator images it.

    Attributes
    ----------
    band : morpheus_core.cards.Band
        The band (name, filter, pivot wavelength); its wavelength is needed, since
        colours are interpolated in it.
    psf_fwhm_arcsec : float
        FWHM of the band's Gaussian PSF.
    zero_point_ab : float
        AB magnitude of 1 electron/s.
    depth_5sigma_ab : float
        5-sigma point-source depth in a 0.25"-radius aperture (sets the default noise).

    Raises
    ------
    ValueError
        If the band has no wavelength.
    """

    band: Band
    psf_fwhm_arcsec: float
    zero_point_ab: float
    depth_5sigma_ab: float

    def __post_init__(self) -> None:
        if self.band.wavelength_um is None:
            raise ValueError(f"band {self.band.name}: a simulated band needs a wavelength")

    @property
    def name(self) -> str:
        """Band name (image order follows the bands given to the simulator)."""
        return self.band.name

    @property
    def filter(self) -> str:
        """Instrument filter (``F160W``)."""
        return self.band.filter

    @property
    def wavelength_um(self) -> float:
        """Pivot wavelength (micrometres)."""
        return self.band.wavelength_um


# PSF FWHM ("): approximate, of the 60 mas drizzled HLF mosaics (WFC3/IR is broadened
# by drizzling from 0.13" native pixels; ACS is near its diffraction limit). Zero
# points: AB of 1 electron/s (HLF v2.0: F160W, F125W, F606W, F850LP). Depth: 5-sigma
# point source in a 0.5"-diameter aperture (K15 quotes H ~ 27 AB at 5 sigma; GOODS-S
# ACS V is somewhat deeper).
_HST_IMAGING = {"H": (0.18, 25.94, 27.0), "J": (0.16, 26.23, 27.0), "V": (0.09, 26.49, 27.5), "Z": (0.10, 24.87, 27.0)}
#: The HST bands of the default scene, in the released model's band order (H, J, V, Z).
HST_BANDS: tuple[Passband, ...] = tuple(Passband(b, *_HST_IMAGING[b.name]) for b in RELEASED_BANDS)

# PSF FWHM of NIRCam's (0.03"-0.14"); zero points of order those of NIRCam count-rate
# images; depths like a deep extragalactic survey (~29 AB). Approximate by design: a
# test bed for other band sets, not an instrument model.
_NIRCAM_IMAGING = {
    "F090W": (0.033, 27.45, 28.9),
    "F115W": (0.040, 27.60, 29.0),
    "F150W": (0.050, 27.80, 29.1),
    "F200W": (0.066, 27.90, 29.2),
    "F277W": (0.092, 27.80, 29.3),
    "F444W": (0.145, 27.40, 28.9),
}
#: A JWST NIRCam-like set: six wide filters of :data:`~morpheus_core.cards.JWST_NIRCAM_BANDS`.
NIRCAM_BANDS: tuple[Passband, ...] = tuple(
    Passband(JWST_NIRCAM_BANDS[name], *imaging) for name, imaging in _NIRCAM_IMAGING.items()
)

#: PSF FWHM (arcsec) of :data:`HST_BANDS` by band name.
PSF_FWHM_ARCSEC: dict[str, float] = {b.name: b.psf_fwhm_arcsec for b in HST_BANDS}
#: AB zero points for 1 electron/s of :data:`HST_BANDS` by band name.
ZERO_POINTS_AB: dict[str, float] = {b.name: b.zero_point_ab for b in HST_BANDS}
#: 5-sigma point-source depths (AB, 0.5"-diameter aperture) of :data:`HST_BANDS` by band name.
DEPTH_5SIGMA_AB: dict[str, float] = {b.name: b.depth_5sigma_ab for b in HST_BANDS}


def reference_band(bands: Sequence[Passband], reference: str | None) -> Passband:
    """The band magnitudes refer to: ``reference``, else H, else the band nearest H.

    Parameters
    ----------
    bands : sequence of Passband
        Distinct bands, at least one.
    reference : str, optional
        A band name among ``bands``.

    Returns
    -------
    Passband

    Raises
    ------
    ValueError
        No band, repeated names, or a ``reference`` that is not among the bands.
    """
    by_name = {b.name: b for b in bands}
    if not bands or len(by_name) != len(bands):
        raise ValueError(f"bands must be distinct and at least one, got {[b.name for b in bands]}")
    if reference is not None:
        if reference not in by_name:
            raise ValueError(f"reference band {reference!r} is not one of {list(by_name)}")
        return by_name[reference]
    if "H" in by_name:
        return by_name["H"]
    h = {b.name: b for b in HST_BANDS}["H"].wavelength_um
    return min(bands, key=lambda b: abs(math.log(b.wavelength_um / h)))
