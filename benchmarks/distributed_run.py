"""Distributed run: scaling with workers, overhead against the bare engine, memory.

Prints, measured in one run on this machine:

- windows/s of the tile-classification phase of ``pipeline.run`` with 1 and with 2
  local workers, each limited to one thread (TensorFlow and BLAS included), on the same
  synthetic mosaic, and their ratio (target >= 1.8 on 2 cores);
- windows/s of the bare engine (``classify_image`` on the whole mosaic) in one process
  with one thread, and the distributed 1-worker rate against it (overhead);
- the peak resident memory of a worker for mosaics 1x, 4x and 16x larger in area at
  the same tile size (target: flat within 20%). The memory runs use the stand-in
  network by default (``--memory-classifier released`` for the real one, much slower):
  memory per worker is set by the tile, not by the network's speed.

Usage::

    python benchmarks/distributed_run.py [--size 288] [--tile 128] [--memory-tile 128]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def write_mosaic(folder: Path, size: int, seed: int = 1) -> Path:
    from astropy.io import fits

    from morpheus_core.simulate import render_sky

    sky = render_sky((size, size), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, band in enumerate(("H", "J", "V", "Z")):
        fits.PrimaryHDU(sky.images[i], header=sky.wcs.to_header()).writeto(folder / f"b_{band}.fits", overwrite=True)
        entries.append(f'{band} = "b_{band}.fits"')
    toml = folder / "mosaics.toml"
    toml.write_text(f"[mosaics.bench]\nbands = {{ {', '.join(entries)} }}\n")
    return toml


def distributed_rate(toml: Path, run_dir: Path, workers: int, tile: int, classifier: str = "released"):
    from pipeline.run import run
    from pipeline.rundir.ledger import Ledger
    from pipeline.settings import RunSettings

    config = RunSettings(
        mosaic="bench",
        mosaics_file=toml,
        run_dir=run_dir,
        tile=tile,
        workers=workers,
        threads_per_worker=1,
        model=classifier,
        progress=False,
        gpu="never",
    )
    summary = run(config, echo=lambda s: None)
    ledger = Ledger(run_dir)
    infos = [ledger.done_info(p.stem) for p in (run_dir / "ledger").glob("*.done")]
    return summary.windows / summary.classify_seconds, max(i["peak_rss_mb"] for i in infos), summary


BARE = """
import sys, time, numpy as np
from morpheus_core.runtime import configure_threads
configure_threads(1)
from astropy.io import fits
from morpheus_core.classifier import KerasWindowClassifier
from morpheus_core.engine import classify_image
from morpheus_core.weights import load_released_model
folder = sys.argv[1]
img = np.stack([fits.getdata(f"{folder}/b_{b}.fits") for b in "HJVZ"]).astype(np.float32)
clf = KerasWindowClassifier(load_released_model(crop=True))
classify_image(img[:, :48, :48], clf)
t = time.perf_counter(); s = classify_image(img, clf)
print((img.shape[1] - 39) * (img.shape[2] - 39) / (time.perf_counter() - t))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=295, help="mosaic side for the rate runs")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--memory-tile", type=int, default=128)
    parser.add_argument("--memory-classifier", default="standin", choices=("standin", "released"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        toml = write_mosaic(tmp / "m", args.size)
        bare = float(
            subprocess.run([sys.executable, "-c", BARE, str(toml.parent)], capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        r1, _, s1 = distributed_rate(toml, tmp / "r1", 1, args.tile)
        r2, _, s2 = distributed_rate(toml, tmp / "r2", 2, args.tile)
        print(f"mosaic {args.size}x{args.size}, tile {args.tile}, {s1.tiles} tiles, {s1.windows} windows")
        print(f"bare_engine_1thread_windows_per_s {bare:.1f}")
        print(f"distributed_1worker_windows_per_s {r1:.1f}")
        print(f"distributed_2workers_windows_per_s {r2:.1f}")
        print(f"scaling_2_over_1 {r2 / r1:.3f}")
        print(f"overhead_1worker_vs_bare {1 - r1 / bare:+.3f}")
        peaks = []
        for factor in (1, 2, 4):  # side x1, x2, x4 -> area x1, x4, x16
            size = args.memory_tile * 2 * factor + 39
            mtoml = write_mosaic(tmp / f"mem{factor}", size, seed=factor)
            _, peak, s = distributed_rate(mtoml, tmp / f"mr{factor}", 1, args.memory_tile, args.memory_classifier)
            peaks.append(peak)
            print(f"memory area x{factor * factor}: {size}x{size}, {s.tiles} tiles, worker peak RSS {peak:.0f} MiB")
        print(f"memory_ratio_16x_over_1x {peaks[-1] / peaks[0]:.3f}")


if __name__ == "__main__":
    main()
