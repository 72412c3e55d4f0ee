"""The colour composite's sky level and stretch, from a sample of the mosaic.

:func:`lupton_settings` sets the parameters of the asinh composite
(:class:`pipeline.viewer.tiles.LuptonSettings`) once per pyramid, from the covered
pixels of up to :data:`SAMPLE_CHUNKS` of the mosaic's chunks spread over the image
(one Dask task each, every 4th pixel each way), so that the sky is black and faint
sources show whatever the bands' units.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np

from morpheus_core.tiling import Box, chunk_boxes
from pipeline.tasks import run_tasks
from pipeline.viewer.sources import Sources
from pipeline.viewer.tiles import LuptonSettings

__all__ = ["SAMPLE_CHUNKS", "lupton_settings"]

#: Mosaic chunks sampled for the colour composite's sky level and stretch.
SAMPLE_CHUNKS = 64


def lupton_settings(sources: Sources, *, client: Any = None) -> LuptonSettings:
    """The colour composite's sky level and stretch from a sample of covered pixels.

    ``minimum``: each band's median (the sky) plus its robust standard deviation
    (1.4826 x the median absolute deviation), so that most sky noise is black, not
    coloured speckle; ``stretch``: 5 x the robust standard deviation of the mean of the
    three sky-subtracted bands, so that faint sources show (their 99.5th percentile
    above the median where that deviation is 0; 1 without covered pixels).

    Parameters
    ----------
    sources : Sources
        The run's stores (the mosaic's composite bands and coverage are read).
    client : distributed.Client, optional
        Where the sampling tasks run (``None``: Dask's threaded scheduler).

    Returns
    -------
    LuptonSettings
        With the default ``Q``.
    """
    chunk = int(sources.mosaic.open_group(mode="r")["coverage"].chunks[0])
    boxes = chunk_boxes(sources.shape, chunk)
    boxes = boxes[:: max(1, len(boxes) // SAMPLE_CHUNKS)]
    samples = run_tasks(client, [dask.delayed(_sample)(sources, b) for b in boxes])
    values = np.concatenate(samples, axis=1) if samples else np.zeros((3, 0))
    if values.shape[1] == 0:
        return LuptonSettings(minimum=(0.0, 0.0, 0.0), stretch=1.0)
    sky = np.median(values, axis=1)
    band_sigma = 1.4826 * np.median(np.abs(values - sky[:, None]), axis=1)
    minimum = sky + band_sigma
    intensity = (values - sky[:, None]).mean(axis=0)
    sigma = 1.4826 * float(np.median(np.abs(intensity - np.median(intensity))))
    spread = float(np.percentile(intensity, 99.5) - np.percentile(intensity, 50))
    stretch = 5.0 * sigma if sigma > 0 else (spread if spread > 0 else 1.0)
    return LuptonSettings(minimum=tuple(float(v) for v in minimum), stretch=float(stretch))


def _sample(sources: Sources, box: Box) -> np.ndarray:
    """Task: the covered values of the composite's bands in one mosaic chunk, every 4th pixel each way."""
    ys, xs = box.slices
    mosaic = sources.mosaic.open_group(mode="r")
    cov = np.asarray(mosaic["coverage"][ys, xs], dtype=bool)[::4, ::4]
    image = np.asarray(mosaic["image"][:, ys, xs], dtype=np.float64)[list(sources.rgb)][:, ::4, ::4]
    return image[:, cov]
