"""Classification speed: bare network against the statistics engine, side by side.

Prints, measured in one run on this machine with the released weights:

- the bare full-window network in float32 (the Keras model a user would call) on
  pre-cut, pre-standardised windows, batched; the bare cropped network; the engine's
  network alone (:class:`morpheus_core.inference.InferenceNetwork`, cropped, and the
  softmax), the reference for the engine's non-network overhead;
- the engine producing all 15 images (+ n) for one 256x256 tile (its core plus the
  39-pixel halo, i.e. 65,536 windows at unit stride), in float32 and bfloat16;
- where the engine's time goes per batch, phase by phase run one after the other (cut +
  standardise on the host, network, softmax, votes + fold), and the share that is not
  the network (in the engine the fold of one block runs while the network runs on the
  next, so its cost is partly hidden: compare the engine with the network alone);
- the deviation of bfloat16 from float32 (max |diff| of the mean images, fraction of
  pixels whose top rank-vote class changes).

Every rate is measured ``--rounds`` times, interleaved, and the median is used, because
a shared machine drifts; the best run and all runs are printed beside it, and
``*_best`` ratios use the best runs (closest to an otherwise idle machine). Rates are windows per
wall-clock second; ``cpu`` rates (windows per CPU-second of this process) are printed
too, as they are less sensitive to other processes on a shared machine.

Usage::

    python benchmarks/engine.py [--tile 256] [--batch 512] [--rounds 3] [--skip-bf16]

On a GPU use larger tiles and batches, e.g. ``--tile 1024 --batch 8192``; with
``KERAS_BACKEND=jax`` the same script measures the JAX backend.

The last three lines are ``ratio_float32``, ``ratio_bfloat16`` and
``bf16_vote_agreement``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np


def machine() -> str:
    """CPU model and core count (``/proc/cpuinfo`` on Linux)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores"


def timed(fn: Callable[[], object], n_windows: int) -> tuple[float, float, object]:
    """(windows per wall second, windows per CPU second of this process, result)."""
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return n_windows / wall, n_windows / max(cpu, 1e-9), out


def compiled(fn: Callable) -> Callable:
    """``fn`` compiled with XLA on the Keras backend in use (TensorFlow or JAX)."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return jax.jit(fn)
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}  (best {max(values):.0f}; runs: {', '.join(f'{v:.0f}' for v in values)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile", type=int, default=256, help="tile core size (pixels)")
    parser.add_argument("--batch", type=int, default=512, help="windows per network call")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--skip-bf16", action="store_true", help="float32 only")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow threads")
    args = parser.parse_args()

    from morpheus_core.runtime import configure_threads

    configure_threads(args.threads)
    import keras

    from morpheus_core import BORDER, WINDOW
    from morpheus_core.accumulate import block_sums
    from morpheus_core.classifier import KerasWindowClassifier
    from morpheus_core.engine import block_shape, classify_image
    from morpheus_core.simulate import render_sky
    from morpheus_core.stats import deviation_report, finalize
    from morpheus_core.weights import load_released_model
    from morpheus_core.windows import cut_windows, standardize_windows, window_moments

    size = args.tile + WINDOW - 1
    image = render_sky((size, size), seed=7).images
    n_windows = args.tile * args.tile
    hwc = np.ascontiguousarray(np.moveaxis(image, 0, -1))
    rng = np.random.default_rng(0)
    ys = rng.integers(0, size - WINDOW + 1, args.batch)
    xs = rng.integers(0, size - WINDOW + 1, args.batch)
    windows = standardize_windows(cut_windows(hwc, ys, xs, WINDOW))

    full = KerasWindowClassifier(load_released_model(), border=BORDER)
    cropped = KerasWindowClassifier(load_released_model(crop=True), border=BORDER)
    engines = {"float32": cropped}
    if not args.skip_bf16:
        engines["bfloat16"] = KerasWindowClassifier(load_released_model(crop=True, precision="bfloat16"), border=BORDER)
    load0 = os.getloadavg()
    print(f"machine: {machine()}; keras backend {keras.backend.backend()}")
    print(f"load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
    print(f"tile {args.tile}x{args.tile} core, {size}x{size} read, {n_windows} windows, batch {args.batch}")

    # The network as the engine runs it (InferenceNetwork, then the softmax compiled
    # with XLA), without cutting, standardising, votes or fold.
    softmax_only = compiled(lambda g: keras.ops.softmax(g, axis=-1))
    repeats = 12  # ~4 s per measurement, so that bursts of load average out as for the engine
    bare = {
        "bare_full_float32": lambda: [full(windows) for _ in range(repeats)],
        "bare_cropped_float32": lambda: [cropped(windows) for _ in range(repeats)],
        "network_only_float32": lambda: [np.asarray(softmax_only(cropped._logits(windows))) for _ in range(repeats)],
    }
    for fn in bare.values():  # compile
        fn()
    for clf in engines.values():
        classify_image(image[:, : WINDOW + 80, : WINDOW + 16], clf, batch_size=args.batch)

    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    results = {}
    for _ in range(args.rounds):
        for name, fn in bare.items():
            w, c, _ = timed(fn, repeats * args.batch)
            wall.setdefault(name, []).append(w)
            cpu.setdefault(name, []).append(c)
        for precision, clf in engines.items():

            def run(clf=clf):
                stats = classify_image(image, clf, anchor_stop=(args.tile, args.tile), batch_size=args.batch)
                return finalize(stats)

            w, c, res = timed(run, n_windows)
            wall.setdefault(f"engine_{precision}", []).append(w)
            cpu.setdefault(f"engine_{precision}", []).append(c)
            results[precision] = res
    load1 = os.getloadavg()

    # Where the time goes: one full block of the engine, phase by phase.
    rows, cols = block_shape(args.tile, args.tile, args.batch)
    by, bx = np.arange(rows), np.arange(cols)
    wy, wx = np.repeat(by, cols), np.tile(bx, rows)
    post_only = compiled(lambda g: block_sums(g, rows, cols))
    logits = cropped._logits(windows[: rows * cols])
    post_only(logits)
    softmax_only(logits)
    phases: dict[str, list[float]] = {"cut_and_standardise": [], "network": [], "softmax": [], "votes_and_fold": []}
    for _ in range(7):
        t0 = time.perf_counter()
        w = standardize_windows(cut_windows(hwc, wy, wx, WINDOW), window_moments(hwc, wy, wx, WINDOW))
        t1 = time.perf_counter()
        lg = cropped._logits(w)
        np.asarray(lg)
        t2 = time.perf_counter()
        np.asarray(post_only(lg))
        t3 = time.perf_counter()
        np.asarray(softmax_only(lg))
        t4 = time.perf_counter()
        phases["cut_and_standardise"].append(t1 - t0)
        phases["network"].append(t2 - t1)
        phases["softmax"].append(t4 - t3)
        phases["votes_and_fold"].append(max(t3 - t2 - (t4 - t3), 0.0))
    per_batch = {k: statistics.median(v) * 1e3 for k, v in phases.items()}
    total = sum(per_batch.values())
    non_network = per_batch["cut_and_standardise"] + per_batch["votes_and_fold"]
    print(f"load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    for name in wall:
        print(f"{name}_windows_per_s {spread(wall[name])}   cpu {statistics.median(cpu[name]):.0f} w/cpu-s")
    print(
        f"engine block {rows}x{cols}: per batch (ms, median of 7) "
        + ", ".join(f"{k} {v:.1f}" for k, v in per_batch.items())
        + f"; run sequentially, not-network share (cut, standardise, votes, fold; the "
        f"softmax is the network's last layer) {100 * non_network / total:.1f}%"
    )
    for how, pick in (("median", statistics.median), ("best", max)):
        engine_vs_net = pick(wall["engine_float32"]) / pick(wall["network_only_float32"])
        print(f"engine_float32 / network_only_float32 ({how}) {engine_vs_net:.3f}")

    ref = statistics.median(wall["bare_full_float32"])
    ref_cpu = statistics.median(cpu["bare_full_float32"])
    ratio32 = statistics.median(wall["engine_float32"]) / ref
    print(f"ratio_float32_cpu {statistics.median(cpu['engine_float32']) / ref_cpu:.3f}")
    print(f"ratio_float32_best {max(wall['engine_float32']) / max(wall['bare_full_float32']):.3f}")
    if args.skip_bf16:
        print(f"ratio_float32 {ratio32:.3f}")
        return
    report = deviation_report(results["float32"], results["bfloat16"])
    print(f"bf16_max_abs_diff_mean {report['max_abs_diff_mean']:.4g}")
    print(f"ratio_bfloat16_cpu {statistics.median(cpu['engine_bfloat16']) / ref_cpu:.3f}")
    print(f"ratio_bfloat16_best {max(wall['engine_bfloat16']) / max(wall['bare_full_float32']):.3f}")
    print(f"ratio_float32 {ratio32:.3f}")
    print(f"ratio_bfloat16 {statistics.median(wall['engine_bfloat16']) / ref:.3f}")
    print(f"bf16_vote_agreement {1.0 - report['top_rank_changed']:.5f}")


if __name__ == "__main__":
    main()
