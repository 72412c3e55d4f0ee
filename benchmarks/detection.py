"""Detection on synthetic skies: the paper's rule, the mean image, the mixed rule, photutils.

On the project's synthetic skies (:func:`morpheus_core.simulate.render_sky`,
several fixed seeds, no NaN or censored regions) and on pure-noise mosaics of the same
size (``n_galaxies=0, n_stars=0``), each mosaic classified once with the released
network (cached), this script compares detection rules:

- ``paper``: Algorithm 1 on the rank-vote background image, source markers where it
  is 0 (threshold 0), sky markers where it is 1, watershed of its Sobel edges; then
  Algorithm 2 (:func:`morpheus_core.deblend.deblend` on the H flux, defaults
  ``min_distance=10``, ``nd_max=20``). The released code's and the project's default;
- ``mean <= t``: markers and Sobel edges from the normalised mean background image,
  source markers where it is ``<= t`` (t = 0.1, 0.3, 0.5), sky markers where it is
  exactly 1; then Algorithm 2;
- ``mixed <= t``: sky markers and Sobel edges from the rank-vote background (``== 1``),
  source markers from the mean background ``<= t``
  (``segment_sources(rank_bg, classified, threshold=t, source_background=mean_bg)``);
  then Algorithm 2;
- ``photutils``: :func:`photutils.segmentation.detect_sources` on the H image
  convolved with a Gaussian of the H PSF FWHM (3 px,
  :data:`morpheus_core.passbands.PSF_FWHM_ARCSEC`), threshold 1.5 sigma, then
  :func:`~photutils.segmentation.deblend_sources` (32 levels, contrast 0.001). Two
  thresholds: 1.5 x the known per-pixel H noise (photutils' documented habit of a
  threshold in units of the unfiltered background rms) and 1.5 x the noise of the
  filtered image (sigma_H times the kernel's root-sum-square, a far lower cut).
  For each, ``npixels`` is the smallest value of a ladder whose false-detection rate
  on the noise mosaics is at most the ``paper`` rule's.

Measured quantities:

- a *detection* is an object of the final (deblended) map; its position is the
  flux-weighted centroid of its pixels in H (negative pixels weigh 0);
- *completeness*: greedy one-to-one matching, nearest pairs first, within 3 px; a true
  source is detected when it gets a match. Truth sources: ``in_coverage`` and at least
  20 px from every edge (windows need context). Binned by ``snr_H`` (noiseless H flux
  in a 0.25"-radius aperture over the aperture noise, paper 7.2) and by ``mag_H``;
- *purity*: the fraction of detections (centroid at least 20 px from every edge) with
  a true source within 3 px (not one-to-one), and the number without one;
- *false detections per arcmin^2*: detections (centroid at least 20 px from every edge)
  on the pure-noise mosaics over that area (0.06"/px), and the share of those pixels
  inside detected objects. The noise is white like the skies', or with
  ``--noise-fwhm F`` correlated by a Gaussian of F pixels at the same aperture depth
  (drizzled mosaics; only the noise mosaics change). photutils' false rate at the
  chosen ``npixels`` is also measured on ``--extra-noise`` unclassified noise mosaics;
- *locality* (Morpheus rules): over the classified pixels (n > 0) of the skies, the
  fraction left unmarked by the markers (the watershed floods those; the chunked
  graph's halo must contain each unmarked component that reaches a chunk) and the
  largest unmarked 4-connected component in pixels.

Classifications are cached (``--cache``, default
``~/.cache/morpheus-survey/benchmarks/detection/``) as ``.npz`` files keyed by kind,
seed, shape, stride and source counts, and checked against a digest of the rendered
image, so reruns only redo the detection part.

Usage::

    python benchmarks/detection.py [--seeds 0 1 2 3 4 5] [--noise-seeds 1000 1001 1002]
        [--size 320] [--stride 1] [--noise-fwhm 0] [--threads N] [--markdown FILE] [--quick]

On a shared 2-core CPU the nine default mosaics (711k windows) took ~20 minutes to
classify once; reruns from the cache take ~40 s. Results: docs/validation.md.

``--quick``: one 160x160 sky and one noise mosaic at stride 4 (a smoke test, a minute).

``--features edge,censored``: the features of real mosaics. ``edge``: NaN blocks in
every band (``render_sky(nan_regions=...)``, 6 per 320x320 pixels, skies and noise
mosaics), whose borders stand for the footprint edge; ``censored``: zero-censored
cores (``censored_regions``, 8 per 320x320 pixels on the skies: a disc of radius
1-2.5 px zeroed in one band at the rounded centre of a source drawn with probability
proportional to its H flux, so mostly the bright ones), with 12 point sources per
320x320 pixels instead of 4 so that stars are among them. The network then sees the
mosaic's coverage as the pipeline does (:func:`morpheus_core.windows.observed_pixels`:
finite and non-zero in every band), so a censored core leaves its pixels within 5 px
unclassified. Besides the table above (sources with ``in_coverage``), a second table
gives for bright true sources (``snr_H >= 20``) the completeness (a) farther than
``EDGE_BAND`` px from every NaN pixel, (b) within it, (c) of censored cores (centre
finite in every band but not in coverage), matched within 3 px or reached by a
detected object within ``CENSORED_REACH`` px; and the detections within ``EDGE_BAND``
px of the NaN footprint: on the noise mosaics (all false, per arcmin^2 of that band)
and on the skies without a true source within 3 px. The default run and its cache
keys are unchanged; the featured mosaics are cached under keys ending ``-nanK-censM``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

DEFAULT_CACHE = Path("~/.cache/morpheus-survey/benchmarks/detection").expanduser()
#: Truth sources and detections closer than this to an edge are not counted (pixels).
EDGE = 20
#: Match radius (pixels).
MATCH_RADIUS = 3.0
SNR_BINS = (0.0, 5.0, 10.0, 20.0, 30.0, 50.0, math.inf)
MAG_BINS = (-math.inf, 23.0, 24.0, 25.0, 26.0, math.inf)
MEAN_THRESHOLDS = (0.1, 0.3, 0.5)
#: Candidate ``npixels`` for photutils, smallest first.
NPIXELS_LADDER = (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 70, 80, 100, 150, 200)
PHOTUTILS_NSIGMA = 1.5
#: ``--features``: NaN blocks, censored cores and point sources per 320x320 pixels.
NAN_PER_320, CENSORED_PER_320, STARS_PER_320 = 6, 8, 12
#: Width of the band along the NaN footprint counted as "near the edge" (pixels).
EDGE_BAND = 30
#: "Bright" true sources: ``snr_H`` at least this.
BRIGHT_SNR = 20.0
#: A censored core counts as reached when a detected object has a pixel this close to
#: its centre: the censored disc (radius <= 2.5 px) plus the 5 px it leaves unclassified.
CENSORED_REACH = 8.0


def machine() -> str:
    """The platform, CPU model and core count."""
    from engine import machine as cpu  # benchmarks/engine.py, beside this script

    return f"{platform.platform()}; {cpu()}"


# --------------------------------------------------------------------------- skies


def render(
    kind: str,
    seed: int,
    size: int,
    n_galaxies: int | None,
    n_stars: int | None,
    noise_fwhm: float = 0.0,
    nan_regions: int = 0,
    censored_regions: int = 0,
):
    """A sky (``kind="sky"``) or a pure-noise mosaic (``"noise"``), by default no NaN or censored regions.

    ``noise_fwhm > 0`` (noise mosaics only): white variates convolved with a Gaussian of
    that FWHM (pixels), scaled to the simulator's noise in the 0.25"-radius SNR aperture
    (the same depth), as ``validation.common.NoiseModel`` does.
    """
    from morpheus_core.simulate import render_sky

    if kind == "noise":
        n_galaxies, n_stars = 0, 0
    sky = render_sky(
        (size, size),
        seed=seed,
        n_galaxies=n_galaxies,
        n_stars=n_stars,
        nan_regions=nan_regions,
        censored_regions=censored_regions,
        noise_sigma=0.0 if noise_fwhm > 0 else None,
    )
    if noise_fwhm > 0:
        images = correlated_noise((size, size), seed, noise_fwhm)
        images[:, ~np.isfinite(sky.images).all(axis=0)] = np.nan  # the same NaN blocks
        sky = SimpleNamespace(images=images, truth=sky.truth)
    return sky


def correlated_noise(shape: tuple[int, int], seed: int, fwhm: float) -> np.ndarray:
    """``(4, H, W)`` float32 Gaussian noise correlated by a Gaussian of ``fwhm`` pixels, at the default depth."""
    from scipy.signal import fftconvolve

    from morpheus_core import BANDS
    from morpheus_core.profiles import gaussian_psf
    from morpheus_core.simulate import DEFAULT_NOISE_SIGMA, SNR_APERTURE_RADIUS_ARCSEC

    rng = np.random.default_rng([seed, 12])
    kernel = gaussian_psf(fwhm)
    r = SNR_APERTURE_RADIUS_ARCSEC / 0.06
    size = 2 * math.ceil(r) + 1
    yy, xx = np.indices((size, size)) - (size - 1) / 2.0
    aperture = (np.hypot(xx, yy) <= r).astype(float)
    # Aperture sum of convolved unit variates has sigma sqrt(sum((A * K)^2)); white: sqrt(sum(A)).
    gain = math.sqrt(aperture.sum() / float((fftconvolve(aperture, kernel) ** 2).sum()))
    h, w = shape
    pad = kernel.shape[0] // 2
    out = np.empty((len(BANDS), h, w), np.float32)
    for i, band in enumerate(BANDS):
        white = rng.standard_normal((h + 2 * pad, w + 2 * pad))
        out[i] = fftconvolve(white, kernel, mode="valid") * (gain * DEFAULT_NOISE_SIGMA[band])
    return out


@dataclass
class Classified:
    """What the detection rules need of one classified mosaic."""

    rank: np.ndarray  # (5, H, W) normalised rank votes
    mean: np.ndarray  # (5, H, W) normalised mean
    n: np.ndarray  # (H, W)
    seconds: float
    windows: int
    cached: bool

    @property
    def rank_bg(self) -> np.ndarray:
        return self.rank[-1]

    @property
    def mean_bg(self) -> np.ndarray:
        return self.mean[-1]


class Classifier:
    """The released network, loaded on first use; classifications cached on disk."""

    def __init__(self, cache: Path, stride: int, batch: int, observed: bool = False) -> None:
        self.cache, self.stride, self.batch, self.observed = cache, stride, batch, observed
        self._clf = None

    def _network(self):
        if self._clf is None:
            from morpheus_core.classifier import KerasWindowClassifier
            from morpheus_core.weights import load_released_model

            self._clf = KerasWindowClassifier(load_released_model(crop=True))
        return self._clf

    def __call__(self, key: str, images: np.ndarray) -> Classified:
        digest = hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest()
        path = self.cache / f"{key}-stride{self.stride}.npz"
        if path.exists():
            with np.load(path) as z:
                if str(z["digest"]) == digest:
                    return Classified(z["rank"], z["mean"], z["n"], float(z["seconds"]), int(z["windows"]), True)
            print(f"  cache {path.name}: image changed, classifying again")
        from morpheus_core.engine import classify_image
        from morpheus_core.stats import finalize

        clf = self._network()
        t0 = time.perf_counter()
        kw = {}
        if self.observed:  # as the pipeline: NaN and exact zeros (censored) are not observed
            from morpheus_core.windows import observed_pixels

            kw["coverage"] = observed_pixels(images)
        res = finalize(
            classify_image(np.asarray(images, np.float32), clf, stride=self.stride, batch_size=self.batch, **kw)
        )
        seconds = time.perf_counter() - t0
        _, h, w = images.shape
        windows = len(range(0, h - 39, self.stride)) * len(range(0, w - 39, self.stride))
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, rank=res.rank, mean=res.mean, n=res.n, digest=digest, seconds=seconds, windows=windows)
        tmp.replace(path)
        return Classified(res.rank, res.mean, res.n, seconds, windows, False)


# --------------------------------------------------------------------------- rules


@dataclass
class Rule:
    """A detection rule: ``detect(flux, classified) -> (objects, markers or None)``."""

    name: str
    detect: object
    note: str = ""
    npixels: int | None = None


def morpheus_rule(background: str, sources: str, threshold: float):
    """Algorithm 1 (markers from ``sources`` <= threshold, sky and Sobel from ``background``) + Algorithm 2."""
    from morpheus_core.deblend import deblend
    from morpheus_core.segmentation import label_segments, segment_sources, watershed_markers

    def detect(flux: np.ndarray, cls: Classified) -> tuple[np.ndarray, np.ndarray]:
        bg = cls.rank_bg if background == "rank" else cls.mean_bg
        src = cls.rank_bg if sources == "rank" else cls.mean_bg
        classified = cls.n > 0
        kw = {"threshold": threshold, "source_background": None if src is bg else src}
        markers = watershed_markers(bg, classified, **kw)
        labels, _ = label_segments(segment_sources(bg, classified, **kw))
        return deblend(labels, flux).segmap, markers

    return detect


def photutils_rule(sigma_pix: float, fwhm_px: float, filtered_sigma: bool, npixels: int):
    """photutils: PSF-matched Gaussian filter, ``detect_sources`` at 1.5 sigma, ``deblend_sources``."""
    from astropy.convolution import convolve
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.segmentation import deblend_sources, detect_sources, make_2dgaussian_kernel
    from photutils.utils.exceptions import NoDetectionsWarning

    size = 2 * math.ceil(3 * fwhm_px) + 1
    kernel = make_2dgaussian_kernel(fwhm_px, size=size)
    sigma = sigma_pix * math.sqrt(float((kernel.array**2).sum())) if filtered_sigma else sigma_pix
    threshold = PHOTUTILS_NSIGMA * sigma

    def detect(flux: np.ndarray, cls: Classified | None = None) -> tuple[np.ndarray, None]:
        with warnings.catch_warnings():
            # NaN stays inside NaN blocks wider than the kernel; those pixels are masked below.
            warnings.simplefilter("ignore", AstropyUserWarning)
            conv = convolve(flux, kernel)  # interpolates over NaN pixels
        unobserved = ~np.isfinite(flux)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)  # a blank noise mosaic is no news
            # Positional n_pixels / npixels: the keyword was renamed in photutils 3.0.
            segm = detect_sources(conv, threshold, npixels, mask=unobserved if unobserved.any() else None)
        if segm is None:
            return np.zeros(flux.shape, np.int32), None
        segm = deblend_sources(conv, segm, npixels, progress_bar=False)
        return np.asarray(segm.data), None

    detect.threshold = threshold  # type: ignore[attr-defined]
    return detect


# --------------------------------------------------------------------------- measures


def centroids(objects: np.ndarray, flux: np.ndarray) -> np.ndarray:
    """``(N, 2)`` flux-weighted (x, y) centroid in H of every object (negative flux weighs 0)."""
    ids = np.unique(objects[objects > 0])
    if len(ids) == 0:
        return np.zeros((0, 2))
    w = np.clip(np.nan_to_num(flux), 0.0, None)
    yy, xx = np.indices(objects.shape)
    sw = ndi.sum(w, objects, ids)
    sx, sy = ndi.sum(w * xx, objects, ids), ndi.sum(w * yy, objects, ids)
    gx, gy = ndi.mean(xx, objects, ids), ndi.mean(yy, objects, ids)  # no positive flux: geometric centre
    ok = sw > 0
    return np.column_stack([np.where(ok, sx / np.where(ok, sw, 1), gx), np.where(ok, sy / np.where(ok, sw, 1), gy)])


def inside(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Positions at least ``EDGE`` pixels from every edge."""
    h, w = shape
    return (xy[:, 0] >= EDGE) & (xy[:, 0] <= w - 1 - EDGE) & (xy[:, 1] >= EDGE) & (xy[:, 1] <= h - 1 - EDGE)


def greedy_match(truth: np.ndarray, det: np.ndarray, radius: float) -> np.ndarray:
    """One-to-one matching, nearest pairs first: bool per truth source, True when matched."""
    matched = np.zeros(len(truth), bool)
    if len(truth) == 0 or len(det) == 0:
        return matched
    pairs = cKDTree(truth).sparse_distance_matrix(cKDTree(det), radius, output_type="ndarray")
    used = np.zeros(len(det), bool)
    for i, j, _ in sorted(pairs.tolist(), key=lambda p: p[2]):
        i, j = int(i), int(j)
        if not matched[i] and not used[j]:
            matched[i] = used[j] = True
    return matched


@dataclass
class FeatureTally:
    """``--features`` figures of one rule: bools per bright true source, counts of detections."""

    far: list = field(default_factory=list)
    near: list = field(default_factory=list)
    censored: list = field(default_factory=list)
    censored_reached: list = field(default_factory=list)
    censored_star: list = field(default_factory=list)
    sky_edge_detections: int = 0
    sky_edge_spurious: int = 0
    noise_edge_detections: int = 0
    noise_edge_area_arcmin2: float = 0.0


@dataclass
class Tally:
    """Accumulated figures of one rule over all mosaics."""

    snr: list = field(default_factory=list)
    mag: list = field(default_factory=list)
    found: list = field(default_factory=list)
    detections: int = 0
    spurious: int = 0
    noise_detections: int = 0
    noise_area_arcmin2: float = 0.0
    noise_pixels: int = 0
    noise_source_pixels: int = 0
    classified: int = 0
    unmarked: int = 0
    largest_unmarked: int = 0
    seconds: float = 0.0
    features: FeatureTally | None = None

    @property
    def false_rate(self) -> float:
        return self.noise_detections / self.noise_area_arcmin2 if self.noise_area_arcmin2 else math.nan


def score_sky(
    tally: Tally, objects: np.ndarray, markers: np.ndarray | None, flux: np.ndarray, truth, classified: np.ndarray
) -> None:
    """Add one sky's completeness, purity and locality to ``tally``."""
    from morpheus_core.segmentation import unmarked_components

    xy_true = np.column_stack([np.asarray(truth["x"]), np.asarray(truth["y"])])
    keep = np.asarray(truth["in_coverage"], bool) & inside(xy_true, flux.shape)
    xy_true = xy_true[keep]
    det = centroids(objects, flux)
    tally.found += greedy_match(xy_true, det, MATCH_RADIUS).tolist()
    tally.snr += np.asarray(truth["snr_H"])[keep].tolist()
    tally.mag += np.asarray(truth["mag_H"])[keep].tolist()
    det_in = det[inside(det, flux.shape)]
    tally.detections += len(det_in)
    if len(det_in):
        all_true = np.column_stack([np.asarray(truth["x"]), np.asarray(truth["y"])])
        near = (
            cKDTree(all_true).query(det_in, distance_upper_bound=MATCH_RADIUS)[0]
            if len(all_true)
            else np.full(len(det_in), np.inf)
        )
        tally.spurious += int(np.sum(~np.isfinite(near)))
    if markers is not None:
        comps = unmarked_components(markers, classified)
        tally.classified += int(classified.sum())
        tally.unmarked += int((comps > 0).sum())
        if comps.max() > 0:
            tally.largest_unmarked = max(tally.largest_unmarked, int(np.bincount(comps.ravel())[1:].max()))


def score_noise(tally: Tally, objects: np.ndarray, flux: np.ndarray, pixel_scale: float) -> None:
    """Add one noise mosaic's false detections to ``tally``."""
    h, w = flux.shape
    det = centroids(objects, flux)
    tally.noise_detections += int(inside(det, flux.shape).sum())
    tally.noise_area_arcmin2 += (h - 2 * EDGE) * (w - 2 * EDGE) * (pixel_scale / 60.0) ** 2
    region = objects[EDGE : h - EDGE, EDGE : w - EDGE]
    tally.noise_pixels += region.size
    tally.noise_source_pixels += int((region > 0).sum())


def edge_distance(finite: np.ndarray) -> np.ndarray:
    """Distance (pixels) of every pixel to the nearest non-finite one: 0 on those, inf when there are none."""
    if finite.all():
        return np.full(finite.shape, np.inf)
    return ndi.distance_transform_edt(finite)


def at(values: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``values`` at the pixels nearest to the ``(N, 2)`` positions ``xy``."""
    h, w = values.shape
    ix = np.clip(np.round(xy[:, 0]).astype(int), 0, w - 1)
    iy = np.clip(np.round(xy[:, 1]).astype(int), 0, h - 1)
    return values[iy, ix]


def score_features_sky(ft: FeatureTally, objects: np.ndarray, flux: np.ndarray, images: np.ndarray, truth) -> None:
    """Add one sky's completeness near and far from the NaN edge and on censored cores to ``ft``."""
    finite = np.isfinite(images).all(axis=0)
    dist = edge_distance(finite)
    xy = np.column_stack([np.asarray(truth["x"]), np.asarray(truth["y"])])
    covered = np.asarray(truth["in_coverage"], bool)
    censored = ~covered & at(finite, xy)  # centre finite in every band, yet not covered: zeroed
    counted = (covered | censored) & inside(xy, flux.shape)
    det = centroids(objects, flux)
    found = np.zeros(len(xy), bool)
    found[counted] = greedy_match(xy[counted], det, MATCH_RADIUS)
    bright = counted & (np.asarray(truth["snr_H"]) >= BRIGHT_SNR)
    d = at(dist, xy)
    ft.far += found[bright & covered & (d > EDGE_BAND)].tolist()
    ft.near += found[bright & covered & (d <= EDGE_BAND)].tolist()
    cens = bright & censored
    if (objects > 0).any():
        reached = at(ndi.distance_transform_edt(objects == 0), xy) <= CENSORED_REACH
    else:
        reached = np.zeros(len(xy), bool)
    ft.censored += found[cens].tolist()
    ft.censored_reached += reached[cens].tolist()
    ft.censored_star += (np.asarray(truth["morph_class"]) == "point_source")[cens].tolist()
    det = det[inside(det, flux.shape)]
    det = det[at(dist, det) <= EDGE_BAND] if len(det) else det
    ft.sky_edge_detections += len(det)
    if len(det):
        ft.sky_edge_spurious += int(np.sum(~np.isfinite(cKDTree(xy).query(det, distance_upper_bound=MATCH_RADIUS)[0])))


def score_features_noise(ft: FeatureTally, objects: np.ndarray, flux: np.ndarray, pixel_scale: float) -> None:
    """Add one noise mosaic's detections within ``EDGE_BAND`` px of its NaN pixels to ``ft``."""
    h, w = flux.shape
    finite = np.isfinite(flux)
    dist = edge_distance(finite)
    det = centroids(objects, flux)
    det = det[inside(det, flux.shape)]
    ft.noise_edge_detections += int((at(dist, det) <= EDGE_BAND).sum()) if len(det) else 0
    band = (dist <= EDGE_BAND) & finite
    ft.noise_edge_area_arcmin2 += int(band[EDGE : h - EDGE, EDGE : w - EDGE].sum()) * (pixel_scale / 60.0) ** 2


def features_table(rules: list[Rule], tallies: dict[str, Tally]) -> tuple[list[str], list[list[str]]]:
    """The ``--features`` table: one row per rule."""

    def share(found: list) -> str:
        return f"{100 * np.mean(found):.0f}% ({int(np.sum(found))}/{len(found)})" if found else "-"

    header = [
        "rule",
        f"bright, > {EDGE_BAND} px from NaN",
        f"bright, <= {EDGE_BAND} px from NaN",
        f"censored core, match < {MATCH_RADIUS:g} px",
        f"censored core, object within {CENSORED_REACH:g} px",
        "censored stars: match / object",
        f"sky detections <= {EDGE_BAND} px from NaN",
        f"of which no true source < {MATCH_RADIUS:g} px",
        f"noise: false <= {EDGE_BAND} px from NaN /arcmin^2",
    ]
    rows = []
    for rule in rules:
        ft = tallies[rule.name].features
        star = np.asarray(ft.censored_star, bool)
        stars = (
            f"{int(np.asarray(ft.censored, bool)[star].sum())} / "
            f"{int(np.asarray(ft.censored_reached, bool)[star].sum())} of {int(star.sum())}"
        )
        rate = ft.noise_edge_detections / ft.noise_edge_area_arcmin2 if ft.noise_edge_area_arcmin2 else math.nan
        rows.append(
            [
                rule.name,
                share(ft.far),
                share(ft.near),
                share(ft.censored),
                share(ft.censored_reached),
                stars,
                str(ft.sky_edge_detections),
                str(ft.sky_edge_spurious),
                f"{rate:.1f} ({ft.noise_edge_detections})",
            ]
        )
    return header, rows


# --------------------------------------------------------------------------- table


def bin_labels(edges: tuple[float, ...], unit: str) -> list[str]:
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        if lo in (0.0, -math.inf):
            out.append(f"{unit} <{hi:g}")
        elif hi == math.inf:
            out.append(f"{unit} >{lo:g}")
        else:
            out.append(f"{unit} {lo:g}-{hi:g}")
    return out


def completeness(values: list, found: list, edges: tuple[float, ...]) -> list[str]:
    v, f = np.asarray(values), np.asarray(found, bool)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (v >= lo) & (v < hi)
        out.append(f"{100 * f[sel].mean():.0f}%" if sel.any() else "-")
    return out


def table(rules: list[Rule], tallies: dict[str, Tally]) -> tuple[list[str], list[list[str]]]:
    header = (
        ["rule"]
        + bin_labels(SNR_BINS, "SNR")
        + bin_labels(MAG_BINS, "H")
        + [
            "all",
            "detections",
            "purity",
            "no true source <3 px",
            "false /arcmin^2",
            "noise px in objects",
            "unmarked",
            "largest unmarked (px)",
        ]
    )
    first = next(iter(tallies.values()))
    snr, mag = np.asarray(first.snr), np.asarray(first.mag)
    counts = [str(int(((snr >= lo) & (snr < hi)).sum())) for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:])] + [
        str(int(((mag >= lo) & (mag < hi)).sum())) for lo, hi in zip(MAG_BINS[:-1], MAG_BINS[1:])
    ]
    rows = [["true sources"] + counts + [str(len(snr))] + [""] * 7]
    for rule in rules:
        t = tallies[rule.name]
        loc = [f"{100 * t.unmarked / t.classified:.1f}%", str(t.largest_unmarked)] if t.classified else ["-", "-"]
        purity = f"{100 * (t.detections - t.spurious) / t.detections:.1f}%" if t.detections else "-"
        rows.append(
            [rule.name]
            + completeness(t.snr, t.found, SNR_BINS)
            + completeness(t.mag, t.found, MAG_BINS)
            + [
                f"{100 * np.mean(t.found):.1f}%",
                str(t.detections),
                purity,
                str(t.spurious),
                f"{t.false_rate:.1f} ({t.noise_detections})",
                f"{100 * t.noise_source_pixels / max(t.noise_pixels, 1):.2f}%",
            ]
            + loc
        )
    return header, rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    for r in [header] + rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5], help="sky seeds")
    parser.add_argument(
        "--noise-seeds", type=int, nargs="+", default=[1000, 1001, 1002], help="pure-noise mosaic seeds"
    )
    parser.add_argument("--size", type=int, default=320, help="mosaic side (pixels)")
    parser.add_argument("--stride", type=int, default=1, help="window stride (1 as the paper)")
    parser.add_argument("--n-galaxies", type=int, help="galaxies per sky (default: render_sky's density)")
    parser.add_argument("--n-stars", type=int, help="point sources per sky (default: render_sky's density)")
    parser.add_argument(
        "--extra-noise",
        type=int,
        default=20,
        help="unclassified noise mosaics (seeds 2000, 2001, ...) on which photutils' false "
        "rate is also measured at the chosen npixels (default 20; it costs no network time)",
    )
    parser.add_argument(
        "--noise-fwhm",
        type=float,
        default=0.0,
        help="correlate the noise mosaics' noise by a Gaussian of this FWHM in pixels, at the "
        "same aperture depth (default 0: white, as the simulator's skies)",
    )
    parser.add_argument("--threads", type=int, help="TensorFlow / BLAS threads")
    parser.add_argument("--batch", type=int, default=512, help="windows per network call")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help=f"classification cache (default {DEFAULT_CACHE})"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown to FILE")
    parser.add_argument("--classify-only", action="store_true", help="fill the cache and stop")
    parser.add_argument("--quick", action="store_true", help="one 160x160 sky and noise mosaic at stride 4")
    parser.add_argument(
        "--features",
        default="",
        help="comma-separated features of real mosaics: edge (NaN blocks), censored (zeroed cores); "
        "adds a table of completeness near them (default: none, the skies above)",
    )
    args = parser.parse_args()
    features = {f for f in args.features.split(",") if f}
    if features - {"edge", "censored"}:
        parser.error(f"--features takes edge and/or censored, got {args.features!r}")
    if args.quick:
        args.seeds, args.noise_seeds, args.size, args.stride = args.seeds[:1], args.noise_seeds[:1], 160, 4
    if args.size < 2 * EDGE + 40:
        parser.error(f"--size must be at least {2 * EDGE + 40}, got {args.size}")
    per_320 = args.size**2 / 320**2
    nan_regions = max(1, round(NAN_PER_320 * per_320)) if "edge" in features else 0
    censored_regions = max(1, round(CENSORED_PER_320 * per_320)) if "censored" in features else 0
    if censored_regions and args.n_stars is None:
        args.n_stars = max(1, round(STARS_PER_320 * per_320))

    from morpheus_core.runtime import configure_threads

    configure_threads(args.threads)
    from morpheus_core.passbands import PSF_FWHM_ARCSEC
    from morpheus_core.simulate import DEFAULT_NOISE_SIGMA

    started = time.perf_counter()
    load0 = os.getloadavg()
    print(f"machine: {machine()}")
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    print(
        f"settings: skies seeds {args.seeds}, noise seeds {args.noise_seeds}, {args.size}x{args.size} px "
        f'(0.06"/px), stride {args.stride}, n_galaxies {args.n_galaxies or "default"}, '
        f"n_stars {args.n_stars or 'default'}; noise mosaics "
        f"{f'correlated, FWHM {args.noise_fwhm:g} px' if args.noise_fwhm > 0 else 'white'}"
        + (f"; NaN blocks {nan_regions}, censored cores {censored_regions} per mosaic" if features else "")
    )
    classify = Classifier(args.cache, args.stride, args.batch, observed=bool(features))
    mosaics = {}
    for kind, seeds in (("sky", args.seeds), ("noise", args.noise_seeds)):
        for seed in seeds:
            fwhm = args.noise_fwhm if kind == "noise" else 0.0
            cens = censored_regions if kind == "sky" else 0  # censored cores sit on sources
            sky = render(kind, seed, args.size, args.n_galaxies, args.n_stars, fwhm, nan_regions, cens)
            key = f"{kind}-seed{seed}-{args.size}x{args.size}" + (f"-fwhm{fwhm:g}" if fwhm > 0 else "")
            if kind == "sky" and (args.n_galaxies is not None or args.n_stars is not None):
                key += f"-g{args.n_galaxies}-s{args.n_stars}"
            if features:
                key += f"-nan{nan_regions}-cens{cens}"
            cls = classify(key, sky.images)
            print(
                f"  {key}: {len(sky.truth)} sources, {cls.windows} windows, "
                f"{'cached, ' if cls.cached else ''}classified in {cls.seconds:.0f} s "
                f"({cls.windows / max(cls.seconds, 1e-9):.0f} windows/s)"
            )
            mosaics[(kind, seed)] = (sky, cls)
    if args.classify_only:
        return

    pixel_scale = 0.06
    sigma_h = DEFAULT_NOISE_SIGMA["H"]
    fwhm_h = PSF_FWHM_ARCSEC["H"] / pixel_scale
    rules = [Rule("paper: rank = 0 (a)", morpheus_rule("rank", "rank", 0.0))]
    rules += [Rule(f"mean <= {t} (b)", morpheus_rule("mean", "mean", t)) for t in MEAN_THRESHOLDS]
    rules += [Rule(f"mixed: mean <= {t} (c)", morpheus_rule("rank", "mean", t)) for t in MEAN_THRESHOLDS]

    def run(rule: Rule) -> Tally:
        tally = Tally(features=FeatureTally() if features else None)
        t0 = time.perf_counter()
        for (kind, _), (sky, cls) in mosaics.items():
            flux = sky.images[0].astype(np.float64)
            objects, markers = rule.detect(flux, cls)
            if kind == "sky":
                score_sky(tally, objects, markers, flux, sky.truth, cls.n > 0)
                if features:
                    score_features_sky(tally.features, objects, flux, sky.images, sky.truth)
            else:
                score_noise(tally, objects, flux, pixel_scale)
                if features:
                    score_features_noise(tally.features, objects, flux, pixel_scale)
        tally.seconds = time.perf_counter() - t0
        return tally

    tallies = {rule.name: run(rule) for rule in rules}
    target = tallies[rules[0].name].false_rate
    # photutils: for each threshold, the smallest npixels whose false rate <= the paper rule's.
    extra = [
        render("noise", 2000 + i, args.size, None, None, args.noise_fwhm, nan_regions).images[0].astype(np.float64)
        for i in range(args.extra_noise)
    ]
    for filtered, label in ((False, "1.5 sigma_pix"), (True, "1.5 sigma_filtered")):
        chosen, trace = None, []
        for npix in NPIXELS_LADDER:
            rule = Rule(f"photutils {label}", photutils_rule(sigma_h, fwhm_h, filtered, npix), npixels=npix)
            tally = run(rule)
            chosen = (rule, tally)
            trace.append(f"{npix}: {tally.false_rate:.1f}")
            if tally.false_rate <= target:
                break
        rule, tally = chosen
        reached = tally.false_rate <= target
        rule.name = f"photutils {label}, npixels {rule.npixels} (d)"
        rule.note = (
            f"threshold {rule.detect.threshold:.3g} e-/s on the filtered H image (sigma_H = "
            f"{sigma_h:.3g} e-/s per pixel); false rate per npixels on the classified noise mosaics "
            f"{{{', '.join(trace)}}}" + ("" if reached else f" (the ladder ends above the target {target:.1f})")
        )
        if extra:
            more = Tally()
            for flux in extra:
                score_noise(more, rule.detect(flux)[0], flux, pixel_scale)
            rule.note += (
                f"; on {len(extra)} more noise mosaics: {more.false_rate:.1f} /arcmin^2 "
                f"({more.noise_detections} in {more.noise_area_arcmin2:.2f} arcmin^2)"
            )
        rules.append(rule)
        tallies[rule.name] = tally

    header, rows = table(rules, tallies)
    load1 = os.getloadavg()
    print(f"load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    kind_noise = f"correlated noise, FWHM {args.noise_fwhm:g} px" if args.noise_fwhm > 0 else "white noise"
    paper = tallies[rules[0].name]
    settings = (
        f"skies: seeds {args.seeds} ({len(paper.found)} true sources counted); noise mosaics "
        f"({kind_noise}): seeds {args.noise_seeds} ({paper.noise_area_arcmin2:.3f} arcmin^2 counted); "
        f'{args.size}x{args.size} px at 0.06"/px, stride {args.stride}'
        + (
            f"; features {', '.join(sorted(features))}: {nan_regions} NaN blocks per mosaic, "
            f"{censored_regions} censored cores and {args.n_stars} point sources per sky, "
            "classified on the observed pixels (finite and non-zero in every band)"
            if features
            else ""
        )
    )
    legend = (
        f"Completeness: greedy one-to-one match, nearest first, within {MATCH_RADIUS:g} px of a "
        f"detection's flux-weighted H centroid; true sources and detections >= {EDGE} px from the "
        f"edges. Purity: detections with a true source within {MATCH_RADIUS:g} px. False rate: "
        f"detections on the noise mosaics per arcmin^2 (count in brackets), and the share of their "
        f"pixels inside detected objects; photutils' npixels is the smallest whose false rate is <= "
        f"the paper rule's ({target:.1f} /arcmin^2). Unmarked: classified sky pixels without a marker; "
        f"largest unmarked: its largest 4-connected component."
    )
    notes = [f"{r.name}: {r.note}" for r in rules if r.note]
    print(settings)
    print(legend)
    for note in notes:
        print(f"  {note}")
    print_table(header, rows)
    if features:
        f_header, f_rows = features_table(rules, tallies)
        f_legend = (
            f"Features of real mosaics ({', '.join(sorted(features))}): completeness of bright true sources "
            f"(snr_H >= {BRIGHT_SNR:g}, >= {EDGE} px from the image edges) whose centre is farther than / within "
            f"{EDGE_BAND} px of a NaN pixel (in coverage), and of those whose core is censored (zeroed in one "
            f"band; the network leaves 5 px around it unclassified): matched within {MATCH_RADIUS:g} px "
            f"(the same one-to-one match), or reached by a detected object within {CENSORED_REACH:g} px of "
            f"the centre. Detections (>= {EDGE} px from the image edges) within {EDGE_BAND} px of a NaN pixel: "
            f"on the skies, and those with no true source within {MATCH_RADIUS:g} px; on the noise mosaics "
            f"(all false), per arcmin^2 of finite pixels within {EDGE_BAND} px of NaN (count in brackets)."
        )
        print(f_legend)
        print_table(f_header, f_rows)
    classify_s = sum(cls.seconds for _, cls in mosaics.values())
    windows = sum(cls.windows for _, cls in mosaics.values())
    print(
        f"classification {classify_s:.0f} s for {windows} windows (cached runs included at their first "
        f"time); detection {sum(t.seconds for t in tallies.values()):.0f} s; "
        f"wall {time.perf_counter() - started:.0f} s"
    )
    if args.markdown:
        text = (
            f"Machine: {machine()}. Settings: {settings}.\n\n{legend}\n\n"
            + markdown(header, rows)
            + "".join(f"\n- {note}" for note in notes)
            + "\n"
        )
        if features:
            text += f"\n{f_legend}\n\n" + markdown(f_header, f_rows)
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)
        print(f"-> {args.markdown}")


if __name__ == "__main__":
    main()
