"""Downstream graph: memory against mosaic area at a fixed chunk size, and time.

Builds constructed classifications (``tests/pipeline/downstream_scene.py``: exact 0/1
background cores and skies, a fixed source density) of 1x, 4x and 16x the area,
writes each as a run directory, then runs segmentation, deblending, the catalog and
the colour image (``pipeline.downstream.driver.run_downstream``, Dask's threaded scheduler)
in a fresh process per size and prints its peak resident memory and wall time. With
the memory bounded by the chunk size, the peak should stay nearly flat while the area
grows 16x (the driver keeps per-object tables, which grow with the number of objects).

Usage::

    python benchmarks/downstream.py [--size 512] [--chunk 256]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# VmHWM (peak RSS of this process image): unlike getrusage's ru_maxrss it does not
# inherit the parent's resident size across fork + exec.
CHILD = """
import json, sys, time
from pipeline.downstream.driver import run_downstream
from pipeline.settings import DownstreamSettings
t = time.perf_counter()
s = run_downstream(sys.argv[1], DownstreamSettings(), client=None, echo=lambda *a: None)
print(json.dumps({"seconds": time.perf_counter() - t, "segments": s.segments, "objects": s.objects,
                  "approximate": len(s.approximate_chunks),
                  "peak_mb": next(int(l.split()[1]) for l in open("/proc/self/status")
                                  if l.startswith("VmHWM")) / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="side of the 1x mosaic (pixels)")
    parser.add_argument("--chunk", type=int, default=256)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.pipeline.downstream_scene import make_scene, random_sources, write_run

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for factor in (1, 2, 4):
            shape = (args.size * factor, args.size * factor)
            scene = make_scene(shape, random_sources(shape, seed=factor))
            run_dir = write_run(Path(tmp) / f"x{factor * factor}", scene, chunk=args.chunk)
            del scene
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(run_dir)], capture_output=True, text=True, cwd=ROOT, check=True
            )
            rows.append((factor * factor, shape, json.loads(out.stdout.strip().splitlines()[-1])))
    print(f"chunk {args.chunk}; one process, Dask threaded scheduler")
    print(f"{'area':>5} {'shape':>12} {'segments':>9} {'objects':>8} {'approx':>7} {'seconds':>8} {'peak MiB':>9}")
    for area, shape, r in rows:
        print(
            f"{'x' + str(area):>5} {str(shape[0]) + 'x' + str(shape[1]):>12} {r['segments']:>9} {r['objects']:>8} "
            f"{r['approximate']:>7} {r['seconds']:>8.1f} {r['peak_mb']:>9.0f}"
        )
    print(f"peak_memory_ratio_x16_over_x1 {rows[-1][2]['peak_mb'] / rows[0][2]['peak_mb']:.2f}")


if __name__ == "__main__":
    main()
