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
   with a checked halo, by the detection rule of :data:`DETECTION_RULES`.
2. **Labels** consistent across chunks, in raster order:
   :func:`pipeline.downstream.labels.label_chunks`.
3. **Deblending** (Algorithm 2) per segment, bounded by ``max_segment_pixels``:
   :func:`pipeline.downstream.deblend.deblend_segments` (:mod:`pipeline.downstream.large_segments`).
4. **Catalog** sums per chunk, merged exactly: :func:`pipeline.downstream.measure.internal_catalog`
   or, with ``markers``, :func:`pipeline.downstream.measure.value_added_catalog`.
5. **Colour image** per chunk: :func:`pipeline.downstream.colour.colour_chunks`.

Stages 1-3 and 5 write ``segmentation.zarr``, whose attributes
(:class:`SegmentationRecord`) let ``catalog`` reuse it; the products are written by
:func:`pipeline.products.fits.write_downstream_products`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from morpheus_core.tiling import chunk_boxes
from pipeline.downstream.colour import colour_chunks
from pipeline.downstream.deblend import deblend_segments
from pipeline.downstream.labels import label_chunks
from pipeline.downstream.large_segments import default_segment_limit, oversize_record
from pipeline.downstream.measure import internal_catalog, value_added_catalog
from pipeline.downstream.segment import no_source_message, segment_chunks
from pipeline.inputs.markers import read_markers
from pipeline.inputs.model_cards import catalog_meta, default_flux_band, recorded_header_cards
from pipeline.inputs.preflight import check_flux_band
from pipeline.products.fits import provenance, write_downstream_products
from pipeline.rundir.checksums import record_store, write_record
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location, as_location
from pipeline.rundir.staging import staged, written_locally
from pipeline.rundir.verified import finished_classification, segmentation_problem
from pipeline.settings.downstream import DETECTION_RULES, DownstreamSettings
from pipeline.timing import stage

logger = logging.getLogger(__name__)

__all__ = ["DownstreamSummary", "SegmentationRecord", "run_downstream"]


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

    def lines(self) -> list[str]:
        """A short human-readable summary."""
        out = [f"downstream: {self.segments} segments, {self.split_segments} deblended into "
               f"{self.objects} objects; catalog of {self.catalog_rows} rows ({self.seconds:.1f} s"
               f"{', segmentation reused' if self.reused_segmentation else ''})"]
        if self.approximate_chunks:
            out.append(f"warning: {len(self.approximate_chunks)} chunk(s) segmented with the largest halo "
                       f"may differ from a whole-image run: {', '.join(self.approximate_chunks)}")
        if self.oversize_segments:
            shown = ", ".join(map(str, self.oversize_segments[:5]))
            shown += ", ..." if len(self.oversize_segments) > 5 else ""
            out.append(f"warning: {len(self.oversize_segments)} segment(s) larger than {self.max_segment_pixels} "
                       f"pixels (bounding box) kept whole, not deblended (segment_flag 1): {shown}")
        return out


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
        out = {"settings": self.settings, "complete": True, "segments": self.segments,
               "approximate_chunks": self.approximate_chunks, "n_marker_ids": self.n_marker_ids,
               "chunk_halos": self.chunk_halos, "oversize_segments": self.oversize_segments}
        if self.objects is not None:
            out["objects"] = {"id": self.objects.index.tolist(), "parent_id": self.objects["parent_id"].tolist(),
                              "sub_id": self.objects["sub_id"].tolist(),
                              "segment_flag": self.objects["segment_flag"].tolist()}
        return out

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> SegmentationRecord:
        """Read back :meth:`attrs` (stores written before ``segment_flag`` existed get zeros)."""
        objects = None
        if "objects" in attrs:
            table = attrs["objects"]
            ids = np.asarray(table["id"], dtype=np.int64)
            objects = pd.DataFrame({"parent_id": np.asarray(table["parent_id"], dtype=np.int64),
                                    "sub_id": np.asarray(table["sub_id"], dtype=np.int64),
                                    "segment_flag": np.asarray(table.get("segment_flag", np.zeros(len(ids))))
                                    .astype(np.int16)},
                                   index=pd.Index(ids, name="id"))
        return cls(settings=attrs.get("settings"), segments=int(attrs.get("segments", 0)),
                   approximate_chunks=list(attrs.get("approximate_chunks", [])),
                   chunk_halos=dict(attrs.get("chunk_halos", {})),
                   oversize_segments=list(attrs.get("oversize_segments", [])),
                   n_marker_ids=int(attrs.get("n_marker_ids", 0)), objects=objects)


def _build_segmentation(client: Any, settings: DownstreamSettings, work: Location, class_store: Location,
                        mosaic_store: Location, boxes: list, shape: tuple[int, int], chunk: int, flux_index: int,
                        source_pixels: np.ndarray | None) -> SegmentationRecord:
    """Stages 1-3 and the colour image into a new segmentation store at ``work``; its
    record, written last, is the store's "complete" mark.
    """
    _new_store(work, shape, chunk, {"settings": settings.segmentation_key(), "complete": False})
    with stage("segmentation"):
        segmented = segment_chunks(client, class_store, work, boxes, threshold=settings.threshold,
                                   halo=settings.halo, max_halo=settings.max_halo, detection=settings.detection,
                                   source_pixels=source_pixels)
    with stage("labels"):
        segments = label_chunks(client, work, boxes, shape)
    with stage("deblending"):
        deblended = deblend_segments(client, work, mosaic_store, boxes, segments, flux_index=flux_index,
                                     width=shape[1], chunk=chunk, limit=settings.max_segment_pixels,
                                     min_distance=settings.min_distance, nd_max=settings.nd_max,
                                     source_pixels=source_pixels)
    with stage("colour"):
        colour_chunks(client, class_store, work, boxes)  # kept with the maps, so reused with them
    record = SegmentationRecord(
        settings=settings.segmentation_key(), segments=len(segments),
        approximate_chunks=segmented.approximate_chunks, chunk_halos=segmented.chunk_halos,
        oversize_segments=deblended.oversize_segments, objects=deblended.objects,
        n_marker_ids=int(source_pixels[:, 2].max()) if source_pixels is not None and len(source_pixels) else 0,
        split_segments=deblended.split_segments)
    work.open_group(mode="r+").attrs.update(record.attrs())  # the "complete" mark, last
    return record


def run_downstream(run_dir: Path | str | Location, settings: DownstreamSettings | None = None, *,
                   client: Any = None, echo: Any = print, run_id: str | None = None,
                   reuse_segmentation: bool = False, model: str = "", precision: str = "float32",
                   storage_options: dict[str, Any] | None = None) -> DownstreamSummary:
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
    cls = finished_classification(run_dir)
    layout = RunLayout(run_dir)
    class_store, mosaic_store = layout.classification, layout.mosaic
    mosaic = mosaic_store.open_group(mode="r")
    bands = list(mosaic.attrs["bands"])
    if settings.flux_band is None:
        settings = replace(settings, flux_band=default_flux_band(cls.attrs.get("model_card"), bands))
    check_flux_band(settings.flux_band, bands)
    flux_index = bands.index(settings.flux_band)
    shape = tuple(cls["n"].shape)
    chunk = int(settings.chunk or cls["n"].chunks[0])
    settings = replace(settings, max_segment_pixels=settings.max_segment_pixels or default_segment_limit(chunk))
    from pipeline.inputs.ingest import read_wcs

    wcs = read_wcs(mosaic)
    markers = read_markers(settings.markers, wcs=wcs, shape=shape) if settings.markers else None
    seg_path = layout.segmentation
    boxes = chunk_boxes(shape, chunk)
    source_pixels = None if markers is None else _source_pixels(markers)

    old = seg_path.open_group(mode="r").attrs.asdict() if seg_path.is_zarr_group() else {}
    reused = bool(reuse_segmentation and old.get("complete") and old.get("settings") == settings.segmentation_key())
    problem = segmentation_problem(run_dir, run_id) if reused else ""  # reused only as recorded when finished
    if problem:
        reused = False
        echo(f"warning: {problem}: the segmentation is made again")
    if reused:
        record = SegmentationRecord.from_attrs(old)
    else:
        # On a file system the new store is built aside and swapped in when complete; an
        # object store cannot rename a folder, so the store is rebuilt in place and its
        # "complete" mark, written last, tells a finished store from an interrupted one.
        layout.segmentation_checksums.remove()  # first: it no longer describes the store
        with staged(seg_path) as work:
            record = _build_segmentation(client, settings, work, class_store, mosaic_store, boxes, shape, chunk,
                                         flux_index, source_pixels)
            files = record_store(work, client=client)  # keys are relative: the same after the swap
        write_record(layout.segmentation_checksums, seg_path, files, run_id=run_id)
    summary = DownstreamSummary(segments=record.segments, split_segments=record.split_segments,
                                approximate_chunks=record.approximate_chunks, chunk_halos=record.chunk_halos,
                                reused_segmentation=reused, oversize_segments=record.oversize_segments,
                                max_segment_pixels=settings.max_segment_pixels)

    measured = dict(flux_index=flux_index, bands=bands, wcs=wcs, shape=shape, flux_unit=mosaic.attrs.get("bunit"))
    with stage("catalog"):
        if markers is None:
            table = internal_catalog(client, class_store, mosaic_store, seg_path, boxes, record.objects, **measured)
            summary.objects = len(table)
        else:
            table = value_added_catalog(client, class_store, mosaic_store, seg_path, boxes, markers,
                                        aperture_arcsec=settings.aperture_arcsec,
                                        oversize_segments=record.oversize_segments, **measured)
            summary.objects = int((table["object_id"] > 0).sum())
    summary.catalog_rows = len(table)
    table.meta.update({"RUNID": run_id or "", "DETECT": settings.detection, "SEGTHR": settings.threshold,
                       "MINDIST": settings.min_distance,
                       "NDMAX": settings.nd_max, "FLUXBAND": settings.flux_band,
                       "MARKERS": Path(settings.markers).name if settings.markers else "",
                       "APERTURE": settings.aperture_arcsec})
    table.meta.update(catalog_meta(cls.attrs.get("model_card")))  # the model card's bands, scale, classes
    products = dict(table=table, segmentation=seg_path.open_group(mode="r"), wcs_header=cls.attrs["wcs_header"],
                    cards={**_provenance(settings, run_id, model, precision),
                           **recorded_header_cards(cls.attrs.get("model_card"))}, chunk=chunk,
                    value_added=markers is not None)
    with stage("products"), written_locally(run_dir) as local:  # an object store: written locally, then uploaded
        written = write_downstream_products(local.root, **products)
    relative = [local.relative(p) for p in written]
    summary.outputs = [local.final(p) for p in written]
    summary.seconds = time.perf_counter() - t0
    layout.downstream_record.write_json({
        "settings": {**asdict(settings), "markers": str(settings.markers) if settings.markers else None},
        "segmentation": record.settings, "segments": summary.segments, "objects": summary.objects,
        "split_segments": summary.split_segments, "catalog_rows": summary.catalog_rows,
        "detection": {"rule": settings.detection, "threshold": settings.threshold,
                      **{k: v for k, v in DETECTION_RULES[settings.detection].items() if k != "threshold"}},
        "approximate_chunks": summary.approximate_chunks, "chunk_halos": summary.chunk_halos,
        "seconds": round(summary.seconds, 3), "outputs": relative,
        "oversize_segments": oversize_record(summary.oversize_segments, settings.max_segment_pixels)})
    if summary.segments == 0:
        echo(no_source_message(cls, settings.detection, settings.threshold))
    for line in summary.lines():
        echo(line)
    return summary


def _source_pixels(markers: dict[str, np.ndarray]) -> np.ndarray:
    """Value-added mode: ``(n, 3)`` int pixel ``y``, ``x`` and id (catalog row + 1) of the sources inside."""
    inside = markers["inside"]
    return np.stack([markers["iy"][inside], markers["ix"][inside], np.flatnonzero(inside) + 1],
                    axis=1).astype(np.int64)


def _new_store(location: Location, shape: tuple[int, int], chunk: int, attrs: dict[str, Any]) -> zarr.Group:
    """An empty ``segmentation.zarr``: ``mask``, ``raw``, ``segments``, ``deblended``, ``colour``."""
    location.remove(recursive=True)
    group = location.open_group(mode="w", zarr_format=3, attributes=attrs)
    for name, dtype in (("mask", np.uint8), ("raw", np.int32), ("segments", np.int32), ("deblended", np.int32)):
        group.create_array(name, shape=shape, chunks=(chunk, chunk), dtype=dtype, fill_value=0,
                           dimension_names=("y", "x"))
    group.create_array("colour", shape=(*shape, 3), chunks=(chunk, chunk, 3), dtype=np.uint8, fill_value=0,
                       dimension_names=("y", "x", "rgb"))
    return group


def _provenance(settings: DownstreamSettings, run_id: str | None, model: str, precision: str) -> dict:
    """FITS provenance keywords of the downstream products, with the settings they depend on."""
    return provenance(run_id or "", model=model or "unknown", precision=precision, extra={
        "DETECT": (settings.detection, "Alg. 1 rule: paper (rank vote), mean or mixed"),
        "SEGTHR": (settings.threshold, "Alg. 1: source if background <= this"),
        "MINDIST": (settings.min_distance, "Alg. 2: min peak separation (px)"),
        "NDMAX": (settings.nd_max, "Alg. 2: max children per segment"),
        "FLUXBAND": (settings.flux_band, "band of deblending and Eq. 16 weights"),
    })
