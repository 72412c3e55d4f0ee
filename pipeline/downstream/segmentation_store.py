"""``segmentation.zarr``: its arrays, and the record in its attributes that lets ``catalog`` reuse it.

Stages 1-3 and the colour image write the arrays of :func:`new_segmentation_store`;
:class:`SegmentationRecord`, written last into the attributes, is the store's
"complete" mark and says what the stages made (:func:`reusable_record` reads it back
when the settings match).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import zarr

from pipeline.rundir.location import Location

__all__ = ["SegmentationRecord", "new_segmentation_store", "reusable_record"]


@dataclass
class SegmentationRecord:
    """What ``segmentation.zarr`` says about itself (its attributes), read back by ``catalog``.

    Attributes
    ----------
    settings : dict
        :meth:`DownstreamSettings.segmentation_key` of the settings it was made with.
    segments : int
        Number of segments.
    approximate_chunks : list of str
        Chunks whose mask may differ from a whole-image run.
    chunk_halos : dict of str to int
        The halo each chunk was segmented with.
    oversize_segments : list of int
        Segments not deblended.
    n_marker_ids : int
        Value-added mode: largest marker id (catalog row + 1) in the image; else 0.
    objects : pandas.DataFrame or None
        Internal mode: the object table (:class:`pipeline.downstream.deblend.DeblendedChunks`);
        ``None`` in value-added mode.
    split_segments : int
        Segments deblended into several objects (not stored: 0 when read back).
    """

    settings: dict[str, Any]
    segments: int = 0
    approximate_chunks: list[str] = field(default_factory=list)
    chunk_halos: dict[str, int] = field(default_factory=dict)
    oversize_segments: list[int] = field(default_factory=list)
    n_marker_ids: int = 0
    objects: pd.DataFrame | None = None
    split_segments: int = 0

    def attrs(self) -> dict[str, Any]:
        """The store's attributes, marked complete (the object table as JSON lists)."""
        out = {
            "settings": self.settings,
            "complete": True,
            "segments": self.segments,
            "approximate_chunks": self.approximate_chunks,
            "n_marker_ids": self.n_marker_ids,
            "chunk_halos": self.chunk_halos,
            "oversize_segments": self.oversize_segments,
        }
        if self.objects is not None:
            out["objects"] = {
                "id": self.objects.index.tolist(),
                "parent_id": self.objects["parent_id"].tolist(),
                "sub_id": self.objects["sub_id"].tolist(),
                "segment_flag": self.objects["segment_flag"].tolist(),
            }
        return out

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> SegmentationRecord:
        """Read back :meth:`attrs` (stores written before ``segment_flag`` existed get zeros)."""
        objects = None
        if "objects" in attrs:
            table = attrs["objects"]
            ids = np.asarray(table["id"], dtype=np.int64)
            objects = pd.DataFrame(
                {
                    "parent_id": np.asarray(table["parent_id"], dtype=np.int64),
                    "sub_id": np.asarray(table["sub_id"], dtype=np.int64),
                    "segment_flag": np.asarray(table.get("segment_flag", np.zeros(len(ids)))).astype(np.int16),
                },
                index=pd.Index(ids, name="id"),
            )
        return cls(
            settings=attrs.get("settings"),
            segments=int(attrs.get("segments", 0)),
            approximate_chunks=list(attrs.get("approximate_chunks", [])),
            chunk_halos=dict(attrs.get("chunk_halos", {})),
            oversize_segments=list(attrs.get("oversize_segments", [])),
            n_marker_ids=int(attrs.get("n_marker_ids", 0)),
            objects=objects,
        )


def reusable_record(location: Location, settings_key: dict[str, Any]) -> SegmentationRecord | None:
    """The record of a complete store at ``location`` made with ``settings_key``; ``None``
    when there is no store, it is unfinished, or its settings differ.
    """
    if not location.is_zarr_group():
        return None
    old = location.open_group(mode="r").attrs.asdict()
    if not old.get("complete") or old.get("settings") != settings_key:
        return None
    return SegmentationRecord.from_attrs(old)


def new_segmentation_store(location: Location, shape: tuple[int, int], chunk: int, attrs: dict[str, Any]) -> zarr.Group:
    """An empty ``segmentation.zarr``: ``mask``, ``raw``, ``segments``, ``deblended``, ``colour``.

    Parameters
    ----------
    location : Location
        Where (anything there is removed first).
    shape : tuple of int
        ``(H, W)`` of the image.
    chunk : int
        Chunk side (pixels).
    attrs : dict
        The attributes to start with (not yet marked complete).

    Returns
    -------
    zarr.Group
        The new store.
    """
    location.remove(recursive=True)
    group = location.open_group(mode="w", zarr_format=3, attributes=attrs)
    for name, dtype in (("mask", np.uint8), ("raw", np.int32), ("segments", np.int32), ("deblended", np.int32)):
        group.create_array(
            name, shape=shape, chunks=(chunk, chunk), dtype=dtype, fill_value=0, dimension_names=("y", "x")
        )
    group.create_array(
        "colour",
        shape=(*shape, 3),
        chunks=(chunk, chunk, 3),
        dtype=np.uint8,
        fill_value=0,
        dimension_names=("y", "x", "rgb"),
    )
    return group
