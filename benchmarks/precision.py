"""Deviation of bfloat16 from float32 on the demo mosaic (the issue's precision report).

Classifies the demo mosaic (``render_sky((512, 512), seed=2020)``, the images
``python -m pipeline run --mosaic demo`` generates) with the released weights in float32
and in bfloat16 through the engine and prints
:func:`morpheus_core.stats.deviation_report`: max |diff| of the mean images and of the
rank-vote images over counted pixels, and the fraction of counted pixels whose top
rank-vote class changes; plus both rates.

Usage::

    python benchmarks/precision.py [--stride 1] [--batch 512]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stride", type=int, default=1, help="window stride")
    parser.add_argument("--batch", type=int, default=512, help="windows per network call")
    args = parser.parse_args()

    from morpheus_core.classifier import KerasWindowClassifier
    from morpheus_core.engine import classify_image
    from morpheus_core.simulate import render_sky
    from morpheus_core.stats import deviation_report, finalize
    from morpheus_core.weights import load_released_model

    image = render_sky((512, 512), seed=2020).images
    results = {}
    for precision in ("float32", "bfloat16"):
        clf = KerasWindowClassifier(load_released_model(crop=True, precision=precision))
        classify_image(image[:, :120, :60], clf, batch_size=args.batch)  # compile
        t0 = time.perf_counter()
        stats = classify_image(image, clf, stride=args.stride, batch_size=args.batch)
        seconds = time.perf_counter() - t0
        results[precision] = finalize(stats)
        windows = ((512 - 40) // args.stride + 1) ** 2
        print(f"{precision}: {windows} windows in {seconds:.1f} s, {windows / seconds:.0f} windows/s")
    report = deviation_report(results["float32"], results["bfloat16"])
    print(f"demo mosaic 512x512, stride {args.stride}, {report['counted_pixels']} counted pixels")
    print(f"max_abs_diff_mean {report['max_abs_diff_mean']:.4g}")
    print(f"max_abs_diff_rank {report['max_abs_diff_rank']:.4g}")
    print(f"top_rank_changed {report['top_rank_changed']:.3g}")
    print(f"bf16_vote_agreement {1.0 - report['top_rank_changed']:.5f}")


if __name__ == "__main__":
    main()
