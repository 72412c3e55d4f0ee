"""Stage 4 of the downstream graph: the catalog, from sums per chunk merged exactly.

:func:`internal_catalog` (one row per object of the deblended map) and
:func:`value_added_catalog` (one row per source of an external catalog) take the
per-object sums of the deblended map, merged exactly from those of its chunks
(:func:`pipeline.downstream.catalog_sums.catalog_sums`; apertures:
:func:`~pipeline.downstream.catalog_sums.aperture_sums`), and turn them into columns
with :func:`~morpheus_core.catalog.object_catalog`: class fractions (Eq. 16),
``background_min`` and the detection flag from the rank-vote images as the released
code, ``p_mean_<class>`` from the mean images, ``sigma_<class>`` from the variance
images. In value-added mode, sources whose segment is smaller than the aperture, or
that have no segment, are measured in a 0.36" radius aperture as in the paper's
section 8.

Invariant: the merged sums, hence the catalog, equal those of the whole image
(to floating-point summation order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import zarr
from astropy.table import MaskedColumn, Table, hstack

from morpheus_core.catalog import aperture_mask, detection_flag, object_catalog
from morpheus_core.deblend import object_label
from morpheus_core.flags import flag_bit, object_flags
from pipeline.downstream.catalog_sums import aperture_sums, catalog_sums
from pipeline.downstream.context import StageContext
from pipeline.downstream.large_segments import segment_flag_column
from pipeline.downstream.photometry import object_photometry
from pipeline.settings.downstream import APERTURE_ARCSEC

__all__ = ["internal_catalog", "value_added_catalog"]


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
    sums = catalog_sums(client, context)
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
    classes = context.classes
    sums = catalog_sums(client, context)
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
    aperture = aperture_sums(client, context, rows, np.stack([markers["x"][rows], markers["y"][rows]], 1), radius)
    # One row per source: its segment's sums, or its aperture's; nothing when unclassified.
    index = pd.RangeIndex(n_rows)
    combined = sums.reindex(np.where(classified, owner, 0)).set_axis(index)
    combined.loc[use_aperture] = aperture.reindex(index).loc[use_aperture]
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


def _marker_segment_flag(
    seg: zarr.Group, oversize: Sequence[int], iy: np.ndarray, ix: np.ndarray, inside: np.ndarray
) -> np.ndarray:
    """Value-added mode: whether each source lies on an oversize segment (not deblended)."""
    flag = np.zeros(len(inside), dtype=bool)
    if len(oversize) and inside.any():
        flag[inside] = np.isin(seg["segments"].get_coordinate_selection((iy[inside], ix[inside])), oversize)
    return flag


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
