"""Downstream of the classification, as a Dask graph: segmentation, deblending, catalog.

Reads a finished run directory (``classification.zarr`` and ``mosaic.zarr``) and
writes ``segmentation.zarr``, the FITS segmentation maps, the catalog (Parquet, CSV,
FITS table, AAS machine-readable table), the morphological colour image and
``downstream.json``. Every task reads one chunk (plus a halo) or one group of
objects, so a worker's memory follows the chunk size, not the mosaic size.

This module is the driver: :func:`run_downstream` calls each stage's public function
in turn (the science lives in :mod:`morpheus_core`; each stage module states the
invariant that makes its chunked result equal the whole-image one):

1. **Source mask** (Algorithm 1): :func:`pipeline.downstream.segment.segment_chunks`, per chunk
   with a checked halo, by the detection rule of
   :data:`~pipeline.settings.downstream.DETECTION_RULES`.
2. **Labels** consistent across chunks, in raster order:
   :func:`pipeline.downstream.labels.label_chunks`.
3. **Deblending** (Algorithm 2) per segment, bounded by ``max_segment_pixels``:
   :func:`pipeline.downstream.deblend.deblend_segments` (:mod:`pipeline.downstream.large_segments`).
4. **Catalog** sums per chunk, merged exactly (:mod:`pipeline.downstream.catalog_sums`):
   :func:`pipeline.downstream.measure.internal_catalog` or, with ``markers``,
   :func:`pipeline.downstream.measure.value_added_catalog`.
5. **Colour image** per chunk: :func:`pipeline.downstream.colour.colour_chunks`.

Every stage reads the run through one :class:`~pipeline.downstream.context.StageContext`
(stores, chunk grid, bands, WCS, model card), made once here. Stages 1-3 and 5 write
``segmentation.zarr`` (in value-added mode, stages 1-3 write the catalog's own
``segmentation_<name>.zarr``, :meth:`~pipeline.rundir.layout.RunLayout.segmentation_store`,
and its own FITS maps and records, so that the internal store, maps, catalog and the
viewer stay as they are), whose attributes
(:class:`~pipeline.downstream.segmentation_store.SegmentationRecord`) let ``catalog``
reuse it; the products are written by
:func:`pipeline.products.downstream.write_downstream_products`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.downstream.colour import colour_chunks
from pipeline.downstream.context import StageContext
from pipeline.downstream.deblend import deblend_segments
from pipeline.downstream.labels import label_chunks
from pipeline.downstream.large_segments import default_segment_limit, oversize_record
from pipeline.downstream.measure import internal_catalog, value_added_catalog
from pipeline.downstream.segment import no_source_message, segment_chunks
from pipeline.downstream.segmentation_store import SegmentationRecord, new_segmentation_store, reusable_record
from pipeline.inputs.markers import read_markers
from pipeline.products.downstream import downstream_keywords, write_downstream_products
from pipeline.products.provenance import input_cards
from pipeline.rundir.checksums import record_store, write_record
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.staging import staged, written_locally
from pipeline.rundir.verified import segmentation_problem
from pipeline.settings.downstream import DETECTION_RULES, DownstreamSettings
from pipeline.timing import stage

logger = logging.getLogger(__name__)

__all__ = ["DownstreamSummary", "run_downstream"]


@dataclass
class DownstreamSummary:
    """What the downstream graph made."""

    segments: int = 0
    objects: int = 0
    split_segments: int = 0
    catalog_rows: int = 0
    approximate_chunks: list[str] = field(default_factory=list)
    chunk_halos: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    reused_segmentation: bool = False
    oversize_segments: list[int] = field(default_factory=list)
    max_segment_pixels: int = 0
    split_objects: int = 0
    value_added: bool = False

    def lines(self) -> list[str]:
        """A short human-readable summary, e.g. ``downstream: 30 objects (28 segments, 2 of
        them split by deblending into 4); catalog of 30 rows (1.2 s)``.

        ``objects`` counts the catalog's objects (value-added mode: the input markers
        that fall on one), ``split_segments`` the segments deblended into several
        objects, ``split_objects`` (0: not known) the objects those became.
        """
        split = (
            "none split by deblending"
            if not self.split_segments
            else f"{self.split_segments} of them split by deblending"
            + (f" into {self.split_objects}" if self.split_objects else "")
        )
        timing = f"({self.seconds:.1f} s{', segmentation reused' if self.reused_segmentation else ''})"
        if self.value_added:
            out = [
                f"downstream: {self.segments} segments ({split}); {self.objects} of the {self.catalog_rows} "
                f"input markers fall on an object; catalog of {self.catalog_rows} rows {timing}"
            ]
        else:
            out = [
                f"downstream: {self.objects} objects ({self.segments} segments, {split}); catalog of "
                f"{self.catalog_rows} rows {timing}"
            ]
        if self.approximate_chunks:
            out.append(
                f"warning: {len(self.approximate_chunks)} chunk(s) segmented with the largest halo "
                f"may differ from a whole-image run: {', '.join(self.approximate_chunks)}"
            )
        if self.oversize_segments:
            shown = ", ".join(map(str, self.oversize_segments[:5]))
            shown += ", ..." if len(self.oversize_segments) > 5 else ""
            out.append(
                f"warning: {len(self.oversize_segments)} segment(s) larger than {self.max_segment_pixels} "
                f"pixels (bounding box) kept whole, not deblended (segment_flag 1): {shown}"
            )
        return out


def run_downstream(
    run_dir: Path | str | Location,
    settings: DownstreamSettings | None = None,
    *,
    client: Any = None,
    echo: Any = print,
    run_id: str | None = None,
    reuse_segmentation: bool = False,
    model: str = "",
    precision: str = "float32",
    storage_options: dict[str, Any] | None = None,
) -> DownstreamSummary:
    """Segment, deblend and catalog a finished classification; write the products.

    Parameters
    ----------
    run_dir : Path, str or Location
        A run directory with a finished classification: a path, or a URL such as
        ``s3://bucket/run`` (then with ``storage_options``; the products are written
        locally and uploaded).
    settings : DownstreamSettings, optional
        Defaults as the paper.
    client : distributed.Client, optional
        Where the tasks run (``None``: Dask's threaded scheduler in this process).
    echo : callable
        Where progress lines go.
    run_id, model, precision : str
        Provenance for the FITS headers.
    reuse_segmentation : bool
        Keep existing segmentation maps when their settings match (``catalog``).
    storage_options : dict, optional
        fsspec options of a URL run directory.

    Raises
    ------
    InputError
        No finished classification, or a bad markers file (nothing is written then).
    """
    t0 = time.perf_counter()
    settings = settings or DownstreamSettings()
    run_dir = as_location(run_dir, storage_options)
    layout = RunLayout(run_dir)
    context = StageContext.from_run(run_dir, chunk=settings.chunk, flux_band=settings.flux_band)
    name = RunLayout.catalog_name(bool(settings.markers), settings.catalog_name)
    context = replace(context, segmentation=layout.segmentation_store(name))  # each kind its own store
    settings = replace(
        settings,
        flux_band=context.flux_band,
        max_segment_pixels=settings.max_segment_pixels or default_segment_limit(context.chunk),
    )
    markers = read_markers(settings.markers, wcs=context.wcs, shape=context.shape) if settings.markers else None
    source_pixels = None if markers is None else _source_pixels(markers)
    key = settings.segmentation_key()

    record = reusable_record(context.segmentation, key) if reuse_segmentation else None
    problem = segmentation_problem(run_dir, run_id, name) if record is not None else ""  # reused only as recorded
    if problem:
        record = None
        echo(f"warning: {problem}: the segmentation is made again")
    reused = record is not None
    if record is None:
        # On a file system the new store is built aside and swapped in when complete; an
        # object store cannot rename a folder, so the store is rebuilt in place and its
        # "complete" mark, written last, tells a finished store from an interrupted one.
        checksums = layout.segmentation_checksums_of(name)
        checksums.remove()  # first: it no longer describes the store
        with staged(context.segmentation) as work:
            record = _build_segmentation(client, replace(context, segmentation=work), settings, key, source_pixels)
            files = record_store(work, client=client)  # keys are relative: the same after the swap
        write_record(checksums, context.segmentation, files, run_id=run_id)
    summary = DownstreamSummary(
        segments=record.segments,
        split_segments=record.split_segments,
        approximate_chunks=record.approximate_chunks,
        chunk_halos=record.chunk_halos,
        reused_segmentation=reused,
        oversize_segments=record.oversize_segments,
        max_segment_pixels=settings.max_segment_pixels,
        value_added=markers is not None,
    )
    if record.objects is not None:  # known also for a reused segmentation
        split = record.objects["sub_id"].to_numpy() > 0
        summary.split_segments = len(np.unique(record.objects["parent_id"].to_numpy()[split]))
        summary.split_objects = int(split.sum())

    with stage("catalog"):
        if markers is None:
            table = internal_catalog(client, context, record.objects, background=settings.background)
            summary.objects = len(table)
        else:
            table = value_added_catalog(
                client,
                context,
                markers,
                aperture_arcsec=settings.aperture_arcsec,
                oversize_segments=record.oversize_segments,
                background=settings.background,
            )
            summary.objects = int((table["object_id"] > 0).sum())
    summary.catalog_rows = len(table)
    cards, meta = downstream_keywords(
        settings, run_id=run_id, model=model, precision=precision, card_keywords=context.card_keywords
    )
    cards.update(input_cards(context.mosaic.open_group(mode="r").attrs.get("inputs", [])))  # FITS maps only
    table.meta.update(meta)
    with stage("products"), written_locally(run_dir) as local:  # an object store: written locally, then uploaded
        written = write_downstream_products(
            local.root,
            table=table,
            segmentation=context.segmentation.open_group(mode="r"),
            wcs_header=context.wcs_header,
            cards=cards,
            chunk=context.chunk,
            value_added=markers is not None,
            catalog_name=settings.catalog_name,
            classes=context.classes,
        )
    summary.outputs = [local.final(p) for p in written]
    summary.seconds = time.perf_counter() - t0
    layout.downstream_record_of(name).write_json(
        _downstream_record(settings, record, summary, [local.relative(p) for p in written])
    )
    if summary.segments == 0:
        echo(no_source_message(context, settings.detection, settings.threshold))
    for line in summary.lines():
        echo(line)
    return summary


def _build_segmentation(
    client: Any,
    context: StageContext,
    settings: DownstreamSettings,
    key: dict[str, Any],
    source_pixels: np.ndarray | None,
) -> SegmentationRecord:
    """Stages 1-3 and the colour image into a new segmentation store at ``context.segmentation``;
    its record (``key``: the settings it depends on), written last, is the store's "complete" mark.
    """
    new_segmentation_store(context.segmentation, context.shape, context.chunk, {"settings": key, "complete": False})
    with stage("segmentation"):
        segmented = segment_chunks(
            client,
            context,
            threshold=settings.threshold,
            halo=settings.halo,
            max_halo=settings.max_halo,
            detection=settings.detection,
            source_pixels=source_pixels,
        )
    with stage("labels"):
        segments = label_chunks(client, context)
    with stage("deblending"):
        deblended = deblend_segments(
            client,
            context,
            segments,
            limit=settings.max_segment_pixels,
            min_distance=settings.min_distance,
            nd_max=settings.nd_max,
            source_pixels=source_pixels,
        )
    if source_pixels is None:  # the internal maps only: the colour image does not depend on the markers
        with stage("colour"):
            colour_chunks(client, context)  # kept with the maps, so reused with them
    record = SegmentationRecord(
        settings=key,
        segments=len(segments),
        approximate_chunks=segmented.approximate_chunks,
        chunk_halos=segmented.chunk_halos,
        oversize_segments=deblended.oversize_segments,
        objects=deblended.objects,
        n_marker_ids=int(source_pixels[:, 2].max()) if source_pixels is not None and len(source_pixels) else 0,
        split_segments=deblended.split_segments,
    )
    context.segmentation.open_group(mode="r+").attrs.update(record.attrs())  # the "complete" mark, last
    return record


def _downstream_record(
    settings: DownstreamSettings, record: SegmentationRecord, summary: DownstreamSummary, outputs: list[str]
) -> dict[str, Any]:
    """``downstream.json``: the settings, what was made, the products (relative paths)."""
    return {
        "settings": {**asdict(settings), "markers": str(settings.markers) if settings.markers else None},
        "segmentation": record.settings,
        "segments": summary.segments,
        "objects": summary.objects,
        "split_segments": summary.split_segments,
        "catalog_rows": summary.catalog_rows,
        "detection": {
            "rule": settings.detection,
            "threshold": settings.threshold,
            **{k: v for k, v in DETECTION_RULES[settings.detection].items() if k != "threshold"},
        },
        "approximate_chunks": summary.approximate_chunks,
        "chunk_halos": summary.chunk_halos,
        "seconds": round(summary.seconds, 3),
        "outputs": outputs,
        "oversize_segments": oversize_record(summary.oversize_segments, settings.max_segment_pixels),
    }


def _source_pixels(markers: dict[str, np.ndarray]) -> np.ndarray:
    """Value-added mode: ``(n, 3)`` int pixel ``y``, ``x`` and id (catalog row + 1) of the sources inside."""
    inside = markers["inside"]
    return np.stack([markers["iy"][inside], markers["ix"][inside], np.flatnonzero(inside) + 1], axis=1).astype(np.int64)
