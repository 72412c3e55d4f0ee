"""Settings of segmentation, deblending and the catalog (the downstream graph): the
options of ``run``, ``segment``, ``catalog`` and ``resubmit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from morpheus_core.deblend import DEFAULT_MIN_DISTANCE, DEFAULT_ND_MAX
from morpheus_core.segmentation import check_threshold
from pipeline.errors import InputError
from pipeline.rundir.layout import RunLayout
from pipeline.settings.fields import setting

__all__ = ["APERTURE_ARCSEC", "BACKGROUND_CHOICES", "DETECTION_RULES", "DownstreamSettings"]

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

#: Background subtraction of the photometry (``DownstreamSettings.background``).
BACKGROUND_CHOICES = ("sky", "none")

#: Paper section 8: aperture radius for undetected sources and small segments.
APERTURE_ARCSEC = 0.36


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
    flux_band : str, optional
        Band whose flux deblends and weights (Eq. 16); by default the model card's
        reddest band (F160W, ``H``, for the released model).
    markers : str, optional
        External catalog (CSV or FITS table with RA/Dec) for value-added mode.
    aperture_arcsec : float
        Aperture radius for value-added sources without a large enough segment.
    catalog_name : str, optional
        Value-added mode: the name of the catalog's files (default ``value_added``;
        :meth:`pipeline.rundir.layout.RunLayout.catalog_name`), beside the internal catalog.
    halo, max_halo : int
        First and largest halo (pixels) read around a chunk for the segmentation.
    chunk : int, optional
        Chunk size of the downstream graph (default: the classification store's).
    max_segment_pixels : int, optional
        Largest segment bounding box (pixels) one deblending task reads; larger
        segments are not deblended and are flagged (default ``9 * chunk**2``, see
        :mod:`pipeline.downstream.large_segments`).
    background : str, optional
        Photometry: ``sky`` subtracts each chunk's sky level (sigma-clipped median of
        the rank-vote background = 1 pixels), ``none`` nothing; default: ``none`` for a
        mosaic whose TOML says ``sky_subtracted = true``, else ``sky``.
    """

    threshold: float | None = setting(
        None,
        help="background <= this marks a source (Algorithm 1; default: the mosaic's if its TOML sets one, "
        "else 0 for --detection paper, 0.3 for mean and mixed)",
    )
    min_distance: int = setting(DEFAULT_MIN_DISTANCE, help="deblending: min peak separation, pixels")
    nd_max: int = setting(DEFAULT_ND_MAX, help="deblending: max children per segment")
    flux_band: str | None = setting(
        None,
        help="band that deblends and weights Eq. 16 (default: the model's "
        "reddest band, as the paper's F160W = H for the released model)",
    )
    markers: str | None = setting(
        None, metavar="TABLE", help="value-added mode: CSV or FITS table of sources (RA/Dec) that seed Algorithms 1-2"
    )
    aperture_arcsec: float = setting(
        APERTURE_ARCSEC,
        flag="--aperture-radius",
        metavar="ARCSEC",
        help="value-added mode: aperture radius in arcsec for small or undetected sources",
    )
    catalog_name: str | None = setting(
        None,
        metavar="NAME",
        help="value-added mode: name of the catalog's files, catalog/NAME.{parquet,csv,fits,"
        "mrt,reg}, written beside the internal catalog/catalog.*; value_added if not given",
    )
    halo: int = 64
    max_halo: int = 512
    chunk: int | None = None
    detection: str = setting(
        "paper",
        choices=tuple(DETECTION_RULES),
        help="Algorithm 1 rule: paper = markers and edges on the rank-vote background (as the released code); "
        "mean = on the mean background; mixed = rank-vote sky markers and edges, source markers from the "
        "mean background",
    )
    max_segment_pixels: int | None = setting(
        None,
        help="deblending: segments with a larger bounding box are kept whole and flagged (default: 9 chunks of area)",
    )
    background: str | None = setting(
        None,
        choices=BACKGROUND_CHOICES,
        help="photometry: sky = subtract each chunk's sky level (sigma-clipped, rank-vote background = 1 "
        "pixels); none = the mosaic is sky-subtracted (default: none when its TOML says "
        "sky_subtracted = true, else sky)",
    )

    def __post_init__(self) -> None:
        if self.detection not in DETECTION_RULES:
            raise InputError(f"--detection must be one of {', '.join(DETECTION_RULES)}, got {self.detection!r}")
        if self.background is not None and self.background not in BACKGROUND_CHOICES:
            raise InputError(f"--background must be one of {', '.join(BACKGROUND_CHOICES)}, got {self.background!r}")
        if self.threshold is None:
            object.__setattr__(self, "threshold", DETECTION_RULES[self.detection]["threshold"])
        try:
            object.__setattr__(self, "threshold", check_threshold(self.threshold))
        except (TypeError, ValueError) as exc:
            raise InputError(f"--threshold: {exc}") from None
        import math
        import operator
        import os

        for name in ("min_distance", "nd_max", "halo", "max_halo", "chunk", "max_segment_pixels"):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                if isinstance(value, bool):
                    raise TypeError
                value = operator.index(value)
            except TypeError:
                raise InputError(f"--{name.replace('_', '-')} must be a whole number, got {value!r}") from None
            if value < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
            object.__setattr__(self, name, value)
        aperture = self.aperture_arcsec
        if (
            isinstance(aperture, bool)
            or not isinstance(aperture, (int, float))
            or not math.isfinite(aperture)
            or aperture <= 0
        ):
            raise InputError(f"--aperture-radius must be a finite number of arcsec > 0, got {aperture!r}")
        if self.catalog_name and not self.markers:
            raise InputError(f"--catalog-name {self.catalog_name} names a value-added catalog: give --markers too")
        try:
            RunLayout.catalog_name(bool(self.markers), self.catalog_name)
        except ValueError as exc:
            raise InputError(f"--catalog-name {exc}") from None
        if self.markers and "://" not in str(self.markers):  # recorded absolute, as the run's paths
            object.__setattr__(self, "markers", os.path.abspath(os.path.expanduser(str(self.markers))))

    def segmentation_key(self) -> dict[str, Any]:
        """Settings the segmentation maps depend on."""
        marker_file = None
        if self.markers:
            from pipeline.rundir.checksums import file_fingerprint

            marker_file = file_fingerprint(self.markers)
        return {
            "detection": self.detection,
            "threshold": self.threshold,
            "min_distance": self.min_distance,
            "nd_max": self.nd_max,
            "flux_band": self.flux_band,
            "markers": marker_file,
            "max_segment_pixels": self.max_segment_pixels,
        }
