"""What every stage of the downstream graph reads: one small frozen object.

:class:`StageContext` holds the three stores (classification, mosaic, segmentation),
the chunk grid, the image's shape, bands, classes and WCS, the flux band and the
recorded model card, read once from a finished run by :meth:`StageContext.from_run`
and handed to each stage's public function, whose other parameters are that stage's
own settings. The chunk kernels (the tasks) keep plain parameters: a task receives
the few values it reads, not the context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.wcs import WCS

from morpheus_core import CLASSES
from morpheus_core.cards import ModelCard
from morpheus_core.tiling import Box, chunk_boxes
from pipeline.inputs.model_cards import default_flux_band, header_cards
from pipeline.inputs.preflight import check_flux_band
from pipeline.rundir.layout import RunLayout
from pipeline.rundir.location import Location
from pipeline.rundir.verified import finished_classification

__all__ = ["StageContext"]


@dataclass(frozen=True)
class StageContext:
    """The stores, chunk grid and image description every downstream stage reads.

    Attributes
    ----------
    classification, mosaic, segmentation : Location
        ``classification.zarr`` and ``mosaic.zarr`` (read) and the segmentation store
        the stages write (while it is built, the staged copy: replace it with
        :func:`dataclasses.replace`).
    shape : tuple of int
        ``(H, W)`` of the image.
    chunk : int
        Chunk side of the downstream graph (pixels).
    bands : tuple of str
        The mosaic's bands, in its order.
    flux_index : int
        Index in ``bands`` of the band that deblends and weights Eq. 16.
    classes : tuple of str
        The classification's classes (its model card's; the released ones if unrecorded).
    wcs : astropy.wcs.WCS
        The mosaic's celestial WCS (``ra``/``dec``, markers, the aperture in pixels).
    wcs_header : str
        The same WCS as header text, as the classification records it (FITS products).
    flux_unit : str or None
        Unit of the band fluxes (the mosaic's ``flux_unit``, from the bands' ``BUNIT``).
    card : ModelCard or None
        The classification's recorded model card, parsed once; ``None`` for a run
        recorded before cards.
    """

    classification: Location
    mosaic: Location
    segmentation: Location
    shape: tuple[int, int]
    chunk: int
    bands: tuple[str, ...]
    flux_index: int
    classes: tuple[str, ...]
    wcs: WCS
    wcs_header: str
    flux_unit: str | None
    card: ModelCard | None

    @classmethod
    def from_run(cls, run_dir: Location, *, chunk: int | None = None, flux_band: str | None = None) -> StageContext:
        """Read the context of a run directory with a finished classification.

        Parameters
        ----------
        run_dir : Location
            The run directory.
        chunk : int, optional
            Chunk side (default: the classification store's).
        flux_band : str, optional
            The flux band (default: the recorded model card's reddest band,
            :func:`pipeline.inputs.model_cards.default_flux_band`).

        Returns
        -------
        StageContext
            With the segmentation store at its final place in the run directory.

        Raises
        ------
        InputError
            No finished classification, or a flux band the mosaic does not have.
        """
        from pipeline.inputs.ingest import read_wcs

        group = finished_classification(run_dir)
        layout = RunLayout(run_dir)
        mosaic = layout.mosaic.open_group(mode="r")
        bands = tuple(mosaic.attrs["bands"])
        recorded = group.attrs.get("model_card")
        card = ModelCard.from_dict(recorded) if recorded else None
        flux_band = flux_band if flux_band is not None else default_flux_band(card, list(bands))
        check_flux_band(flux_band, bands)
        return cls(
            classification=layout.classification,
            mosaic=layout.mosaic,
            segmentation=layout.segmentation,
            shape=tuple(group["n"].shape),
            chunk=int(chunk or group["n"].chunks[0]),
            bands=bands,
            flux_index=bands.index(flux_band),
            classes=tuple(group.attrs.get("classes", CLASSES)),
            wcs=read_wcs(mosaic),
            wcs_header=group.attrs["wcs_header"],
            flux_unit=mosaic.attrs.get("flux_unit"),
            card=card,
        )

    @property
    def boxes(self) -> list[Box]:
        """The chunk grid (:func:`morpheus_core.tiling.chunk_boxes`), row-major."""
        return chunk_boxes(self.shape, self.chunk)

    @property
    def width(self) -> int:
        """Image width (pixels)."""
        return self.shape[1]

    @property
    def flux_band(self) -> str:
        """The band that deblends and weights Eq. 16."""
        return self.bands[self.flux_index]

    @property
    def pixel_scale_arcsec(self) -> float:
        """Mean pixel scale of :attr:`wcs` (arcsec per pixel)."""
        from astropy.wcs.utils import proj_plane_pixel_scales

        return float(np.mean(proj_plane_pixel_scales(self.wcs.celestial))) * 3600.0

    @property
    def card_keywords(self) -> dict[str, tuple[Any, str]]:
        """FITS keywords of the model card (:func:`pipeline.inputs.model_cards.header_cards`);
        none for a run recorded before cards.
        """
        return header_cards(self.card) if self.card is not None else {}
