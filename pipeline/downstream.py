"""Downstream of the classification, as a Dask graph: segmentation, deblending, catalog.

Reads a finished run directory (``classification.zarr`` and ``mosaic.zarr``) and
writes ``segmentation.zarr``, the FITS segmentation maps, the catalog (Parquet, CSV,
FITS table, AAS machine-readable table), the morphological colour image and
``downstream.json``. Every task reads one chunk (plus a halo) or one group of
objects, so a worker's memory follows the chunk size, not the mosaic size.

The graph, stage by stage (the science lives in :mod:`morpheus_core`):

1. **Source mask** (Algorithm 1, :func:`morpheus_core.segmentation.segment_sources`)
   per chunk, on the chunk plus a halo, from the background image the detection rule
   names (:data:`DETECTION_RULES`; by default the rank-vote background, as the
   released code). A watershed only floods unmarked pixels from
   the markers touching them, so a chunk's result equals the whole-image one when
   every unmarked component reaching the chunk lies at least 3 pixels inside the
   read region; the task checks that and doubles the halo until it holds, up to
   ``max_halo``. A chunk that still fails is computed with ``max_halo`` and listed
   as approximate in ``downstream.json`` (and in the log).
2. **Labels** consistent across chunks: each chunk labelled on its own, labels that
   touch across chunk faces joined (the scheme of ``dask_image.ndmeasure.label``, with
   the intermediate labels in Zarr so a task holds one chunk), then renumbered in
   raster order of each segment's first pixel, so the numbers equal a whole-image
   ``scipy.ndimage.label``.
3. **Deblending** (Algorithm 2) per segment on its bounding box, segments grouped by
   the chunk holding their first pixel; children numbered as
   :func:`morpheus_core.deblend.number_children` does on a whole image. A task reads
   at most ``max_segment_pixels``; a segment whose bounding box is larger is kept
   whole, not deblended, and flagged (:mod:`pipeline.large_segments`).
4. **Catalog** sums per chunk (:func:`morpheus_core.catalog.object_sums`), merged
   exactly (sums, minima, arg-maxima), then :func:`~morpheus_core.catalog.object_catalog`:
   class fractions (Eq. 16), ``background_min`` and the detection flag from the
   rank-vote images as the released code, ``p_mean_<class>`` from the mean images,
   ``sigma_<class>`` from the variance images.
   In value-added mode (``markers``) every catalogued source gets a row; sources whose
   segment is smaller than the aperture, or that have no segment, are measured in a
   0.36" radius aperture as in the paper's section 8.
5. **Colour image** per chunk (from the rank-vote images), streamed to a PNG row by row.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import zarr
from astropy.table import Table

from morpheus_core import CLASSES
from morpheus_core.catalog import (aperture_mask, detection_flag, merge_object_sums, object_catalog,
                                   object_sums)
from morpheus_core.colour import colour_image
from morpheus_core.deblend import (DEFAULT_MIN_DISTANCE, DEFAULT_ND_MAX, number_children, object_label,
                                   split_by_markers, split_by_peaks)
from morpheus_core.segmentation import (check_threshold, label_segments, segment_sources, unmarked_components,
                                        watershed_markers)
from pipeline.errors import InputError
from pipeline.large_segments import (RECORDED_IDS, default_segment_limit, oversize_record, pieces_for_chunk,
                                     plan_deblending, segment_flag_column, single_owners)
from pipeline.markers import read_markers
from pipeline.products import file_mode
from pipeline.storage import Location, as_location

logger = logging.getLogger(__name__)

__all__ = ["DownstreamSettings", "DownstreamSummary", "check_classification", "run_downstream"]

#: Paper section 8: aperture radius for undetected sources and small segments.
APERTURE_ARCSEC = 0.36
#: Pixels an unmarked component must stay inside a chunk's read region (Sobel + seeds).
_LOCAL_MARGIN = 3

_EXTENT_COLUMNS = ("first", "ymin", "ymax", "xmin", "xmax")
_EXTENT_AGG = {"first": "min", "ymin": "min", "ymax": "max", "xmin": "min", "xmax": "max"}

CATALOG_FORMATS = {"parquet": "parquet", "csv": "csv", "fits": "fits", "mrt": "ascii.mrt"}

#: Detection rules of Algorithm 1: which image gives the sky markers (``== 1``) and
#: Sobel edges, which gives the source markers (``<= threshold``), and the default
#: threshold. ``paper``: the released code (rank-vote background, 0). ``mean``: the
#: normalised mean background (few exact 1s, so the watershed is nearly global).
#: ``mixed``: rank-vote sky markers and edges, mean-image source markers.
DETECTION_RULES: dict[str, dict[str, Any]] = {
    "paper": {"background": "rank", "sources": "rank", "threshold": 0.0},
    "mean": {"background": "mean", "sources": "mean", "threshold": 0.3},
    "mixed": {"background": "rank", "sources": "mean", "threshold": 0.3},
}


@dataclass(frozen=True)
class DownstreamSettings:
    """Settings of the downstream graph.

    Attributes
    ----------
    threshold : float, optional
        Background at or below which a pixel is a certain source (Algorithm 1);
        ``None`` takes the detection rule's default (0 for ``paper``, 0.3 for ``mean``
        and ``mixed``).
    detection : str
        Detection rule, a key of :data:`DETECTION_RULES`: ``paper`` (default), ``mean``
        or ``mixed``.
    min_distance, nd_max : int
        Deblending: minimum peak separation (pixels) and most children per segment.
    flux_band : str
        Band whose flux deblends and weights (Eq. 16); F160W (``H``) by default.
    markers : str, optional
        External catalog (CSV or FITS table with RA/Dec) for value-added mode.
    aperture_arcsec : float
        Aperture radius for value-added sources without a large enough segment.
    halo, max_halo : int
        First and largest halo (pixels) read around a chunk for the segmentation.
    chunk : int, optional
        Chunk size of the downstream graph (default: the classification store's).
    max_segment_pixels : int, optional
        Largest segment bounding box (pixels) one deblending task reads; larger
        segments are not deblended and are flagged (default ``9 * chunk**2``, see
        :mod:`pipeline.large_segments`).
    """

    threshold: float | None = None
    min_distance: int = DEFAULT_MIN_DISTANCE
    nd_max: int = DEFAULT_ND_MAX
    flux_band: str = "H"
    markers: str | None = None
    aperture_arcsec: float = APERTURE_ARCSEC
    halo: int = 64
    max_halo: int = 512
    chunk: int | None = None
    detection: str = "paper"
    max_segment_pixels: int | None = None

    def __post_init__(self) -> None:
        if self.detection not in DETECTION_RULES:
            raise InputError(f"--detection must be one of {', '.join(DETECTION_RULES)}, got {self.detection!r}")
        if self.threshold is None:
            object.__setattr__(self, "threshold", DETECTION_RULES[self.detection]["threshold"])
        try:
            object.__setattr__(self, "threshold", check_threshold(self.threshold))
        except (TypeError, ValueError) as exc:
            raise InputError(f"--threshold: {exc}") from None
        for name in ("min_distance", "nd_max", "halo", "max_halo", "chunk", "max_segment_pixels"):
            if getattr(self, name) is not None and int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.aperture_arcsec <= 0:
            raise InputError(f"aperture radius must be > 0 arcsec, got {self.aperture_arcsec}")

    def segmentation_key(self) -> dict[str, Any]:
        """Settings the segmentation maps depend on."""
        marker_file = None
        if self.markers:
            from pipeline.ingest import file_fingerprint

            marker_file = file_fingerprint(self.markers)
        return {"detection": self.detection, "threshold": self.threshold, "min_distance": self.min_distance,
                "nd_max": self.nd_max,
                "flux_band": self.flux_band, "markers": marker_file, "max_segment_pixels": self.max_segment_pixels}


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


# --------------------------------------------------------------------------- inputs

def check_classification(run_dir: Path | str | Location) -> zarr.Group:
    """Open a run directory's finished classification.

    Raises
    ------
    InputError
        No classification, or one that is not finished.
    """
    run_dir = as_location(run_dir)
    store = run_dir / "classification.zarr"
    if not (run_dir / "manifest.json").exists():
        raise InputError(f"{run_dir}: no run here (manifest.json not found); classify first with "
                         f"'python -m pipeline run'")
    if not (store / "zarr.json").exists():
        raise InputError(f"{run_dir}: no classification (classification.zarr missing); finish the run with "
                         f"'python -m pipeline run' or 'resubmit' first")
    group = _open(store, "r")
    if not group.attrs.get("complete", False):
        raise InputError(f"{store}: the classification is not finished (tiles failed or pending); run "
                         f"'python -m pipeline resubmit --run-dir {run_dir}' first")
    return group


def _open(store: Location, mode: str) -> zarr.Group:
    """A Zarr group on a file system path or in an object store."""
    return store.open_group(mode=mode)


def _chunk_boxes(shape: tuple[int, int], chunk: int) -> list[tuple[int, int, int, int]]:
    return [(y, min(y + chunk, shape[0]), x, min(x + chunk, shape[1]))
            for y in range(0, shape[0], chunk) for x in range(0, shape[1], chunk)]


def _box_name(box: tuple[int, int, int, int]) -> str:
    return f"y{box[0]}-{box[1]}_x{box[2]}-{box[3]}"


def _compute(client: Any, tasks: list) -> list:
    if not tasks:
        return []
    if client is None:
        return list(dask.compute(*tasks, scheduler="threads"))
    return client.gather(client.compute(tasks))


# ----------------------------------------------------------------- 1. source mask

def _detection_images(group: zarr.Group, detection: str, ry: tuple[int, int],
                      rx: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The background image (sky markers, Sobel) and source-marker image of a detection rule.

    Returns
    -------
    background : numpy.ndarray
        The rule's background image over rows ``ry`` and columns ``rx``.
    source_background : numpy.ndarray or None
        The image whose values ``<= threshold`` mark sources, when not ``background``.
    """
    rule = DETECTION_RULES[detection]
    sl = (len(CLASSES) - 1, slice(*ry), slice(*rx))
    background = group[rule["background"]][sl]
    source_background = None if rule["sources"] == rule["background"] else group[rule["sources"]][sl]
    return background, source_background


def _segment_block(class_store: str, seg_store: str, box: tuple[int, int, int, int], threshold: float,
                   halo: int, max_halo: int, sources: np.ndarray, detection: str = "paper") -> tuple[str, int, bool]:
    """Task: Algorithm 1 on one chunk (with a growing halo); writes ``mask``."""
    group = _open(class_store, "r")
    height, width = group["n"].shape
    y0, y1, x0, x1 = box
    while True:
        ry0, ry1 = max(0, y0 - halo), min(height, y1 + halo)
        rx0, rx1 = max(0, x0 - halo), min(width, x1 + halo)
        background, source_background = _detection_images(group, detection, (ry0, ry1), (rx0, rx1))
        classified = group["n"][ry0:ry1, rx0:rx1] > 0
        marked = None
        if len(sources):
            marked = np.zeros(classified.shape, dtype=np.uint8)
            inside = ((sources[:, 0] >= ry0) & (sources[:, 0] < ry1) & (sources[:, 1] >= rx0)
                      & (sources[:, 1] < rx1))
            marked[sources[inside, 0] - ry0, sources[inside, 1] - rx0] = 1
        whole = (ry0, ry1, rx0, rx1) == (0, height, 0, width)
        exact = whole or _locally_exact(background, classified, threshold, marked,
                                        core=(y0 - ry0, y1 - ry0, x0 - rx0, x1 - rx0),
                                        edges=(ry0 == 0, ry1 == height, rx0 == 0, rx1 == width),
                                        source_background=source_background)
        if exact or halo >= max_halo:
            break
        halo = min(2 * halo, max_halo)
    mask = segment_sources(background, classified, threshold=threshold, sources=marked,
                           source_background=source_background)
    _open(seg_store, "r+")["mask"][y0:y1, x0:x1] = \
        mask[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0].astype(np.uint8)
    return _box_name(box), halo, bool(exact)


def _locally_exact(background: np.ndarray, classified: np.ndarray, threshold: float, sources: np.ndarray | None,
                   *, core: tuple[int, int, int, int], edges: tuple[bool, bool, bool, bool],
                   source_background: np.ndarray | None = None) -> bool:
    """Whether every unmarked component reaching the core stays inside the region.

    The markers are those :func:`~morpheus_core.segmentation.segment_sources` will use
    (same ``source_background``), so the check matches the watershed it guards.
    """
    markers = watershed_markers(background, classified, threshold=threshold, sources=sources,
                                source_background=source_background)
    components = unmarked_components(markers, classified)
    cy0, cy1, cx0, cx1 = core
    # A component counts for the core if it or a pixel next to it lies in the core.
    reaching = np.unique(components[max(cy0 - 1, 0) : cy1 + 1, max(cx0 - 1, 0) : cx1 + 1])
    reaching = reaching[reaching > 0]
    if len(reaching) == 0:
        return True
    near_frame = np.zeros(components.shape, dtype=bool)
    m = _LOCAL_MARGIN
    top, bottom, left, right = edges
    if not top:
        near_frame[:m] = True
    if not bottom:
        near_frame[-m:] = True
    if not left:
        near_frame[:, :m] = True
    if not right:
        near_frame[:, -m:] = True
    return not np.isin(components[near_frame], reaching).any()


# -------------------------------------------------------------- 2. global labels

def _label_block(seg_store: str, box: tuple[int, int, int, int], width: int) -> tuple[int, pd.DataFrame]:
    """Task: label one chunk's source mask on its own; per local label, first pixel and box."""
    y0, y1, x0, x1 = box
    group = _open(seg_store, "r+")
    local, count = label_segments(group["mask"][y0:y1, x0:x1] > 0)
    group["raw"][y0:y1, x0:x1] = local
    if count == 0:
        return 0, pd.DataFrame({c: np.array([], dtype=np.int64) for c in _EXTENT_COLUMNS})
    ys, xs = np.nonzero(local)
    frame = pd.DataFrame({"label": local[ys, xs].astype(np.int64), "first": (ys + y0) * width + xs + x0,
                          "ymin": ys + y0, "ymax": ys + y0 + 1, "xmin": xs + x0, "xmax": xs + x0 + 1})
    extents = frame.groupby("label").agg(_EXTENT_AGG)
    return int(count), extents.reset_index(drop=True)


def _face_pairs(seg_store: str, box: tuple[int, int, int, int], shape: tuple[int, int], chunk: int,
                offsets: dict[tuple[int, int], int]) -> np.ndarray:
    """Task: global label pairs that touch across this chunk's bottom and right faces (4-connectivity)."""
    y0, y1, x0, x1 = box
    raw = _open(seg_store, "r")["raw"]
    pairs = []
    here = offsets[(y0, x0)]
    if y1 < shape[0]:
        a, b = raw[y1 - 1, x0:x1], raw[y1, x0:x1]
        on = (a > 0) & (b > 0)
        pairs.append(np.stack([a[on] + here, b[on] + offsets[(y1, x0)]], axis=1))
    if x1 < shape[1]:
        a, b = raw[y0:y1, x1 - 1], raw[y0:y1, x1]
        on = (a > 0) & (b > 0)
        pairs.append(np.stack([a[on] + here, b[on] + offsets[(y0, x1)]], axis=1))
    return np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), dtype=np.int64)


def _global_labels(client, seg_store: str, boxes, shape, chunk):
    """Connected components across chunks, numbered in raster order of their first pixel.

    The scheme of ``dask_image.ndmeasure.label`` (label each chunk, join labels that
    touch across chunk faces, relabel), with the intermediate labels kept in Zarr so
    that every task holds one chunk: per chunk, local labels and their first pixels;
    per chunk face, the pairs of labels that touch; on the driver, a sparse graph of
    those pairs (one node per chunk-local label) whose connected components are the
    segments.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    results = _compute(client, [dask.delayed(_label_block)(seg_store, b, shape[1]) for b in boxes])
    counts = np.array([r[0] for r in results], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    offsets = {(b[0], b[2]): int(o) for b, o in zip(boxes, starts)}
    total = int(counts.sum())
    pairs = _compute(client, [dask.delayed(_face_pairs)(seg_store, b, shape, chunk, offsets) for b in boxes])
    pairs = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0] - 1, pairs[:, 1] - 1)), shape=(total, total))
    _, component = connected_components(graph, directed=False) if total else (0, np.zeros(0, dtype=np.int64))
    extents = pd.concat([r[1] for r in results], ignore_index=True) if total else \
        pd.DataFrame({c: np.array([], dtype=np.int64) for c in _EXTENT_COLUMNS})
    extents["component"] = component
    merged = extents.groupby("component").agg(_EXTENT_AGG).sort_values("first")
    canonical = np.zeros(len(merged), dtype=np.int32)
    canonical[merged.index.to_numpy()] = np.arange(1, len(merged) + 1, dtype=np.int32)
    lookup = np.zeros(total + 1, dtype=np.int32)
    lookup[1:] = canonical[component] if total else []
    return merged.reset_index(drop=True), lookup, starts


def _relabel_block(seg_store: str, box: tuple[int, int, int, int], offset: int, lookup: np.ndarray) -> None:
    """Task: write one chunk of the global segment labels from its local labels."""
    y0, y1, x0, x1 = box
    group = _open(seg_store, "r+")
    local = group["raw"][y0:y1, x0:x1].astype(np.int64)
    group["segments"][y0:y1, x0:x1] = np.where(local > 0, lookup[np.where(local > 0, local + offset, 0)], 0)


# ---------------------------------------------------------------- 3. deblending

def _deblend_group(seg_store: str, flux_store: str, flux_index: int, objects: list[tuple[int, int, int, int, int]],
                   min_distance: int, nd_max: int, sources: np.ndarray) -> list[tuple]:
    """Task: Algorithm 2 for a group of segments (one bounding-box read for all).

    The group comes from :func:`pipeline.large_segments.plan_deblending`, so the box
    read and the children returned stay within ``max_segment_pixels``.
    """
    ry0 = min(o[1] for o in objects)
    ry1 = max(o[2] for o in objects)
    rx0 = min(o[3] for o in objects)
    rx1 = max(o[4] for o in objects)
    segments = _open(seg_store, "r")["segments"][ry0:ry1, rx0:rx1]
    flux = _open(flux_store, "r")["image"][flux_index, ry0:ry1, rx0:rx1]
    out = []
    for label, y0, y1, x0, x1 in objects:
        box = (slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
        mask = segments[box] == label
        if sources is None:
            children = split_by_peaks(flux[box], mask, min_distance=min_distance, nd_max=nd_max)
            k = int(children.max())
            out.append((label, k, (y0, y1, x0, x1), children.astype(np.int32) if k > 1 else None))
        else:
            marker_image = np.zeros(mask.shape, dtype=np.int64)
            inside = (sources[:, 0] >= y0) & (sources[:, 0] < y1) & (sources[:, 1] >= x0) & (sources[:, 1] < x1)
            # Earlier catalog rows win a shared pixel: write the later ones first.
            for sy, sx, sid in sources[inside][::-1]:
                marker_image[sy - y0, sx - x0] = sid
            owners = split_by_markers(flux[box], mask, marker_image)
            out.append((label, len(np.unique(owners[owners > 0])), (y0, y1, x0, x1), owners))
    return out


def _deblended_block(seg_store: str, box: tuple[int, int, int, int], parent_lookup: np.ndarray,
                     pieces: list[tuple[tuple[int, int, int, int], np.ndarray]]) -> None:
    """Task: write one chunk of the deblended map (unsplit parents by lookup, pieces pasted)."""
    y0, y1, x0, x1 = box
    group = _open(seg_store, "r+")
    out = parent_lookup[group["segments"][y0:y1, x0:x1]]
    for (py0, py1, px0, px1), ids in pieces:
        oy0, oy1, ox0, ox1 = max(y0, py0), min(y1, py1), max(x0, px0), min(x1, px1)
        if oy0 >= oy1 or ox0 >= ox1:
            continue
        part = ids[oy0 - py0 : oy1 - py0, ox0 - px0 : ox1 - px0]
        view = out[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0]
        view[part > 0] = part[part > 0]
    group["deblended"][y0:y1, x0:x1] = out


def _oversize_owners(seg_store: Location, oversize: list[int], sources: np.ndarray) -> dict[int, int]:
    """Value-added mode: the source owning each oversize segment whole, where it needs no split.

    Reads the segment label at every source's pixel (Zarr reads chunk by chunk), not
    the segments; see :func:`pipeline.large_segments.single_owners`.
    """
    if not oversize or not len(sources):
        return {}
    labels = _open(seg_store, "r")["segments"].get_coordinate_selection((sources[:, 0], sources[:, 1]))
    return single_owners(oversize, labels, sources)


def _marker_segment_flag(seg: zarr.Group, iy: np.ndarray, ix: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Value-added mode: whether each source lies on an oversize segment (not deblended)."""
    flag = np.zeros(len(inside), dtype=bool)
    oversize = seg.attrs.get("oversize_segments", [])
    if len(oversize) and inside.any():
        flag[inside] = np.isin(seg["segments"].get_coordinate_selection((iy[inside], ix[inside])), oversize)
    return flag


# ------------------------------------------------------------------- 4. catalog

def _read_piece(class_store: str, mosaic_store: str, ry: tuple[int, int], rx: tuple[int, int]) -> dict[str, np.ndarray]:
    cls = _open(class_store, "r")
    mosaic = _open(mosaic_store, "r")
    sl = (slice(*ry), slice(*rx))
    return {"rank": cls["rank"][(slice(None), *sl)], "mean": cls["mean"][(slice(None), *sl)],
            "variance": cls["variance"][(slice(None), *sl)], "n": cls["n"][sl],
            "bands": mosaic["image"][(slice(None), *sl)]}


def _piece_sums(labels: np.ndarray, piece: dict[str, np.ndarray], flux_index: int, band_names: list[str],
                origin: tuple[int, int], width: int) -> pd.DataFrame:
    """Per-object sums of one piece: Eq. 16 on the rank-vote images, plus the mean images' fractions."""
    return object_sums(labels, flux=piece["bands"][flux_index], mean=piece["rank"], variance=piece["variance"],
                       bands=piece["bands"], band_names=band_names, origin=origin, width=width,
                       fractions={"mean": piece["mean"]})


def _sums_block(class_store: str, mosaic_store: str, seg_store: str, box: tuple[int, int, int, int],
                flux_index: int, band_names: list[str], width: int) -> pd.DataFrame:
    """Task: per-object sums over one chunk of the deblended map."""
    y0, y1, x0, x1 = box
    labels = _open(seg_store, "r")["deblended"][y0:y1, x0:x1]
    if not (labels > 0).any():
        zeros = np.zeros((len(CLASSES), *labels.shape))
        return _piece_sums(labels, {"rank": zeros, "mean": zeros, "variance": zeros,
                                    "bands": np.zeros((len(band_names), *labels.shape))},
                           flux_index, band_names, (y0, x0), width)
    piece = _read_piece(class_store, mosaic_store, (y0, y1), (x0, x1))
    return _piece_sums(labels, piece, flux_index, band_names, (y0, x0), width)


def _aperture_block(class_store: str, mosaic_store: str, rows: np.ndarray, xy: np.ndarray, radius: float,
                    flux_index: int, band_names: list[str], shape: tuple[int, int]) -> pd.DataFrame:
    """Task: aperture sums for a group of catalogued sources (one read for the group)."""
    r = int(math.ceil(radius)) + 1
    ry0 = max(0, int(np.floor(xy[:, 1].min())) - r)
    ry1 = min(shape[0], int(np.ceil(xy[:, 1].max())) + r + 1)
    rx0 = max(0, int(np.floor(xy[:, 0].min())) - r)
    rx1 = min(shape[1], int(np.ceil(xy[:, 0].max())) + r + 1)
    piece = _read_piece(class_store, mosaic_store, (ry0, ry1), (rx0, rx1))
    frames = []
    for row, (x, y) in zip(rows, xy):
        disc = aperture_mask((ry1 - ry0, rx1 - rx0), x - rx0, y - ry0, radius) & (piece["n"] > 0)
        frame = _piece_sums(disc.astype(np.int64), piece, flux_index, band_names, (ry0, rx0), shape[1])
        frames.append(frame.set_axis(pd.Index([int(row)] * len(frame), name="id")))
    return pd.concat(frames)


# -------------------------------------------------------------------- 5. colour

def _colour_block(class_store: str, seg_store: str, box: tuple[int, int, int, int]) -> None:
    """Task: one chunk of the colour image (from the rank-vote images, as the released code)."""
    y0, y1, x0, x1 = box
    cls = _open(class_store, "r")
    rgb = colour_image(cls["rank"][:, y0:y1, x0:x1], cls["n"][y0:y1, x0:x1] > 0)
    _open(seg_store, "r+")["colour"][y0:y1, x0:x1, :] = rgb


def _write_png(path: Path, array: zarr.Array, strip: int) -> Path:
    """Stream an ``(H, W, 3)`` uint8 Zarr array to a PNG, ``strip`` rows at a time."""
    import png  # pypng: writes from a row iterator, so memory stays one strip

    height, width, _ = array.shape

    def rows():
        for y in range(0, height, strip):
            block = array[y : min(y + strip, height)]
            yield from block.reshape(block.shape[0], width * 3)

    writer = png.Writer(width=width, height=height, greyscale=False, bitdepth=8)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            writer.write(fh, rows())
        os.chmod(tmp, file_mode())  # mkstemp made it 0600; products are 0644 under umask 022
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------- driver

def _new_store(location: Location, shape: tuple[int, int], chunk: int, attrs: dict[str, Any]) -> zarr.Group:
    location.remove(recursive=True)
    group = location.open_group(mode="w", zarr_format=3, attributes=attrs)
    for name, dtype in (("mask", np.uint8), ("raw", np.int32), ("segments", np.int32), ("deblended", np.int32)):
        group.create_array(name, shape=shape, chunks=(chunk, chunk), dtype=dtype, fill_value=0,
                           dimension_names=("y", "x"))
    group.create_array("colour", shape=(*shape, 3), chunks=(chunk, chunk, 3), dtype=np.uint8, fill_value=0,
                       dimension_names=("y", "x", "rgb"))
    return group


def _segment(client, settings: DownstreamSettings, paths: dict[str, Location], seg_path: Location, shape, chunk, boxes,
             source_pixels: np.ndarray | None, flux_index: int, summary: DownstreamSummary) -> dict[str, Any]:
    """Stages 1-3 into a new ``segmentation.zarr`` (built aside, then swapped in)."""
    # On a file system the new store is built aside and swapped in when complete; an
    # object store cannot rename a folder, so the store is rebuilt in place and its
    # "complete" mark, written last, tells a finished store from an interrupted one.
    work = Location(seg_path.path.with_name(seg_path.name + ".partial")) if seg_path.is_local else seg_path
    _new_store(work, shape, chunk, {"settings": settings.segmentation_key(), "complete": False})
    seg_store = work
    pixels = np.zeros((0, 2), dtype=np.int64) if source_pixels is None else source_pixels[:, :2]
    reach = settings.max_halo + chunk
    tasks = []
    for box in boxes:
        near = ((pixels[:, 0] >= box[0] - reach) & (pixels[:, 0] < box[1] + reach)
                & (pixels[:, 1] >= box[2] - reach) & (pixels[:, 1] < box[3] + reach))
        tasks.append(dask.delayed(_segment_block, pure=False)(
            paths["classification"], seg_store, box, settings.threshold, settings.halo, settings.max_halo,
            pixels[near], settings.detection))
    for name, halo, exact in _compute(client, tasks):
        summary.chunk_halos[name] = int(halo)
        if not exact:
            summary.approximate_chunks.append(name)
            logger.warning("chunk %s: unmarked region larger than the %d px halo; segmentation may differ "
                           "from a whole-image run", name, halo)

    # 2. labels merged across chunks, then renumbered in raster order.
    order, lookup, offsets = _global_labels(client, seg_store, boxes, shape, chunk)
    lookup_d = dask.delayed(lookup)
    _compute(client, [dask.delayed(_relabel_block)(seg_store, b, int(offsets[i]), lookup_d)
                      for i, b in enumerate(boxes)])
    objects = pd.DataFrame({"ymin": order["ymin"].to_numpy(), "ymax": order["ymax"].to_numpy(),
                            "xmin": order["xmin"].to_numpy(), "xmax": order["xmax"].to_numpy(),
                            "first": order["first"].to_numpy()},
                           index=pd.Index(np.arange(1, len(order) + 1), name="segment"))
    summary.segments = len(objects)

    # 3. deblending, segments grouped by the chunk of their first pixel into tasks that
    # read at most max_segment_pixels; larger segments are not deblended (flagged).
    limit = settings.max_segment_pixels or default_segment_limit(chunk)
    groups, oversize = plan_deblending(zip(objects.index, objects["ymin"], objects["ymax"], objects["xmin"],
                                           objects["xmax"], objects["first"]), width=shape[1], chunk=chunk,
                                       limit=limit)
    summary.oversize_segments = oversize
    if oversize:
        logger.warning("%d segment(s) with a bounding box over %d pixels not deblended: %s", len(oversize), limit,
                       ", ".join(map(str, oversize[:RECORDED_IDS])))
    results = _compute(client, [
        dask.delayed(_deblend_group)(seg_store, paths["mosaic"], flux_index, members, settings.min_distance,
                                     settings.nd_max, source_pixels)
        for members in groups])
    done = sorted((item for group in results for item in group), key=lambda item: item[0])
    n_max = int(source_pixels[:, 2].max()) if source_pixels is not None and len(source_pixels) else 0
    if source_pixels is None:
        done = sorted(done + [(label, 1, None, None) for label in oversize], key=lambda item: item[0])
        parents = np.array([d[0] for d in done], dtype=np.int64)
        counts = np.array([max(d[1], 1) for d in done], dtype=np.int64)
        ids, parent_id, sub_id = number_children(parents, counts)
        first_id = np.cumsum(counts) - counts + 1
        parent_lookup = np.zeros(len(objects) + 1, dtype=np.int32)
        pieces = []
        for (label, k, box, children), first in zip(done, first_id):
            if k > 1:
                pieces.append((box, np.where(children > 0, children + first - 1, 0).astype(np.int32)))
            else:
                parent_lookup[label] = first
        table = pd.DataFrame({"parent_id": parent_id, "sub_id": sub_id}, index=pd.Index(ids, name="id"))
        table["segment_flag"] = np.isin(parent_id, oversize).astype(np.int16)
    else:  # an oversize segment goes whole to its one source (as split_by_markers), else to none
        parent_lookup = np.zeros(len(objects) + 1, dtype=np.int32)
        for label, owner in _oversize_owners(seg_store, oversize, source_pixels).items():
            parent_lookup[label] = owner
        pieces = [(box, owners.astype(np.int32)) for _, _, box, owners in done if owners.any()]
        table = None
    summary.split_segments = sum(1 for d in done if d[1] > 1)
    plookup_d = dask.delayed(parent_lookup)
    tasks = []
    for b in boxes:  # each task gets the children arrays cut to its chunk
        tasks.append(dask.delayed(_deblended_block)(seg_store, b, plookup_d, pieces_for_chunk(pieces, b)))
    tasks += [dask.delayed(_colour_block)(paths["classification"], seg_store, b) for b in boxes]
    _compute(client, tasks)
    group = _open(seg_store, "r+")
    attrs = {"settings": settings.segmentation_key(), "complete": True, "segments": len(objects),
             "approximate_chunks": summary.approximate_chunks, "n_marker_ids": n_max,
             "chunk_halos": summary.chunk_halos}
    attrs["oversize_segments"] = oversize
    if table is not None:
        attrs["objects"] = {"id": table.index.tolist(), "parent_id": table["parent_id"].tolist(),
                            "sub_id": table["sub_id"].tolist(), "segment_flag": table["segment_flag"].tolist()}
    group.attrs.update(attrs)
    if seg_path.is_local:
        seg_path.remove(recursive=True)
        os.replace(work.path, seg_path.path)
    return attrs


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
    cls = check_classification(run_dir)
    mosaic = _open(run_dir / "mosaic.zarr", "r")
    bands = list(mosaic.attrs["bands"])
    if settings.flux_band not in bands:
        raise InputError(f"--flux-band {settings.flux_band!r} is not a band of this mosaic (bands: {', '.join(bands)})")
    flux_index = bands.index(settings.flux_band)
    shape = tuple(cls["n"].shape)
    chunk = int(settings.chunk or cls["n"].chunks[0])
    settings = replace(settings, max_segment_pixels=settings.max_segment_pixels or default_segment_limit(chunk))
    wcs_header = cls.attrs["wcs_header"]
    from pipeline.ingest import read_wcs

    wcs = read_wcs(mosaic)
    markers = read_markers(settings.markers, wcs=wcs, shape=shape) if settings.markers else None
    summary = DownstreamSummary(max_segment_pixels=settings.max_segment_pixels)
    paths = {"classification": run_dir / "classification.zarr", "mosaic": run_dir / "mosaic.zarr"}
    seg_path = run_dir / "segmentation.zarr"
    boxes = _chunk_boxes(shape, chunk)
    source_pixels = None
    if markers is not None:
        inside = markers["inside"]
        source_pixels = np.stack([markers["iy"][inside], markers["ix"][inside],
                                  np.flatnonzero(inside) + 1], axis=1).astype(np.int64)
    old = _open(seg_path, "r").attrs.asdict() if (seg_path / "zarr.json").exists() else {}
    if reuse_segmentation and old.get("complete") and old.get("settings") == settings.segmentation_key():
        attrs = old
        summary.reused_segmentation = True
        summary.segments = int(old.get("segments", 0))
        summary.approximate_chunks = list(old.get("approximate_chunks", []))
        summary.chunk_halos = dict(old.get("chunk_halos", {}))
        summary.oversize_segments = list(old.get("oversize_segments", []))
    else:
        attrs = _segment(client, settings, paths, seg_path, shape, chunk, boxes, source_pixels, flux_index, summary)
    seg_store = seg_path

    # 4. catalog sums per chunk, merged exactly.
    sums = merge_object_sums(_compute(client, [
        dask.delayed(_sums_block)(paths["classification"], paths["mosaic"], seg_store, b, flux_index, bands, shape[1])
        for b in boxes]))
    flux_unit = mosaic.attrs.get("bunit")
    if markers is None:
        table = _internal_catalog(sums, attrs["objects"], cls, wcs, shape, flux_unit, bands)
        summary.objects = len(table)
    else:
        table = _value_added_catalog(client, sums, markers, paths, seg_store, settings, wcs, shape, flux_index,
                                     bands, flux_unit)
        summary.objects = int((table["object_id"] > 0).sum())
    summary.catalog_rows = len(table)
    table.meta.update({"RUNID": run_id or "", "DETECT": settings.detection, "SEGTHR": settings.threshold,
                       "MINDIST": settings.min_distance,
                       "NDMAX": settings.nd_max, "FLUXBAND": settings.flux_band,
                       "MARKERS": Path(settings.markers).name if settings.markers else "",
                       "APERTURE": settings.aperture_arcsec})
    args = (table, seg_store, wcs_header, run_id, model, precision, settings, chunk, markers is not None)
    if run_dir.is_local:
        written = _write_products(run_dir.path, *args)
        relative = [str(p.relative_to(run_dir.path)) for p in written]
        summary.outputs = written
    else:  # written locally, then uploaded one object each
        with tempfile.TemporaryDirectory(prefix="morpheus-downstream-") as tmp:
            written = _write_products(Path(tmp), *args)
            relative = [p.relative_to(tmp).as_posix() for p in written]
            for path, name in zip(written, relative):
                (run_dir / name).upload(path)
        summary.outputs = [f"{run_dir}/{name}" for name in relative]
    summary.seconds = time.perf_counter() - t0
    (run_dir / "downstream.json").write_json({
        "settings": {**asdict(settings), "markers": str(settings.markers) if settings.markers else None},
        "segmentation": attrs.get("settings"), "segments": summary.segments, "objects": summary.objects,
        "split_segments": summary.split_segments, "catalog_rows": summary.catalog_rows,
        "detection": {"rule": settings.detection, "threshold": settings.threshold,
                      **{k: v for k, v in DETECTION_RULES[settings.detection].items() if k != "threshold"}},
        "approximate_chunks": summary.approximate_chunks, "chunk_halos": summary.chunk_halos,
        "seconds": round(summary.seconds, 3), "outputs": relative,
        "oversize_segments": oversize_record(summary.oversize_segments, settings.max_segment_pixels)})
    if summary.segments == 0:
        echo(_no_source_warning(cls, settings))
    for line in summary.lines():
        echo(line)
    return summary


def _no_source_warning(cls: zarr.Group, settings: DownstreamSettings) -> str:
    """Why no source was found, and what to try, for the settings' detection rule."""
    image = DETECTION_RULES[settings.detection]["sources"]
    name = "rank-vote" if image == "rank" else "mean"
    bmin = _min_background(cls, image)
    hint = "a larger --threshold finds the sources this classification sees"
    if settings.detection == "paper":
        hint = ("try --detection mixed (source markers from the mean background <= 0.3) or a larger "
                "--threshold")
    return (f"warning: no sources found: no classified pixel has {name} background <= {settings.threshold} "
            f"(--detection {settings.detection}; smallest {name} background {bmin:.4g}); {hint}")


def _min_background(cls: zarr.Group, image: str = "rank") -> float:
    """Smallest classified background value of ``image`` (``rank`` or ``mean``), chunk by chunk."""
    background = da.from_zarr(cls[image])[len(CLASSES) - 1]
    n = da.from_zarr(cls["n"])
    return float(da.where(n > 0, background, np.inf).min().compute(scheduler="threads"))


def _catalog_body(sums: pd.DataFrame, wcs, shape, bands, flux_unit, missing: np.ndarray) -> Table:
    """The measured columns, saying which classification image each comes from.

    ``p_<class>``, ``dominant_class``, ``agreement`` and ``background_min`` come from
    the rank-vote images (the released code's default output, whose background is
    exactly 0 on source cores and 1 on sky), ``p_mean_<class>`` from the mean images,
    ``sigma_<class>`` from the variance images (the spread of the mean probabilities).
    """
    body = object_catalog(sums, wcs=wcs, width=shape[1], band_names=bands, flux_unit=flux_unit, missing=missing,
                          fractions=("mean",))
    for c in CLASSES:
        body[f"p_{c}"].description = (f"flux-weighted {c} fraction of the rank-vote images (paper Eq. 16, as "
                                      "the released code), classes sum to 1")
        body[f"p_mean_{c}"].description = (f"flux-weighted {c} fraction of the mean images (Eq. 16 on the mean "
                                           "probabilities), classes sum to 1")
        body[f"sigma_{c}"].description = (f"flux-weighted mean of the per-pixel standard deviation of the {c} "
                                          "probability (variance images: describes p_mean)")
    body["background_min"].description = "minimum rank-vote background over the object's pixels"
    body["agreement"].description = "agreement of the rank-vote fractions p, 1 - H(p)/log(5) (paper Eq. 17)"
    return body


def _internal_catalog(sums: pd.DataFrame, objects: dict, cls, wcs, shape, flux_unit, bands) -> Table:
    ids = np.asarray(objects["id"], dtype=np.int64)
    parent = np.asarray(objects["parent_id"], dtype=np.int64)
    sub = np.asarray(objects["sub_id"], dtype=np.int64)
    sums = sums.reindex(ids)
    missing = sums["area"].isna().to_numpy()
    sums = sums.fillna({"area": 0}).fillna(0.0).astype({"area": np.int64, "peak_index": np.int64})
    body = _catalog_body(sums, wcs, shape, bands, flux_unit, missing)
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
    head["detection_flag"].description = ("rank-vote background at the brightest pixel: 1 =0, 2 between 0 "
                                          "and 1, 3 =1; 0: not classified")
    head["segment_flag"] = segment_flag_column(objects.get("segment_flag", np.zeros(len(ids))))
    from astropy.table import hstack

    return hstack([head, body], join_type="exact")


def _value_added_catalog(client, sums, markers, paths, seg_store, settings, wcs, shape, flux_index, bands,
                         flux_unit) -> Table:
    from astropy.wcs.utils import proj_plane_pixel_scales

    n_rows = len(markers["id"])
    seg = _open(seg_store, "r")
    cls = _open(paths["classification"], "r")
    inside = markers["inside"]
    iy, ix = markers["iy"], markers["ix"]
    owner = np.zeros(n_rows, dtype=np.int64)
    bvalue = np.zeros(n_rows)
    classified = np.zeros(n_rows, dtype=bool)
    if inside.any():
        owner[inside] = seg["deblended"].get_coordinate_selection((iy[inside], ix[inside]))
        bvalue[inside] = cls["rank"].get_coordinate_selection(
            (np.full(inside.sum(), len(CLASSES) - 1), iy[inside], ix[inside]))
        classified[inside] = cls["n"].get_coordinate_selection((iy[inside], ix[inside])) > 0
    flags = detection_flag(bvalue, classified)
    scale = float(np.mean(proj_plane_pixel_scales(wcs.celestial))) * 3600.0
    radius = settings.aperture_arcsec / scale
    full_disc = int(aperture_mask((2 * int(radius) + 3,) * 2, int(radius) + 1, int(radius) + 1, radius).sum())
    area = np.where(owner > 0, sums["area"].reindex(owner).fillna(0).to_numpy(np.int64), 0)
    use_aperture = classified & ((owner == 0) | (area < full_disc))
    # Aperture sums in groups of 64 sources, sorted so that a group's sources lie close.
    rows = np.flatnonzero(use_aperture)
    rows = rows[np.lexsort((markers["x"][rows], markers["y"][rows] // 256))]
    aperture_sums = merge_object_sums(_compute(client, [
        dask.delayed(_aperture_block)(paths["classification"], paths["mosaic"], group,
                                      np.stack([markers["x"][group], markers["y"][group]], 1),
                                      radius, flux_index, bands, shape)
        for group in (rows[s : s + 64] for s in range(0, len(rows), 64))]))
    # One row per source: its segment's sums, or its aperture's; nothing when unclassified.
    index = pd.RangeIndex(n_rows)
    combined = sums.reindex(np.where(classified, owner, 0)).set_axis(index)
    combined.loc[use_aperture] = aperture_sums.reindex(index).loc[use_aperture]
    missing = combined["area"].isna().to_numpy()
    combined = combined.fillna({"area": 0}).fillna(0.0).astype({"area": np.int64, "peak_index": np.int64})
    body = _catalog_body(combined, wcs, shape, bands, flux_unit, missing)
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
    head["detection_flag"].description = ("rank-vote background at the source: 1 =0, 2 between 0 and 1, "
                                          "3 =1; 0: not in the classified area")
    head["object_id"] = owner
    head["object_id"].description = "pixel value of the source's segment in segmap_deblended.fits (0: none)"
    head["aperture"] = use_aperture.astype(np.int16)
    head["aperture"].description = (f"1: measured in a {settings.aperture_arcsec} arcsec radius aperture "
                                    "(no segment, or a segment smaller than the aperture)")
    head["segment_flag"] = segment_flag_column(_marker_segment_flag(seg, iy, ix, inside), value_added=True)
    from astropy.table import hstack

    return hstack([head, body], join_type="exact")


def _write_products(out_root: Path, table: Table, seg_store: str, wcs_header: str, run_id, model, precision,
                    settings: DownstreamSettings, chunk: int, value_added: bool) -> list[Path]:
    from pipeline.products import provenance, write_fits_image_strips

    seg = _open(seg_store, "r")
    prov = provenance(run_id or "", model=model or "unknown", precision=precision, extra={
        "DETECT": (settings.detection, "Alg. 1 rule: paper (rank vote), mean or mixed"),
        "SEGTHR": (settings.threshold, "Alg. 1: source if background <= this"),
        "MINDIST": (settings.min_distance, "Alg. 2: min peak separation (px)"),
        "NDMAX": (settings.nd_max, "Alg. 2: max children per segment"),
        "FLUXBAND": (settings.flux_band, "band of deblending and Eq. 16 weights"),
    })
    fits_dir = out_root / "fits"
    fits_dir.mkdir(exist_ok=True)
    written = [
        write_fits_image_strips(fits_dir / "segmap.fits", seg["segments"], strip=chunk, wcs_header=wcs_header,
                                provenance=prov, extname="SEGMAP",
                                comments=["segments of Algorithm 1 (before deblending); 0 = no source"]),
        write_fits_image_strips(fits_dir / "segmap_deblended.fits", seg["deblended"], strip=chunk,
                                wcs_header=wcs_header, provenance=prov, extname="DEBLENDED",
                                comments=["objects after Algorithm 2: pixel value = catalog "
                                          + ("row number of the input markers" if value_added else "id")]),
    ]
    out_dir = out_root / "catalog"
    out_dir.mkdir(exist_ok=True)
    for suffix, fmt in CATALOG_FORMATS.items():
        if fmt == "ascii.mrt" and len(table) == 0:  # astropy's MRT writer needs a row
            (out_dir / f"catalog.{suffix}").unlink(missing_ok=True)
            logger.warning("empty catalog: no machine-readable table written")
            continue
        written.append(_write_table(table, out_dir / f"catalog.{suffix}", fmt))
    written.append(_write_png(out_root / "colour.png", seg["colour"], strip=chunk))
    return written


def _significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits (fluxes of any scale)."""
    safe = np.where(np.isfinite(values) & (values != 0), np.abs(values), 1.0)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(safe)))
    return np.round(values * scale) / scale


def _write_parquet(table: Table, path: Path) -> None:
    """Parquet with masked values as nulls (astropy would add ``<name>.mask`` columns).

    astropy writes the table with the masked columns filled, so its schema metadata
    (units, descriptions, table meta) describes plain columns; the masked entries of
    those columns are then rewritten as Parquet nulls (pandas reads NaN or None).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    masks = {name: np.ma.getmaskarray(table[name]) for name in table.colnames
             if getattr(table[name], "mask", None) is not None and np.ma.getmaskarray(table[name]).any()}
    plain = table.copy(copy_data=False)
    for name in masks:
        col = table[name]
        fill = "" if col.dtype.kind in "US" else 0
        plain.replace_column(name, Table({name: col.filled(fill)})[name])
        plain[name].unit, plain[name].description = col.unit, col.description
    plain.write(path, format="parquet", overwrite=True)
    if not masks:
        return
    arrow = pq.read_table(path)
    for name, mask in masks.items():
        i = arrow.schema.get_field_index(name)
        values = arrow.column(i).combine_chunks()
        arrow = arrow.set_column(i, arrow.schema.field(i),
                                 pa.array(values.to_numpy(zero_copy_only=False), type=values.type, mask=mask))
    pq.write_table(arrow, path)


def _write_table(table: Table, path: Path, fmt: str) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        out = table.copy()
        if fmt in ("csv", "ascii.mrt"):
            out.meta = {}
        if fmt == "ascii.mrt":  # a publication table: sensible digits, not float64 noise
            for name in out.colnames:
                col = out[name]
                if col.dtype.kind != "f":
                    continue
                mask = np.ma.getmaskarray(col).copy()
                values = np.ma.getdata(col).astype(np.float64)
                if name.startswith(("ra", "dec")):
                    values = np.round(values, 7)
                elif name.startswith(("x", "y", "p_", "sigma_", "agreement", "background")):
                    values = np.round(values, 4)
                else:
                    values = _significant(values, 6)
                col[:] = values
                if mask.any():
                    col.mask = mask
        if fmt == "parquet":
            _write_parquet(out, Path(tmp))
        else:  # FITS and MRT write masked values as blanks/nulls of their own
            out.write(tmp, format="ascii.csv" if fmt == "csv" else fmt, overwrite=True)
        os.chmod(tmp, file_mode())  # mkstemp made it 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

