"""Paper section 7.3: classification of circular Sersic profiles (Figures 18 and 19).

Circular Sersic objects with index ``n`` in 1-9 and effective radius 3, 5, 7, 9 pixels,
SNR 20, zero colour gradients and a flat f_nu spectrum (the same AB magnitude in every
band), convolved with each band's PSF, on sky noise. The paper found ``n = 1``
classified disk or spheroid, ``n ~ 2-3`` spheroid, ``n >= 4`` point source / compact,
almost no irregular; as a matrix (Figure 19): large low-n objects disk, large high-n
spheroid, small high-n point source.

SNR: the H flux in the 0.5" diameter aperture at the centre over the aperture noise, as
in section 7.2 (the paper does not say how it measured the SNR of these objects).

Per object the class fractions are the flux-weighted average of the class images over
the object's pixels (Eq. 16), with the noiseless H flux as weight and as object mask
(noiseless H above the per-pixel noise sigma). Reported: the four morphological
fractions normalised to sum to 1 (as in Figure 18), their dominant class, and the
background share. Images: rank votes (``--statistic mean`` for the normalised mean).

    python -m validation.sersic [--reduced] [--noise white|psf|FWHM] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from scipy.signal import fftconvolve

from morpheus_core import BANDS
from morpheus_core.passbands import ZERO_POINTS_AB
from morpheus_core.profiles import gaussian_psf, sersic_image
from validation.common import (
    MORPH,
    NoiseModel,
    add_common_arguments,
    class_colour,
    classify,
    finish,
    flux_weighted_classes,
    fwhm_px,
    prepare,
    scale_to_snr,
)
from validation.false_positives import _format, _noise_arg

INDICES = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)
RADII = (3.0, 5.0, 7.0, 9.0)
INDICES_REDUCED = (1.0, 6.0)
RADII_REDUCED = (3.0, 9.0)
SNR = 20.0
STAMP = 80


def sersic_stamp(
    n: float,
    r_eff: float,
    rng: np.random.Generator,
    *,
    snr: float = SNR,
    size: int = STAMP,
    noise: NoiseModel = NoiseModel(),
) -> tuple[np.ndarray, np.ndarray, float]:
    """A centred circular Sersic object with a flat f_nu spectrum, on noise.

    Returns
    -------
    images : numpy.ndarray
        ``(4, size, size)`` noisy image.
    model_h : numpy.ndarray
        ``(size, size)`` noiseless PSF-convolved H image.
    mag_ab : float
        The object's AB magnitude (every band).
    """
    c = size // 2
    unit = sersic_image((size, size), x=c, y=c, flux=1.0, r_eff=r_eff, n=n, axis_ratio=1.0, pa_deg=0.0)
    models = [fftconvolve(unit, gaussian_psf(fwhm_px(b)), mode="same") for b in BANDS]
    # Unit total flux scaled to the H aperture SNR, i.e. flux_H (e-/s) of the object.
    flux_h = float(scale_to_snr(models[0], snr, "H", c, c).sum() / models[0].sum())
    mag_ab = ZERO_POINTS_AB["H"] - 2.5 * math.log10(flux_h)
    images = noise.field((size, size), rng)
    for i, band in enumerate(BANDS):
        images[i] += models[i] * 10 ** (-0.4 * (mag_ab - ZERO_POINTS_AB[band]))
    return images, models[0] * flux_h, mag_ab


def run(
    classifier: Any,
    *,
    indices: Sequence[float] = INDICES,
    radii: Sequence[float] = RADII,
    snr: float = SNR,
    realisations: int = 3,
    seed: int = 0,
    stride: int = 1,
    size: int = STAMP,
    noise: NoiseModel = NoiseModel(),
    statistic: str = "rank",
) -> Table:
    """Classify the Sersic grid.

    Returns
    -------
    astropy.table.Table
        One row per (r_eff, n): the mean over realisations of the four morphological
        fractions (normalised), ``dominant``, ``margin`` (first minus second fraction),
        ``background`` (flux-weighted background share), object pixels and magnitude.
    """
    rows = []
    sigma_h = noise.pixel_sigma("H")
    for r_eff in radii:
        for n in indices:
            fracs, bkgs = [], []
            for r in range(realisations):
                rng = np.random.default_rng([seed, 3, int(n * 10), int(r_eff * 10), r])
                images, model_h, mag = sersic_stamp(n, r_eff, rng, snr=snr, size=size, noise=noise)
                cls = classify(images, classifier, stride=stride)
                cube = cls.rank if statistic == "rank" else cls.mean
                mask = (model_h > sigma_h) & (cls.n > 0)
                p = flux_weighted_classes(cube, model_h, mask)
                fracs.append(p[:-1] / p[:-1].sum() if p[:-1].sum() > 0 else np.full(len(MORPH), np.nan))
                bkgs.append(p[-1])
            f = np.nanmean(fracs, axis=0)
            order = np.argsort(f)[::-1]
            rows.append(
                (r_eff, n, *f, MORPH[order[0]], f[order[0]] - f[order[1]], float(np.mean(bkgs)), int(mask.sum()), mag)
            )
    table = Table(
        rows=rows, names=("r_eff_px", "sersic_n", *MORPH, "dominant", "margin", "background", "object_px", "mag_ab")
    )
    _format(table)
    table.meta.update(
        {
            "title": f"7.3 Sersic profiles at SNR {snr:g}: flux-weighted class fractions (Eq. 16), "
            f"{noise.correlation} noise, {statistic} images",
            "stride": stride,
            "stamp": size,
            "seed": seed,
            "snr": snr,
            "realisations": realisations,
            "noise": str(noise.correlation),
            "statistic": statistic,
        }
    )
    return table


def figure(table: Table) -> Any:
    """Figures 18 (class fractions against n, per radius) and 19 (dominant-class matrix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    radii = sorted(set(np.asarray(table["r_eff_px"], float)))
    indices = sorted(set(np.asarray(table["sersic_n"], float)))
    fig = plt.figure(figsize=(16, 7), constrained_layout=True)
    grid = fig.add_gridspec(2, 4)
    for k, r_eff in enumerate(radii[:4]):
        ax = fig.add_subplot(grid[k // 2, k % 2])
        t = table[table["r_eff_px"] == r_eff]
        for name in MORPH:
            ax.plot(t["sersic_n"], t[name], "o-", color=class_colour(name), label=name)
        ax.set(title=f"R_e = {r_eff:g} px", xlabel="Sersic index n", ylabel="fraction", ylim=(-0.02, 1.02))
        if k == 0:
            ax.legend(fontsize=8)
    ax = fig.add_subplot(grid[:, 2:])
    rgb = np.ones((len(radii), len(indices), 3))
    for row in table:
        i, j = radii.index(float(row["r_eff_px"])), indices.index(float(row["sersic_n"]))
        s = float(np.clip(row["margin"], 0, 1))
        rgb[i, j] = 1 - s * (1 - np.array(to_rgb(class_colour(str(row["dominant"])))))
        ax.text(j, i, str(row["dominant"]).replace("_", "\n"), ha="center", va="center", fontsize=7)
    ax.imshow(rgb, origin="lower", aspect="auto")
    ax.set_xticks(range(len(indices)), [f"{v:g}" for v in indices])
    ax.set_yticks(range(len(radii)), [f"{v:g}" for v in radii])
    ax.set(
        xlabel="Sersic index n",
        ylabel="R_e (px)",
        title="Dominant class (saturation: margin over the second; cf. paper Fig. 19)",
    )
    fig.suptitle(f"Paper 7.3: circular Sersic objects at SNR {table.meta['snr']:g} ({table.meta['noise']} noise)")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.sersic", description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--noise", type=_noise_arg, default="white", help="white (default), psf, or a FWHM in px")
    parser.add_argument(
        "--statistic",
        choices=("rank", "mean"),
        default="rank",
        help="class images: rank votes (default) or normalised mean",
    )
    parser.add_argument("--snr", type=float, default=SNR, help=f"aperture SNR in H (default {SNR:g})")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    classifier = prepare(args)
    table = run(
        classifier,
        indices=INDICES_REDUCED if args.reduced else INDICES,
        radii=RADII_REDUCED if args.reduced else RADII,
        snr=args.snr,
        realisations=args.realisations or (1 if args.reduced else 3),
        seed=args.seed,
        stride=args.stride or (4 if args.reduced else 1),
        size=64 if args.reduced else STAMP,
        noise=NoiseModel(args.noise),
        statistic=args.statistic,
    )
    finish(table, figure(table), "sersic", args.out, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
