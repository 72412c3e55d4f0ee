"""Stage 4b of the downstream graph: photometry, shapes and flags from photutils, chunk by chunk.

:func:`object_photometry` measures every object of the deblended map with
:func:`morpheus_core.photometry.measure_objects` (photutils' ``SourceCatalog`` per band:
centroid, bounding box, segment and Kron fluxes with errors, Kron and half-light radii,
second-moment shape, Gini, AB magnitudes) and sets its quality bits
(:func:`morpheus_core.flags.object_flags`). Two passes over the chunk grid:

1. **Survey** (one task per chunk, its core only): each object's first pixel in raster
   order and its bounding box (both merge exactly: minima and maxima), and per band
   the sigma-clipped background level and rms of the chunk's sky pixels (rank-vote
   background = 1, unlabelled, classified, finite: :func:`morpheus_core.noise.sky_pixels`).
2. **Measure** (one task per chunk owning objects): an object belongs to the chunk
   holding its first pixel (as the deblending groups segments), so each object is
   measured once. The task reads the objects' bounding boxes with a margin, places
   each object's measurement box (:func:`morpheus_core.photometry_boxes.measurement_boxes`),
   reads the union of the boxes (bands, weight or rms maps, labels) and measures there.

Per band, the error array is the weight map's ``1/sqrt(w)`` or the rms map when the
mosaic gives one, else the owning chunk's sky rms; with an exposure time (``BUNIT``
in electrons/s) the source's Poisson noise is added (:func:`morpheus_core.noise.total_error`).
The owning chunk's sky level is subtracted unless the mosaic is sky-subtracted; a
chunk with fewer than 100 sky pixels takes the median of the other chunks' values.

Invariant: with the same error arrays and background levels, every object's row
equals one ``SourceCatalog`` over the whole image (the boxes hold every pixel the
measurement reads), to float rounding of positions
(``tests/pipeline/downstream/test_photometry.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import dask
import numpy as np
import pandas as pd
from astropy.table import Table

from morpheus_core.flags import CENSOR_REACH, FLAG_DESCRIPTION, object_flags
from morpheus_core.noise import rms_from_map, rms_from_weight, sky_noise, sky_pixels, total_error
from morpheus_core.photometry import measure_objects
from morpheus_core.photometry_boxes import measurement_boxes
from morpheus_core.photometry_columns import photometry_table
from morpheus_core.tiling import Box
from pipeline.downstream.context import StageContext
from pipeline.rundir.location import Location
from pipeline.tasks import run_tasks

__all__ = ["PhotometrySetup", "object_photometry"]

#: Pixels read around the owned objects' bounding boxes to place their measurement boxes
#: (more gives more exact boxes, fewer second reads).
_MARGIN = 32
#: Fewest sky pixels of a chunk for its own background and rms.
_MIN_SKY = 100


@dataclass(frozen=True)
class PhotometrySetup:
    """What the measurement of one run uses, read once from ``mosaic.zarr``'s attributes.

    Attributes
    ----------
    bands : tuple of str
        Bands measured (the mosaic's).
    shape_band : str
        Band of the shape columns and Kron apertures (the flux band).
    maps : dict of str to tuple
        Band -> (``"weight"`` or ``"rms"``, index in that array), for bands with a map.
    zeropoints : dict of str to float or None
        AB zero points (None: no magnitude columns).
    gains : dict of str to float or None
        Effective gain (exposure time) per band, None without one.
    subtract_background : bool
        Subtract the chunk's sky level (False for a sky-subtracted mosaic).
    """

    bands: tuple[str, ...]
    shape_band: str
    maps: dict[str, tuple[str, int]]
    zeropoints: dict[str, float | None]
    gains: dict[str, float | None]
    subtract_background: bool

    @classmethod
    def from_context(cls, context: StageContext, *, background: str | None = None) -> PhotometrySetup:
        """The setup of a run: ``background`` ``"sky"`` or ``"none"`` overrides the mosaic's."""
        attrs = context.mosaic.open_group(mode="r").attrs.asdict()
        maps = {
            band: (kind, i) for kind, names in (attrs.get("error_maps") or {}).items() for i, band in enumerate(names)
        }
        zps = {b: (attrs.get("zeropoints") or {}).get(b, {}).get("value") for b in context.bands}
        gains = {b: (attrs.get("effective_gain") or {}).get(b) for b in context.bands}
        subtract = not attrs.get("sky_subtracted", False) if background is None else background == "sky"
        return cls(tuple(context.bands), context.flux_band, maps, zps, gains, subtract)

    def error_sources(self, sky: pd.DataFrame) -> dict[str, str]:
        """Per band, where its error array comes from (the catalog's ``error_source``)."""
        out = {}
        for band in self.bands:
            if band in self.maps:
                kind = self.maps[band][0]
                out[band] = "weight map (1/sqrt(weight))" if kind == "weight" else "rms map"
            elif np.isfinite(sky[f"rms_{band}"]).any():
                out[band] = "sky noise (sigma-clipped rms of rank-vote background = 1 pixels, per chunk)"
            else:
                out[band] = "none (no sky pixels): no flux errors"
            if self.gains.get(band):
                out[band] += f" + source Poisson noise (effective gain {self.gains[band]:g} s)"
        return out


def object_photometry(
    client: Any,
    context: StageContext,
    ids: np.ndarray,
    *,
    sub_id: Sequence[int],
    oversize: Sequence[bool],
    detection_flag: Sequence[int],
    background: str | None = None,
) -> Table:
    """Photutils photometry, shapes and quality bits of the objects of the deblended map.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run (``None``: the threaded scheduler).
    context : StageContext
        The stores (``deblended``, the bands and maps, the rank-vote background), chunks,
        bands and flux band (the shape band).
    ids : numpy.ndarray
        Objects, in the rows' order.
    sub_id, oversize, detection_flag : sequence
        Per object: child number, segment not deblended, the paper's detection flag.
    background : {"sky", "none"}, optional
        Subtract each chunk's sky level, or nothing; default: the mosaic's
        ``sky_subtracted``.

    Returns
    -------
    astropy.table.Table
        ``id``, the photometry columns (units and descriptions from
        :mod:`morpheus_core.photometry_columns`) and ``flags``; ``meta`` holds
        ``error_source``, ``zeropoints``, ``background`` and, where zero points are
        missing, ``magnitudes``.
    """
    setup = PhotometrySetup.from_context(context, background=background)
    ids = np.asarray(ids, dtype=np.int64)
    boxes = context.boxes
    parts = run_tasks(
        client,
        [
            dask.delayed(_survey_block)(context.segmentation, context.classification, context.mosaic, b, setup.bands)
            for b in boxes
        ],
    )
    extents = _merge_extents([p[0] for p in parts])
    sky = _fill_sky(pd.DataFrame([p[1] for p in parts]), setup.bands)
    extents = extents.reindex(ids)
    if extents["first"].isna().any():
        raise ValueError(f"objects {ids[extents['first'].isna().to_numpy()][:10].tolist()} have no pixel")
    n_cols = -(-context.shape[1] // context.chunk)
    first = extents["first"].to_numpy(np.int64)
    owner = (first // context.width // context.chunk) * n_cols + (first % context.width) // context.chunk
    extra = pd.DataFrame(
        {
            "sub_id": np.asarray(sub_id, np.int64),
            "oversize": np.asarray(oversize, bool),
            "detection_flag": np.asarray(detection_flag, np.int64),
        },
        index=extents.index,
    )
    frame = extents.join(extra)
    tasks = [
        dask.delayed(_measure_block)(
            context.segmentation, context.mosaic, frame[owner == k], context.shape, setup, sky.iloc[k].to_dict()
        )
        for k in np.unique(owner)
    ]
    measured = [m for m in run_tasks(client, tasks)]
    result = pd.concat(measured).reindex(ids) if measured else _empty(setup, ids)
    table = photometry_table(
        result.drop(columns="flags"), shape_band=setup.shape_band, bands=setup.bands, flux_unit=context.flux_unit
    )
    table["flags"] = result["flags"].to_numpy(np.int32)
    table["flags"].description = FLAG_DESCRIPTION
    table.meta.update(_meta(setup, sky))
    return table


def _meta(setup: PhotometrySetup, sky: pd.DataFrame) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "error_source": setup.error_sources(sky),
        "zeropoints": {b: zp for b, zp in setup.zeropoints.items() if zp is not None},
        "background": (
            "sky level subtracted: sigma-clipped median of the rank-vote background = 1 pixels of the object's chunk"
            if setup.subtract_background
            else "none subtracted (sky-subtracted mosaic)"
        ),
        "shape_band": setup.shape_band,
    }
    missing = [b for b, zp in setup.zeropoints.items() if zp is None]
    if missing:
        meta["magnitudes"] = (
            f"no AB zero point known for band(s) {', '.join(missing)} (header PHOTFLAM/PHOTPLAM, "
            "ABMAG, MAGZP, ZP or the mosaics file's zeropoint): no magnitude columns for them"
        )
    return meta


def _empty(setup: PhotometrySetup, ids: np.ndarray) -> pd.DataFrame:
    frame = measure_objects(
        np.zeros((1, 1), np.int32),
        {b: np.zeros((1, 1)) for b in setup.bands},
        [],
        shape_band=setup.shape_band,
        zeropoints=setup.zeropoints,
    )
    frame["flags"] = np.array([], np.int32)
    return frame.reindex(ids)


def _survey_block(
    seg_store: Location, class_store: Location, mosaic_store: Location, box: Box, bands: tuple[str, ...]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Task: first pixel and bounding box of each object in one chunk, and the chunk's sky per band."""
    labels = seg_store.open_group(mode="r")["deblended"][box.slices]
    y0, x0 = box.origin
    flat = labels.ravel()
    ids, first = np.unique(flat, return_index=True)
    _, last = np.unique(flat[::-1], return_index=True)
    _, first_col = np.unique(labels.T.ravel(), return_index=True)
    _, last_col = np.unique(labels.T.ravel()[::-1], return_index=True)
    h, w = labels.shape
    last, last_col = flat.size - 1 - last, flat.size - 1 - last_col
    keep = ids > 0
    width = _image_width(seg_store)
    extents = pd.DataFrame(
        {
            "first": (first[keep] // w + y0) * width + first[keep] % w + x0,
            "ymin": first[keep] // w + y0,
            "ymax": last[keep] // w + y0,
            "xmin": first_col[keep] // h + x0,
            "xmax": last_col[keep] // h + x0,
        },
        index=pd.Index(ids[keep].astype(np.int64), name="id"),
    )
    cls = class_store.open_group(mode="r")
    classified = cls["n"][box.slices] > 0
    background = cls["rank"][(-1, *box.slices)]
    image = mosaic_store.open_group(mode="r")["image"][(slice(None), *box.slices)]
    sky: dict[str, float] = {}
    for b, band in enumerate(bands):
        pixels = sky_pixels(background, classified=classified, labels=labels, data=image[b])
        try:
            noise = sky_noise(image[b], pixels, min_pixels=_MIN_SKY)
            sky[f"background_{band}"], sky[f"rms_{band}"] = noise.background, noise.rms
        except ValueError:  # too few sky pixels: the other chunks' median
            sky[f"background_{band}"], sky[f"rms_{band}"] = np.nan, np.nan
    return extents, sky


def _image_width(seg_store: Location) -> int:
    return int(seg_store.open_group(mode="r")["deblended"].shape[1])


def _merge_extents(parts: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [p for p in parts if len(p)]
    if not frames:
        return pd.DataFrame(
            {c: np.array([], np.int64) for c in ("first", "ymin", "ymax", "xmin", "xmax")},
            index=pd.Index([], dtype=np.int64, name="id"),
        )
    grouped = pd.concat(frames).groupby(level="id")
    out = grouped[["first", "ymin", "xmin"]].min()
    out[["ymax", "xmax"]] = grouped[["ymax", "xmax"]].max()
    return out


def _fill_sky(sky: pd.DataFrame, bands: tuple[str, ...]) -> pd.DataFrame:
    """Chunks with too few sky pixels take the median of the others (NaN when none has any)."""
    for band in bands:
        for name in (f"background_{band}", f"rms_{band}"):
            sky[name] = sky[name].fillna(sky[name].median())
    return sky


def _read(seg_store: Location, mosaic_store: Location, box: Box, setup: PhotometrySetup) -> dict[str, np.ndarray]:
    """Labels, bands and error maps of a box."""
    mosaic = mosaic_store.open_group(mode="r")
    sl = box.slices
    piece = {
        "labels": seg_store.open_group(mode="r")["deblended"][sl],
        "image": mosaic["image"][(slice(None), *sl)].astype(np.float64),
    }
    for kind in {k for k, _ in setup.maps.values()}:
        piece[kind] = mosaic[kind][(slice(None), *sl)].astype(np.float64)
    return piece


def _cut(piece: dict[str, np.ndarray], outer: Box, inner: Box) -> dict[str, np.ndarray]:
    ys = slice(inner.y0 - outer.y0, inner.y1 - outer.y0)
    xs = slice(inner.x0 - outer.x0, inner.x1 - outer.x0)
    return {k: v[..., ys, xs] for k, v in piece.items()}


def _errors(
    piece: dict[str, np.ndarray], setup: PhotometrySetup, sky: dict[str, float], backgrounds: dict[str, float]
) -> tuple[dict[str, np.ndarray | None], np.ndarray]:
    """Per band the 1-sigma error array, and the pixels a map calls unobserved."""
    errors: dict[str, np.ndarray | None] = {}
    invalid = np.zeros(piece["labels"].shape, dtype=bool)
    for b, band in enumerate(setup.bands):
        if band in setup.maps:
            kind, i = setup.maps[band]
            rms, bad = (rms_from_weight if kind == "weight" else rms_from_map)(piece[kind][i])
            invalid |= bad
        else:
            rms, bad = sky[f"rms_{band}"], None
            if not np.isfinite(rms):
                errors[band] = None
                continue
        data = piece["image"][b] - backgrounds.get(band, 0.0)
        errors[band] = total_error(data, rms, effective_gain=setup.gains.get(band))
        if bad is not None:
            errors[band][bad] = np.nan
    return errors, invalid


def _measure_block(
    seg_store: Location,
    mosaic_store: Location,
    objects: pd.DataFrame,
    shape: tuple[int, int],
    setup: PhotometrySetup,
    sky: dict[str, float],
) -> pd.DataFrame:
    """Task: the photometry and flags of the objects one chunk owns."""
    ids = objects.index.to_numpy(np.int64)
    backgrounds = {
        b: sky[f"background_{b}"]
        for b in setup.bands
        if setup.subtract_background and np.isfinite(sky[f"background_{b}"])
    }
    s = setup.bands.index(setup.shape_band)
    margin = max(_MARGIN, CENSOR_REACH)  # the flags look this far around the objects
    near = Box(
        max(0, int(objects["ymin"].min()) - margin),
        min(shape[0], int(objects["ymax"].max()) + margin + 1),
        max(0, int(objects["xmin"].min()) - margin),
        min(shape[1], int(objects["xmax"].max()) + margin + 1),
    )
    piece = _read(seg_store, mosaic_store, near, setup)
    _, invalid = _errors(piece, setup, sky, backgrounds)
    mask = invalid | ~np.isfinite(piece["image"]).all(axis=0)
    flags = object_flags(
        piece["labels"],
        ids,
        offset=near.origin,
        image_shape=shape,
        mask=mask,
        bands=list(piece["image"]),
        sub_id=objects["sub_id"].to_numpy(),
        oversize=objects["oversize"].to_numpy(),
        detection_flag=objects["detection_flag"].to_numpy(),
    )
    boxes = measurement_boxes(
        piece["labels"],
        piece["image"][s],
        ids,
        offset=near.origin,
        image_shape=shape,
        mask=mask,
        background=backgrounds.get(setup.shape_band),
    )
    box = Box(
        int(boxes["y_start"].min()), int(boxes["y_stop"].max()), int(boxes["x_start"].min()), int(boxes["x_stop"].max())
    )
    if near.y0 <= box.y0 and box.y1 <= near.y1 and near.x0 <= box.x0 and box.x1 <= near.x1:
        piece = _cut(piece, near, box)
    else:
        piece = _read(seg_store, mosaic_store, box, setup)
    errors, invalid = _errors(piece, setup, sky, backgrounds)
    mask = invalid | ~np.isfinite(piece["image"]).all(axis=0)
    bands = {band: piece["image"][b] for b, band in enumerate(setup.bands)}
    frame = measure_objects(
        piece["labels"],
        bands,
        ids,
        shape_band=setup.shape_band,
        errors=errors,
        mask=mask,
        backgrounds=backgrounds,
        offset=box.origin,
        image_shape=shape,
        zeropoints=setup.zeropoints,
    )
    frame["flags"] = flags
    return frame
