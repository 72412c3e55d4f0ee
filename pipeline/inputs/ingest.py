"""Ingest: per-band FITS mosaics -> one chunked Zarr v3 store.

The store layout (``format_version`` 1)::

    <store>/                       Zarr v3 group
        image     (n_bands, H, W)  float32, chunks (n_bands, C, C), fill NaN
        coverage  (H, W)           bool,    chunks (C, C),           fill False
        weight    (n_weight, H, W) float32, chunks (n_weight, C, C)  only with weight maps
        rms       (n_rms, H, W)    float32, chunks (n_rms, C, C)     only with rms maps
        attrs: bands, wcs_header, shape, chunk, inputs, format_version,
               error_maps ({"weight": [bands], "rms": [bands]}), zeropoints, effective_gain,
               flux_unit, sky_subtracted (:mod:`pipeline.inputs.photometry_maps`)

Weight and rms maps are stored as read, on the bands' chunk grid, so a task reads
them with the same core and halo as the bands; ``inputs`` records every file (bands,
then maps with their ``kind``), and so does the run's manifest.

Coverage rule: a pixel is covered when it is finite **and** non-zero in every band.
The Hubble Legacy Fields censor some bright pixels with exactly 0.0 and leave areas
outside a band's footprint at 0.0 (or NaN), and the paper classifies only where all
four bands have coverage; a genuine sky value of exactly 0.0 in float data is
vanishingly rare. ``image`` keeps every value as read (NaN stays NaN, zeros stay
zero); only ``coverage`` encodes the rule.

The FITS files are read without memory maps, one row of chunks at a time with
``hdu.section[y0:y1, :]`` (full-width strips are contiguous on disk, so each is a
single read), so memory is bounded by ``n_bands x C x W`` pixels, never the mosaic.
Bands compressed as a whole (``.fits.gz``, ``.bz2``, ``.xz``, ``.zip``) are read the
same way, decompressed on the fly (:mod:`pipeline.inputs.band_files`).
"""

from __future__ import annotations

import contextlib
import logging
import lzma
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from morpheus_core.windows import observed_pixels
from pipeline.errors import InputError, RunError
from pipeline.inputs.band_files import open_band, read_error
from pipeline.inputs.grid import BandSet
from pipeline.inputs.photometry_maps import ERROR_KINDS
from pipeline.rundir.checksums import file_fingerprint
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.staging import staged

__all__ = ["FORMAT_VERSION", "ingest", "read_wcs"]

log = logging.getLogger(__name__)

#: Version of the store layout written by :func:`ingest`.
FORMAT_VERSION = 1

_FITS_BLOCK = 2880


def _read_strip(hdu: fits.hdu.base._BaseHDU, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of an image HDU, full width, as stored (possibly big-endian)."""
    return hdu.section[y0:y1, :]


def _write_store(bandset: BandSet, target: Any, chunk: int, inputs: list[dict[str, Any]]) -> None:
    """Write the store; its attributes come last, so a store without
    ``format_version`` is one whose writing did not finish.
    """
    n, (height, width) = len(bandset.bands), bandset.shape
    root = zarr.create_group(target, zarr_format=3, overwrite=True)
    image = root.create_array(
        "image",
        shape=(n, height, width),
        dtype="float32",
        chunks=(n, chunk, chunk),
        fill_value=np.nan,
        dimension_names=("band", "y", "x"),
    )
    coverage = root.create_array(
        "coverage",
        shape=(height, width),
        dtype="bool",
        chunks=(chunk, chunk),
        fill_value=False,
        dimension_names=("y", "x"),
    )
    kinds = {kind: [m for m in bandset.error_maps if m.kind == kind] for kind in ERROR_KINDS.values()}
    maps = {
        kind: root.create_array(
            kind,
            shape=(len(ms), height, width),
            dtype="float32",
            chunks=(len(ms), chunk, chunk),
            fill_value=np.nan,
            dimension_names=("band", "y", "x"),
        )
        for kind, ms in kinds.items()
        if ms
    }
    buffer = np.empty((n, min(chunk, height), width), dtype=np.float32)
    with contextlib.ExitStack() as stack:
        hdus = [stack.enter_context(open_band(path))[index] for path, index in zip(bandset.paths, bandset.hdu_index)]
        map_hdus = {kind: [stack.enter_context(open_band(m.path))[m.hdu_index] for m in kinds[kind]] for kind in maps}
        for y0 in range(0, height, chunk):
            y1 = min(y0 + chunk, height)
            strip = buffer[:, : y1 - y0]
            for b, (hdu, path) in enumerate(zip(hdus, bandset.paths)):
                strip[b] = _checked_strip(hdu, path, y0, y1)  # -> native float32
            image[:, y0:y1, :] = strip
            coverage[y0:y1, :] = observed_pixels(strip)
            for kind, array in maps.items():
                array[:, y0:y1, :] = np.stack(
                    [_checked_strip(hdu, m.path, y0, y1) for hdu, m in zip(map_hdus[kind], kinds[kind])]
                ).astype(np.float32)
            log.debug("ingested rows %d:%d of %d", y0, y1, height)
    root.update_attributes(
        {
            "bands": list(bandset.bands),
            "wcs_header": bandset.wcs_header,
            "shape": [height, width],
            "chunk": chunk,
            "inputs": inputs,
            **_photometry_attrs(bandset),
            "format_version": FORMAT_VERSION,
        }
    )


def _checked_strip(hdu: fits.hdu.base._BaseHDU, path: Path, y0: int, y1: int) -> np.ndarray:
    try:
        return _read_strip(hdu, y0, y1)
    except (OSError, ValueError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise RunError(f"{path}: reading rows {y0}:{y1} failed ({read_error(path, exc)})") from exc


def _photometry_attrs(bandset: BandSet) -> dict[str, Any]:
    """Attributes of the store that the photometry reads (which maps, zero points, ...)."""
    return {
        "error_maps": {kind: [m.band for m in bandset.error_maps if m.kind == kind] for kind in ERROR_KINDS.values()},
        **bandset.photometry,
    }


def _inputs(bandset: BandSet) -> list[dict[str, Any]]:
    """The input files' records: the bands, then the weight or rms maps (with their ``kind``)."""
    records = [
        {"band": band, "path": str(path), **file_fingerprint(path)} for band, path in zip(bandset.bands, bandset.paths)
    ]
    return records + [
        {"band": m.band, "kind": m.kind, "path": str(m.path), **file_fingerprint(m.path)} for m in bandset.error_maps
    ]


def _check_existing(store: Location, bandset: BandSet, inputs: list[dict[str, Any]], chunk: int) -> zarr.Group:
    """Return the existing store if it was written from these inputs and chunk."""
    try:
        group = store.open_group(mode="r", zarr_format=3)
        attrs = group.attrs.asdict()
        recorded = list(attrs["inputs"])
        version = attrs["format_version"]
    except Exception as exc:  # not a group, or not one of ours
        raise InputError(
            f"{store} exists but is not a mosaic store ({exc!r}); remove it or rerun with --restart"
        ) from exc
    if version != FORMAT_VERSION:
        raise InputError(
            f"{store} has format version {version}, this version writes "
            f"{FORMAT_VERSION}; rerun with --restart to re-ingest"
        )

    def key(record: dict[str, Any]) -> tuple[str, str]:
        return record["band"], record.get("kind", "band")

    old = {key(r): r for r in recorded}
    changed = []
    for new in inputs:
        prev = old.pop(key(new), None)
        what = f"band {new['band']}" + (f" {new['kind']} map" if "kind" in new else "")
        if prev is None:
            changed.append(f"{what} ({new['path']}) was not in the store")
        elif (prev["size"], prev["sha256"]) != (new["size"], new["sha256"]):
            changed.append(
                f"{what}: {new['path']} differs from the "
                f"recorded {prev['path']} (size {prev['size']} -> "
                f"{new['size']}, sha256 {prev['sha256'][:12]} -> "
                f"{new['sha256'][:12]})"
            )
    changed += [
        f"band {b}{'' if k == 'band' else f' {k} map'} ({r['path']}) is no longer given" for (b, k), r in old.items()
    ]
    if changed or [r["band"] for r in recorded if "kind" not in r] != list(bandset.bands):
        detail = "; ".join(changed) or "band order changed"
        raise InputError(f"inputs changed since {store} was written: {detail}; rerun with --restart to re-ingest")
    if attrs.get("chunk") != chunk:
        raise InputError(
            f"{store} was written with --tile {attrs.get('chunk')}, not --tile {chunk}; give "
            f"--tile {attrs.get('chunk')} to resume, or --restart to rewrite it"
        )
    photometry = _photometry_attrs(bandset)
    if any(attrs.get(k) != v for k, v in photometry.items()):  # zero points or sky subtraction changed
        group = store.open_group(mode="r+", zarr_format=3)
        group.update_attributes(photometry)
        log.info("%s: photometry settings updated (%s)", store, ", ".join(sorted(photometry)))
        group = store.open_group(mode="r", zarr_format=3)
    return group


def ingest(bandset: BandSet, store: str | Path | Location, *, chunk: int = 1024, overwrite: bool = False) -> zarr.Group:
    """Write validated bands into one chunked Zarr v3 store.

    On a file system the store is written to ``<store>.partial`` and renamed to
    ``<store>`` only when complete, so a crash never leaves a store that looks
    finished; a leftover ``.partial`` is discarded and rewritten. In an object store
    (no renames) it is written in place with its attributes last: a store without
    them is an interrupted ingest, discarded and rewritten. Memory use is bounded by
    one row of chunks (``n_bands x chunk x W`` float32 pixels).

    Parameters
    ----------
    bandset : BandSet
        Output of :func:`validate_bands`.
    store : str, Path or Location
        Directory of the store, e.g. ``run/mosaic.zarr``, or a
        :class:`~pipeline.rundir.location.Location` such as ``s3://bucket/run/mosaic.zarr``
        (the band files themselves are read from the local file system).
    chunk : int, optional
        Chunk edge ``C`` in pixels; ``image`` is chunked ``(n_bands, C, C)``.
    overwrite : bool, optional
        Rewrite the store even if it exists.

    Returns
    -------
    zarr.Group
        The store, opened read-only.

    Raises
    ------
    InputError
        If the store exists, ``overwrite`` is false, and it was written from other
        inputs (size or SHA-256 differ), another chunk size, or is not a mosaic store.
    RunError
        If reading an input or writing the store fails part-way.

    Examples
    --------
    >>> bands = validate_bands({"H": "h.fits", "J": "j.fits"})  # doctest: +SKIP
    >>> group = ingest(bands, "mosaic.zarr", chunk=512)           # doctest: +SKIP
    >>> group["image"].shape, group.attrs["bands"]                # doctest: +SKIP
    ((2, 4096, 4096), ['H', 'J'])
    """
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    chunk = int(chunk)
    location = as_location(store)
    inputs = _inputs(bandset)
    if not location.is_local:
        return _ingest_in_place(bandset, location, chunk, inputs, overwrite)
    store = location.path
    if store.exists() and not overwrite:
        group = _check_existing(location, bandset, inputs, chunk)
        log.info("%s already holds these inputs; reusing it", store)
        return group
    store.parent.mkdir(parents=True, exist_ok=True)
    log.info("ingesting %d bands %s of %s into %s", len(bandset.bands), bandset.shape, ",".join(bandset.bands), store)
    try:
        with staged(location) as work:  # a leftover staging folder is discarded
            _write_store(bandset, work.path, chunk, inputs)
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"ingest into {store} failed: {exc!r}") from exc
    return zarr.open_group(store, mode="r", zarr_format=3)


def _ingest_in_place(
    bandset: BandSet, store: Location, chunk: int, inputs: list[dict[str, Any]], overwrite: bool
) -> zarr.Group:
    """:func:`ingest` into an object store, where folders cannot be renamed."""
    if store.is_zarr_group() and not overwrite:
        attrs = store.open_group(mode="r", zarr_format=3).attrs.asdict()
        if "format_version" in attrs:
            group = _check_existing(store, bandset, inputs, chunk)
            log.info("%s already holds these inputs; reusing it", store)
            return group
        log.warning("removing %s left by an interrupted ingest", store)
    store.remove(recursive=True)
    log.info("ingesting %d bands %s of %s into %s", len(bandset.bands), bandset.shape, ",".join(bandset.bands), store)
    try:
        _write_store(bandset, store.zarr_store(), chunk, inputs)
    except Exception as exc:
        if isinstance(exc, RunError):
            raise
        raise RunError(f"ingest into {store} failed: {exc!r}") from exc
    return store.open_group(mode="r", zarr_format=3)


def read_wcs(group: zarr.Group) -> WCS:
    """The celestial WCS recorded in a store written by :func:`ingest`.

    Parameters
    ----------
    group : zarr.Group
        The store's root group.

    Returns
    -------
    astropy.wcs.WCS
        Two-axis celestial WCS of the ``(y, x)`` pixel grid.
    """
    header = fits.Header.fromstring(group.attrs["wcs_header"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header)
