"""Stage 3 of the downstream graph: deblending (Algorithm 2), segment by segment.

:func:`deblend_segments` splits each segment on its bounding box, segments grouped
by the chunk holding their first pixel into tasks that read at most
``max_segment_pixels`` (:func:`pipeline.downstream.large_segments.plan_deblending`), then
writes the ``deblended`` array of ``segmentation.zarr`` chunk by chunk (unsplit
segments through a lookup, children arrays cut to each chunk).

Invariant: ``deblended`` equals :func:`morpheus_core.deblend.deblend` on the whole
image (children numbered as :func:`morpheus_core.deblend.number_children` does),
except that a segment whose bounding box exceeds ``max_segment_pixels`` is kept
whole, not deblended, and flagged (:mod:`pipeline.downstream.large_segments`). In value-added
mode the pixels go to the catalogued sources
(:func:`morpheus_core.deblend.split_by_markers`), numbered by catalog row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import dask
import numpy as np
import pandas as pd

from morpheus_core.deblend import number_children, split_by_markers, split_by_peaks
from morpheus_core.tiling import Box
from pipeline.downstream.context import StageContext
from pipeline.downstream.large_segments import (
    RECORDED_IDS,
    Member,
    Piece,
    pieces_for_chunk,
    plan_deblending,
    single_owners,
)
from pipeline.rundir.location import Location
from pipeline.tasks import run_tasks

logger = logging.getLogger(__name__)

__all__ = ["DeblendedChunks", "deblend_segments"]


@dataclass
class DeblendedChunks:
    """What the deblending stage made.

    Attributes
    ----------
    objects : pandas.DataFrame or None
        Internal mode: one row per object, indexed by ``id`` (its pixel value in
        ``deblended``): ``parent_id`` (segment), ``sub_id`` (child number, 0 when not
        split) and ``segment_flag`` (1: oversize segment). ``None`` in value-added
        mode, where the objects are the catalogued sources.
    split_segments : int
        Segments split into two or more objects.
    oversize_segments : list of int
        Segments not deblended (bounding box over ``max_segment_pixels``), ascending.
    """

    objects: pd.DataFrame | None
    split_segments: int = 0
    oversize_segments: list[int] = field(default_factory=list)


def deblend_segments(
    client: Any,
    context: StageContext,
    segments: pd.DataFrame,
    *,
    limit: int,
    min_distance: int,
    nd_max: int,
    source_pixels: np.ndarray | None = None,
) -> DeblendedChunks:
    """Algorithm 2 on every segment of the segmentation store; writes ``deblended``.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run (``None``: the threaded scheduler).
    context : StageContext
        The segmentation store (``segments`` read, ``deblended`` written), the mosaic
        store (its flux band read), the chunks.
    segments : pandas.DataFrame
        The segment table of :func:`pipeline.downstream.labels.label_chunks`.
    limit : int
        ``max_segment_pixels``.
    min_distance, nd_max : int
        Minimum peak separation and most children per segment (internal mode).
    source_pixels : numpy.ndarray, optional
        Value-added mode: ``(n, 3)`` int pixel ``y``, ``x`` and identifier (catalog
        row + 1) of the catalogued sources, which then own the pixels.

    Returns
    -------
    DeblendedChunks
        The object table (internal mode), split and oversize segments.
    """
    seg_store, mosaic_store, flux_index = context.segmentation, context.mosaic, context.flux_index
    groups, oversize = plan_deblending(
        zip(segments.index, segments["ymin"], segments["ymax"], segments["xmin"], segments["xmax"], segments["first"]),
        width=context.width,
        chunk=context.chunk,
        limit=limit,
    )
    if oversize:
        logger.warning(
            "%d segment(s) with a bounding box over %d pixels not deblended: %s",
            len(oversize),
            limit,
            ", ".join(map(str, oversize[:RECORDED_IDS])),
        )
    if source_pixels is None:
        results = run_tasks(
            client,
            [
                dask.delayed(_split_by_peaks_block)(seg_store, mosaic_store, flux_index, members, min_distance, nd_max)
                for members in groups
            ],
        )
        parent_lookup, pieces, objects, split = _number_children(results, oversize, len(segments))
    else:
        results = run_tasks(
            client,
            [
                dask.delayed(_split_by_markers_block)(
                    seg_store, mosaic_store, flux_index, members, _sources_in(source_pixels, _union(members))
                )
                for members in groups
            ],
        )
        parent_lookup, pieces, split = _assign_to_sources(results, oversize, len(segments), seg_store, source_pixels)
        objects = None
    plookup_d = dask.delayed(parent_lookup)
    run_tasks(
        client,
        [dask.delayed(_deblended_block)(seg_store, b, plookup_d, pieces_for_chunk(pieces, b)) for b in context.boxes],
    )  # each task gets the children arrays cut to its chunk
    return DeblendedChunks(objects=objects, split_segments=split, oversize_segments=oversize)


def _union(members: list[Member]) -> Box:
    return Box(
        min(m[1] for m in members), max(m[2] for m in members), min(m[3] for m in members), max(m[4] for m in members)
    )


def _sources_in(source_pixels: np.ndarray, box: Box) -> np.ndarray:
    """The ``(n, 3)`` source pixels inside ``box``, in catalog order."""
    return source_pixels[box.contains(source_pixels[:, 0], source_pixels[:, 1])]


def _number_children(
    results: list[list[tuple]], oversize: list[int], n_segments: int
) -> tuple[np.ndarray, list[Piece], pd.DataFrame, int]:
    """Internal mode: object ids as on a whole image, the parent lookup and the pieces to paste."""
    done = sorted(
        [item for group in results for item in group] + [(label, 1, None, None) for label in oversize],
        key=lambda item: item[0],
    )
    parents = np.array([d[0] for d in done], dtype=np.int64)
    counts = np.array([max(d[1], 1) for d in done], dtype=np.int64)
    ids, parent_id, sub_id = number_children(parents, counts)
    first_id = np.cumsum(counts) - counts + 1
    parent_lookup = np.zeros(n_segments + 1, dtype=np.int32)
    pieces = []
    for (label, k, box, children), first in zip(done, first_id):
        if k > 1:
            pieces.append((box, np.where(children > 0, children + first - 1, 0).astype(np.int32)))
        else:
            parent_lookup[label] = first
    objects = pd.DataFrame({"parent_id": parent_id, "sub_id": sub_id}, index=pd.Index(ids, name="id"))
    objects["segment_flag"] = np.isin(parent_id, oversize).astype(np.int16)
    return parent_lookup, pieces, objects, sum(1 for d in done if d[1] > 1)


def _assign_to_sources(
    results: list[list[tuple]], oversize: list[int], n_segments: int, seg_store: Location, source_pixels: np.ndarray
) -> tuple[np.ndarray, list[Piece], int]:
    """Value-added mode: the parent lookup (oversize segments owned whole) and the pieces to paste.

    An oversize segment goes whole to its one source (as ``split_by_markers`` would),
    else to none.
    """
    done = [item for group in results for item in group]
    parent_lookup = np.zeros(n_segments + 1, dtype=np.int32)
    for label, owner in _oversize_owners(seg_store, oversize, source_pixels).items():
        parent_lookup[label] = owner
    pieces = [(box, owners.astype(np.int32)) for _, _, box, owners in sorted(done, key=lambda d: d[0]) if owners.any()]
    return parent_lookup, pieces, sum(1 for d in done if d[1] > 1)


def _read_group(
    seg_store: Location, mosaic_store: Location, flux_index: int, members: list[Member]
) -> tuple[Box, np.ndarray, np.ndarray]:
    """One read for a group of segments: their union box, the labels and the flux."""
    read = _union(members)
    segments = seg_store.open_group(mode="r")["segments"][read.slices]
    flux = mosaic_store.open_group(mode="r")["image"][(flux_index, *read.slices)]
    return read, segments, flux


def _split_by_peaks_block(
    seg_store: Location, mosaic_store: Location, flux_index: int, members: list[Member], min_distance: int, nd_max: int
) -> list[tuple]:
    """Task: Algorithm 2 (peaks) for a group of segments, one bounding-box read for all.

    The group comes from :func:`pipeline.downstream.large_segments.plan_deblending`, so the box
    read and the children returned stay within ``max_segment_pixels``.

    Returns
    -------
    list of (label, k, Box, children or None)
        Per segment, its number of children, its box and, when split, the children.
    """
    read, segments, flux = _read_group(seg_store, mosaic_store, flux_index, members)
    out = []
    for label, y0, y1, x0, x1 in members:
        box = Box(y0, y1, x0, x1)
        local = box.relative_to(read).slices
        children = split_by_peaks(flux[local], segments[local] == label, min_distance=min_distance, nd_max=nd_max)
        k = int(children.max())
        out.append((label, k, box, children.astype(np.int32) if k > 1 else None))
    return out


def _split_by_markers_block(
    seg_store: Location, mosaic_store: Location, flux_index: int, members: list[Member], sources: np.ndarray
) -> list[tuple]:
    """Task: Algorithm 2 with the catalogued sources as markers, for a group of segments.

    ``sources`` are the ``(n, 3)`` source pixels ``y, x, id`` in the group's box.

    Returns
    -------
    list of (label, k, Box, owners)
        Per segment, the number of sources owning pixels, its box and the owner ids.
    """
    read, segments, flux = _read_group(seg_store, mosaic_store, flux_index, members)
    out = []
    for label, y0, y1, x0, x1 in members:
        box = Box(y0, y1, x0, x1)
        local = box.relative_to(read).slices
        mask = segments[local] == label
        marker_image = np.zeros(mask.shape, dtype=np.int64)
        # Earlier catalog rows win a shared pixel: write the later ones first.
        for sy, sx, sid in _sources_in(sources, box)[::-1]:
            marker_image[sy - y0, sx - x0] = sid
        owners = split_by_markers(flux[local], mask, marker_image)
        out.append((label, len(np.unique(owners[owners > 0])), box, owners))
    return out


def _deblended_block(seg_store: Location, box: Box, parent_lookup: np.ndarray, pieces: list[Piece]) -> None:
    """Task: write one chunk of the deblended map (unsplit parents by lookup, pieces pasted).

    ``pieces`` are children arrays already cut to the chunk
    (:func:`pipeline.downstream.large_segments.pieces_for_chunk`).
    """
    group = seg_store.open_group(mode="r+")
    out = parent_lookup[group["segments"][box.slices]]
    for piece_box, ids in pieces:
        overlap = box.intersection(piece_box)
        if overlap is None:
            continue
        part = ids[overlap.relative_to(piece_box).slices]
        view = out[overlap.relative_to(box).slices]
        view[part > 0] = part[part > 0]
    group["deblended"][box.slices] = out


def _oversize_owners(seg_store: Location, oversize: list[int], sources: np.ndarray) -> dict[int, int]:
    """Value-added mode: the source owning each oversize segment whole, where it needs no split.

    Reads the segment label at every source's pixel (Zarr reads chunk by chunk), not
    the segments; see :func:`pipeline.downstream.large_segments.single_owners`.
    """
    if not oversize or not len(sources):
        return {}
    labels = seg_store.open_group(mode="r")["segments"].get_coordinate_selection((sources[:, 0], sources[:, 1]))
    return single_owners(oversize, labels, sources)
