"""Stage 5 of the downstream graph: the morphological colour image, chunk by chunk.

:func:`colour_chunks` writes the ``colour`` array of ``segmentation.zarr`` from the
rank-vote images (as the released code); :func:`pipeline.products.png.write_png_strips`
streams it to ``colour.png`` row by row, north up as DS9 shows the run's FITS images
(the array's last row, highest ``y``, at the top of the picture).

Invariant: every chunk equals :func:`morpheus_core.colour.colour_image` of the
whole image over that chunk (the colour of a pixel depends on that pixel only).
"""

from __future__ import annotations

from typing import Any

import dask

from morpheus_core.colour import colour_image
from morpheus_core.tiling import Box
from pipeline.downstream.context import StageContext
from pipeline.rundir.location import Location
from pipeline.tasks import run_tasks

__all__ = ["colour_chunks"]


def colour_chunks(client: Any, context: StageContext) -> None:
    """Write the colour image of the classification into ``colour`` of the segmentation store.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run (``None``: the threaded scheduler).
    context : StageContext
        The classification store (read), the segmentation store (written), the chunks
        and the classes.
    """
    run_tasks(
        client,
        [
            dask.delayed(_colour_block)(context.classification, context.segmentation, b, context.classes)
            for b in context.boxes
        ],
    )


def _colour_block(class_store: Location, seg_store: Location, box: Box, classes: tuple[str, ...]) -> None:
    """Task: one chunk of the colour image (from the rank-vote images, as the released code)."""
    cls = class_store.open_group(mode="r")
    ys, xs = box.slices
    rgb = colour_image(cls["rank"][:, ys, xs], cls["n"][ys, xs] > 0, classes=classes)
    seg_store.open_group(mode="r+")["colour"][ys, xs, :] = rgb
