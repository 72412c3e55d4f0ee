"""Paper section 7.2.1, false positives: single-band H fluctuations must not be detected.

For each SNR, stamps of sky noise in all four bands get one fluctuation in the H band
only, at the centre; V, z and J stay blank noise. The paper found no pixel with
``background = 0`` (its detection criterion) for SNR 0.5-10, some ``background < 1``
pixels at SNR 7 and 10, and a minimum ``background ~ 0.05`` for an SNR 10 fluctuation
shaped like the H PSF.

Two fluctuation shapes (``--shape``):

- ``pixel``: a single hot H pixel (the paper's "single pixel fluctuations");
- ``psf``: a fluctuation shaped like the H PSF (the paper's alternative test; also
  what a single-pixel fluctuation of PSF-convolved variates becomes).

The noise is white by default (``--noise``; see :mod:`validation.common`). A second
table, the *noise-texture control*, classifies noise-only stamps whose variates are
convolved with Gaussians of increasing FWHM (0 = white; ``psf`` = each band's PSF, the
paper's recipe), all with the same aperture noise: it measures how much of the sky the
network calls a source because of the noise texture alone.

``background`` is the normalised rank-vote image (the reference code's default output,
which its segmentation reads); the table also gives the minimum of the normalised mean.

    python -m validation.false_positives [--reduced] [--shape pixel|psf|both] [--noise white|psf|FWHM]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from validation.common import (
    NoiseModel,
    add_common_arguments,
    classify,
    finish,
    prepare,
    psf_image,
    scale_to_snr,
)

#: SNRs of the paper (0 = noise only, a control).
SNRS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 10.0)
SNRS_REDUCED = (1.0, 10.0)
SHAPES = ("pixel", "psf")
#: Noise correlations of the texture control: Gaussian FWHMs in pixels, and the PSFs.
TEXTURES: tuple[str | float, ...] = (0.0, 1.0, 1.5, 2.0, 2.5, 3.0, "psf")
TEXTURES_REDUCED: tuple[str | float, ...] = (0.0, "psf")
#: Stamp side: the fluctuation at the centre is seen by every window of the stamp.
STAMP = 64


def fluctuation_stamp(
    snr: float, shape: str, rng: np.random.Generator, *, size: int = STAMP, noise: NoiseModel = NoiseModel()
) -> np.ndarray:
    """A ``(4, size, size)`` noise stamp with an H-only fluctuation of ``snr`` at the centre."""
    images = noise.field((size, size), rng)
    c = size // 2
    if snr > 0:
        if shape == "psf":
            unit = psf_image((size, size), c, c, "H")
        else:
            unit = np.zeros((size, size))
            unit[c, c] = 1.0
        images[0] += scale_to_snr(unit, snr, "H", c, c)
    return images


def _background_stats(cls: Any) -> tuple[int, int, float, float]:
    counted = cls.n > 0
    bkg = cls.rank[-1][counted]
    return (
        int(np.count_nonzero(bkg == 0)),
        int(np.count_nonzero(bkg < 1)),
        float(bkg.min()),
        float(cls.mean[-1][counted].min()),
    )


def run(
    classifier: Any,
    *,
    snrs: Sequence[float] = SNRS,
    shapes: Sequence[str] = SHAPES,
    realisations: int = 10,
    seed: int = 0,
    stride: int = 1,
    size: int = STAMP,
    noise: NoiseModel = NoiseModel(),
) -> tuple[Table, dict]:
    """Classify the fluctuation stamps and summarise the background image.

    Returns
    -------
    table : astropy.table.Table
        One row per (shape, SNR): ``detected`` (fraction of stamps with a pixel of
        background = 0), mean numbers of pixels with background = 0 and < 1 per
        stamp, median and smallest minimum background (rank votes), median minimum of
        the normalised mean background.
    examples : dict
        ``(shape, snr) -> (stamp, normalised mean background)`` of the last realisation.
    """
    rows, examples = [], {}
    for shape in shapes:
        for snr in snrs:
            stats = []
            for r in range(realisations):
                rng = np.random.default_rng([seed, SHAPES.index(shape), int(round(snr * 100)), r])
                stamp = fluctuation_stamp(snr, shape, rng, size=size, noise=noise)
                cls = classify(stamp, classifier, stride=stride)
                stats.append(_background_stats(cls))
            n0, n1, min_rank, min_mean = (np.array(v) for v in zip(*stats))
            examples[(shape, snr)] = (stamp, np.where(cls.n > 0, cls.mean[-1], np.nan))
            rows.append(
                (
                    shape,
                    snr,
                    realisations,
                    np.mean(n0 > 0),
                    n0.mean(),
                    n1.mean(),
                    np.median(min_rank),
                    min_rank.min(),
                    np.median(min_mean),
                )
            )
    table = Table(
        rows=rows,
        names=(
            "shape",
            "snr",
            "stamps",
            "detected",
            "n_bkg_0",
            "n_bkg_lt_1",
            "min_bkg_median",
            "min_bkg_lowest",
            "min_bkg_mean_median",
        ),
    )
    _format(table)
    table.meta.update(
        {
            "title": f"7.2.1 false positives: H-only fluctuations, {noise.correlation} noise (background = rank votes)",
            "stride": stride,
            "stamp": size,
            "seed": seed,
            "noise": str(noise.correlation),
        }
    )
    return table, examples


def texture_control(
    classifier: Any,
    *,
    textures: Sequence[str | float] = TEXTURES,
    realisations: int = 10,
    seed: int = 0,
    stride: int = 1,
    size: int = STAMP,
) -> Table:
    """Noise-only stamps with increasingly correlated noise: how much is called a source.

    Returns
    -------
    astropy.table.Table
        One row per correlation: the fraction of stamps with a background = 0 pixel,
        the fractions of counted pixels with background = 0 and < 1, the median
        minimum background, and the per-pixel H noise sigma relative to white noise.
    """
    rows = []
    white = NoiseModel("white").pixel_sigma("H")
    for texture in textures:
        noise = NoiseModel(texture)
        stats, npix = [], 0
        for r in range(realisations):
            rng = np.random.default_rng([seed, 99, r])  # the same variates for every texture
            cls = classify(noise.field((size, size), rng), classifier, stride=stride)
            npix = int(np.count_nonzero(cls.n > 0))
            stats.append(_background_stats(cls))
        n0, n1, min_rank, _ = (np.array(v) for v in zip(*stats))
        rows.append(
            (
                str(texture),
                realisations,
                np.mean(n0 > 0),
                n0.mean() / npix,
                n1.mean() / npix,
                np.median(min_rank),
                noise.pixel_sigma("H") / white,
            )
        )
    table = Table(
        rows=rows,
        names=(
            "noise_fwhm_px",
            "stamps",
            "detected",
            "frac_bkg_0",
            "frac_bkg_lt_1",
            "min_bkg_median",
            "pixel_sigma_rel",
        ),
    )
    _format(table)
    table.meta.update(
        {
            "title": "7.2 noise-texture control: noise only, variates convolved with a Gaussian of "
            "this FWHM (psf: each band's PSF), same aperture noise",
            "stride": stride,
            "stamp": size,
            "seed": seed,
        }
    )
    return table


def _format(table: Table) -> None:
    for col in table.colnames:
        if table[col].dtype.kind == "f":
            table[col].format = ".3f"


def figure(table: Table, examples: dict, control: Table | None = None) -> Any:
    """Minimum background and low-background pixels against SNR, an example, the control."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4 if control is not None else 3, figsize=(18, 4), constrained_layout=True)
    for shape, style, colour in zip(SHAPES, ("o-", "s--"), ("tab:blue", "tab:orange")):
        t = table[table["shape"] == shape]
        if not len(t):
            continue
        axes[0].plot(t["snr"], t["min_bkg_median"], style, color=colour, label=f"{shape}: median over stamps")
        axes[0].plot(t["snr"], t["min_bkg_lowest"], style, color=colour, alpha=0.4, label=f"{shape}: lowest")
        axes[1].plot(t["snr"], t["n_bkg_lt_1"], style, color=colour, label=f"{shape}: background < 1")
        axes[1].plot(t["snr"], t["n_bkg_0"], style, color=colour, alpha=0.4, label=f"{shape}: background = 0")
    axes[0].set(
        xlabel="SNR of the H-only fluctuation",
        ylabel="minimum background",
        ylim=(-0.02, 1.02),
        title="Minimum background in the stamp",
    )
    axes[1].set(xlabel="SNR of the H-only fluctuation", ylabel="pixels per stamp", title="Low-background pixels")
    for ax in axes[:2]:
        ax.legend(fontsize=7)
    key = max(examples, key=lambda k: (k[0] == "psf", k[1]))
    stamp, bkg = examples[key]
    h = np.arcsinh(stamp[0] / np.std(stamp[0]))
    h = (h - h.min()) / np.ptp(h)
    axes[2].imshow(np.hstack([h, bkg]), origin="lower", cmap="viridis", vmin=0, vmax=1)
    axes[2].set_title(f"{key[0]} fluctuation, SNR {key[1]:g}:\nH band (asinh) | background (mean, 0-1)")
    if control is not None:
        x = np.arange(len(control))
        axes[3].bar(x - 0.2, control["frac_bkg_lt_1"], 0.4, label="background < 1")
        axes[3].bar(x + 0.2, control["frac_bkg_0"], 0.4, label="background = 0")
        axes[3].set_xticks(x, control["noise_fwhm_px"])
        axes[3].set(
            xlabel="noise correlation FWHM (px)",
            ylabel="fraction of sky pixels",
            ylim=(0, 1),
            title="Noise only: texture control",
        )
        axes[3].legend(fontsize=7)
    fig.suptitle(f"Paper 7.2.1: false positives from H-only fluctuations ({table.meta['noise']} noise)")
    return fig


def _noise_arg(text: str) -> str | float:
    return text if text in ("white", "psf") else float(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.false_positives", description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--shape", choices=(*SHAPES, "both"), default="both")
    parser.add_argument("--noise", type=_noise_arg, default="white", help="white (default), psf, or a FWHM in px")
    parser.add_argument("--no-control", action="store_true", help="skip the noise-texture control")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    classifier = prepare(args)
    kw = {
        "realisations": args.realisations or (1 if args.reduced else 10),
        "seed": args.seed,
        "stride": args.stride or (4 if args.reduced else 1),
    }
    table, examples = run(
        classifier,
        snrs=SNRS_REDUCED if args.reduced else SNRS,
        shapes=SHAPES if args.shape == "both" else (args.shape,),
        noise=NoiseModel(args.noise),
        **kw,
    )
    control = None
    if not args.no_control:
        control = texture_control(classifier, textures=TEXTURES_REDUCED if args.reduced else TEXTURES, **kw)
        finish(control, None, "noise_texture_control", args.out, started=started)
    finish(table, figure(table, examples, control), "false_positives", args.out, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
