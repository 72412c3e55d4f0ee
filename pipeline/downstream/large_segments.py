"""Bounded memory in the deblending stage: a limit on the box one task reads.

The planning helpers of :mod:`pipeline.downstream.deblend` (pure functions, no store or Dask).

Deblending (Algorithm 2) works on a segment's bounding box, and a segment can be as
large as the mosaic: a classification that calls everything a source gives one
segment. On a 10,000 x 10,000 mosaic like that, the deblending task read the whole
image (segments and flux) and each worker grew past 10 GB. The downstream graph
therefore limits the bounding-box area, in pixels, that one deblending task reads:
``max_segment_pixels`` (default :func:`default_segment_limit`, 9 chunks).

* A segment whose bounding box exceeds the limit is **not deblended** and no task
  reads it whole. With internal markers it stays one object (``sub_id`` 0), written
  to the deblended map chunk by chunk through the parent lookup. In value-added mode
  its pixels go to its catalogued source when it holds one (what Algorithm 2 gives
  too) and to none when it holds none (likewise); when it holds several, splitting
  it between them would need the whole segment, so it goes to none of them and those
  sources are measured in the aperture, like sources without a segment. Either way
  the catalog row carries ``segment_flag = 1``, and ``downstream.json`` lists the
  segments.
* The segments handed to one deblending task (those whose first pixel lies in one
  chunk) are packed into tasks whose union bounding box, and the sum of whose boxes,
  stay within the limit: a task reads at most the limit and returns at most the
  limit's worth of children.
* The children arrays sent to the tasks that write the deblended map are cut to each
  task's chunk, so such a task receives at most its chunk's worth per object.

Chunk-wise deblending of an oversize segment (peaks per chunk with a halo, then a
watershed per chunk) is not attempted: the watershed of Algorithm 2 floods a whole
segment from its peaks, and a chunk-local flood equals it only under conditions like
those stage 1 checks, with halos that grow with the segment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from astropy.table import Column

from morpheus_core.tiling import Box

__all__ = [
    "RECORDED_IDS",
    "SEGMENT_LIMIT_CHUNKS",
    "Member",
    "Piece",
    "default_segment_limit",
    "pack_members",
    "plan_deblending",
    "pieces_for_chunk",
    "single_owners",
    "oversize_record",
    "segment_flag_column",
]

#: Default limit in chunks of area: a 3 x 3 chunk box. At the default 256-pixel chunk
#: that is 768 x 768 pixels (46" at 0.06"/px), several times the largest galaxies of
#: the CANDELS fields. Deblending holds about 52 bytes per box pixel (measured: 51.5
#: MiB for a 1024 x 1024 box, reads included), so a task holds at most about 470 bytes
#: per chunk pixel, no more than the colour-image task of one chunk (about 490).
SEGMENT_LIMIT_CHUNKS = 9
#: Oversize segment ids written to ``downstream.json`` (all are in ``segmentation.zarr``).
RECORDED_IDS = 20

#: A segment for deblending: ``(label, ymin, ymax, xmin, xmax)``, the box half-open.
Member = tuple[int, int, int, int, int]
#: Part of the deblended map: a box and the object ids over it (0: leave as it is).
Piece = tuple[Box, np.ndarray]


def default_segment_limit(chunk: int) -> int:
    """The default ``max_segment_pixels`` for a chunk size: ``9 * chunk**2``.

    Parameters
    ----------
    chunk : int
        Chunk size of the downstream graph, pixels.

    Returns
    -------
    int
        Largest bounding-box area (pixels) one deblending task reads.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return SEGMENT_LIMIT_CHUNKS * int(chunk) ** 2


def pack_members(members: Iterable[Member], limit: int) -> list[list[Member]]:
    """Pack segments, in order, into groups whose reads stay within ``limit``.

    A group's union bounding box and the sum of its members' box areas both stay at
    or below ``limit``; a member is added to the current group while that holds,
    else it starts a new one. Every member must itself fit (box area <= ``limit``).

    Parameters
    ----------
    members : iterable of (label, ymin, ymax, xmin, xmax)
        Segments and their half-open bounding boxes.
    limit : int
        Largest area (pixels).

    Returns
    -------
    list of list
        The groups, members in their input order.

    Raises
    ------
    ValueError
        A member whose box is larger than ``limit``.
    """
    groups: list[list[Member]] = []
    union: list[int] = []
    total = 0
    for member in members:
        area = Box(*member[1:]).area
        if area > limit:
            raise ValueError(f"segment {member[0]}: bounding box of {area} pixels exceeds the limit of {limit}")
        if groups:
            grown = [
                min(union[0], member[1]),
                max(union[1], member[2]),
                min(union[2], member[3]),
                max(union[3], member[4]),
            ]
            if Box(*grown).area <= limit and total + area <= limit:
                groups[-1].append(member)
                union, total = grown, total + area
                continue
        groups.append([member])
        union, total = list(member[1:]), area
    return groups


def plan_deblending(
    members: Iterable[tuple[int, int, int, int, int, int]], *, width: int, chunk: int, limit: int
) -> tuple[list[list[Member]], list[int]]:
    """The deblending tasks of a segmentation, and the segments too large to deblend.

    Segments are grouped by the chunk holding their first pixel (raster order), each
    group packed with :func:`pack_members`; a segment whose bounding box exceeds
    ``limit`` goes to no task.

    Parameters
    ----------
    members : iterable of (label, ymin, ymax, xmin, xmax, first)
        Segments, their half-open bounding boxes and the flat index of their first
        pixel (``y * width + x``).
    width : int
        Image width (pixels).
    chunk : int
        Chunk size (pixels).
    limit : int
        ``max_segment_pixels``.

    Returns
    -------
    groups : list of list of (label, ymin, ymax, xmin, xmax)
        One list per deblending task.
    oversize : list of int
        Labels of the segments not deblended, ascending.
    """
    by_chunk: dict[tuple[int, int], list[Member]] = {}
    oversize = []
    for label, y0, y1, x0, x1, first in members:
        if Box(y0, y1, x0, x1).area > limit:
            oversize.append(int(label))
            continue
        fy, fx = divmod(int(first), width)
        by_chunk.setdefault((fy // chunk, fx // chunk), []).append((int(label), int(y0), int(y1), int(x0), int(x1)))
    groups = [g for chunk_members in by_chunk.values() for g in pack_members(chunk_members, limit)]
    return groups, sorted(oversize)


def pieces_for_chunk(pieces: Iterable[tuple[Iterable[int], np.ndarray]], box: Iterable[int]) -> list[Piece]:
    """The parts of children arrays that fall in one chunk, copied.

    Parameters
    ----------
    pieces : iterable of (box, array)
        Half-open boxes (:class:`~morpheus_core.tiling.Box` or ``(y0, y1, x0, x1)``)
        and ``(y1 - y0, x1 - x0)`` arrays.
    box : Box or tuple of int
        The chunk.

    Returns
    -------
    list of (Box, array)
        Each overlapping piece cut to its overlap with ``box`` (its own box then),
        as a new contiguous array, so a task receives no more than its chunk per piece.
    """
    box = Box(*box)
    out = []
    for piece_box, ids in pieces:
        piece_box = Box(*piece_box)
        overlap = box.intersection(piece_box)
        if overlap is not None:
            out.append((overlap, np.ascontiguousarray(ids[overlap.relative_to(piece_box).slices])))
    return out


def single_owners(oversize: Sequence[int], marker_labels: np.ndarray, sources: np.ndarray) -> dict[int, int]:
    """Value-added mode: the source owning each oversize segment that needs no split.

    Mirrors :func:`morpheus_core.deblend.split_by_markers` without reading the
    segment: sources on a single pixel of the segment (one source, or several on one
    pixel, where the earliest catalog row wins as in the deblending task) own it
    whole; with sources on two or more pixels the segment would be split, which is
    not done, so it is left out here (it goes to no source).

    Parameters
    ----------
    oversize : sequence of int
        Labels of the oversize segments.
    marker_labels : numpy.ndarray
        ``(n,)`` segment label at each source's pixel (0: none).
    sources : numpy.ndarray
        ``(n, 3)`` int: each source's pixel ``y``, ``x`` and identifier (> 0).

    Returns
    -------
    dict
        Segment label -> source identifier, for the oversize segments owned whole.
    """
    out = {}
    marker_labels = np.asarray(marker_labels)
    for label in oversize:
        here = sources[marker_labels == label]
        if len(here) and len(np.unique(here[:, :2], axis=0)) == 1:
            out[int(label)] = int(here[:, 2].min())
    return out


def oversize_record(oversize: Sequence[int], limit: int) -> dict:
    """The ``downstream.json`` entry: the limit, the count and the first ids."""
    return {
        "max_segment_pixels": int(limit),
        "count": len(oversize),
        "ids": [int(i) for i in list(oversize)[:RECORDED_IDS]],
    }


def segment_flag_column(flag: np.ndarray, *, value_added: bool = False) -> Column:
    """The catalog's ``segment_flag`` column (1: oversize segment, not deblended).

    Parameters
    ----------
    flag : numpy.ndarray
        Bool (or 0/1) per catalog row.
    value_added : bool
        Describe it for the value-added catalog (one row per catalogued source).

    Returns
    -------
    astropy.table.Column
        int16, with its description.
    """
    what = (
        "the source lies in a segment whose bounding box exceeds max_segment_pixels: not deblended "
        "(with several sources in it, each is measured in the aperture)"
        if value_added
        else "the segment's bounding box exceeds max_segment_pixels: kept whole, not deblended"
    )
    return Column(np.asarray(flag).astype(np.int16), name="segment_flag", description=f"1: {what}; 0: none")
