"""Stage 2 of the downstream graph: segment labels consistent across chunks.

:func:`label_chunks` labels each chunk's source mask on its own, joins the labels
that touch across chunk faces (the scheme of ``dask_image.ndmeasure.label``, with
the intermediate labels in the ``raw`` array of ``segmentation.zarr`` so that a task
holds one chunk), then renumbers the segments in raster order of their first pixel
and writes ``segments``.

Invariant: ``segments`` equals ``scipy.ndimage.label`` (4-connectivity,
:func:`morpheus_core.segmentation.label_segments`) of the whole mask, numbers
included.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import pandas as pd

from morpheus_core.segmentation import label_segments
from morpheus_core.tiling import Box
from pipeline.downstream.context import StageContext
from pipeline.rundir.location import Location
from pipeline.tasks import run_tasks

__all__ = ["SEGMENT_COLUMNS", "label_chunks"]

#: Columns of the segment table: flat index of the first pixel (``y * width + x``)
#: and the half-open bounding box.
SEGMENT_COLUMNS = ("first", "ymin", "ymax", "xmin", "xmax")
_EXTENT_AGG = {"first": "min", "ymin": "min", "ymax": "max", "xmin": "min", "xmax": "max"}


def label_chunks(client: Any, context: StageContext) -> pd.DataFrame:
    """Label ``mask`` of the segmentation store across chunks; writes ``raw`` and ``segments``.

    Per chunk, local labels and their first pixels and boxes; per chunk face, the
    pairs of labels that touch; on the driver, a sparse graph of those pairs (one
    node per chunk-local label) whose connected components are the segments,
    numbered in raster order of their first pixel; per chunk, the global labels.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run (``None``: the threaded scheduler).
    context : StageContext
        The segmentation store (with ``mask`` written), the chunks and the shape.

    Returns
    -------
    pandas.DataFrame
        One row per segment, indexed by its label (``segment``, from 1):
        ``ymin, ymax, xmin, xmax`` (half-open box) and ``first``.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    seg_store, boxes, shape = context.segmentation, context.boxes, context.shape
    results = run_tasks(client, [dask.delayed(_label_block)(seg_store, b, shape[1]) for b in boxes])
    counts = np.array([r[0] for r in results], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    offsets = {b.origin: int(o) for b, o in zip(boxes, starts)}
    total = int(counts.sum())
    pairs = run_tasks(
        client,
        [
            dask.delayed(_face_pairs_block)(
                seg_store, b, shape, offsets[b.origin], offsets.get((b.y1, b.x0), 0), offsets.get((b.y0, b.x1), 0)
            )
            for b in boxes
        ],
    )
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0] - 1, pairs[:, 1] - 1)), shape=(total, total))
    _, component = connected_components(graph, directed=False) if total else (0, np.zeros(0, dtype=np.int64))
    extents = (
        pd.concat([r[1] for r in results], ignore_index=True)
        if total
        else pd.DataFrame({c: np.array([], dtype=np.int64) for c in SEGMENT_COLUMNS})
    )
    extents["component"] = component
    merged = extents.groupby("component").agg(_EXTENT_AGG).sort_values("first")
    canonical = np.zeros(len(merged), dtype=np.int32)
    canonical[merged.index.to_numpy()] = np.arange(1, len(merged) + 1, dtype=np.int32)
    lookup = np.zeros(total + 1, dtype=np.int32)
    lookup[1:] = canonical[component] if total else []
    lookup_d = dask.delayed(lookup)
    run_tasks(
        client, [dask.delayed(_relabel_block)(seg_store, b, int(starts[i]), lookup_d) for i, b in enumerate(boxes)]
    )
    return pd.DataFrame(
        {c: merged[c].to_numpy() for c in ("ymin", "ymax", "xmin", "xmax", "first")},
        index=pd.Index(np.arange(1, len(merged) + 1), name="segment"),
    )


def _label_block(seg_store: Location, box: Box, width: int) -> tuple[int, pd.DataFrame]:
    """Task: label one chunk's source mask on its own; per local label, first pixel and box."""
    group = seg_store.open_group(mode="r+")
    local, count = label_segments(group["mask"][box.slices] > 0)
    group["raw"][box.slices] = local
    if count == 0:
        return 0, pd.DataFrame({c: np.array([], dtype=np.int64) for c in SEGMENT_COLUMNS})
    ys, xs = np.nonzero(local)
    y0, x0 = box.origin
    frame = pd.DataFrame(
        {
            "label": local[ys, xs].astype(np.int64),
            "first": (ys + y0) * width + xs + x0,
            "ymin": ys + y0,
            "ymax": ys + y0 + 1,
            "xmin": xs + x0,
            "xmax": xs + x0 + 1,
        }
    )
    extents = frame.groupby("label").agg(_EXTENT_AGG)
    return int(count), extents.reset_index(drop=True)


def _face_pairs_block(
    seg_store: Location, box: Box, shape: tuple[int, int], here: int, below: int, right: int
) -> np.ndarray:
    """Task: global label pairs that touch across this chunk's bottom and right faces (4-connectivity).

    ``here``, ``below`` and ``right`` are the label offsets of this chunk and of its
    neighbours below and to the right (ignored at the image edge).
    """
    y0, y1, x0, x1 = box
    raw = seg_store.open_group(mode="r")["raw"]
    pairs = []
    if y1 < shape[0]:
        a, b = raw[y1 - 1, x0:x1], raw[y1, x0:x1]
        on = (a > 0) & (b > 0)
        pairs.append(np.stack([a[on] + here, b[on] + below], axis=1))
    if x1 < shape[1]:
        a, b = raw[y0:y1, x1 - 1], raw[y0:y1, x1]
        on = (a > 0) & (b > 0)
        pairs.append(np.stack([a[on] + here, b[on] + right], axis=1))
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), dtype=np.int64)


def _relabel_block(seg_store: Location, box: Box, offset: int, lookup: np.ndarray) -> None:
    """Task: write one chunk of the global segment labels from its local labels."""
    group = seg_store.open_group(mode="r+")
    local = group["raw"][box.slices].astype(np.int64)
    group["segments"][box.slices] = np.where(local > 0, lookup[np.where(local > 0, local + offset, 0)], 0)
