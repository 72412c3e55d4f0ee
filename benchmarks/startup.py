"""Start-up cost: where the time before the first window goes, on a small mosaic.

Prints a breakdown, each figure the median of ``--repeat`` measurements:

- ``python``: the interpreter alone (``python -c pass``);
- ``driver imports``: ``import pipeline.cli.main`` and what ``run`` imports on the
  driver (``pipeline.run``), each in a fresh interpreter, and whether TensorFlow or
  Keras was imported there (it should not be: only the workers need them);
- ``model load``: one worker's network, in a fresh interpreter: importing TensorFlow
  and Keras, then building the network and reading the released weights
  (:func:`pipeline.classify.tasks.load_classifier`);
- ``run``: the command line end to end (``python -m pipeline run --model released``)
  on a 150x170 four-band mosaic with two worker processes, and its stages as
  ``pipeline.log`` times them (preflight, ingest, classify, ...): the time before the
  first window is the wall time less the stages after the classification starts
  plus the workers' model load.

Usage::

    python benchmarks/startup.py [--repeat 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_LOAD = """
import time
t0 = time.perf_counter()
import tensorflow, keras  # noqa: F401
t1 = time.perf_counter()
from pipeline.classify.tasks import load_classifier
from pipeline.settings import RunSettings
load_classifier(RunSettings(model="released", threads_per_worker=1))
t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""

_IMPORTS = """
import sys, time
t0 = time.perf_counter()
import {module}  # noqa: F401
t1 = time.perf_counter()
print(f"{{t1 - t0:.3f}} {{'tensorflow' in sys.modules}} {{'keras' in sys.modules}}")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _python(code: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    return time.perf_counter() - t0, done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def _mosaic(folder: Path) -> Path:
    from astropy.io import fits

    from morpheus_core.simulate import render_sky

    sky = render_sky((150, 170), seed=3, n_galaxies=8, n_stars=2)
    header = sky.wcs.to_header()
    entries = []
    for i, band in enumerate("HJVZ"):
        fits.PrimaryHDU(sky.images[i], header=header).writeto(folder / f"s_{band}.fits", overwrite=True)
        entries.append(f'{band} = "s_{band}.fits"')
    toml = folder / "mosaics.toml"
    toml.write_text(f"[mosaics.s]\nbands = {{ {', '.join(entries)} }}\n")
    return toml


def _run(toml: Path, run_dir: Path, workers: int) -> tuple[float, dict[str, float]]:
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--mosaic",
        "s",
        "--mosaics-file",
        str(toml),
        "--run-dir",
        str(run_dir),
        "--model",
        "released",
        "--tile",
        "256",
        "--workers",
        str(workers),
        "--no-progress",
        "--restart",
    ]
    t0 = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, env=_env(), check=True, cwd=run_dir.parent)
    wall = time.perf_counter() - t0
    stages = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"stage (\w+): done in ([\d.]+) s", (run_dir / "pipeline.log").read_text())
    }
    return wall, stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    med = statistics.median

    python = med(_python("pass")[0] for _ in range(args.repeat))
    print(f"python -c pass: {python:.2f} s")
    for module in ("pipeline.cli.main", "pipeline.run"):
        rows = [_python(_IMPORTS.format(module=module))[1].split() for _ in range(args.repeat)]
        seconds = med(float(r[0]) for r in rows)
        print(f"driver: import {module}: {seconds:.2f} s (TensorFlow imported: {rows[0][1]}, Keras: {rows[0][2]})")
    loads = [tuple(map(float, _python(_LOAD)[1].split())) for _ in range(args.repeat)]
    tf_import, build = med(x[0] for x in loads), med(x[1] for x in loads)
    print(f"worker: import tensorflow + keras: {tf_import:.2f} s; network built and weights read: {build:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        toml = _mosaic(folder)
        runs = [_run(toml, folder / "run", args.workers) for _ in range(args.repeat)]
    wall = med(r[0] for r in runs)
    names = sorted({name for _, stages in runs for name in stages})
    stages = {name: med(s.get(name, 0.0) for _, s in runs) for name in names}
    print(f"run (150x170, {args.workers} workers, released model): {wall:.1f} s wall")
    for name in names:
        print(f"  stage {name}: {stages[name]:.2f} s")
    print(
        f"  outside the stages (interpreter, imports, cluster start and stop, model load, downstream set-up): "
        f"{wall - sum(stages.values()):.1f} s"
    )


if __name__ == "__main__":
    main()
