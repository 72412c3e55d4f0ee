"""Paper section 7.2.2, false negatives: point sources in all bands, SNR 1-25.

For each SNR, stamps of sky noise get one point source (each band's PSF) at the centre
with that aperture SNR in every band. The paper counts, per SNR, the pixels whose
``background`` is below thresholds (Figure 17) and finds that the number of low
background pixels "begins to decline rapidly" below SNR ~ 15: the released network
becomes incomplete for SNR <~ 15.

Reported per SNR: the fraction of stamps with a pixel of ``background = 0`` (the
segmentation's detection criterion) and of ``background < 0.5``, and the mean number
of pixels per stamp below each threshold. ``background`` is the normalised rank-vote
image (see :mod:`validation.false_positives`); ``--statistic mean`` uses the normalised
mean instead.

    python -m validation.false_negatives [--reduced] [--noise white|psf|FWHM] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from morpheus_core import BANDS
from validation.common import (
    NoiseModel,
    add_common_arguments,
    classify,
    finish,
    prepare,
    psf_image,
    scale_to_snr,
)
from validation.false_positives import STAMP, _format, _noise_arg

SNRS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 18.0, 20.0, 25.0)
SNRS_REDUCED = (2.0, 25.0)
#: Background thresholds of Figure 17 (``0`` means ``background == 0``).
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def source_stamp(
    snr: float, rng: np.random.Generator, *, size: int = STAMP, noise: NoiseModel = NoiseModel()
) -> np.ndarray:
    """A ``(4, size, size)`` noise stamp with a point source of aperture SNR ``snr`` in every band."""
    images = noise.field((size, size), rng)
    c = size // 2
    for i, band in enumerate(BANDS):
        images[i] += scale_to_snr(psf_image((size, size), c, c, band), snr, band, c, c)
    return images


def _column(t: float) -> str:
    return "n_bkg_0" if t == 0 else f"n_bkg_lt_{t:g}"


def count_below(background: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """Numbers of pixels with background ``== 0`` (threshold 0) or ``< t``."""
    return np.array(
        [np.count_nonzero(background == 0) if t == 0 else np.count_nonzero(background < t) for t in thresholds]
    )


def run(
    classifier: Any,
    *,
    snrs: Sequence[float] = SNRS,
    realisations: int = 10,
    seed: int = 0,
    stride: int = 1,
    size: int = STAMP,
    noise: NoiseModel = NoiseModel(),
    statistic: str = "rank",
) -> Table:
    """Classify the point-source stamps; count low-background pixels per SNR.

    Returns
    -------
    astropy.table.Table
        One row per SNR: ``detected`` (fraction of stamps with background = 0),
        ``detected_0.5`` (with background < 0.5), median minimum background, and the
        mean number of pixels per stamp with background = 0 and below each threshold.
    """
    rows = []
    for snr in snrs:
        counts, mins = [], []
        for r in range(realisations):
            rng = np.random.default_rng([seed, 7, int(round(snr * 100)), r])
            cls = classify(source_stamp(snr, rng, size=size, noise=noise), classifier, stride=stride)
            bkg = (cls.rank if statistic == "rank" else cls.mean)[-1][cls.n > 0]
            counts.append(count_below(bkg))
            mins.append(float(bkg.min()))
        counts = np.array(counts)
        rows.append(
            (
                snr,
                realisations,
                np.mean(counts[:, 0] > 0),
                np.mean(counts[:, THRESHOLDS.index(0.5)] > 0),
                np.median(mins),
                *counts.mean(axis=0),
            )
        )
    names = ("snr", "stamps", "detected", "detected_0.5", "min_bkg_median", *map(_column, THRESHOLDS))
    table = Table(rows=rows, names=names)
    _format(table)
    table.meta.update(
        {
            "title": f"7.2.2 false negatives: point sources in all bands, {noise.correlation} noise "
            f"(background = {statistic})",
            "stride": stride,
            "stamp": size,
            "seed": seed,
            "noise": str(noise.correlation),
            "statistic": statistic,
        }
    )
    return table


def figure(table: Table) -> Any:
    """Figure 17: pixels below each background threshold, one line per SNR; detection."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), constrained_layout=True)
    cmap = plt.get_cmap("viridis")
    snrs = np.asarray(table["snr"], float)
    for row, snr in zip(table, snrs):
        colour = cmap((snr - snrs.min()) / max(np.ptp(snrs), 1e-9))
        axes[0].plot(THRESHOLDS, [row[_column(t)] for t in THRESHOLDS], "o-", ms=3, color=colour, label=f"SNR {snr:g}")
    axes[0].set(
        xlabel="background threshold (0: background = 0)",
        ylabel="pixels per source",
        title="Pixels below the threshold (cf. paper Fig. 17)",
        yscale="symlog",
    )
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].plot(snrs, table["detected"], "o-", label="background = 0 (detection)")
    axes[1].plot(snrs, table["detected_0.5"], "s--", label="background < 0.5")
    axes[1].set(
        xlabel="SNR (every band)", ylabel="fraction of sources", ylim=(-0.02, 1.02), title="Detected point sources"
    )
    axes[1].legend()
    fig.suptitle(f"Paper 7.2.2: false negatives ({table.meta['noise']} noise, background = {table.meta['statistic']})")
    return fig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.false_negatives", description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--noise", type=_noise_arg, default="white", help="white (default), psf, or a FWHM in px")
    parser.add_argument(
        "--statistic",
        choices=("rank", "mean"),
        default="rank",
        help="background image: rank votes (default) or normalised mean",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    classifier = prepare(args)
    table = run(
        classifier,
        snrs=SNRS_REDUCED if args.reduced else SNRS,
        realisations=args.realisations or (1 if args.reduced else 10),
        seed=args.seed,
        stride=args.stride or (4 if args.reduced else 1),
        noise=NoiseModel(args.noise),
        statistic=args.statistic,
    )
    finish(table, figure(table), "false_negatives", args.out, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
