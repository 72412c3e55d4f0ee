"""Shared pieces of the section 7 validation scripts: noise, SNR, classification, output.

Simulated images follow the paper's sections 7.2-7.3 with the project's simulator
(:mod:`morpheus_core.simulate`) conventions: 0.06" pixels, electrons/s, the HLF AB zero
points, Gaussian PSFs of each band's FWHM instead of Tiny Tim.

Noise: per band, Gaussian variates, white or convolved with a kernel (the paper's
section 7.2 convolved them with the PSF), scaled so that the sum over a 0.5" diameter
aperture has the standard deviation ``sigma_ap`` of the band's 5-sigma depth
(:data:`morpheus_core.passbands.DEPTH_5SIGMA_AB`: ``sigma_ap = F(depth) / 5``). The
scripts default to white noise, the simulator's: the released network takes noise
correlated on the scale of the H PSF for a field of faint sources (measured by
``validation.false_positives``, see ``docs/validation.md``), which the paper's test
images evidently were not.

SNR of a source in a band: its noiseless flux in that aperture, centred on the source,
divided by ``sigma_ap`` (the paper's "local flux measured in a 0.5'' aperture").
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from scipy.signal import fftconvolve

from morpheus_core import BANDS, CLASSES, catalog, object_sums
from morpheus_core.passbands import DEPTH_5SIGMA_AB, PSF_FWHM_ARCSEC, ZERO_POINTS_AB
from morpheus_core.profiles import gaussian_psf, point_source_image
from morpheus_core.simulate import SNR_APERTURE_RADIUS_ARCSEC

PIXEL_SCALE = 0.06
#: Radius of the SNR aperture in pixels (0.25" = 4.17 px).
APERTURE_RADIUS_PX = SNR_APERTURE_RADIUS_ARCSEC / PIXEL_SCALE
#: Where the results go by default (``runs/`` is not versioned).
DEFAULT_OUT = Path("runs/validation")


def fwhm_px(band: str) -> float:
    """PSF FWHM of a band in pixels."""
    return PSF_FWHM_ARCSEC[band] / PIXEL_SCALE


def aperture_mask(shape: Sequence[int], x: float, y: float, radius: float = APERTURE_RADIUS_PX) -> np.ndarray:
    """Pixels whose centres lie within ``radius`` of ``(x, y)`` (the catalog's aperture)."""
    return catalog.aperture_mask((int(shape[0]), int(shape[1])), x, y, radius)


def aperture_sigma(band: str) -> float:
    """Noise sigma of an aperture sum in a band: the 5-sigma depth flux over 5 (e-/s)."""
    return 10 ** (-0.4 * (DEPTH_5SIGMA_AB[band] - ZERO_POINTS_AB[band])) / 5.0


@dataclass(frozen=True)
class NoiseModel:
    """Sky noise per band, white or correlated, calibrated on the SNR aperture.

    Attributes
    ----------
    correlation : str or float
        ``"white"`` (independent pixels, the simulator's noise), ``"psf"`` (variates
        convolved with each band's PSF, the paper's recipe) or a Gaussian FWHM in
        pixels (variates convolved with that Gaussian in every band).
    """

    correlation: str | float = "white"

    def __post_init__(self) -> None:
        if self.correlation in ("white", "psf"):
            return
        try:
            ok = float(self.correlation) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"correlation must be 'white', 'psf' or a FWHM >= 0, got {self.correlation!r}")

    def _kernel(self, band: str) -> np.ndarray:
        if self.correlation == "white" or self.correlation == 0:
            return np.ones((1, 1))
        fwhm = fwhm_px(band) if self.correlation == "psf" else float(self.correlation)
        return gaussian_psf(fwhm)

    def scale(self, band: str) -> float:
        """Multiplier of the unit variates (after the convolution) giving ``sigma_ap``."""
        size = 2 * math.ceil(APERTURE_RADIUS_PX) + 1
        c = (size - 1) / 2.0
        ap = aperture_mask((size, size), c, c).astype(float)
        # Aperture sum of convolved white noise = sum_q w_q (A * K)_q.
        return aperture_sigma(band) / math.sqrt(float((fftconvolve(ap, self._kernel(band)) ** 2).sum()))

    def pixel_sigma(self, band: str) -> float:
        """Standard deviation of one pixel of the noise image."""
        return self.scale(band) * math.sqrt(float((self._kernel(band) ** 2).sum()))

    def field(self, shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """A ``(bands, H, W)`` float64 noise image."""
        h, w = int(shape[0]), int(shape[1])
        out = np.empty((len(BANDS), h, w))
        for i, band in enumerate(BANDS):
            k = self._kernel(band)
            p = k.shape[0] // 2  # pad so that every pixel sees a full kernel
            white = rng.standard_normal((h + 2 * p, w + 2 * p))
            out[i] = fftconvolve(white, k, mode="valid") * self.scale(band) if p else white * self.scale(band)
        return out


def psf_image(shape: Sequence[int], x: float, y: float, band: str) -> np.ndarray:
    """Unit-flux point source (the band's pixel-integrated Gaussian PSF)."""
    return point_source_image(shape, x=x, y=y, flux=1.0, fwhm_px=fwhm_px(band))


def scale_to_snr(unit: np.ndarray, snr: float, band: str, x: float, y: float) -> np.ndarray:
    """Scale a noiseless source image so its aperture flux at ``(x, y)`` is ``snr * sigma_ap``."""
    in_ap = float(unit[aperture_mask(unit.shape, x, y)].sum())
    if in_ap <= 0:
        raise ValueError(f"source has no flux in the aperture at ({x}, {y})")
    return unit * (snr * aperture_sigma(band) / in_ap)


def aperture_snr(image: np.ndarray, band: str, x: float, y: float) -> float:
    """SNR of a (noiseless) source image in a band's aperture at ``(x, y)``."""
    return float(image[aperture_mask(image.shape, x, y)].sum()) / aperture_sigma(band)


def make_classifier(weights: str | Path | None = None) -> Any:
    """The released network (or a ``.weights.h5`` file) as an engine classifier."""
    from morpheus_core.classifier import KerasWindowClassifier
    from morpheus_core.weights import load_model

    return KerasWindowClassifier(load_model(weights, crop=True))


def classify(images: np.ndarray, classifier: Any, *, stride: int = 1) -> Any:
    """Classify a ``(bands, H, W)`` image: the finished :class:`~morpheus_core.stats.Classification`."""
    from morpheus_core.engine import classify_image
    from morpheus_core.stats import finalize

    return finalize(classify_image(np.asarray(images, np.float32), classifier, stride=stride))


#: Eq. 16 exactly as the catalog computes it (weights max(flux, 0), uniform weights
#: when no pixel has positive flux, fractions normalised to sum to one).
flux_weighted_classes = object_sums.flux_weighted_fractions


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every validation script takes."""
    parser.add_argument("--reduced", action="store_true", help="small grid (as in the test suite)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--weights", help="a .weights.h5 file instead of the released weights")
    parser.add_argument("--seed", type=int, default=0, help="noise seed")
    parser.add_argument("--realisations", type=int, help="noise realisations per grid point")
    parser.add_argument("--stride", type=int, help="window stride (default 1, as the paper; reduced: 4)")
    parser.add_argument("--threads", type=int, help="TensorFlow / BLAS threads")


def prepare(args: argparse.Namespace) -> Any:
    """Apply ``--threads`` and load the network named by ``--weights``."""
    from morpheus_core.runtime import configure_threads

    configure_threads(args.threads)
    return make_classifier(args.weights)


def finish(table: Table, figure: Any | None, name: str, out: Path, *, started: float) -> dict[str, Path]:
    """Print the table, save it (ECSV) and the figure (PNG, if any); return the paths."""
    import matplotlib.pyplot as plt

    table.meta["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"table": out / f"{name}.ecsv", "figure": out / f"{name}.png"}
    table.write(paths["table"], overwrite=True)
    if figure is None:
        del paths["figure"]
    else:
        figure.savefig(paths["figure"], dpi=110)
        plt.close(figure)
    print(table.meta.get("title", name))
    table.pprint_all()
    print(f"({table.meta['seconds']} s) -> {', '.join(map(str, paths.values()))}")
    return paths


def class_colour(name: str) -> str:
    """The paper's class colours (section 6): spheroid red, disk blue, irregular green,
    point source yellow, background black."""
    return {
        "spheroid": "tab:red",
        "disk": "tab:blue",
        "irregular": "tab:green",
        "point_source": "gold",
        "background": "black",
    }[name]


MORPH = CLASSES[:-1]
