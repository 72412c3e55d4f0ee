"""Checks made before a run changes anything in its run directory.

A run refuses, with an :class:`~pipeline.errors.InputError` naming the file and the
problem (exit status 2), inputs that the network cannot use, before ``--restart``
removes anything and before a tile is classified:

- bands matched to the network's by name, whatever order a mosaics file lists them in
  (:func:`order_bands`): the model card's band names or filters, or a file's FITS
  ``FILTER`` keyword; a missing, extra or unknown band is an error, and so is a file
  whose ``FILTER`` names another of the model's bands;
- a mosaic whose pixel scale differs from the model card's by more than 10%
  (:func:`check_pixel_scale`), unless the user accepts it;
- a band without a single finite non-zero pixel, or a mosaic without one window that
  all bands cover (:func:`check_usable_pixels`): nothing could be classified;
- a weights file that does not load into the network (:func:`check_weights`);
- a flux band that is not a band of the mosaic (:func:`check_flux_band`);
- one file given for two bands (:func:`check_distinct_files`): the same path, another
  name of it (a link), or a copy with the same bytes;
- a tile size that would cut the mosaic into more than :data:`MAX_TILES` tiles
  (:func:`fit_tile`; one larger than the mosaic is brought down to it, with a note).

The run directory itself is checked by :func:`pipeline.rundir.manifest.check_run_dir`.
"""

from __future__ import annotations

import filecmp
import lzma
import math
import os
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from morpheus_core.cards import ModelCard
from morpheus_core.windows import observed_pixels
from pipeline.errors import InputError

__all__ = [
    "MAX_TILES",
    "PIXEL_SCALE_TOLERANCE",
    "check_card",
    "check_distinct_files",
    "check_flux_band",
    "check_pixel_scale",
    "check_usable_pixels",
    "check_weights",
    "fit_tile",
    "order_bands",
]

#: Rows read at a time by :func:`check_usable_pixels` (memory: bands x rows x width).
_STRIP_ROWS = 256
#: Largest relative difference between a mosaic's and the model's pixel scale.
PIXEL_SCALE_TOLERANCE = 0.10
#: Most tiles a run may plan: beyond this the scheduler, the ledger (a record per tile)
#: and the per-tile halo reads cost more than the network.
MAX_TILES = 10_000


def _fits_filter(path: Path) -> str | None:
    """The ``FILTER`` keyword of a file's first 2-D image HDU (None if absent or unreadable)."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, mode="readonly", lazy_load_hdus=True) as hdul:
                for hdu in hdul:
                    if hdu.is_image and hdu.header.get("NAXIS") == 2:
                        value = hdu.header.get("FILTER")
                        return str(value).strip() or None if value is not None else None
    except (OSError, ValueError, TypeError, IndexError, KeyError):
        return None  # ingest's checks report unreadable files
    return None


def order_bands(
    paths: Mapping[str, Path],
    model_bands: Sequence[str] | ModelCard,
    *,
    where: str,
    read_filters: bool = True,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """The band files in the network's band order, matched by name.

    A mosaic band matches a model band when its name (e.g. the TOML key) is the model
    band's name or filter, in any case (``h``, ``H`` and ``F160W`` are the released
    model's H); a name that matches none is looked up by the file's FITS ``FILTER``
    keyword. A file whose ``FILTER`` is another of the model's bands is refused (the
    mosaic calls an F125W image ``H``, say).

    Parameters
    ----------
    paths : mapping of str to Path
        Band name -> file, in any order (e.g. as a TOML mosaic lists them).
    model_bands : ModelCard or sequence of str
        The network's card (:class:`morpheus_core.cards.ModelCard`), or its band
        names in channel order.
    where : str
        What defined the mosaic (for messages), e.g. the mosaics file.
    read_filters : bool
        Read the files' ``FILTER`` keywords (existing files only).
    echo : callable, optional
        Where to say, in one line each, which model band a band name the model does
        not know became through its file's ``FILTER``.

    Returns
    -------
    dict of str to Path
        The same files keyed by the network's band names, in its order.

    Raises
    ------
    InputError
        A band of the network is missing, the mosaic has bands it does not take, two
        mosaic bands are the same model band, or a file's ``FILTER`` contradicts its name.
    """
    from morpheus_core.cards import Band

    card = model_bands if isinstance(model_bands, ModelCard) else None
    bands = card.bands if card is not None else tuple(Band(str(b)) for b in model_bands)
    names = [b.name for b in bands]

    def index(label: str) -> int | None:
        key = str(label).strip().upper()
        return next((i for i, b in enumerate(bands) if key in b.labels()), None)

    assigned: dict[int, tuple[str, Path]] = {}
    extra = []
    for name, path in paths.items():
        path = Path(path)
        filt = _fits_filter(path) if read_filters and path.is_file() else None
        i = index(name)
        if i is None and filt is not None:
            i = index(filt)
            if i is not None and echo is not None:
                echo(
                    f"note: band {name!r} of {where} is not a band of the model; its file {path.name} has FITS "
                    f"FILTER = {filt!r}, so it is used as the model's band {names[i]}"
                )
        elif i is not None and filt is not None and index(filt) not in (None, i):
            raise InputError(
                f"{path}: the mosaic calls it band {name!r} (the model's {names[i]}), but its FITS "
                f"FILTER = {filt!r} is the model's band {names[index(filt)]}; fix the band name "
                f"in {where}"
            )
        if i is None:
            extra.append(name + (f" (FILTER {filt})" if filt else ""))
        elif i in assigned:
            raise InputError(f"{where}: bands {assigned[i][0]!r} and {name!r} are both the model's band {names[i]}")
        else:
            assigned[i] = (name, path)
    missing = [n for i, n in enumerate(names) if i not in assigned]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing band(s) {', '.join(missing)}")
        if extra:
            parts.append(f"band(s) the network does not take: {', '.join(extra)}")
        takes = ", ".join(f"{b.name} ({b.filter})" if b.filter and b.filter != b.name else b.name for b in bands)
        raise InputError(
            f"{where}: {'; '.join(parts)} (the network takes {takes}, matched by name, filter or "
            "FITS FILTER, in any order)"
        )
    return {names[i]: assigned[i][1] for i in range(len(names))}


def check_pixel_scale(
    scale: float, card: ModelCard, *, where: str, accept: bool = False, tolerance: float = PIXEL_SCALE_TOLERANCE
) -> str | None:
    """Refuse a mosaic whose pixel scale differs from the model's by more than ``tolerance``.

    Parameters
    ----------
    scale : float
        The mosaic's pixel scale (arcsec/px).
    card : ModelCard
        The model's card.
    where : str
        The mosaic (for messages).
    accept : bool
        Accept a mismatch knowingly (``--accept-pixel-scale``): a warning, not an error.

    Returns
    -------
    str or None
        The warning when a mismatch is accepted.

    Raises
    ------
    InputError
        The scales differ by more than ``tolerance`` (relative) and ``accept`` is False.
    """
    model = card.pixel_scale_arcsec
    off = abs(scale / model - 1.0)
    if off <= tolerance:
        return None
    text = (
        f'{where}: pixel scale {scale:.4g}"/px differs from the model\'s {model:.4g}"/px by {100 * off:.0f}% '
        f"(more than {100 * tolerance:.0f}%)"
    )
    if accept:
        return f"warning: {text}; classifying anyway (--accept-pixel-scale)"
    raise InputError(
        f'{text}: the network learned its morphologies at {model:.4g}"/px; resample the mosaic, '
        "use a model trained at this scale, or pass --accept-pixel-scale to classify anyway"
    )


def check_card(card: ModelCard, *, window: int, border: int, model: str) -> None:
    """Refuse a model whose card's window or border is not the run's."""
    if (card.window, card.border) != (window, border):
        raise InputError(
            f"--model {model}: its card says window {card.window} and border {card.border}, this run "
            f"uses {window} and {border}"
        )


def check_usable_pixels(
    bands: Sequence[str], files: Sequence[Path], hdu_index: Sequence[int], shape: tuple[int, int], *, window: int
) -> None:
    """Refuse a mosaic where nothing could be classified.

    Streams the bands in strips of rows (memory: ``bands x 256 x width`` values):
    counts each band's finite non-zero pixels (HLF marks unobserved and censored
    pixels with 0 or NaN), and looks for one ``window x window`` square that every
    band covers, by carrying each column's run of covered rows from strip to strip.

    Raises
    ------
    InputError
        Naming every band without a usable pixel, or saying that no window is
        covered in all bands; naming a file whose data cannot be read (a compressed
        file truncated or corrupt).
    """
    height, width = shape
    usable = np.zeros(len(bands), np.int64)
    run = np.zeros(width, np.int64)  # covered rows ending at the current row, per column
    found = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pipeline.inputs.band_files import open_band, read_error

        hduls = [open_band(f) for f in files]  # strips read from the files, not mapped
        try:
            hdus = [h[i] for h, i in zip(hduls, hdu_index)]
            for y0 in range(0, height, _STRIP_ROWS):
                y1 = min(y0 + _STRIP_ROWS, height)
                covered = np.ones((y1 - y0, width), bool)
                for k, hdu in enumerate(hdus):
                    try:
                        strip = np.asarray(hdu.section[y0:y1, :])
                    except (OSError, ValueError, TypeError, EOFError, zlib.error, lzma.LZMAError) as exc:
                        raise InputError(
                            f"{files[k]}: cannot read rows {y0}:{y1} of band {bands[k]} ({read_error(files[k], exc)})"
                        ) from None
                    good = observed_pixels(strip[np.newaxis])  # the coverage rule of the ingest
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
        raise InputError(
            f"band(s) without a single finite non-zero pixel: {', '.join(empty)}; nothing could be classified"
        )
    if not found:
        raise InputError(
            f"no {window}x{window} window is covered (finite and non-zero) in all bands "
            f"{', '.join(bands)} of {', '.join(str(f) for f in files)}: nothing could be classified "
            "(do the bands' footprints overlap?)"
        )


def _has_square(tall: np.ndarray, window: int) -> bool:
    """Whether ``window`` consecutive True values occur in a 1-D boolean row."""
    if tall.size < window:
        return False
    sums = np.concatenate([[0], np.cumsum(tall, dtype=np.int64)])
    return bool(((sums[window:] - sums[:-window]) == window).any())


def check_weights(
    weights: Path | str, *, precision: str = "float32", quiet: bool = True, card: ModelCard | None = None
) -> None:
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
            from morpheus_core.weights import load_model

            load_model(path, crop=True, precision=precision, card=card)
    except Exception as exc:  # h5py, Keras and shape errors alike
        raise InputError(
            f"--model {path}: not weights of this network ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''})"
        ) from None


def check_flux_band(flux_band: str, bands: Sequence[str]) -> None:
    """Refuse a flux band that is not one of the mosaic's bands."""
    if flux_band not in bands:
        raise InputError(f"--flux-band {flux_band!r} is not a band of this mosaic (bands: {', '.join(bands)})")


def check_distinct_files(paths: Mapping[str, Path], *, where: str = "") -> None:
    """Refuse one file given for two bands.

    Two bands are the same file when their paths resolve to the same file (the same
    path, a symbolic or hard link: same device and inode) or when the files have the
    same size and the same bytes (a copy). Files of equal size are compared until
    their first difference, so distinct bands cost a few blocks, not a read of each.

    Parameters
    ----------
    paths : mapping of str to Path
        Band name -> file (files that do not exist are left to the later checks).
    where : str
        What defined the mosaic (for messages).

    Raises
    ------
    InputError
        Naming both bands and the file.
    """
    where = f"{where}: " if where else ""
    seen: dict[tuple[int, int], tuple[str, Path]] = {}
    by_size: dict[int, list[tuple[str, Path]]] = {}
    for band, path in paths.items():
        path = Path(path)
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue  # missing, a loop, ...: named by the checks of the files
        key = (st.st_dev, st.st_ino)
        if key in seen:
            other, first = seen[key]
            names = f"{path}" if first == path else f"{first}, also reached as {path}"
            raise InputError(
                f"{where}bands {other!r} and {band!r} are the same file ({names}); each band needs its own image"
            )
        seen[key] = (band, path)
        for other, first in by_size.get(st.st_size, []):
            try:
                equal = filecmp.cmp(first, path, shallow=False)
            except OSError:
                continue
            if equal:
                raise InputError(
                    f"{where}bands {other!r} and {band!r} are identical files ({first} and {path} "
                    "have the same bytes); each band needs its own image"
                )
        by_size.setdefault(st.st_size, []).append((band, path))


def fit_tile(tile: int, shape: tuple[int, int]) -> tuple[int, str | None]:
    """The tile size a run uses on a mosaic of ``shape``, and a note when it differs.

    A tile larger than the mosaic is brought down to the mosaic's larger side (one
    tile covers it; the Zarr chunks of the stores are that size, not the requested
    one, which could not fit in memory). A tile that cuts the mosaic into more than
    :data:`MAX_TILES` tiles is refused.

    Parameters
    ----------
    tile : int
        The requested tile core size (``--tile``).
    shape : tuple of int
        ``(H, W)`` of the mosaic.

    Returns
    -------
    tile : int
        The size to use (and to record: a resumed run with the same request gets the
        same size).
    note : str or None
        What was changed, for the user.

    Raises
    ------
    InputError
        Too many tiles; the message gives the smallest tile size that is allowed.
    """
    height, width = shape
    side = max(height, width)
    if tile > side:
        return side, (
            f"note: --tile {tile} is larger than the {height}x{width} mosaic: using --tile {side} (one tile covers it)"
        )
    n_tiles = math.ceil(height / tile) * math.ceil(width / tile)
    if n_tiles > MAX_TILES:
        smallest = next(
            t
            for t in range(max(tile, math.isqrt(height * width // MAX_TILES)), side + 1)
            if math.ceil(height / t) * math.ceil(width / t) <= MAX_TILES
        )
        raise InputError(
            f"--tile {tile} cuts the {height}x{width} mosaic into {n_tiles:,} tiles (at most "
            f"{MAX_TILES:,}: beyond that scheduling and the ledger cost more than the network); "
            f"use --tile {smallest} or larger (256 to 2048 suits most mosaics)"
        )
    return tile, None
