"""The band files of a mosaic checked to share one pixel grid (:func:`validate_bands`),
from their headers alone, before anything is ingested (:mod:`pipeline.inputs.ingest`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from pipeline.errors import InputError
from pipeline.inputs.band_files import compression, not_a_file, open_band
from pipeline.inputs.preflight import check_distinct_files

if TYPE_CHECKING:
    from pipeline.inputs.photometry_maps import ErrorMap

__all__ = ["BandSet", "inspect_band", "validate_bands", "wcs_differences"]

_NUMERIC_BITPIX = (8, 16, 32, 64, -32, -64)
# WCS tolerances. CRVAL: 1e-9 deg (3.6 micro-arcsec). CRPIX: 1e-6 px. CD matrix:
# relative 1e-9 of the pixel scale, i.e. a drift below 3e-5 px across a 30,000 px
# mosaic, yet tolerant of headers written with fewer significant digits.
_CRVAL_ATOL_DEG = 1e-9
_CRPIX_ATOL_PX = 1e-6
_CD_RTOL = 1e-9


@dataclass(frozen=True)
class BandSet:
    """Validated band files that share one pixel grid.

    Attributes
    ----------
    bands : tuple of str
        Band names, in the order the image array will hold them.
    paths : tuple of Path
        Absolute path of each band's FITS file.
    shape : tuple of int
        ``(H, W)`` of every band.
    hdu_index : tuple of int
        Index of the image HDU used in each file.
    wcs_header : str
        Celestial WCS of the grid, from ``WCS.to_header_string()``.
    error_maps : tuple of ErrorMap
        Checked weight or rms maps (:func:`pipeline.inputs.photometry_maps.with_photometry`).
    photometry : dict
        ``zeropoints``, ``effective_gain``, ``flux_unit``, ``sky_subtracted``
        (:func:`~pipeline.inputs.photometry_maps.with_photometry`); empty until then.
    """

    bands: tuple[str, ...]
    paths: tuple[Path, ...]
    shape: tuple[int, int]
    hdu_index: tuple[int, ...]
    wcs_header: str
    error_maps: tuple[ErrorMap, ...] = ()
    photometry: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class _BandInfo:
    path: Path
    hdu_index: int
    shape: tuple[int, int]
    wcs: WCS


def inspect_band(path: Path) -> _BandInfo:
    """Read the headers of one file; raise InputError naming it on any problem."""
    try:
        with warnings.catch_warnings():
            # Truncation is checked below; header problems end in InputError.
            warnings.filterwarnings("ignore", message="File may have been truncated")
            warnings.simplefilter("ignore", fits.verify.VerifyWarning)
            with open_band(path) as hdul:
                cubes = []
                for index, hdu in enumerate(hdul):
                    if hdu.is_image and len(hdu.shape) == 2:
                        break
                    if hdu.is_image and len(hdu.shape) > 2:
                        cubes.append(f"HDU {index} is a {len(hdu.shape)}-D cube of shape {hdu.shape}")
                else:
                    if cubes:
                        raise InputError(
                            f"{path}: no 2-D image HDU found ({'; '.join(cubes)}); give one 2-D image per band"
                        )
                    raise InputError(f"{path}: no 2-D image HDU found (tables or empty HDUs only)")
                header = hdu.header
                info = hdu.fileinfo()
                shape = (int(hdu.shape[0]), int(hdu.shape[1]))
    except InputError:
        raise
    except (OSError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise InputError(f"{path}: not a readable FITS file ({exc})") from exc
    bitpix = header.get("BITPIX")
    if bitpix not in _NUMERIC_BITPIX:
        raise InputError(f"{path}: HDU {index} has non-numeric BITPIX {bitpix!r}")
    expected = info["datLoc"] + info["datSpan"]
    actual = path.stat().st_size
    # A compressed file's size says nothing of its content's: a truncated one fails when
    # read (the pixel check, pipeline.inputs.preflight.check_usable_pixels, reads every pixel).
    if actual < expected and compression(path) is None:
        raise InputError(
            f"{path}: truncated FITS file: {actual} bytes on disk, the "
            f"header of HDU {index} implies at least {expected}"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header).celestial
        except Exception as exc:  # astropy.wcs raises many types on bad headers
            raise InputError(f"{path}: cannot parse the WCS of HDU {index} ({exc})") from exc
    if not wcs.has_celestial or wcs.naxis != 2:
        raise InputError(f"{path}: HDU {index} has no celestial WCS (RA/Dec)")
    return _BandInfo(path, index, shape, wcs)


def wcs_differences(a: WCS, b: WCS) -> list[str]:
    """Human-readable differences between two celestial WCS, empty if equal."""
    diffs = []
    if list(a.wcs.ctype) != list(b.wcs.ctype):
        diffs.append(f"CTYPE {list(a.wcs.ctype)} vs {list(b.wcs.ctype)}")
    if a.wcs.radesys != b.wcs.radesys:
        diffs.append(f"RADESYS {a.wcs.radesys!r} vs {b.wcs.radesys!r}")
    if not np.allclose(a.wcs.crval, b.wcs.crval, rtol=0, atol=_CRVAL_ATOL_DEG):
        diffs.append(f"CRVAL {a.wcs.crval.tolist()} vs {b.wcs.crval.tolist()}")
    if not np.allclose(a.wcs.crpix, b.wcs.crpix, rtol=0, atol=_CRPIX_ATOL_PX):
        diffs.append(f"CRPIX {a.wcs.crpix.tolist()} vs {b.wcs.crpix.tolist()}")
    cd_a, cd_b = a.pixel_scale_matrix, b.pixel_scale_matrix
    if not np.allclose(cd_a, cd_b, rtol=0, atol=_CD_RTOL * np.abs(cd_a).max()):
        diffs.append(f"CD matrix {cd_a.tolist()} vs {cd_b.tolist()}")
    return diffs


def validate_bands(paths: Mapping[str, Path | str]) -> BandSet:
    """Check that band files exist, are distinct FITS images, and share one pixel grid.

    Only headers are read (lazily); no pixel data is loaded.

    Parameters
    ----------
    paths : Mapping of str to Path
        Band name -> FITS file, in the order the bands should be stored,
        e.g. ``{"H": ..., "J": ..., "V": ..., "Z": ...}``.

    Returns
    -------
    BandSet
        The validated bands with their common shape and celestial WCS.

    Raises
    ------
    InputError
        If no bands are given; if files are missing (all of them are listed at once,
        a symbolic-link loop or a folder said as such); if two bands are one file;
        if a file is not FITS, is truncated, or has no 2-D image with a celestial
        WCS; or if two bands differ in shape or WCS (both files are named).
    """
    if not paths:
        raise InputError("no band files given")
    resolved = {band: Path(p).expanduser().absolute() for band, p in paths.items()}
    unusable = {band: (p, not_a_file(p)) for band, p in resolved.items()}
    problems = [
        f"{band}: {p}" + ("" if why == "missing" else f" ({why})") for band, (p, why) in unusable.items() if why
    ]
    if problems:
        kinds = {why for _, why in unusable.values() if why}
        raise InputError(f"{'missing' if kinds == {'missing'} else 'unusable'} band file(s): {'; '.join(problems)}")
    check_distinct_files(resolved)
    infos = {band: inspect_band(p) for band, p in resolved.items()}
    (ref_band, ref), *others = infos.items()
    for band, info in others:
        if info.shape != ref.shape:
            raise InputError(
                f"{info.path} (band {band}) has shape {info.shape}, but {ref.path} (band {ref_band}) has {ref.shape}"
            )
        diffs = wcs_differences(ref.wcs, info.wcs)
        if diffs:
            raise InputError(
                f"{info.path} (band {band}) and {ref.path} (band {ref_band}) have different WCS: {'; '.join(diffs)}"
            )
    return BandSet(
        bands=tuple(infos),
        paths=tuple(info.path for info in infos.values()),
        shape=ref.shape,
        hdu_index=tuple(info.hdu_index for info in infos.values()),
        wcs_header=ref.wcs.to_header_string(),
    )
