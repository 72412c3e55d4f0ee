"""Stage 1 of the downstream graph: the source mask (Algorithm 1), chunk by chunk.

:func:`segment_chunks` runs :func:`morpheus_core.segmentation.segment_sources` per
chunk, on the chunk plus a halo, from the background image the detection rule names
(:data:`DETECTION_RULES`; by default the rank-vote background, as the released code),
and writes the chunk of the ``mask`` array of ``segmentation.zarr``.

Invariant: a chunk's mask equals the whole-image one. A watershed only floods
unmarked pixels from the markers touching them, so this holds when every unmarked
component reaching the chunk lies at least :data:`LOCAL_MARGIN` pixels inside the
read region; the task checks that and doubles the halo until it holds, up to
``max_halo``. A chunk that still fails is computed with ``max_halo`` and listed as
approximate (in ``downstream.json`` and in the log).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import zarr

from morpheus_core.segmentation import segment_sources, unmarked_components, watershed_markers
from morpheus_core.tiling import Box
from pipeline.downstream.context import StageContext
from pipeline.rundir.location import Location
from pipeline.settings.downstream import DETECTION_RULES
from pipeline.tasks import run_tasks

logger = logging.getLogger(__name__)

__all__ = ["LOCAL_MARGIN", "SegmentedChunks", "no_source_message", "segment_chunks"]

#: Pixels an unmarked component must stay inside a chunk's read region (Sobel + seeds).
LOCAL_MARGIN = 3


@dataclass
class SegmentedChunks:
    """What the source-mask stage reports.

    Attributes
    ----------
    chunk_halos : dict of str to int
        The halo each chunk (by :attr:`~morpheus_core.tiling.Box.name`) was read with.
    approximate_chunks : list of str
        Chunks computed with ``max_halo`` whose mask may differ from a whole-image run.
    """

    chunk_halos: dict[str, int] = field(default_factory=dict)
    approximate_chunks: list[str] = field(default_factory=list)


def segment_chunks(
    client: Any,
    context: StageContext,
    *,
    threshold: float,
    halo: int,
    max_halo: int,
    detection: str = "paper",
    source_pixels: np.ndarray | None = None,
) -> SegmentedChunks:
    """Algorithm 1 per chunk, with the checked halo; writes ``mask`` of the segmentation store.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run (``None``: the threaded scheduler).
    context : StageContext
        The classification store (read), the segmentation store (``mask`` written)
        and the chunks.
    threshold : float
        Background at or below which a pixel is a certain source.
    halo, max_halo : int
        First and largest halo (pixels).
    detection : str
        A key of :data:`DETECTION_RULES`.
    source_pixels : numpy.ndarray, optional
        ``(n, 3)`` int: pixel ``y``, ``x`` and identifier of external sources
        (value-added mode), marked as sources too.

    Returns
    -------
    SegmentedChunks
        The halo of each chunk and the approximate chunks.
    """
    pixels = np.zeros((0, 3), dtype=np.int64) if source_pixels is None else source_pixels
    tasks = []
    for box in context.boxes:  # each task gets the sources its largest read region can hold
        reach = Box(box.y0 - max_halo, box.y1 + max_halo, box.x0 - max_halo, box.x1 + max_halo)
        near = reach.contains(pixels[:, 0], pixels[:, 1])
        tasks.append(
            dask.delayed(_segment_block, pure=False)(
                context.classification, context.segmentation, box, threshold, halo, max_halo, pixels[near], detection
            )
        )
    out = SegmentedChunks()
    for name, used, exact in run_tasks(client, tasks):
        out.chunk_halos[name] = int(used)
        if not exact:
            out.approximate_chunks.append(name)
            logger.warning(
                "chunk %s: unmarked region larger than the %d px halo; segmentation may differ from a whole-image run",
                name,
                used,
            )
    return out


def _detection_images(group: zarr.Group, detection: str, read: Box) -> tuple[np.ndarray, np.ndarray | None]:
    """The background image (sky markers, Sobel) and source-marker image of a detection rule.

    Returns
    -------
    background : numpy.ndarray
        The rule's background image over ``read``.
    source_background : numpy.ndarray or None
        The image whose values ``<= threshold`` mark sources, when not ``background``.
    """
    rule = DETECTION_RULES[detection]
    sl = (group["rank"].shape[0] - 1, *read.slices)  # background: the last class
    background = group[rule["background"]][sl]
    source_background = None if rule["sources"] == rule["background"] else group[rule["sources"]][sl]
    return background, source_background


def _segment_block(
    class_store: Location,
    seg_store: Location,
    box: Box,
    threshold: float,
    halo: int,
    max_halo: int,
    sources: np.ndarray,
    detection: str = "paper",
) -> tuple[str, int, bool]:
    """Task: Algorithm 1 on one chunk (with a growing halo); writes ``mask``.

    ``sources`` are ``(n, 3)`` source pixels ``y, x, id`` near the chunk.
    """
    group = class_store.open_group(mode="r")
    height, width = group["n"].shape
    whole_image = Box(0, height, 0, width)
    while True:
        read = box.grow(halo, (height, width))
        background, source_background = _detection_images(group, detection, read)
        classified = group["n"][read.slices] > 0
        marked = None
        if len(sources):
            marked = np.zeros(classified.shape, dtype=np.uint8)
            inside = read.contains(sources[:, 0], sources[:, 1])
            marked[sources[inside, 0] - read.y0, sources[inside, 1] - read.x0] = 1
        exact = read == whole_image or _locally_exact(
            background,
            classified,
            threshold,
            marked,
            core=box.relative_to(read),
            edges=(read.y0 == 0, read.y1 == height, read.x0 == 0, read.x1 == width),
            source_background=source_background,
        )
        if exact or halo >= max_halo:
            break
        halo = min(2 * halo, max_halo)
    mask = segment_sources(
        background, classified, threshold=threshold, sources=marked, source_background=source_background
    )
    seg_store.open_group(mode="r+")["mask"][box.slices] = mask[box.relative_to(read).slices].astype(np.uint8)
    return box.name, halo, bool(exact)


def _locally_exact(
    background: np.ndarray,
    classified: np.ndarray,
    threshold: float,
    sources: np.ndarray | None,
    *,
    core: Box,
    edges: tuple[bool, bool, bool, bool],
    source_background: np.ndarray | None = None,
) -> bool:
    """Whether every unmarked component reaching the core stays inside the region.

    The markers are those :func:`~morpheus_core.segmentation.segment_sources` will use
    (same ``source_background``), so the check matches the watershed it guards.
    """
    markers = watershed_markers(
        background, classified, threshold=threshold, sources=sources, source_background=source_background
    )
    components = unmarked_components(markers, classified)
    cy0, cy1, cx0, cx1 = core
    # A component counts for the core if it or a pixel next to it lies in the core.
    reaching = np.unique(components[max(cy0 - 1, 0) : cy1 + 1, max(cx0 - 1, 0) : cx1 + 1])
    reaching = reaching[reaching > 0]
    if len(reaching) == 0:
        return True
    near_frame = np.zeros(components.shape, dtype=bool)
    m = LOCAL_MARGIN
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


def no_source_message(context: StageContext, detection: str, threshold: float) -> str:
    """Why no source was found, and what to try, for a detection rule."""
    image = DETECTION_RULES[detection]["sources"]
    name = "rank-vote" if image == "rank" else "mean"
    bmin = _min_background(context.classification.open_group(mode="r"), image)
    hint = "a larger --threshold finds the sources this classification sees"
    if detection == "paper":
        hint = "try --detection mixed (source markers from the mean background <= 0.3) or a larger --threshold"
    return (
        f"warning: no sources found: no classified pixel has {name} background <= {threshold} "
        f"(--detection {detection}; smallest {name} background {bmin:.4g}); {hint}"
    )


def _min_background(cls: zarr.Group, image: str = "rank") -> float:
    """Smallest classified background value of ``image`` (``rank`` or ``mean``), chunk by chunk."""
    background = da.from_zarr(cls[image])[-1]  # background: the last class
    n = da.from_zarr(cls["n"])
    return float(da.where(n > 0, background, np.inf).min().compute(scheduler="threads"))
