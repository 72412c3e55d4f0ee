"""How close the sky stand-in's segmentation is to the released network's, on the demo.

:class:`morpheus_core.testing.SkyStandInClassifier` is meant to give scale
tests a classification that looks like the real one at no cost. This script classifies
the demo mosaic (:func:`morpheus_core.simulate.render_sky` with the shape and seed of
:func:`pipeline.inputs.demo_mosaics.generate_demo`) with both, same engine settings side by side
(stride, batch), then runs the paper's Algorithm 1 (rank-vote background, threshold 0)
and Algorithm 2 (deblending on H) on each, and prints one column per network:

- classification: windows/s; the share of classified pixels whose rank-vote background
  is 1, 0, and in between;
- segmentation: segments (Algorithm 1), objects (after Algorithm 2), the share of
  pixels in segments, segment areas (10th, 50th, 90th percentile, largest);
- truth: the share of true sources (``in_coverage``, at least 20 px from the edges)
  whose centre pixel lies in a segment, and that get a deblended object within 3 px
  (greedy one-to-one, as ``benchmarks/detection.py``); by ``snr_H`` above and below 20;
- morphology: the objects' dominant class (Eq. 16: H-flux-weighted rank votes) counted
  per class;
- agreement of the two: intersection over union of their segment masks, and the share
  of true sources both detect or both miss.

The released network's classification is cached (``--cache``, as
``benchmarks/detection.py`` does; stride 1 takes ~3 minutes on a 2-core CPU, stride 2
~40 s); the stand-in takes ~25 s at stride 2 on the generic engine path.

Usage::

    python benchmarks/standin_fidelity.py [--stride 2] [--crop N] [--markdown FILE]

``--crop N``: only the top-left ``N x N`` of the demo (a quick smoke run).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/detection.py

DEFAULT_CACHE = Path("~/.cache/morpheus-survey/benchmarks/standin_fidelity").expanduser()
#: snr_H split of the completeness rows.
SNR_SPLIT = 20.0


def demo_sky(crop: int | None):
    """The demo mosaic's sky (same shape and seed as ``pipeline.inputs.demo_mosaics.generate_demo``)."""
    from morpheus_core.simulate import render_sky
    from pipeline.inputs.demo_mosaics import generate_demo

    params = inspect.signature(generate_demo).parameters
    shape, seed = params["shape"].default, params["seed"].default
    sky = render_sky(shape=tuple(shape), seed=seed)
    images, truth = sky.images, sky.truth
    if crop:
        images = np.ascontiguousarray(images[:, :crop, :crop])
        keep = (np.asarray(truth["x"]) < crop) & (np.asarray(truth["y"]) < crop)
        truth = truth[keep]
    return images, truth, f"{shape[0]}x{shape[1]}, seed {seed}" + (f", crop {crop}x{crop}" if crop else "")


def classify_standin(images: np.ndarray, stride: int, batch: int):
    from detection import Classified

    from morpheus_core.engine import classify_image
    from morpheus_core.stats import finalize
    from morpheus_core.testing import SkyStandInClassifier

    t0 = time.perf_counter()
    res = finalize(classify_image(images, SkyStandInClassifier(), stride=stride, batch_size=batch))
    seconds = time.perf_counter() - t0
    _, h, w = images.shape
    windows = len(range(0, h - 39, stride)) * len(range(0, w - 39, stride))
    return Classified(res.rank, res.mean, res.n, seconds, windows, False)


def measure(cls, images: np.ndarray, truth) -> dict:
    """Segmentation statistics of one classification."""
    from detection import MATCH_RADIUS, centroids, greedy_match, inside

    from morpheus_core.deblend import deblend
    from morpheus_core.segmentation import label_segments, segment_sources

    flux = images[0]
    bg, classified = cls.rank_bg, cls.n > 0
    labels, n_segments = label_segments(segment_sources(bg, classified))
    objects = deblend(labels, flux).segmap
    ids = np.unique(objects[objects > 0])
    areas = np.bincount(labels.ravel())[1:]
    xy = np.column_stack([np.asarray(truth["x"]), np.asarray(truth["y"])])
    keep = np.asarray(truth["in_coverage"], bool) & inside(xy, flux.shape)
    ix, iy = np.round(xy[keep]).astype(int).T
    in_segment = labels[iy, ix] > 0
    matched = greedy_match(xy[keep], centroids(objects, flux), MATCH_RADIUS)
    snr = np.asarray(truth["snr_H"])[keep]
    weight = np.clip(np.nan_to_num(flux), 0.0, None)
    dominant = np.zeros(4, int)
    for i in ids:
        m = objects == i
        w = weight[m] if weight[m].sum() > 0 else np.ones(int(m.sum()))
        dominant[int(np.argmax([(cls.rank[k][m] * w).sum() for k in range(4)]))] += 1
    c = bg[classified]
    return {
        "seconds": cls.seconds,
        "windows": cls.windows,
        "bg1": float((c == 1).mean()),
        "bg0": float((c == 0).mean()),
        "bgmid": float(((c > 0) & (c < 1)).mean()),
        "segments": int(n_segments),
        "objects": int(len(ids)),
        "in_segments": float((labels > 0)[classified].mean()),
        "areas": areas,
        "in_segment": in_segment,
        "matched": matched,
        "snr": snr,
        "dominant": dominant,
        "mask": labels > 0,
    }


def pct(x) -> str:
    return f"{100 * float(np.mean(x)):.1f}%" if np.size(x) else "-"


def table(real: dict, stand: dict, n_true: int) -> tuple[list[str], list[list[str]]]:
    def area(m: dict) -> str:
        a = m["areas"]
        if not a.size:
            return "-"
        p10, p50, p90 = np.percentile(a, [10, 50, 90])
        return f"{p10:.0f} / {p50:.0f} / {p90:.0f} / {a.max()}"

    def split(m: dict, key: str, bright: bool) -> str:
        sel = m["snr"] >= SNR_SPLIT if bright else m["snr"] < SNR_SPLIT
        return f"{pct(m[key][sel])} ({int(sel.sum())})"

    rows = [
        ["windows/s", *(f"{m['windows'] / m['seconds']:.0f}" for m in (real, stand))],
        ["rank-vote background = 1", *(pct(m["bg1"]) for m in (real, stand))],
        ["rank-vote background = 0", *(pct(m["bg0"]) for m in (real, stand))],
        ["0 < background < 1", *(pct(m["bgmid"]) for m in (real, stand))],
        ["segments (Algorithm 1)", *(str(m["segments"]) for m in (real, stand))],
        ["objects (Algorithm 2)", *(str(m["objects"]) for m in (real, stand))],
        ["pixels in segments", *(pct(m["in_segments"]) for m in (real, stand))],
        ["segment area p10 / p50 / p90 / max (px)", *(area(m) for m in (real, stand))],
        [f"true sources with centre in a segment (of {n_true})", *(pct(m["in_segment"]) for m in (real, stand))],
        [f"  snr_H >= {SNR_SPLIT:g} (n)", *(split(m, "in_segment", True) for m in (real, stand))],
        [f"  snr_H < {SNR_SPLIT:g} (n)", *(split(m, "in_segment", False) for m in (real, stand))],
        ["true sources matched by an object < 3 px", *(pct(m["matched"]) for m in (real, stand))],
        [
            "objects' dominant class sph / disk / irr / ps",
            *(" / ".join(str(v) for v in m["dominant"]) for m in (real, stand)),
        ],
    ]
    inter = (real["mask"] & stand["mask"]).sum()
    union = (real["mask"] | stand["mask"]).sum()
    same = real["in_segment"] == stand["in_segment"]
    rows.append(["segment masks: intersection / union", f"{inter / max(union, 1):.3f}", ""])
    rows.append(["true sources both detect or both miss", pct(same), ""])
    return ["", "released network", "SkyStandInClassifier"], rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=2, help="window stride of both (2)")
    parser.add_argument("--batch", type=int, default=512, help="windows per call (512)")
    parser.add_argument("--crop", type=int, default=None, help="only the top-left N x N of the demo")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="cache of the released network's classification"
    )
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from detection import Classifier, machine

    from morpheus_core.runtime import configure_threads

    configure_threads(args.threads)
    images, truth, what = demo_sky(args.crop)
    key = f"demo-{images.shape[1]}x{images.shape[2]}"
    real = Classifier(args.cache, args.stride, args.batch)(key, images)
    stand = classify_standin(images, args.stride, args.batch)
    m_real, m_stand = measure(real, images, truth), measure(stand, images, truth)
    header, rows = table(m_real, m_stand, len(m_real["in_segment"]))
    print(f"machine: {machine()}")
    print(
        f"demo mosaic {what}; stride {args.stride}, batch {args.batch}; released network "
        f"{'from the cache' if real.cached else 'classified now'}"
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in [header, *rows]]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print("\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
