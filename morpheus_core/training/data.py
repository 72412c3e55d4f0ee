"""Training objects: expert votes to per-pixel targets (section 3.1), synthetic sets.

The paper trains on Kartaltepe et al. (2015, K15) objects: per object one thumbnail
per band, a segmentation map and the number of expert votes for each class. Section
3.1 turns them into per-pixel targets ``q``:

- objects whose primary (most voted) class is ``unknown`` are removed;
- otherwise the ``unknown`` votes are redistributed proportionally to the other
  classes, i.e. ``q`` is the vote distribution over spheroid, disk, irregular and
  point source;
- pixels inside the object's segmentation map get ``q`` (background 0), pixels
  outside get the background class.

:func:`synthetic_training_set` makes objects of the same kind from the project's
simulator (:func:`morpheus_core.simulate.render_sky`): one source per thumbnail, a
SExtractor-like segmentation map from the noisy H band, and votes drawn around a
confusion matrix like the paper's Figure 14 (so labels are distributions, not one-hot).
Reading and writing them as FITS files is :mod:`pipeline.training.training_set`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

from morpheus_core.passbands import HST_BANDS, Passband, reference_band
from morpheus_core.profiles import gaussian_psf
from morpheus_core.simulate import MORPH_CLASSES, render_sky

__all__ = [
    "SYNTHETIC_CONFUSION",
    "VOTE_CLASSES",
    "SyntheticObject",
    "TrainingObject",
    "detection_segmap",
    "draw_votes",
    "pixel_targets",
    "split_train_test",
    "synthetic_training_set",
    "vote_distribution",
]

#: Vote columns of a K15-like table, in this order.
VOTE_CLASSES: tuple[str, ...] = (*MORPH_CLASSES, "unknown")

#: Vote probabilities (rows: true class; columns: ``VOTE_CLASSES``) of the synthetic
#: experts, shaped after the paper's Figure 14 (K15 confusion matrix).
SYNTHETIC_CONFUSION: dict[str, tuple[float, ...]] = {
    "spheroid": (0.62, 0.17, 0.04, 0.11, 0.06),
    "disk": (0.10, 0.74, 0.11, 0.02, 0.03),
    "irregular": (0.05, 0.19, 0.70, 0.02, 0.04),
    "point_source": (0.14, 0.01, 0.01, 0.82, 0.02),
}
_MAX_REDRAWS = 20


@dataclass(frozen=True, eq=False)
class TrainingObject:
    """One training thumbnail with its targets.

    Attributes
    ----------
    name : str
        Identifier (file stem).
    image : numpy.ndarray
        ``(H, W, bands)`` float32, bands in :data:`morpheus_core.BANDS` order.
    mask : numpy.ndarray
        ``(H, W)`` bool, True on the object's segmentation map.
    q : numpy.ndarray
        ``(n_c - 1,)`` float64 vote distribution over the morphological classes.
    """

    name: str
    image: np.ndarray
    mask: np.ndarray
    q: np.ndarray

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.mask.shape != self.image.shape[:2]:
            raise ValueError(
                f"{self.name}: image must be (H, W, bands) and mask (H, W), got "
                f"{self.image.shape} and {self.mask.shape}"
            )
        if not np.isfinite(self.image).all():
            raise ValueError(f"{self.name}: image has non-finite pixels")

    @property
    def target(self) -> np.ndarray:
        """``(H, W, n_c)`` per-pixel target distributions (:func:`pixel_targets`)."""
        return pixel_targets(self.mask, self.q)


def vote_distribution(votes: np.ndarray, *, n_columns: int = len(VOTE_CLASSES)) -> tuple[np.ndarray, np.ndarray]:
    """Per-object class distributions from expert votes, handling ``unknown`` (3.1).

    Parameters
    ----------
    votes : numpy.ndarray
        ``(n_objects, 5)`` vote counts (or fractions) in :data:`VOTE_CLASSES` order:
        spheroid, disk, irregular, point_source, unknown; for another label set, one
        column per class but background, then ``unknown``.
    n_columns : int
        Number of vote columns (the classes but background, plus ``unknown``).

    Returns
    -------
    q : numpy.ndarray
        ``(n_objects, 4)`` float64 distributions over the morphological classes: the
        known votes normalised to sum to 1, which redistributes the ``unknown``
        votes proportionally. Rows of removed objects are NaN.
    keep : numpy.ndarray
        ``(n_objects,)`` bool, False where ``unknown`` is the primary class (it has
        strictly more votes than every other class; ties keep the object) or where
        there are no known votes.

    Raises
    ------
    ValueError
        If ``votes`` is not ``(n, 5)`` or has negative or non-finite entries.
    """
    v = np.asarray(votes, dtype=np.float64)
    if v.ndim != 2 or v.shape[1] != n_columns or n_columns < 2:
        names = VOTE_CLASSES if n_columns == len(VOTE_CLASSES) else "(classes but background, unknown)"
        raise ValueError(f"votes must be (n_objects, {n_columns}) {names}, got {v.shape}")
    if not (np.isfinite(v).all() and (v >= 0).all()):
        raise ValueError("votes must be finite and >= 0")
    known = v[:, :-1]
    total = known.sum(axis=1)
    keep = (known.max(axis=1) >= v[:, -1]) & (total > 0)
    q = np.full(known.shape, np.nan)
    q[keep] = known[keep] / total[keep, None]
    return q, keep


def pixel_targets(mask: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-pixel targets: ``q`` on the segmentation map, background elsewhere.

    Parameters
    ----------
    mask : numpy.ndarray
        ``(H, W)`` bool segmentation map of the object.
    q : numpy.ndarray
        ``(n_c - 1,)`` class distribution of the object (sums to 1).

    Returns
    -------
    numpy.ndarray
        ``(H, W, n_c)`` float32; every pixel sums to 1, background is the last class.
    """
    mask = np.asarray(mask, dtype=bool)
    q = np.asarray(q, dtype=np.float64)
    if not (np.isfinite(q).all() and abs(q.sum() - 1.0) < 1e-6 and (q >= 0).all()):
        raise ValueError(f"q must be a distribution (>= 0, sums to 1), got {q.tolist()}")
    out = np.zeros(mask.shape + (q.size + 1,), np.float32)
    out[mask, :-1] = q
    out[~mask, -1] = 1.0
    return out


def split_train_test(n: int, *, test_fraction: float = 0.2, seed: int = 0) -> np.ndarray:
    """Seeded random train/test assignment (the paper used 80% / 20%).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` bool, True for test objects; ``round(test_fraction * n)`` of them.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    test = np.zeros(n, dtype=bool)
    test[np.random.default_rng(seed).permutation(n)[: round(test_fraction * n)]] = True
    return test


@dataclass(frozen=True, eq=False)
class SyntheticObject:
    """A simulated training object in the K15 format.

    Attributes
    ----------
    name : str
        Identifier.
    images : numpy.ndarray
        ``(bands, H, W)`` float32 thumbnails (electrons/s), bands in ``BANDS`` order.
    segmap : numpy.ndarray
        ``(H, W)`` int32 segmentation map: 1 on the object, 0 elsewhere.
    votes : numpy.ndarray
        ``(5,)`` int64 expert votes in :data:`VOTE_CLASSES` order.
    morph_class : str
        The class the source was simulated as.
    truth : dict
        The simulator's truth row (magnitudes, Sersic parameters, SNR).
    """

    name: str
    images: np.ndarray
    segmap: np.ndarray
    votes: np.ndarray
    morph_class: str
    truth: dict = field(default_factory=dict)

    def training_object(self) -> TrainingObject | None:
        """The :class:`TrainingObject`, or None if section 3.1 removes it."""
        q, keep = vote_distribution(self.votes[None])
        if not keep[0]:
            return None
        return TrainingObject(self.name, np.moveaxis(self.images, 0, -1).copy(), self.segmap > 0, q[0])


def detection_segmap(
    image: np.ndarray, sigma: float, fwhm_px: float, *, x: float, y: float, threshold: float = 1.5
) -> np.ndarray:
    """SExtractor-like segmentation of one source: filtered image above threshold.

    The image is filtered with a Gaussian of the PSF FWHM; pixels above ``threshold``
    times the filtered noise sigma form connected regions; the region containing (or,
    for faint sources, nearest to within 3 px) the source centre is returned, holes
    filled. If nothing is detected there, a disk of radius ``fwhm_px`` is used.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` detection image (H band).
    sigma : float
        Per-pixel white-noise sigma of ``image``.
    fwhm_px : float
        PSF FWHM in pixels (filter kernel).
    x, y : float
        Source centre (0-based pixels).
    threshold : float
        Detection threshold in filtered-noise sigmas (SExtractor's default 1.5).

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool mask.
    """
    kernel = gaussian_psf(fwhm_px)
    filtered = fftconvolve(image, kernel, mode="same")
    above = filtered > threshold * sigma * math.sqrt(float((kernel**2).sum()))
    labels, _ = ndimage.label(above)
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    dist = np.hypot(xx - x, yy - y)
    near = (labels > 0) & (dist <= 3.0)
    if near.any():
        idx = np.unravel_index(np.argmin(np.where(near, dist, np.inf)), dist.shape)
        return ndimage.binary_fill_holes(labels == labels[idx])
    return dist <= fwhm_px


def draw_votes(
    rng: np.random.Generator, morph_class: str, *, voters: tuple[int, int] = (3, 10), concentration: float = 8.0
) -> np.ndarray:
    """Draw expert votes for an object of a known true class.

    The object's vote probabilities are a Dirichlet draw around the class's row of
    :data:`SYNTHETIC_CONFUSION` (``concentration`` times the row), so agreement varies
    between objects as in the paper's Figure 13; the number of voters is uniform in
    ``voters`` (K15 had 3-60 per object).

    Returns
    -------
    numpy.ndarray
        ``(5,)`` int64 votes in :data:`VOTE_CLASSES` order.
    """
    row = np.asarray(SYNTHETIC_CONFUSION[morph_class])
    p = rng.dirichlet(concentration * row)
    return rng.multinomial(int(rng.integers(voters[0], voters[1] + 1)), p).astype(np.int64)


def synthetic_training_set(
    n_objects: int,
    *,
    seed: int = 0,
    size: int = 84,
    point_source_fraction: float = 0.15,
    mag_range: tuple[float, float] = (20.0, 24.5),
    voters: tuple[int, int] = (3, 10),
    max_segmap_fraction: float = 0.5,
    bands: tuple[Passband, ...] | None = None,
    pixel_scale: float = 0.06,
) -> list[SyntheticObject]:
    """Simulate K15-like training objects: thumbnails, segmentation maps and votes.

    Each object is one source near the centre of a ``size x size`` four-band
    thumbnail rendered by :func:`~morpheus_core.simulate.render_sky` (its galaxy mix:
    spheroid 30%, disk 45%, irregular 25%, plus ``point_source_fraction`` point
    sources), H magnitude in ``mag_range`` (K15 is complete to H = 24.5), with the
    simulator's PSFs and sky noise. The segmentation map is
    :func:`detection_segmap` on the H band; votes come from :func:`draw_votes`.

    Parameters
    ----------
    n_objects : int
        Number of objects.
    seed : int
        Seed; object ``i`` depends only on ``(seed, i)``.
    size : int
        Thumbnail side in pixels (at least 60, the augmentation crop).
    point_source_fraction : float
        Probability that an object is a point source.
    mag_range : (float, float)
        Range of total H magnitudes (AB).
    voters : (int, int)
        Inclusive range of the number of expert votes per object.
    max_segmap_fraction : float
        An object whose segmentation map covers more of the thumbnail is drawn again
        (up to 20 times), so that every thumbnail keeps some sky, as cut-outs around
        catalogued objects do; this thins out the largest bright galaxies.
    bands : tuple of Passband, optional
        The bands to simulate (default the HST H, J, V, Z; e.g.
        :data:`morpheus_core.passbands.NIRCAM_BANDS`). Magnitudes, the SNR and the
        segmentation map refer to the reference band (H, or the band nearest H).
    pixel_scale : float
        Arcseconds per pixel (0.06 for the HST set; 0.03 for a NIRCam-like one).

    Returns
    -------
    list of SyntheticObject
    """
    if n_objects < 0 or size < 60:
        raise ValueError(f"need n_objects >= 0 and size >= 60, got {n_objects} and {size}")
    bands = tuple(HST_BANDS if bands is None else bands)
    ref = reference_band(bands, None)
    k_ref = [b.name for b in bands].index(ref.name)
    fwhm_h = ref.psf_fwhm_arcsec / pixel_scale
    objects = []
    for i in range(n_objects):
        rng = np.random.default_rng([seed, i])
        star = bool(rng.random() < point_source_fraction)
        for _ in range(_MAX_REDRAWS):  # like K15 cut-outs, keep sky around the object
            sky = render_sky(
                (size, size),
                seed=int(rng.integers(2**31)),
                n_galaxies=int(not star),
                n_stars=int(star),
                mag_range=mag_range,
                margin_px=(size - 1) / 2.0 - 2.0,
                bands=bands,
                pixel_scale=pixel_scale,
            )
            row = sky.truth[0]
            mask = detection_segmap(sky.images[k_ref], float(sky.noise_sigma[k_ref]), fwhm_h, x=row["x"], y=row["y"])
            if mask.mean() <= max_segmap_fraction:
                break
        truth = {
            k: (row[k].item() if hasattr(row[k], "item") else row[k])
            for k in (
                "x",
                "y",
                "sersic_n",
                "r_eff_px",
                "axis_ratio",
                f"snr_{ref.name}",
                *(f"mag_{b.name}" for b in bands),
            )
        }
        objects.append(
            SyntheticObject(
                name=f"synth{seed:04d}_{i:06d}",
                images=sky.images,
                segmap=mask.astype(np.int32),
                votes=draw_votes(rng, str(row["morph_class"]), voters=voters),
                morph_class=str(row["morph_class"]),
                truth=truth,
            )
        )
    return objects
