"""A full command-line run on a synthetic mosaic, timed against the engine alone.

Run by ``benchmarks/gpu_check.sh`` (see ``benchmarks/GPU.md``). Writes a
``size x size`` four-band mosaic (FITS, with a WCS) and a mosaics TOML file, then runs::

    python -m pipeline run --mosaic gpu-check --mosaics-file M.toml --run-dir R --restart
        --weights W --gpu auto --precision P --tile T --batch-size B --workers 1 --no-progress

(a local Dask cluster: with dask-cuda one worker per GPU, without it a plain
``LocalCluster`` of one worker process, which uses the GPU through JAX all the same),
samples the GPU memory in use (``nvidia-smi``) while it runs, and prints the windows/s
of the classification phase (the CLI's summary line), of the whole run (wall clock,
segmentation, deblending, catalog and products included) and, from ``--engine-json``
(``benchmarks/gpu_engine.py``), of the engine alone.

The mosaic is a noiseless ``render_sky`` scene of at most 1024 x 1024 pixels, laid out
in rotated and mirrored copies over the mosaic, plus fresh white noise of the
simulator's depth: seconds instead of minutes for 4096 x 4096, and the same work for
the network as a rendered sky.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MOSAIC = "gpu-check"


def sky_image(size: int, seed: int = 0, block: int = 1024) -> np.ndarray:
    """``(4, size, size)`` float32 synthetic sky: copies of one rendered scene, fresh noise."""
    from morpheus_core.simulate import DEFAULT_NOISE_SIGMA, render_sky

    block = min(block, size)
    scene = render_sky((block, block), seed=seed, noise_sigma=0.0).images
    out = np.empty((4, size, size), np.float32)
    k = 0
    for y in range(0, size, block):
        for x in range(0, size, block):
            piece = np.rot90(scene, k % 4, axes=(1, 2))
            piece = piece[:, ::-1] if (k // 4) % 2 else piece
            h, w = min(block, size - y), min(block, size - x)
            out[:, y : y + h, x : x + w] = piece[:, :h, :w]
            k += 1
    rng = np.random.default_rng(seed + 1)
    for i, sigma in enumerate(DEFAULT_NOISE_SIGMA.values()):
        out[i] += rng.standard_normal((size, size), dtype=np.float32) * np.float32(sigma)
    return out


def write_mosaic(folder: Path, size: int, seed: int = 0) -> Path:
    """Band FITS files and a mosaics TOML file naming them; returns the TOML path."""
    from astropy.io import fits

    from morpheus_core import BANDS
    from morpheus_core.simulate import make_wcs

    folder.mkdir(parents=True, exist_ok=True)
    image = sky_image(size, seed)
    header = make_wcs((size, size)).to_header()
    bands = {}
    for i, band in enumerate(BANDS):
        path = folder / f"{MOSAIC}_{band}.fits"
        fits.PrimaryHDU(data=image[i], header=header).writeto(path, overwrite=True)
        bands[band] = path.name
    toml = folder / "mosaics.toml"
    entries = ", ".join(f'{b} = "{p}"' for b, p in bands.items())
    toml.write_text(
        f'[mosaics.{MOSAIC}]\ndescription = "synthetic {size}x{size} sky for the GPU check"\nbands = {{ {entries} }}\n'
    )
    return toml


class GpuMemory:
    """Samples ``nvidia-smi``'s memory in use (MiB, all processes) in a thread."""

    def __init__(self, interval: float = 0.5) -> None:
        self.peak, self.interval, self._stop = None, interval, threading.Event()
        self.exe = shutil.which("nvidia-smi")
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    [self.exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout
                used = sum(int(v) for v in out.split())
                self.peak = used if self.peak is None else max(self.peak, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> "GpuMemory":
        if self.exe:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="the network's .weights.h5")
    parser.add_argument("--work", type=Path, required=True, help="folder for the mosaic and the run directory")
    parser.add_argument("--size", type=int, default=4096, help="mosaic side in pixels (4096)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the engine's best batch, else 8192")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--precision", default="bfloat16")
    parser.add_argument("--engine-json", type=Path, help="results of benchmarks/gpu_engine.py")
    args = parser.parse_args()

    engine = json.loads(args.engine_json.read_text()) if args.engine_json and args.engine_json.is_file() else None
    batch = args.batch_size or (int(engine["best_batch"]) if engine else 8192)
    t0 = time.perf_counter()
    toml = write_mosaic(args.work / "mosaic", args.size)
    print(f"mosaic {args.size}x{args.size} written in {time.perf_counter() - t0:.1f} s: {toml}", flush=True)
    run_dir = args.work / "run"
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--mosaic",
        MOSAIC,
        "--mosaics-file",
        str(toml),
        "--run-dir",
        str(run_dir),
        "--restart",
        "--weights",
        args.weights,
        "--gpu",
        "auto",
        "--precision",
        args.precision,
        "--tile",
        str(args.tile),
        "--batch-size",
        str(batch),
        "--stride",
        str(args.stride),
        "--workers",
        "1",
        "--no-progress",
    ]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    with GpuMemory() as memory:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=os.environ.copy())
    wall = time.perf_counter() - t0
    print(proc.stdout[-6000:], end="")
    if proc.returncode != 0:
        print(proc.stderr[-6000:], end="", file=sys.stderr)
    windows = len(range(0, args.size - 39, args.stride)) ** 2
    match = re.search(r"time: ([\d.]+) s \((\d+) windows, (\d+) windows/s\)", proc.stdout)
    print(
        f"cli exit status {proc.returncode}; wall {wall:.1f} s for {windows:,} windows "
        f"(whole run, start-up, segmentation, catalog and products included): {windows / wall:,.0f} windows/s"
    )
    if match:
        print(f"cli_classification_windows_per_s {int(match.group(3))}")
    print(f"cli_whole_run_windows_per_s {windows / wall:.0f}")
    if engine:
        rate = engine["rates"].get(args.precision)
        if rate and match:
            print(
                f"engine alone ({args.precision}, batch {engine['best_batch']}): {rate:,.0f} windows/s; "
                f"CLI classification / engine {int(match.group(3)) / rate:.2f}, whole run / engine "
                f"{windows / wall / rate:.2f}"
            )
    print(
        f"GPU memory in use during the run (nvidia-smi, peak): "
        f"{'n/a' if memory.peak is None else f'{memory.peak / 1024:.2f} GiB'}"
    )
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
