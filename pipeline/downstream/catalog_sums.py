"""The catalog's sums: per-object sums per chunk, and per aperture, merged exactly.

The chunk kernels of stage 4 (:mod:`pipeline.downstream.measure` turns the sums into
the catalog's columns): :func:`catalog_sums` sums each chunk of the deblended map
(:func:`morpheus_core.object_sums.object_sums`: Eq. 16 on the rank-vote images, the mean
images' fractions, the variance images, the bands) and merges the sums exactly (sums,
minima, arg-maxima: :func:`~morpheus_core.object_sums.merge_object_sums`);
:func:`aperture_sums` does the same in a circular aperture around each of a group of
sources (value-added mode).

Invariant: the merged sums equal those of the whole image (to floating-point
summation order).
"""

from __future__ import annotations

import math
from typing import Any

import dask
import numpy as np
import pandas as pd

from morpheus_core import CLASSES
from morpheus_core.catalog import aperture_mask
from morpheus_core.object_sums import merge_object_sums, object_sums
from morpheus_core.tiling import Box
from pipeline.downstream.context import StageContext
from pipeline.rundir.location import Location
from pipeline.tasks import run_tasks

__all__ = ["aperture_sums", "catalog_sums"]

#: Value-added sources measured per aperture task (sorted so that a group's sources lie close).
_APERTURE_GROUP = 64


def catalog_sums(client: Any, context: StageContext) -> pd.DataFrame:
    """Per-object sums of the deblended map, chunk by chunk, merged exactly.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run (``None``: the threaded scheduler).
    context : StageContext
        The classification, mosaic and segmentation stores (``deblended`` read), the
        chunks, the bands and the flux band.

    Returns
    -------
    pandas.DataFrame
        :func:`morpheus_core.object_sums.merge_object_sums` of the chunks' sums, indexed by
        object id: those of the whole image (to floating-point summation order).
    """
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


def aperture_sums(client: Any, context: StageContext, rows: np.ndarray, xy: np.ndarray, radius: float) -> pd.DataFrame:
    """Sums in a circular aperture around each source, in groups of sources, merged.

    Parameters
    ----------
    client, context
        As :func:`catalog_sums` (the deblended map is not read).
    rows : numpy.ndarray of int
        The sources' row numbers (the index of the result); sorted so that the sources
        of a group of consecutive rows lie close (each group is one read).
    xy : numpy.ndarray
        ``(len(rows), 2)``: each source's pixel ``x`` and ``y``.
    radius : float
        Aperture radius in pixels; only classified pixels count.

    Returns
    -------
    pandas.DataFrame
        The sums of each source's aperture, indexed by its row number.
    """
    return merge_object_sums(
        run_tasks(
            client,
            [
                dask.delayed(_aperture_block)(
                    context.classification,
                    context.mosaic,
                    rows[s : s + _APERTURE_GROUP],
                    xy[s : s + _APERTURE_GROUP],
                    radius,
                    context.flux_index,
                    list(context.bands),
                    context.shape,
                    context.classes,
                )
                for s in range(0, len(rows), _APERTURE_GROUP)
            ],
        )
    )


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
