"""Classification speed: bare network against the statistics engine, side by side.

Prints, measured in one run on this machine with the released weights:

- the bare full-window network in float32 on pre-cut, pre-standardised windows
  (batched; the plain network a user would call), and the bare cropped network;
- the engine producing all 15 images (+ n) for one 256x256 tile (its core plus the
  39-pixel halo, i.e. 65,536 windows at unit stride), in float32 and bfloat16;
- the vote agreement of bfloat16 with float32 and the max |diff| of the mean images.

The bare rate is measured several times, interleaved with the engine runs, and the
median is used, because a shared 2-core machine drifts by +-10% over a minute.

Usage::

    python benchmarks/engine.py [--tile 256] [--batch 512] [--skip-bf16]

The last three lines are ``ratio_float32``, ``ratio_bfloat16`` and
``bf16_vote_agreement``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np


def bare_rate(classifier, windows: np.ndarray, repeats: int = 3) -> float:
    """Windows per second of the network alone on pre-cut windows."""
    classifier(windows[: min(64, len(windows))])  # compile
    t0 = time.perf_counter()
    for _ in range(repeats):
        classifier(windows)
    return repeats * len(windows) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=256, help="tile core size (pixels)")
    parser.add_argument("--batch", type=int, default=512, help="windows per network call")
    parser.add_argument("--skip-bf16", action="store_true", help="float32 only")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads")
    args = parser.parse_args()

    from morpheus_core.runtime import configure_threads

    configure_threads(args.threads)
    from morpheus_core.engine import KerasWindowClassifier, classify_image
    from morpheus_core.model import BORDER, WINDOW, load_released_model
    from morpheus_core.simulate import render_sky
    from morpheus_core.stats import finalize
    from morpheus_core.windows import cut_windows, standardize_windows

    size = args.tile + WINDOW - 1
    sky = render_sky((size, size), seed=7)
    image = sky.images
    n_windows = args.tile * args.tile
    rng = np.random.default_rng(0)
    hwc = np.ascontiguousarray(np.moveaxis(image, 0, -1))
    ys = rng.integers(0, size - WINDOW + 1, args.batch)
    xs = rng.integers(0, size - WINDOW + 1, args.batch)
    windows = standardize_windows(cut_windows(hwc, ys, xs, WINDOW))

    full = KerasWindowClassifier(load_released_model(), border=BORDER)
    cropped = KerasWindowClassifier(load_released_model(crop=True), border=BORDER)
    print(f"machine: {platform.processor() or platform.machine()}, {__import__('os').cpu_count()} cores")
    print(f"tile {args.tile}x{args.tile} core, {size}x{size} read, {n_windows} windows, batch {args.batch}")

    bare_full, bare_crop = [], []

    def measure_bare() -> None:
        bare_full.append(bare_rate(full, windows))
        bare_crop.append(bare_rate(cropped, windows))

    def engine_run(classifier) -> tuple[float, object]:
        classify_image(image[:, :WINDOW + 8, :WINDOW + 8], classifier, batch_size=args.batch)
        t0 = time.perf_counter()
        stats = classify_image(
            image, classifier, anchor_stop=(args.tile, args.tile), batch_size=args.batch
        )
        result = finalize(stats)
        return n_windows / (time.perf_counter() - t0), result

    measure_bare()
    rate32, res32 = engine_run(cropped)
    measure_bare()
    if not args.skip_bf16:
        bf16 = KerasWindowClassifier(load_released_model(crop=True, precision="bfloat16"), border=BORDER)
        rate16, res16 = engine_run(bf16)
        measure_bare()
    bare = statistics.median(bare_full)
    print(f"bare_full_float32_windows_per_s {bare:.1f}  (runs: {', '.join(f'{r:.0f}' for r in bare_full)})")
    print(f"bare_cropped_float32_windows_per_s {statistics.median(bare_crop):.1f}  (runs: {', '.join(f'{r:.0f}' for r in bare_crop)})")
    print(f"engine_float32_windows_per_s {rate32:.1f}")
    if args.skip_bf16:
        print(f"ratio_float32 {rate32 / bare:.3f}")
        return
    counted = res32.n > 0
    agree = (res32.rank.argmax(0) == res16.rank.argmax(0))[counted].mean()
    print(f"engine_bfloat16_windows_per_s {rate16:.1f}")
    print(f"bf16_max_abs_diff_mean {np.abs(res32.mean - res16.mean).max():.4g}")
    print(f"ratio_float32 {rate32 / bare:.3f}")
    print(f"ratio_bfloat16 {rate16 / bare:.3f}")
    print(f"bf16_vote_agreement {agree:.5f}")


if __name__ == "__main__":
    main()
