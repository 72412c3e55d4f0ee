"""The photometry inputs of a mosaic: weight or rms maps, AB zero points, sky subtraction.

A TOML mosaic may name, next to its bands (:mod:`pipeline.inputs.mosaics`)::

    weights = { H = "f160w_wht.fits" }   # inverse variance per pixel (drizzle WHT)
    rms = { V = "f606w_rms.fits" }       # or the 1-sigma noise per pixel
    zeropoint = { H = 25.94 }            # AB zero point, overriding the header's
    sky_subtracted = true                # subtract no background before measuring

:func:`photometry_keys` checks these keys, :func:`check_error_maps` checks the maps
like the bands (readable FITS images on the bands' pixel grid, from their headers
alone) and :func:`zeropoints` reads each band's AB zero point from its header
(:func:`morpheus_core.magnitudes.ab_zeropoint`: ``PHOTFLAM`` + ``PHOTPLAM``, else
``ABMAG``/``MAGZP``/``ZP``), the TOML's overriding it; a band with neither has none
(no magnitudes, never an invented zero point). :func:`with_photometry` puts all of it
on the :class:`~pipeline.inputs.grid.BandSet` that :mod:`pipeline.inputs.ingest` writes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits

from morpheus_core.catalog import image_unit
from morpheus_core.magnitudes import ab_zeropoint
from morpheus_core.noise import effective_gain
from pipeline.errors import InputError
from pipeline.inputs.band_files import open_band

if TYPE_CHECKING:
    from pipeline.inputs.grid import BandSet

__all__ = [
    "ERROR_KINDS",
    "PHOTOMETRY_KEYS",
    "ErrorMap",
    "PhotometryInputs",
    "band_headers",
    "check_error_maps",
    "photometry_keys",
    "with_photometry",
    "zeropoints",
]

#: Photometry keys of a ``[mosaics.NAME]`` table.
PHOTOMETRY_KEYS = ("weights", "rms", "zeropoint", "sky_subtracted")
#: Kinds of error map: the TOML key -> the name of its array in ``mosaic.zarr``.
ERROR_KINDS: dict[str, str] = {"weights": "weight", "rms": "rms"}


def photometry_keys(table: dict, bands: tuple[str, ...], folder: Path, where: str) -> dict[str, Any]:
    """The checked ``weights``, ``rms``, ``zeropoint`` and ``sky_subtracted`` of a mosaic table.

    Parameters
    ----------
    table : dict
        The ``[mosaics.NAME]`` table.
    bands : tuple of str
        Its band names.
    folder : Path
        Folder relative paths are resolved against (the TOML file's).
    where : str
        The table, as messages name it.

    Returns
    -------
    dict
        Keyword arguments of :class:`~pipeline.inputs.mosaics.Mosaic`: ``weights``,
        ``rms`` (band -> path), ``zeropoints`` (band -> float), ``sky_subtracted``.

    Raises
    ------
    InputError
        For a malformed value, a band not in ``bands``, or a band with both maps.
    """
    out: dict[str, Any] = {}
    for key in ERROR_KINDS:
        given = table.get(key, {})
        if not isinstance(given, dict) or not all(isinstance(v, str) and v for v in given.values()):
            raise InputError(f'{where}: {key} must be a table {{ BAND = "path", ... }}, got {given!r}')
        unknown = [b for b in given if b not in bands]
        if unknown:
            raise InputError(f"{where}: {key} names band(s) {unknown} that are not in bands {list(bands)}")
        out[key] = {band: str(folder / Path(p).expanduser()) for band, p in given.items()}
    both = sorted(set(out["weights"]) & set(out["rms"]))
    if both:
        raise InputError(f"{where}: band(s) {both} have both a weights and an rms map; give one of them")
    given_zp = table.get("zeropoint", {})
    if not isinstance(given_zp, dict):
        raise InputError(f"{where}: zeropoint must be a table {{ BAND = 25.94, ... }}, got {given_zp!r}")
    for band, value in given_zp.items():
        if band not in bands:
            raise InputError(f"{where}: zeropoint names band {band!r} that is not in bands {list(bands)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise InputError(f"{where}: zeropoint of band {band} must be a finite AB magnitude, got {value!r}")
    out["zeropoints"] = {band: float(v) for band, v in given_zp.items()}
    sky = table.get("sky_subtracted", False)
    if not isinstance(sky, bool):
        raise InputError(f"{where}: sky_subtracted must be true or false, got {sky!r}")
    out["sky_subtracted"] = sky
    return out


@dataclass(frozen=True)
class PhotometryInputs:
    """What a mosaic says about its photometry.

    Attributes
    ----------
    weights, rms : dict of str to Path
        Band -> absolute path of its inverse-variance weight map, or of its rms map.
    zeropoints : dict of str to float
        Band -> AB zero point given by the user (overrides the header).
    sky_subtracted : bool
        The bands are sky-subtracted already (no background is subtracted).
    """

    weights: dict[str, Path] = field(default_factory=dict)
    rms: dict[str, Path] = field(default_factory=dict)
    zeropoints: dict[str, float] = field(default_factory=dict)
    sky_subtracted: bool = False


@dataclass(frozen=True)
class ErrorMap:
    """A checked weight or rms map of one band.

    Attributes
    ----------
    band : str
        The band it describes.
    kind : str
        ``"weight"`` (inverse variance) or ``"rms"``.
    path : Path
        Absolute path of the FITS file.
    hdu_index : int
        Index of its image HDU.
    """

    band: str
    kind: str
    path: Path
    hdu_index: int


def band_headers(bandset: BandSet) -> dict[str, fits.Header]:
    """The header of each band's image HDU (headers only are read)."""
    headers = {}
    for band, path, index in zip(bandset.bands, bandset.paths, bandset.hdu_index):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            with open_band(path) as hdul:
                headers[band] = hdul[index].header.copy()
    return headers


def check_error_maps(bandset: BandSet, inputs: PhotometryInputs) -> tuple[ErrorMap, ...]:
    """Check each weight or rms map like a band: a 2-D FITS image on the bands' pixel grid.

    Parameters
    ----------
    bandset : BandSet
        The validated bands (:func:`pipeline.inputs.grid.validate_bands`).
    inputs : PhotometryInputs
        The maps the mosaic names.

    Returns
    -------
    tuple of ErrorMap
        In band order.

    Raises
    ------
    InputError
        A map that is not a readable FITS image, is one of the band files, or differs
        from the bands in shape or WCS (the message names the map and the band file).
    """
    from pipeline.inputs.grid import inspect_band, wcs_differences

    maps = []
    band_paths = {p.resolve() for p in bandset.paths}
    reference = inspect_band(bandset.paths[0])
    for key, kind in ERROR_KINDS.items():
        for band, path in getattr(inputs, key).items():
            path = Path(path).expanduser().absolute()
            if path.resolve() in band_paths:
                raise InputError(f"{path}: the {key} map of band {band} is a band file")
            info = inspect_band(path)
            if info.shape != bandset.shape:
                raise InputError(
                    f"{path} ({key} map of band {band}) has shape {info.shape}, but the band "
                    f"{bandset.paths[0]} has {bandset.shape}"
                )
            diffs = wcs_differences(reference.wcs, info.wcs)
            if diffs:
                raise InputError(
                    f"{path} ({key} map of band {band}) and the band {bandset.paths[0]} have "
                    f"different WCS: {'; '.join(diffs)}"
                )
            maps.append(ErrorMap(band, kind, path, info.hdu_index))
    order = {b: i for i, b in enumerate(bandset.bands)}
    return tuple(sorted(maps, key=lambda m: order[m.band]))


def zeropoints(
    headers: Mapping[str, Any], given: Mapping[str, float], paths: Mapping[str, Path]
) -> dict[str, dict[str, Any]]:
    """Each band's AB zero point and where it came from: the TOML, else the header.

    Parameters
    ----------
    headers : mapping of str to Header
        Band -> header of its image.
    given : mapping of str to float
        Band -> zero point from the TOML (wins over the header).
    paths : mapping of str to Path
        Band -> file (for messages).

    Returns
    -------
    dict
        Band -> ``{"value": float or None, "source": "mosaics file", "header" or "none"}``.

    Raises
    ------
    InputError
        A header with an unusable zero point keyword (and no TOML value for the band).
    """
    out = {}
    for band, header in headers.items():
        if band in given:
            out[band] = {"value": float(given[band]), "source": "mosaics file"}
            continue
        try:
            value = ab_zeropoint(header)
        except ValueError as exc:
            raise InputError(
                f"{paths[band]}: {exc} (or give zeropoint = {{ {band} = ... }} in the mosaics file)"
            ) from None
        out[band] = {"value": value, "source": "header" if value is not None else "none"}
    return out


def with_photometry(bandset: BandSet, inputs: PhotometryInputs | None) -> BandSet:
    """The bandset with its error maps checked, zero points, gains, unit and sky subtraction.

    Parameters
    ----------
    bandset : BandSet
        The validated bands.
    inputs : PhotometryInputs, optional
        What the mosaic names (None: nothing but the headers).

    Returns
    -------
    BandSet
        With ``error_maps``, ``photometry`` (``zeropoints``, ``effective_gain``,
        ``flux_unit``, ``sky_subtracted``) filled in.

    Raises
    ------
    InputError
        As :func:`check_error_maps` and :func:`zeropoints`.
    """
    inputs = inputs or PhotometryInputs()
    maps = check_error_maps(bandset, inputs)
    headers = band_headers(bandset)
    zps = zeropoints(headers, inputs.zeropoints, dict(zip(bandset.bands, bandset.paths)))
    photometry = {
        "zeropoints": zps,
        "effective_gain": {b: effective_gain(h) for b, h in headers.items()},
        "flux_unit": image_unit(h.get("BUNIT") for h in headers.values()),
        "sky_subtracted": bool(inputs.sky_subtracted),
    }
    return dataclasses.replace(bandset, error_maps=maps, photometry=photometry)
