"""The engine on the JAX backend, as a GPU sees it: rate, precision modes, memory.

Run by ``benchmarks/gpu_check.sh`` (see ``benchmarks/GPU.md``). On one
``tile x tile`` core (its read region is ``tile + 39`` square, a synthetic sky, stride 1):

- the engine rate (windows/s, all 15 images + n) in bfloat16 for each batch of
  ``--batches``, and the best batch;
- at the best batch: float32 (``jax_default_matmul_precision="float32"``, true float32
  convolutions), TF32 (``"tensorfloat32"``) and bfloat16 (the Keras ``mixed_bfloat16``
  policy); the pipeline's float32 runs at JAX's default precision, which XLA may
  execute as TF32 on NVIDIA GPUs;
- the bfloat16 vote agreement with float32 (the share of counted pixels whose top
  rank-vote class is the same), and TF32's;
- the share of time outside the network: ``1 - engine rate / network-only rate``, the
  network alone (cropped, ``InferenceNetwork``) on device-resident windows at the
  same batch;
- GPU memory: the peak JAX reports for the device (``memory_stats``; n/a on a CPU).

Every rate is the best of ``--rounds`` runs after one untimed run that compiles every
block shape. The results are also written as JSON (``--json``) for
``benchmarks/gpu_cli_run.py``.

Usage::

    KERAS_BACKEND=jax python benchmarks/gpu_engine.py --weights W.weights.h5
        [--tile 1024] [--batches 4096,8192,16384,32768] [--rounds 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: JAX ``default_matmul_precision`` and Keras model precision of each mode.
MODES = {"float32": ("float32", "float32"), "tf32": ("tensorfloat32", "float32"), "bfloat16": (None, "bfloat16")}


def device_summary() -> str:
    import jax

    dev = jax.devices()[0]
    return f"JAX {jax.__version__}, {jax.default_backend()}: {dev.device_kind} ({len(jax.devices())} device(s))"


def peak_memory() -> dict:
    """Peak and limit of device memory in bytes as JAX reports them (empty on CPU)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return {k: int(stats[k]) for k in ("peak_bytes_in_use", "bytes_in_use", "bytes_limit") if k in stats}


def set_precision(value: str | None) -> None:
    import jax

    jax.config.update("jax_default_matmul_precision", value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="the network's .weights.h5 (benchmarks/gpu_prepare.sh)")
    parser.add_argument("--tile", type=int, default=1024, help="tile core size (1024)")
    parser.add_argument("--batches", default="4096,8192,16384,32768", help="bfloat16 batch sweep")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs per setting (best taken)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    import keras

    if keras.backend.backend() != "jax":
        raise SystemExit(f"run with KERAS_BACKEND=jax (Keras backend is {keras.backend.backend()})")
    import jax
    from gpu_cli_run import sky_image

    from morpheus_core import BORDER, WINDOW
    from morpheus_core.classifier import KerasWindowClassifier
    from morpheus_core.engine import classify_image
    from morpheus_core.stats import deviation_report, finalize
    from morpheus_core.weights import load_model

    size = args.tile + WINDOW - 1
    image = sky_image(size, seed=7)
    n_windows = args.tile * args.tile
    stop = (args.tile, args.tile)
    print(f"machine: {platform.node()}; {device_summary()}; {os.cpu_count()} CPU cores")
    print(f"tile {args.tile}x{args.tile} core ({size}x{size} read), {n_windows} windows per run, stride 1")

    models = {p: load_model(args.weights, crop=True, precision=p) for p in ("float32", "bfloat16")}
    classifiers: dict = {}

    def engine(mode: str, batch: int) -> tuple[float, object]:
        """Best rate of ``mode`` at ``batch`` and its classification."""
        matmul, precision = MODES[mode]
        set_precision(matmul)
        key = (mode, batch)
        if key not in classifiers:
            classifiers[key] = KerasWindowClassifier(models[precision], border=BORDER)
            classify_image(image, classifiers[key], anchor_stop=stop, batch_size=batch)  # compile every shape
        best, result = 0.0, None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            stats = classify_image(image, classifiers[key], anchor_stop=stop, batch_size=batch)
            best = max(best, n_windows / (time.perf_counter() - t0))
            result = stats
        return best, finalize(result)

    def network_only(mode: str, batch: int) -> float:
        """Rate of the network alone (logits + softmax) on device-resident windows."""
        matmul, _ = MODES[mode]
        set_precision(matmul)
        clf = classifiers[(mode, batch)]
        rng = np.random.default_rng(0)
        windows = jax.device_put(rng.standard_normal((batch, WINDOW, WINDOW, 4)).astype(np.float32))
        fn = jax.jit(lambda w: jax.nn.softmax(clf._logits(w), axis=-1))
        fn(windows).block_until_ready()
        repeats = max(1, n_windows // batch)
        best = 0.0
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(repeats):
                out = fn(windows)
            out.block_until_ready()
            best = max(best, repeats * batch / (time.perf_counter() - t0))
        return best

    results: dict = {"tile": args.tile, "windows": n_windows, "device": device_summary(), "sweep": {}}
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    classified = {}
    for batch in batches:
        rate, res = engine("bfloat16", batch)
        results["sweep"][batch] = rate
        print(f"engine bfloat16 batch {batch}: {rate:,.0f} windows/s", flush=True)
        if rate >= max(results["sweep"].values()):
            classified["bfloat16"] = res
    best_batch = max(results["sweep"], key=results["sweep"].get)
    results["best_batch"] = best_batch
    rates = {"bfloat16": results["sweep"][best_batch]}
    for mode in ("float32", "tf32"):
        rates[mode], classified[mode] = engine(mode, best_batch)
        print(f"engine {mode} batch {best_batch}: {rates[mode]:,.0f} windows/s", flush=True)
    net = {mode: network_only(mode, best_batch) for mode in MODES}
    set_precision(None)
    memory = peak_memory()
    agreement = {
        m: 1.0 - deviation_report(classified["float32"], classified[m])["top_rank_changed"]
        for m in ("bfloat16", "tf32")
    }
    results.update(
        rates=rates,
        network_only=net,
        vote_agreement=agreement,
        memory=memory,
        outside_network={m: 1.0 - rates[m] / net[m] for m in MODES},
    )

    print(f"best batch (bfloat16): {best_batch}")
    print("| mode | engine windows/s | network only windows/s | share outside the network | votes as float32 |")
    print("|---|---|---|---|---|")
    for mode in ("float32", "tf32", "bfloat16"):
        agree = "(reference)" if mode == "float32" else f"{100 * agreement[mode]:.3f}%"
        print(
            f"| {mode} | {rates[mode]:,.0f} | {net[mode]:,.0f} | {100 * results['outside_network'][mode]:.1f}% | {agree} |"
        )
    if memory:
        print(
            f"GPU memory: peak {memory.get('peak_bytes_in_use', 0) / 2**30:.2f} GiB in use "
            f"(limit {memory.get('bytes_limit', 0) / 2**30:.1f} GiB)"
        )
    else:
        print("GPU memory: n/a (no GPU device)")
    print(f"engine_bfloat16_windows_per_s {rates['bfloat16']:.0f}")
    print(f"bf16_vote_agreement {agreement['bfloat16']:.5f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
