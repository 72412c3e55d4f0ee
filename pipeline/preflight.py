"""Checks made before a run changes anything in its run directory.

A run refuses, with an :class:`~pipeline.errors.InputError` naming the file and the
problem (exit status 2), inputs that the network cannot use, before ``--restart``
removes anything and before a tile is classified:

- bands matched to the network's by name, whatever order a mosaics file lists them in
  (:func:`order_bands`); a missing, extra or unknown band is an error;
- a band without a single finite non-zero pixel, or a mosaic without one window that
  all bands cover (:func:`check_usable_pixels`): nothing could be classified;
- a weights file that does not load into the network (:func:`check_weights`);
- a flux band that is not a band of the mosaic (:func:`check_flux_band`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from pipeline.errors import InputError

__all__ = ["check_flux_band", "check_usable_pixels", "check_weights", "order_bands"]

#: Rows read at a time by :func:`check_usable_pixels` (memory: bands x rows x width).
_STRIP_ROWS = 256


def order_bands(paths: Mapping[str, Path], model_bands: Sequence[str], *, where: str) -> dict[str, Path]:
    """The band files in the network's band order, matched by name.

    Parameters
    ----------
    paths : mapping of str to Path
        Band name -> file, in any order (e.g. as a TOML mosaic lists them).
    model_bands : sequence of str
        The network's input bands, in its channel order (``morpheus_core.BANDS``).
    where : str
        What defined the mosaic (for messages), e.g. the mosaics file.

    Returns
    -------
    dict of str to Path
        The same files keyed by the network's band names, in its order.

    Raises
    ------
    InputError
        A band of the network is missing, or the mosaic has bands it does not take.
        Names match case-insensitively (``h`` is ``H``).
    """
    by_key = {str(name).upper(): (name, path) for name, path in paths.items()}
    wanted = [str(b).upper() for b in model_bands]
    missing = [b for b in model_bands if str(b).upper() not in by_key]
    extra = [by_key[k][0] for k in by_key if k not in wanted]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing band(s) {', '.join(missing)}")
        if extra:
            parts.append(f"band(s) the network does not take: {', '.join(extra)}")
        raise InputError(f"{where}: {'; '.join(parts)} (the network takes {', '.join(model_bands)}, "
                         "matched by name in any order)")
    return {band: Path(by_key[str(band).upper()][1]) for band in model_bands}


def check_usable_pixels(bands: Sequence[str], files: Sequence[Path], hdu_index: Sequence[int],
                        shape: tuple[int, int], *, window: int) -> None:
    """Refuse a mosaic where nothing could be classified.

    Streams the bands in strips of rows (memory: ``bands x 256 x width`` values):
    counts each band's finite non-zero pixels (HLF marks unobserved and censored
    pixels with 0 or NaN), and looks for one ``window x window`` square that every
    band covers, by carrying each column's run of covered rows from strip to strip.

    Raises
    ------
    InputError
        Naming every band without a usable pixel, or saying that no window is
        covered in all bands.
    """
    height, width = shape
    usable = np.zeros(len(bands), np.int64)
    run = np.zeros(width, np.int64)  # covered rows ending at the current row, per column
    found = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pipeline.ingest import open_band

        hduls = [open_band(f) for f in files]  # strips read from the files, not mapped
        try:
            hdus = [h[i] for h, i in zip(hduls, hdu_index)]
            for y0 in range(0, height, _STRIP_ROWS):
                y1 = min(y0 + _STRIP_ROWS, height)
                covered = np.ones((y1 - y0, width), bool)
                for k, hdu in enumerate(hdus):
                    strip = np.asarray(hdu.section[y0:y1, :])
                    good = np.isfinite(strip) & (strip != 0)
                    usable[k] += int(good.sum())
                    covered &= good
                if found:
                    continue
                for row in covered:
                    run = np.where(row, run + 1, 0)
                    if _has_square(run >= window, window):
                        found = True
                        break
        finally:
            for h in hduls:
                h.close()
    empty = [f"{band} ({path})" for band, path, n in zip(bands, files, usable) if n == 0]
    if empty:
        raise InputError(f"band(s) without a single finite non-zero pixel: {', '.join(empty)}; "
                         "nothing could be classified")
    if not found:
        raise InputError(f"no {window}x{window} window is covered (finite and non-zero) in all bands "
                         f"{', '.join(bands)} of {', '.join(str(f) for f in files)}: nothing could be classified "
                         "(do the bands' footprints overlap?)")


def _has_square(tall: np.ndarray, window: int) -> bool:
    """Whether ``window`` consecutive True values occur in a 1-D boolean row."""
    if tall.size < window:
        return False
    sums = np.concatenate([[0], np.cumsum(tall, dtype=np.int64)])
    return bool(((sums[window:] - sums[:-window]) == window).any())


def check_weights(weights: Path | str, *, precision: str = "float32", quiet: bool = True) -> None:
    """Refuse a weights file that does not load into the network (on the driver,
    before the workers start).

    Raises
    ------
    InputError
        Naming the file and why it does not load.
    """
    path = Path(weights)
    if not path.is_file():
        raise InputError(f"--model {path}: no such file")
    from pipeline.quiet import native_stderr_captured

    try:
        with native_stderr_captured(quiet):  # TensorFlow's start-up lines
            from morpheus_core.model import load_model

            load_model(path, crop=True, precision=precision)
    except Exception as exc:  # h5py, Keras and shape errors alike
        raise InputError(f"--model {path}: not weights of this network ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from None


def check_flux_band(flux_band: str, bands: Sequence[str]) -> None:
    """Refuse a flux band that is not one of the mosaic's bands."""
    if flux_band not in bands:
        raise InputError(f"--flux-band {flux_band!r} is not a band of this mosaic (bands: {', '.join(bands)})")
