"""Stage 4 of the downstream graph: the catalog, from sums per chunk merged exactly.

:func:`internal_catalog` (one row per object of the deblended map) and
:func:`value_added_catalog` (one row per source of an external catalog) sum each
chunk of the deblended map (:func:`morpheus_core.object_sums.object_sums`), merge the
sums exactly (sums, minima, arg-maxima: :func:`~morpheus_core.object_sums.merge_object_sums`)
and turn them into columns with :func:`~morpheus_core.catalog.object_catalog`: class
fractions (Eq. 16), ``background_min`` and the detection flag from the rank-vote
images as the released code, ``p_mean_<class>`` from the mean images,
``sigma_<class>`` from the variance images. In value-added mode, sources whose
segment is smaller than the aperture, or that have no segment, are measured in a
0.36" radius aperture as in the paper's section 8.

Invariant: the merged sums, hence the catalog, equal those of the whole image
(to floating-point summation order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
import pandas as pd
import zarr
from astropy.table import MaskedColumn, Table, hstack

from morpheus_core import CLASSES
from morpheus_core.catalog import aperture_mask, detection_flag, object_catalog
from morpheus_core.deblend import object_label
from morpheus_core.flags import flag_bit, object_flags
from morpheus_core.object_sums import merge_object_sums, object_sums
from morpheus_core.tiling import Box
from pipeline.downstream.context import StageContext
from pipeline.downstream.large_segments import segment_flag_column
from pipeline.downstream.photometry import object_photometry
from pipeline.rundir.location import Location
from pipeline.settings.downstream import APERTURE_ARCSEC
from pipeline.tasks import run_tasks

__all__ = ["internal_catalog", "value_added_catalog"]

#: Value-added sources measured per aperture task (sorted so that a group's sources lie close).
_APERTURE_GROUP = 64


def internal_catalog(
    client: Any, context: StageContext, objects: pd.DataFrame, *, photometry: bool = True, background: str | None = None
) -> Table:
    """The catalog of the deblended map: one row per object.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run (``None``: the threaded scheduler).
    context : StageContext
        The classification, mosaic and segmentation stores (``deblended`` read), the
        chunks, the bands and flux band (Eq. 16 weights), the WCS (``ra``, ``dec``).
    objects : pandas.DataFrame
        The object table of :func:`pipeline.downstream.deblend.deblend_segments`: indexed by
        ``id``, with ``parent_id``, ``sub_id`` and ``segment_flag``.
    photometry : bool
        Add the photutils columns and ``flags``
        (:func:`pipeline.downstream.photometry.object_photometry`).
    background : {"sky", "none"}, optional
        Background subtraction of the photometry (default: the mosaic's).

    Returns
    -------
    astropy.table.Table
        ``id``, ``label``, ``parent_id``, ``sub_id``, ``detection_flag``,
        ``segment_flag``, then the measured columns (the paper's), then the
        photometry's and ``flags``; ``meta`` says where the errors, zero points and
        background came from.
    """
    sums = _catalog_sums(client, context)
    ids = objects.index.to_numpy(dtype=np.int64)
    parent = objects["parent_id"].to_numpy(dtype=np.int64)
    sub = objects["sub_id"].to_numpy(dtype=np.int64)
    sums = sums.reindex(ids)
    missing = sums["area"].isna().to_numpy()
    sums = sums.fillna({"area": 0}).fillna(0.0).astype({"area": np.int64, "peak_index": np.int64})
    body = _catalog_body(sums, context, missing)
    flags = detection_flag(sums["peak_background"].to_numpy(), ~missing)
    head = Table()
    head["id"] = ids
    head["id"].description = "object id: pixel value in segmap_deblended.fits"
    head["label"] = np.array([object_label(int(p), int(s)) for p, s in zip(parent, sub)], dtype="U16")
    head["label"].description = "paper's label: segment id, and .sub_id for deblended children (8.1, 8.2)"
    head["parent_id"] = parent
    head["parent_id"].description = "segment id before deblending: pixel value in segmap.fits"
    head["sub_id"] = sub
    head["sub_id"].description = "child number within the segment (0: segment not deblended)"
    head["detection_flag"] = flags
    head[
        "detection_flag"
    ].description = "rank-vote background at the brightest pixel: 1 =0, 2 between 0 and 1, 3 =1; 0: not classified"
    head["segment_flag"] = segment_flag_column(objects["segment_flag"].to_numpy())
    table = hstack([head, body], join_type="exact")
    if photometry and len(ids):
        measured = object_photometry(
            client,
            context,
            ids,
            sub_id=sub,
            detection_flag=flags,
            oversize=objects["segment_flag"].to_numpy() > 0,
            background=background,
        )
        table = hstack([table, measured[measured.colnames[1:]]], join_type="exact", metadata_conflicts="silent")
        table.meta.update(measured.meta)
    return table


def value_added_catalog(
    client: Any,
    context: StageContext,
    markers: dict[str, np.ndarray],
    *,
    aperture_arcsec: float = APERTURE_ARCSEC,
    oversize_segments: Sequence[int] = (),
    photometry: bool = True,
    background: str | None = None,
) -> Table:
    """The value-added catalog: one row per source of an external catalog, in its order.

    A source is measured over its object of the deblended map (the value-added one,
    seeded by the markers), or in an ``aperture_arcsec`` radius aperture when it has no
    object or one smaller than the aperture; a source outside the classified area gets
    masked values. The photometry columns (photutils, as the internal catalog's) describe
    the source's object whenever it has one (``object_id > 0``), also when the paper's
    columns come from the aperture; a source without an object has null photometry and
    the ``no_segment`` bit in ``flags``.

    Parameters
    ----------
    client, context
        As :func:`internal_catalog` (the pixel scale sets the aperture in pixels).
    markers : dict of str to numpy.ndarray
        The external catalog as :func:`pipeline.inputs.markers.read_markers` returns it.
    aperture_arcsec : float
        Aperture radius (paper section 8: 0.36").
    oversize_segments : sequence of int
        Segments not deblended (:class:`pipeline.downstream.deblend.DeblendedChunks`): a source
        on one gets ``segment_flag`` 1.
    photometry : bool
        Add the photutils columns and ``flags`` (:func:`_value_added_photometry`).
    background : {"sky", "none"}, optional
        Background subtraction of the photometry (default: the mosaic's).

    Returns
    -------
    astropy.table.Table
        ``source_id``, ``ra_input``, ``dec_input``, ``detection_flag``,
        ``object_id``, ``aperture``, ``segment_flag``, then the measured columns,
        then the photometry's and ``flags``.
    """
    classes, shape = context.classes, context.shape
    sums = _catalog_sums(client, context)
    n_rows = len(markers["id"])
    seg = context.segmentation.open_group(mode="r")
    cls = context.classification.open_group(mode="r")
    inside = markers["inside"]
    iy, ix = markers["iy"], markers["ix"]
    owner = np.zeros(n_rows, dtype=np.int64)
    bvalue = np.zeros(n_rows)
    classified = np.zeros(n_rows, dtype=bool)
    if inside.any():
        owner[inside] = seg["deblended"].get_coordinate_selection((iy[inside], ix[inside]))
        bvalue[inside] = cls["rank"].get_coordinate_selection(
            (np.full(inside.sum(), len(classes) - 1), iy[inside], ix[inside])
        )
        classified[inside] = cls["n"].get_coordinate_selection((iy[inside], ix[inside])) > 0
    flags = detection_flag(bvalue, classified)
    radius = aperture_arcsec / context.pixel_scale_arcsec
    full_disc = int(aperture_mask((2 * int(radius) + 3,) * 2, int(radius) + 1, int(radius) + 1, radius).sum())
    area = np.where(owner > 0, sums["area"].reindex(owner).fillna(0).to_numpy(np.int64), 0)
    use_aperture = classified & ((owner == 0) | (area < full_disc))
    # Aperture sums in groups of sources, sorted so that a group's sources lie close.
    rows = np.flatnonzero(use_aperture)
    rows = rows[np.lexsort((markers["x"][rows], markers["y"][rows] // 256))]
    aperture_sums = merge_object_sums(
        run_tasks(
            client,
            [
                dask.delayed(_aperture_block)(
                    context.classification,
                    context.mosaic,
                    group,
                    np.stack([markers["x"][group], markers["y"][group]], 1),
                    radius,
                    context.flux_index,
                    list(context.bands),
                    shape,
                    classes,
                )
                for group in (rows[s : s + _APERTURE_GROUP] for s in range(0, len(rows), _APERTURE_GROUP))
            ],
        )
    )
    # One row per source: its segment's sums, or its aperture's; nothing when unclassified.
    index = pd.RangeIndex(n_rows)
    combined = sums.reindex(np.where(classified, owner, 0)).set_axis(index)
    combined.loc[use_aperture] = aperture_sums.reindex(index).loc[use_aperture]
    missing = combined["area"].isna().to_numpy()
    combined = combined.fillna({"area": 0}).fillna(0.0).astype({"area": np.int64, "peak_index": np.int64})
    body = _catalog_body(combined, context, missing)
    head = Table()
    head["source_id"] = markers["id"]
    head["source_id"].description = "identifier from the input catalog"
    head["ra_input"] = markers["ra"]
    head["ra_input"].unit = "deg"
    head["ra_input"].description = "input right ascension"
    head["dec_input"] = markers["dec"]
    head["dec_input"].unit = "deg"
    head["dec_input"].description = "input declination"
    head["detection_flag"] = flags
    head[
        "detection_flag"
    ].description = "rank-vote background at the source: 1 =0, 2 between 0 and 1, 3 =1; 0: not in the classified area"
    head["object_id"] = owner
    head["object_id"].description = (
        "pixel value of the source's object in the value-added map "
        "fits/<name>_segmap_deblended.fits: the source's row number (0: none)"
    )
    head["aperture"] = use_aperture.astype(np.int16)
    head["aperture"].description = (
        f"1: measured in a {aperture_arcsec} arcsec radius aperture "
        "(no segment, or a segment smaller than the aperture)"
    )
    oversize = _marker_segment_flag(seg, oversize_segments, iy, ix, inside)
    head["segment_flag"] = segment_flag_column(oversize, value_added=True)
    table = hstack([head, body], join_type="exact")
    if photometry:
        measured = _value_added_photometry(client, context, seg, owner, iy, ix, flags, oversize, background)
        table = hstack([table, measured], join_type="exact", metadata_conflicts="silent")
        table.meta.update(measured.meta)
    return table


def _value_added_photometry(
    client: Any,
    context: StageContext,
    seg: zarr.Group,
    owner: np.ndarray,
    iy: np.ndarray,
    ix: np.ndarray,
    detection: np.ndarray,
    oversize: np.ndarray,
    background: str | None,
) -> Table:
    """The photometry columns and ``flags`` of a value-added catalog, one row per source.

    The objects of the value-added map (:func:`pipeline.downstream.photometry.object_photometry`,
    as the internal catalog's) give the rows of their sources; an object is ``deblended``
    when its segment holds the objects of several sources. Rows without an object have
    null photometry and ``flags`` of their detection flag plus ``no_segment``.
    """
    has = owner > 0
    ids, first = np.unique(owner[has], return_index=True)
    rows = np.flatnonzero(has)[first]  # each object's first source (a source's own object, as a rule)
    parent = seg["segments"].get_coordinate_selection((iy[rows], ix[rows])) if len(rows) else np.zeros(0, np.int64)
    _, inverse, counts = np.unique(parent, return_inverse=True, return_counts=True)
    measured = object_photometry(
        client,
        context,
        ids,
        sub_id=(counts[inverse] > 1).astype(np.int64),
        oversize=oversize[rows],
        detection_flag=detection[rows],
        background=background,
    )
    measured.remove_column("id")
    position = np.searchsorted(ids, owner).clip(0, max(len(ids) - 1, 0))
    out = Table(masked=True, meta=measured.meta)
    for name in (n for n in measured.colnames if n != "flags"):
        column = measured[name]
        values = np.asarray(column)[position] if len(ids) else np.zeros(len(owner), column.dtype)
        masked = np.ma.getmaskarray(column)[position] if len(ids) else np.ones(len(owner), bool)
        out[name] = MaskedColumn(values, mask=~has | masked, unit=column.unit, description=column.description)
    # Each source's own detection-flag bits (sources sharing an object may differ); no pixels
    # for a source without an object: only those bits, segment_flag's and no_segment.
    own = object_flags(
        np.zeros((1, 1), np.int32), np.zeros(len(owner), np.int64), detection_flag=detection, oversize=oversize
    )
    position_bits = sum(
        flag_bit(n) for n in ("unclassified_position", "uncertain_detection", "background_position", "oversize_segment")
    )
    flags = own | flag_bit("no_segment")
    if len(ids):
        flags = np.where(has, (np.asarray(measured["flags"])[position] & ~position_bits) | own, flags)
    out["flags"] = MaskedColumn(
        flags.astype(np.int32), mask=np.zeros(len(owner), bool), description=measured["flags"].description
    )
    return out


def _catalog_sums(client: Any, context: StageContext) -> pd.DataFrame:
    """Per-object sums of the deblended map, chunk by chunk, merged exactly."""
    return merge_object_sums(
        run_tasks(
            client,
            [
                dask.delayed(_sums_block)(
                    context.classification,
                    context.mosaic,
                    context.segmentation,
                    b,
                    context.flux_index,
                    list(context.bands),
                    context.width,
                    context.classes,
                )
                for b in context.boxes
            ],
        )
    )


def _marker_segment_flag(
    seg: zarr.Group, oversize: Sequence[int], iy: np.ndarray, ix: np.ndarray, inside: np.ndarray
) -> np.ndarray:
    """Value-added mode: whether each source lies on an oversize segment (not deblended)."""
    flag = np.zeros(len(inside), dtype=bool)
    if len(oversize) and inside.any():
        flag[inside] = np.isin(seg["segments"].get_coordinate_selection((iy[inside], ix[inside])), oversize)
    return flag


def _read_piece(class_store: Location, mosaic_store: Location, box: Box) -> dict[str, np.ndarray]:
    cls = class_store.open_group(mode="r")
    mosaic = mosaic_store.open_group(mode="r")
    sl = box.slices
    return {
        "rank": cls["rank"][(slice(None), *sl)],
        "mean": cls["mean"][(slice(None), *sl)],
        "variance": cls["variance"][(slice(None), *sl)],
        "n": cls["n"][sl],
        "bands": mosaic["image"][(slice(None), *sl)],
    }


def _piece_sums(
    labels: np.ndarray,
    piece: dict[str, np.ndarray],
    flux_index: int,
    band_names: list[str],
    origin: tuple[int, int],
    width: int,
    classes: tuple[str, ...] = CLASSES,
) -> pd.DataFrame:
    """Per-object sums of one piece: Eq. 16 on the rank-vote images, plus the mean images' fractions."""
    return object_sums(
        labels,
        flux=piece["bands"][flux_index],
        mean=piece["rank"],
        variance=piece["variance"],
        bands=piece["bands"],
        band_names=band_names,
        classes=classes,
        origin=origin,
        width=width,
        fractions={"mean": piece["mean"]},
    )


def _sums_block(
    class_store: Location,
    mosaic_store: Location,
    seg_store: Location,
    box: Box,
    flux_index: int,
    band_names: list[str],
    width: int,
    classes: tuple[str, ...] = CLASSES,
) -> pd.DataFrame:
    """Task: per-object sums over one chunk of the deblended map."""
    labels = seg_store.open_group(mode="r")["deblended"][box.slices]
    if not (labels > 0).any():
        zeros = np.zeros((len(classes), *labels.shape))
        return _piece_sums(
            labels,
            {"rank": zeros, "mean": zeros, "variance": zeros, "bands": np.zeros((len(band_names), *labels.shape))},
            flux_index,
            band_names,
            box.origin,
            width,
            classes,
        )
    piece = _read_piece(class_store, mosaic_store, box)
    return _piece_sums(labels, piece, flux_index, band_names, box.origin, width, classes)


def _aperture_block(
    class_store: Location,
    mosaic_store: Location,
    rows: np.ndarray,
    xy: np.ndarray,
    radius: float,
    flux_index: int,
    band_names: list[str],
    shape: tuple[int, int],
    classes: tuple[str, ...] = CLASSES,
) -> pd.DataFrame:
    """Task: aperture sums for a group of catalogued sources (one read for the group)."""
    r = int(math.ceil(radius)) + 1
    read = Box(
        max(0, int(np.floor(xy[:, 1].min())) - r),
        min(shape[0], int(np.ceil(xy[:, 1].max())) + r + 1),
        max(0, int(np.floor(xy[:, 0].min())) - r),
        min(shape[1], int(np.ceil(xy[:, 0].max())) + r + 1),
    )
    piece = _read_piece(class_store, mosaic_store, read)
    frames = []
    for row, (x, y) in zip(rows, xy):
        disc = aperture_mask(read.shape, x - read.x0, y - read.y0, radius) & (piece["n"] > 0)
        frame = _piece_sums(disc.astype(np.int64), piece, flux_index, band_names, read.origin, shape[1], classes)
        frames.append(frame.set_axis(pd.Index([int(row)] * len(frame), name="id")))
    return pd.concat(frames)


def _catalog_body(sums: pd.DataFrame, context: StageContext, missing: np.ndarray) -> Table:
    """The measured columns, saying which classification image each comes from.

    ``p_<class>``, ``dominant_class``, ``agreement`` and ``background_min`` come from
    the rank-vote images (the released code's default output, whose background is
    exactly 0 on source cores and 1 on sky), ``p_mean_<class>`` from the mean images,
    ``sigma_<class>`` from the variance images (the spread of the mean probabilities).
    """
    classes = context.classes
    body = object_catalog(
        sums,
        wcs=context.wcs,
        width=context.width,
        classes=classes,
        band_names=list(context.bands),
        flux_unit=context.flux_unit,
        missing=missing,
        fractions=("mean",),
    )
    for c in classes:
        body[
            f"p_{c}"
        ].description = (
            f"flux-weighted {c} fraction of the rank-vote images (paper Eq. 16, as the released code), classes sum to 1"
        )
        body[
            f"p_mean_{c}"
        ].description = (
            f"flux-weighted {c} fraction of the mean images (Eq. 16 on the mean probabilities), classes sum to 1"
        )
        body[f"sigma_{c}"].description = (
            f"flux-weighted mean of the per-pixel standard deviation of the {c} "
            "probability (variance images: describes p_mean)"
        )
    body["background_min"].description = "minimum rank-vote background over the object's pixels"
    body[
        "agreement"
    ].description = f"agreement of the rank-vote fractions p, 1 - H(p)/log({len(classes)}) (paper Eq. 17)"
    return body
