"""Classify band images held in memory (NumPy) or as Dask arrays.

:func:`classify` is what ``python -m pipeline run`` does to a mosaic between ingest
and the FITS products, on arrays: the image is cut into tiles whose cores own the
windows anchored in them and which read a halo of ``window - 1`` pixels
(:func:`morpheus_core.tiling.plan_tiles`); each tile's partial statistics come from
the engine (:func:`pipeline.classify.tasks.classify_tile`, the network loaded once per
process by :func:`pipeline.classify.tasks.load_classifier`), and each output chunk
merges the partials of the tiles that overlap it exactly
(:func:`pipeline.classify.tasks.merge_overlapping`), so the result equals the whole
image classified at once, up to float rounding. NumPy input is computed before
:func:`classify` returns; Dask input gives a lazy result, one task per tile and one
per output chunk, run by whatever Dask scheduler computes it (a
``distributed.Client`` if one is active).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from morpheus_core.windows import observed_pixels
from morpheus_survey.bands import BandStack, band_stack
from morpheus_survey.dataset import classification_dataset
from pipeline.errors import InputError
from pipeline.settings import RunSettings
from pipeline.settings.fields import field_default

__all__ = ["classify"]

#: The defaults of the network's settings: those of ``python -m pipeline run``.
_DEFAULTS = {name: field_default(RunSettings, name) for name in ("model", "stride", "batch_size", "precision", "tile")}


def _wcs(wcs: Any, shape: tuple[int, int]) -> tuple[WCS, str]:
    """``wcs`` (a WCS, a FITS header or its text) as a celestial WCS and header text."""
    if isinstance(wcs, str):
        wcs = fits.Header.fromstring(wcs)
    if isinstance(wcs, fits.Header):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(wcs)
    if not isinstance(wcs, WCS):
        raise InputError(f"classify: wcs must be an astropy WCS, a FITS header or its text, got {type(wcs).__name__}")
    celestial = wcs.celestial
    if celestial.naxis != 2:
        raise InputError("classify: wcs has no celestial axes (RA/Dec); give the WCS of the band images")
    if celestial.pixel_shape is not None and tuple(celestial.pixel_shape)[::-1] != shape:
        raise InputError(
            f"classify: wcs is of a {celestial.pixel_shape[1]}x{celestial.pixel_shape[0]} image "
            f"(NAXIS2 x NAXIS1), the bands are {shape[0]}x{shape[1]}"
        )
    return celestial, celestial.to_header().tostring()


def _tile_statistics(image: np.ndarray, coverage: np.ndarray, tile: Any, config: RunSettings, card: Any) -> Any:
    """One tile's partial statistics (a Dask task)."""
    from pipeline.classify.tasks import classify_tile, load_classifier

    return classify_tile(tile, image, coverage, load_classifier(config, card), config)


def _chunk_images(core: Any, tiles: list, n_classes: int, *parts: Any) -> tuple[np.ndarray, ...]:
    """One output chunk: the overlapping tiles' partials merged and finalised (a Dask task)."""
    from morpheus_core.stats import finalize
    from pipeline.classify.tasks import merge_overlapping

    result = finalize(merge_overlapping(core, zip(tiles, parts), n_classes))
    return result.mean, result.variance, result.rank, result.n


def _lazy_images(stack: BandStack, config: RunSettings, card: Any, tile: tuple[int, int]) -> tuple[Any, ...]:
    """``mean``, ``variance``, ``rank`` and ``n`` as Dask arrays chunked by tile cores."""
    import dask
    import dask.array as da

    from morpheus_core.tiling import plan_tiles
    from pipeline.classify.tasks import overlapping

    image = stack.image if stack.lazy else da.from_array(stack.image, chunks=(-1, *tile))
    coverage = observed_pixels(image)
    shape, n_classes = stack.shape, len(card.classes)
    tiles = plan_tiles(shape, tile, window=config.window, stride=config.stride)
    token = dask.base.tokenize(image, config.to_json(), card.to_dict(), tile)
    parts = {
        t.index: dask.delayed(_tile_statistics, pure=True)(
            image[(slice(None), *t.read_slices)],
            coverage[t.read_slices],
            t,
            config,
            card,
            dask_key_name=f"morpheus-tile-{t.index[0]}-{t.index[1]}-{token}",
        )
        for t in tiles
    }
    rows: dict[int, list[list[Any]]] = {}
    for target in tiles:
        near = overlapping(tiles, target.core_box)
        chunk = dask.delayed(_chunk_images, pure=True, nout=4)(
            target.core_box,
            near,
            n_classes,
            *(parts[t.index] for t in near),
            dask_key_name=f"morpheus-merge-{target.index[0]}-{target.index[1]}-{token}",
        )
        h, w = target.core_box.shape
        arrays = [da.from_delayed(chunk[i], shape=(n_classes, h, w), dtype=np.float32) for i in range(3)]
        arrays.append(da.from_delayed(chunk[3], shape=(h, w), dtype=np.int32))
        rows.setdefault(target.index[0], []).append(arrays)
    grid = [rows[r] for r in sorted(rows)]
    return tuple(da.block([[cell[k] for cell in row] for row in grid]) for k in range(4))


def classify(
    images: Any,
    *,
    bands: Sequence[str] | None = None,
    model: str = _DEFAULTS["model"],
    stride: int = _DEFAULTS["stride"],
    batch_size: int = _DEFAULTS["batch_size"],
    precision: str = _DEFAULTS["precision"],
    tile: int | tuple[int, int] | None = None,
    wcs: Any = None,
    accept_pixel_scale: bool = False,
) -> xr.Dataset:
    """Classify every pixel of a set of band images (Morpheus, paper section 2).

    Parameters
    ----------
    images : dict or array
        ``{band: 2-D image}`` with the network's bands in any order and named by band
        or filter in any case (``H``/``h``/``F160W``, ``J``, ``V``, ``Z``), as NumPy or
        Dask arrays on one pixel grid; or one ``(band, y, x)`` array (then ``bands``
        names its planes). Pixels that are NaN or exactly 0 in any band are not
        observed: no window touching them is evaluated (``n`` counts the windows).
    bands : sequence of str, optional
        The band of each plane of a 3-D ``images`` (default: the network's order).
    model : str
        ``"released"`` (the Morpheus network of morpheus-astro 0.5.1), a Keras
        ``.weights.h5`` file with its model card (``python -m pipeline train``), or
        ``"standin"``/``"standin-sky"`` (cheap deterministic stand-ins, not
        classifiers of real data).
    stride : int
        Step between windows (1 in the paper: every window).
    batch_size : int
        Windows per network call.
    precision : {"float32", "bfloat16"}
        Network compute precision.
    tile : int or tuple of int, optional
        Tile core size ``(y, x)`` in pixels, also the chunks of the result. Default:
        a Dask input's chunks, else that of ``python -m pipeline run``. Results do not
        depend on it.
    wcs : astropy.wcs.WCS, astropy.io.fits.Header or str, optional
        The images' WCS: the result gets ``ra``/``dec`` coordinates and the WCS in
        ``attrs["wcs"]``; its pixel scale is checked against the network's.
    accept_pixel_scale : bool
        Classify images whose pixel scale differs from the network's by more than
        10% (a warning) instead of refusing them.

    Returns
    -------
    xarray.Dataset
        ``mean``, ``variance`` and ``rank`` ``(class, y, x)`` float32 and ``n``
        ``(y, x)`` int32 (layout: :mod:`morpheus_survey.dataset`); lazy (Dask) for
        Dask input.

    Raises
    ------
    InputError
        Images that are not 2-D or not of one shape, smaller than the network's
        window, bands the network does not take or lacks, a WCS of another image or
        pixel scale, or a setting out of range.

    Examples
    --------
    >>> result = classify({"h": h, "j": j, "v": v, "z": z}, wcs=wcs)  # doctest: +SKIP
    >>> result["mean"].sel({"class": "spheroid"}).plot(origin="lower")  # doctest: +SKIP
    """
    from pipeline.inputs.model_cards import card_for, pixel_scale_arcsec
    from pipeline.inputs.preflight import check_card, check_pixel_scale, fit_tile

    config = RunSettings(
        model=model, stride=stride, batch_size=batch_size, precision=precision, tile=_DEFAULTS["tile"], progress=False
    )
    card = card_for(config.model)
    check_card(card, window=config.window, border=config.border, model=config.model)
    stack = band_stack(images, bands, card)
    shape = stack.shape
    if min(shape) < config.window:
        raise InputError(
            f"classify: the images are {shape[0]}x{shape[1]} pixels, smaller than the network's "
            f"{config.window}x{config.window} window"
        )
    celestial, header = (None, None) if wcs is None else _wcs(wcs, shape)
    if header is not None:
        note = check_pixel_scale(pixel_scale_arcsec(header), card, where="classify(wcs=...)", accept=accept_pixel_scale)
        if note:
            warnings.warn(note, stacklevel=2)
    if tile is None:
        tile = (
            (stack.image.chunks[1][0], stack.image.chunks[2][0])
            if stack.lazy
            else fit_tile(_DEFAULTS["tile"], shape)[0]
        )
    tiles = (tile, tile) if isinstance(tile, int) else tuple(tile)
    for side in tiles:
        dataclasses.replace(config, tile=side)  # refuses a size that is not a whole number >= 1
    mean, variance, rank, n = _lazy_images(stack, config, card, tiles)
    result = classification_dataset(
        mean,
        variance,
        rank,
        n,
        classes=card.classes,
        wcs=celestial,
        wcs_header=header,
        attrs={
            "bands": list(stack.bands),
            "given_bands": list(stack.given),
            "model": config.model_description(),
            "stride": config.stride,
            "precision": config.precision,
        },
    )
    return result if stack.lazy else result.compute()
