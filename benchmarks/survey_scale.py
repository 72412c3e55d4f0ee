"""GOODS-S size on one machine: the whole command line on x1, x4 and x16 areas.

Generates (quickly, band by band) a four-band mosaic with the features of the Hubble
Legacy Fields: Gaussian noise, ~5 x 10^4 sources per 10^8 pixels (galaxies with
exponential and de Vaucouleurs-like profiles and their own colours, stars), a NaN
footprint edge across one corner and zero-censored star cores. Then runs
``python -m pipeline run`` on it with a cheap stand-in network (``--model
standin-sky``: background 1 on sky, 0 on source cores, so that segmentation,
deblending and the catalog see a realistic classification) at a stride that keeps the
network part cheap, and prints for each area:

- the wall time of each stage (from the ``stage ...`` lines of ``pipeline.log``);
- the peak resident memory of the driver and of the largest worker during each stage
  (the process tree sampled every 0.2 s);
- the disk use of each product and of the whole run directory;
- the objects catalogued, and the rate of the classification.

Targets at 10^8 pixels on a 2-core, 24 GB machine: no worker above 3 GB, the driver
below 2 GB, everything but the network under 15 minutes, and x16 the area in at most
20x the time of x1.

Usage::

    python benchmarks/survey_scale.py                      # sides 2500, 5000, 10000
    python benchmarks/survey_scale.py --sides 1000 2000    # a quick look
    python benchmarks/survey_scale.py --keep /tmp/scale    # keep mosaics and runs
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BANDS = ("H", "J", "V", "Z")
#: Sources per pixel: ~5 x 10^4 over GOODS-S's ~10^8 pixels.
DENSITY = 5e-4
#: Stages in the order a run passes them (``pipeline.timing.stage`` names).
STAGES = (
    "preflight",
    "ingest",
    "classify",
    "merge",
    "fits",
    "segmentation",
    "labels",
    "deblending",
    "colour",
    "catalog",
    "products",
)
#: Stages that are the network (left out of the "everything but the network" target).
NETWORK = ("classify",)


# -- the mosaic ---------------------------------------------------------------------------
def _profile(kind: int, size: float, half: int) -> np.ndarray:
    """A normalised source stamp of ``2 half + 1`` pixels: 0 star (PSF), 1 exponential
    disk, 2 a steeper de Vaucouleurs-like profile."""
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    r = np.hypot(y, x)
    if kind == 0:
        stamp = np.exp(-0.5 * (r / 1.2) ** 2)
    elif kind == 1:
        stamp = np.exp(-1.68 * r / size)
    else:
        stamp = np.exp(-7.67 * ((r + 0.5) / size) ** 0.25)
    return (stamp / stamp.sum()).astype(np.float32)


def make_mosaic(folder: Path, side: int, *, seed: int = 0) -> tuple[Path, int]:
    """Write the four band images (FITS, 0.06"/px TAN WCS at GOODS-S) and a TOML
    naming them mosaic ``survey``; returns the TOML and the number of sources."""
    from astropy.io import fits
    from astropy.wcs import WCS

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, side])
    n = int(round(DENSITY * side * side))
    ys, xs = rng.uniform(0, side, n), rng.uniform(0, side, n)
    kind = rng.choice(3, size=n, p=[0.1, 0.6, 0.3])
    size = rng.uniform(1.5, 6.0, n)
    flux = 30.0 * (1.0 + rng.pareto(1.3, n))  # many faint, a few bright (noise sigma 1)
    flux[kind == 0] *= 20.0
    colour = rng.normal(0.0, 0.4, (n, 4)).astype(np.float32)
    colour[kind == 2] += np.array([0.5, 0.3, -0.3, -0.5], np.float32)  # red spheroids
    colour[kind == 0] += np.array([-0.4, -0.2, 0.2, 0.4], np.float32)  # blue stars
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [53.1225, -27.8055]
    wcs.wcs.crpix = [side / 2, side / 2]
    wcs.wcs.cdelt = [-0.06 / 3600, 0.06 / 3600]
    header = wcs.to_header()
    # A footprint edge across the lower-right corner (NaN outside), as a survey's.
    edge_rows = np.arange(side)
    edge = (0.85 * side + 0.25 * (edge_rows - side / 2)).astype(int)
    stamps = {}
    entries = []
    for b, band in enumerate(BANDS):
        image = rng.standard_normal((side, side), dtype=np.float32)
        for i in range(n):
            key = (int(kind[i]), round(float(size[i]), 1))
            half = 6 if kind[i] == 0 else int(min(30, 5 * size[i]))
            if key not in stamps:
                stamps[key] = _profile(key[0], key[1], half)
            stamp = stamps[key]
            h = stamp.shape[0] // 2
            y0, x0 = int(ys[i]) - h, int(xs[i]) - h
            sy0, sx0 = max(0, -y0), max(0, -x0)
            y1, x1 = min(side, y0 + stamp.shape[0]), min(side, x0 + stamp.shape[1])
            if y1 <= max(y0, 0) or x1 <= max(x0, 0):
                continue
            image[max(y0, 0) : y1, max(x0, 0) : x1] += (flux[i] * np.exp(colour[i, b])) * stamp[
                sy0 : sy0 + y1 - max(y0, 0), sx0 : sx0 + x1 - max(x0, 0)
            ]
        # zero-censored cores of the brightest stars (saturated pixels set to 0)
        for i in np.flatnonzero((kind == 0) & (flux > np.quantile(flux, 0.98))):
            y, x = int(ys[i]), int(xs[i])
            image[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2] = 0.0
        for y in range(side):
            image[y, max(0, edge[y]) :] = np.nan
        name = f"survey_{band}.fits"
        fits.PrimaryHDU(image, header=header).writeto(folder / name, overwrite=True)
        entries.append(f'{band} = "{name}"')
        del image
    toml = folder / "mosaics.toml"
    toml.write_text(f"[mosaics.survey]\nbands = {{ {', '.join(entries)} }}\n")
    return toml, n


# -- measuring a run ----------------------------------------------------------------------
class TreeSampler(threading.Thread):
    """Samples the resident memory of a process and of its descendants."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self.root, self.interval, self.samples = psutil.Process(pid), interval, []
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._halt.is_set():
            try:
                driver = self.root.memory_info().rss
                children = []
                for child in self.root.children(recursive=True):
                    try:
                        children.append(child.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.samples.append((time.time(), driver, max(children, default=0)))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


STAGE_LINE = re.compile(r"^(\S+ \S+) INFO pipeline\.stage: stage (\w+): (start|done in ([\d.]+) s)")


def stage_times(log: Path) -> dict[str, tuple[float, float]]:
    """Stage -> (start, end) wall-clock times from ``pipeline.log``."""
    starts, out = {}, {}
    for line in log.read_text().splitlines():
        m = STAGE_LINE.match(line)
        if not m:
            continue
        t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        if m.group(3) == "start":
            starts[m.group(2)] = t
        elif m.group(2) in starts:
            out[m.group(2)] = (starts[m.group(2)], starts[m.group(2)] + float(m.group(4)))
    return out


def disk_use(run_dir: Path) -> dict[str, int]:
    """Bytes of each top-level entry of the run directory."""
    out = {}
    for entry in sorted(run_dir.iterdir()):
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        out[entry.name] = sum(p.stat().st_size for p in files)
    return out


def run_once(toml: Path, run_dir: Path, *, stride: int, tile: int, workers: int, model: str) -> dict:
    """The CLI on the mosaic, measured."""
    args = [
        sys.executable,
        "-m",
        "pipeline",
        "run",
        "--mosaic",
        "survey",
        "--mosaics-file",
        str(toml),
        "--run-dir",
        str(run_dir),
        "--model",
        model,
        "--stride",
        str(stride),
        "--tile",
        str(tile),
        "--workers",
        str(workers),
        "--no-progress",
        "--restart",
    ]
    t0 = time.time()
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    sampler.stop()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({proc.returncode}):\n{out}")
    stages = stage_times(run_dir / "pipeline.log")
    per_stage = {}
    for name, (start, end) in stages.items():
        inside = [s for s in sampler.samples if start - 0.2 <= s[0] <= end + 0.2]
        per_stage[name] = {
            "seconds": end - start,
            "driver_mb": max((s[1] for s in inside), default=0) / 2**20,
            "worker_mb": max((s[2] for s in inside), default=0) / 2**20,
        }
    record = json.loads((run_dir / "downstream.json").read_text())
    windows = re.search(r"\((\d+) windows, (\d+) windows/s\)", out)
    disk = disk_use(run_dir)
    products = sum(
        v
        for k, v in disk.items()
        if k in ("classification.zarr", "fits", "segmentation.zarr", "catalog", "colour.png", "downstream.json")
    )
    log = (run_dir / "pipeline.log").read_text()
    warnings = [line for line in log.splitlines() if " WARNING " in line or " ERROR " in line]
    return {
        "wall": wall,
        "stages": per_stage,
        "objects": record["objects"],
        "disk": disk,
        "warnings": warnings,
        "shutdown_kills": sum("still alive" in line for line in log.splitlines() + out.splitlines()),
        "products_bytes": products,
        "run_dir_bytes": sum(disk.values()),
        "driver_peak_mb": max((s[1] for s in sampler.samples), default=0) / 2**20,
        "worker_peak_mb": max((s[2] for s in sampler.samples), default=0) / 2**20,
        "windows": int(windows.group(1)) if windows else 0,
        "windows_per_s": int(windows.group(2)) if windows else 0,
        "output": out,
    }


def report(results: dict[int, dict], sources: dict[int, int]) -> str:
    """Markdown tables of the measurements."""
    sides = sorted(results)
    head = "| stage | " + " | ".join(f"{s}² ({s * s / 1e6:.2f} Mpx)" for s in sides) + " |"
    lines = [
        "### Wall time per stage (s), peak RSS driver / largest worker (MB)",
        "",
        head,
        "|---|" + "---|" * len(sides),
    ]
    for name in STAGES:
        cells = []
        for s in sides:
            st = results[s]["stages"].get(name)
            cells.append(f"{st['seconds']:.1f} ({st['driver_mb']:.0f} / {st['worker_mb']:.0f})" if st else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    rows = {
        "whole run, wall (s)": lambda r: f"{r['wall']:.0f}",
        "all but the network (s)": lambda r: (
            f"{r['wall'] - sum(r['stages'].get(n, {}).get('seconds', 0) for n in NETWORK):.0f}"
        ),
        "classification rate (windows/s)": lambda r: f"{r['windows_per_s']}",
        "peak RSS driver (MB)": lambda r: f"{r['driver_peak_mb']:.0f}",
        "peak RSS largest worker (MB)": lambda r: f"{r['worker_peak_mb']:.0f}",
        "objects catalogued": lambda r: f"{r['objects']}",
        "warnings in pipeline.log (nanny kills at shutdown)": lambda r: f"{len(r['warnings'])} ({r['shutdown_kills']})",
        "run directory (GB)": lambda r: f"{r['run_dir_bytes'] / 1e9:.2f}",
        "products (GB)": lambda r: f"{r['products_bytes'] / 1e9:.2f}",
        "run directory / products": lambda r: f"{r['run_dir_bytes'] / max(r['products_bytes'], 1):.2f}",
    }
    lines += ["", "| measure | " + " | ".join(f"{s}²" for s in sides) + " |", "|---|" + "---|" * len(sides)]
    lines.append("| sources simulated | " + " | ".join(str(sources[s]) for s in sides) + " |")
    for label, cell in rows.items():
        lines.append(f"| {label} | " + " | ".join(cell(results[s]) for s in sides) + " |")
    names = sorted({k for s in sides for k in results[s]["disk"]})
    lines += ["", "| disk (MB) | " + " | ".join(f"{s}²" for s in sides) + " |", "|---|" + "---|" * len(sides)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{results[s]['disk'].get(name, 0) / 1e6:.1f}" for s in sides) + " |")
    if len(sides) > 1:
        base, top = results[sides[0]], results[sides[-1]]
        area = (sides[-1] / sides[0]) ** 2
        lines += [
            "",
            f"x{area:.0f} area took {top['wall'] / base['wall']:.1f}x the time of x1 (target <= 20x for x16).",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[2500, 5000, 10000], help="mosaic sides (px)")
    parser.add_argument("--stride", type=int, default=8, help="window stride (keeps the network part cheap)")
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", default="standin-sky")
    parser.add_argument("--keep", type=Path, help="keep mosaics and runs in this folder")
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    from engine import machine  # benchmarks/engine.py, beside this script

    print(f"machine: {machine()}")
    base = args.keep or Path(tempfile.mkdtemp(prefix="survey-scale-"))
    results, sources = {}, {}
    try:
        for side in args.sides:
            t0 = time.time()
            toml, sources[side] = make_mosaic(base / f"data{side}", side)
            print(f"{side}x{side}: mosaic of {sources[side]} sources written in {time.time() - t0:.0f} s", flush=True)
            results[side] = run_once(
                toml, base / f"run{side}", stride=args.stride, tile=args.tile, workers=args.workers, model=args.model
            )
            print(
                f"{side}x{side}: run in {results[side]['wall']:.0f} s, {results[side]['objects']} objects", flush=True
            )
            if args.keep is None:
                shutil.rmtree(base / f"data{side}")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    print()
    print(f"stride {args.stride}, tile {args.tile}, {args.workers} workers, --model {args.model}")
    print(report(results, sources))
    if args.json:
        args.json.write_text(
            json.dumps(
                {str(k): {kk: vv for kk, vv in v.items() if kk != "output"} for k, v in results.items()}, indent=2
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
