"""The map of a run: tile-pyramid build time and peak memory, time to first tile,
and what checking the classification store costs.

    python benchmarks/viewer.py                              # demo run (runs/demo) + 2500^2, 5000^2, 10000^2 px
    python benchmarks/viewer.py --sides 2500 --no-browser    # quick
    python benchmarks/viewer.py --out benchmarks/viewer.json

Each pyramid is built in a child process (``pipeline.viewer.pyramid.build_pyramid``, Dask's
threaded scheduler with ``--threads`` threads); its peak resident memory is the child's
``ru_maxrss``. The large runs are synthetic run directories written chunk by chunk with
the stores the pyramid reads (bands, coverage, class images, rank votes, counts,
deblended objects) and a catalog of ~400 objects per megapixel (10^8 pixels: ~40,000),
from a 1024^2 constructed scene (``tests.pipeline.downstream_scene``) repeated over the
mosaic, with the classification's checksum record and merge record as ``run`` leaves
them. Before a pyramid is built the classification store's files are compared with
their checksums (``check_sha256_s``, part of the build's time); a reused pyramid only
compares their sizes (``check_sizes_s``). The time to first tile is measured in headless Chromium (``/usr/bin/chromium``)
from navigation to the first tile drawn by the colour-composite layer. Targets: 10^8
pixels in under 10 minutes with under 2 GB peak on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def synthetic_run(folder: Path, side: int, *, block: int = 1024, chunk: int = 256) -> Path:
    """A finished-looking run directory of ``side x side`` pixels, written block by block."""
    import zarr
    from astropy.table import Table
    from scipy import ndimage

    from morpheus_core import BANDS, CLASSES
    from morpheus_core.simulate import make_wcs
    from tests.pipeline.downstream_scene import make_scene, random_sources

    shape = (side, side)
    sources = random_sources((block, block), per_megapixel=400.0, seed=1)
    scene = make_scene((block, block), sources, seed=1)
    labels, n_labels = ndimage.label(scene["rank"][4] < 1)
    wcs = make_wcs(shape)
    header = wcs.to_header_string()
    folder.mkdir(parents=True, exist_ok=True)
    mosaic = zarr.open_group(
        str(folder / "mosaic.zarr"),
        mode="w",
        zarr_format=3,
        attributes={"bands": list(BANDS), "wcs_header": header, "shape": list(shape), "chunk": chunk},
    )
    image = mosaic.create_array("image", shape=(4, *shape), chunks=(4, chunk, chunk), dtype=np.float32)
    coverage = mosaic.create_array("coverage", shape=shape, chunks=(chunk, chunk), dtype=bool)
    cls = zarr.open_group(
        str(folder / "classification.zarr"),
        mode="w",
        zarr_format=3,
        attributes={"classes": list(CLASSES), "wcs_header": header, "complete": True, "run_id": f"bench-{side}"},
    )
    arrays = {
        name: cls.create_array(name, shape=(5, *shape), chunks=(5, chunk, chunk), dtype=np.float32)
        for name in ("mean", "rank")
    }
    n = cls.create_array("n", shape=shape, chunks=(chunk, chunk), dtype=np.int32)
    seg = zarr.open_group(
        str(folder / "segmentation.zarr"),
        mode="w",
        zarr_format=3,
        attributes={"complete": True, "settings": {"bench": side}},
    )
    deblended = seg.create_array("deblended", shape=shape, chunks=(chunk, chunk), dtype=np.int32)
    rows = []
    for k, y in enumerate(range(0, side, block)):
        for m, x in enumerate(range(0, side, block)):
            h, w = min(block, side - y), min(block, side - x)
            ys, xs = slice(y, y + h), slice(x, x + w)
            image[:, ys, xs] = scene["bands"][:, :h, :w]
            coverage[ys, xs] = scene["n"][:h, :w] > 0
            arrays["mean"][:, ys, xs] = scene["mean"][:, :h, :w]
            arrays["rank"][:, ys, xs] = scene["rank"][:, :h, :w]
            n[ys, xs] = scene["n"][:h, :w]
            offset = (k * (-(-side // block)) + m) * n_labels
            part = labels[:h, :w]
            deblended[ys, xs] = np.where(part > 0, part + offset, 0)
            rows += [(y + sy, x + sx) for sy, sx, *_ in sources if sy < h and sx < w]
    (folder / "manifest.json").write_text(json.dumps({"run_id": f"bench-{side}", "config": {"mosaic": "bench"}}))
    _record_merge(folder, f"bench-{side}")
    rng = np.random.default_rng(0)
    yx = np.asarray(rows, dtype=np.float64)
    ra, dec = wcs.pixel_to_world_values(yx[:, 1], yx[:, 0])
    p = rng.dirichlet(np.ones(5), len(yx))
    table = Table(
        {
            "id": np.arange(1, len(yx) + 1),
            "x": yx[:, 1],
            "y": yx[:, 0],
            "ra": ra,
            "dec": dec,
            "dominant_class": np.asarray(CLASSES[:4])[np.argmax(p[:, :4], axis=1)],
            **{f"p_{c}": p[:, i] for i, c in enumerate(CLASSES)},
            "agreement": rng.uniform(0, 1, len(yx)),
            "detection_flag": np.ones(len(yx), np.int16),
            "segment_flag": np.zeros(len(yx), np.int16),
            "area": rng.integers(20, 500, len(yx)),
            **{f"flux_{b}": rng.lognormal(0, 1, len(yx)) for b in BANDS},
        }
    )
    (folder / "catalog").mkdir(exist_ok=True)
    table.write(folder / "catalog" / "catalog.parquet", overwrite=True)
    return folder


def _record_merge(folder: Path, run_id: str) -> None:
    """The classification store's checksum record and ``merged.json``, as the merge writes them."""
    from pipeline.rundir.checksums import record_store, write_record
    from pipeline.rundir.layout import RunLayout
    from pipeline.rundir.ledger import Ledger
    from pipeline.rundir.location import Location

    layout = RunLayout(Location(folder))
    write_record(
        layout.classification_checksums, layout.classification, record_store(layout.classification), run_id=run_id
    )
    Ledger(layout.root).mark_merged(run_id, 1)


def check_seconds(run_dir: Path) -> dict:
    """Seconds to compare the classification store with its checksum record: sizes only, and checksums."""
    from pipeline.rundir.location import Location
    from pipeline.rundir.verified import check_classification_store

    run = Location(run_dir)
    run_id = json.loads((run_dir / "manifest.json").read_text())["run_id"]
    check_classification_store(run, run_id, hashes=False)  # imports and first reads out of the timing
    out = {}
    for name, hashes in (("check_sizes_s", False), ("check_sha256_s", True)):
        t = time.perf_counter()
        check = check_classification_store(run, run_id, hashes=hashes)
        out[name] = None if check is None else round(time.perf_counter() - t, 4)
    out["classification_mb"] = round(
        sum(f.stat().st_size for f in (run_dir / "classification.zarr").rglob("*") if f.is_file()) / 1e6, 1
    )
    return out


def build_in_child(run_dir: Path, threads: int) -> dict:
    """Build the pyramid in a child process; its time, tiles and peak resident memory."""
    code = (
        "import json, sys, time, dask; from pipeline.viewer.pyramid import build_pyramid; t = time.perf_counter();"
        f"dask.config.set(num_workers={threads});"
        f"p = build_pyramid({str(run_dir)!r}, echo=lambda *_: None, rebuild=True);"
        "print(json.dumps({'seconds': time.perf_counter() - t, 'tiles': p.tiles, 'levels': p.grid.max_level + 1}))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    if status != 0:
        raise RuntimeError(f"pyramid build failed (status {status})")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    result["tile_mb"] = sum(f.stat().st_size for f in (run_dir / "viewer").rglob("*.png")) / 1e6
    return result


def first_tile_seconds(run_dir: Path) -> dict:
    """Seconds from navigation to the page drawn and to the first colour-composite tile drawn."""
    from pipeline.rundir.location import Location
    from pipeline.viewer.command import prepare
    from pipeline.viewer.server import MapServer
    from tests.pipeline.viewer.browser import browser, loaded_tiles, wait

    pyramid, page = prepare(Location(run_dir), echo=lambda *_: None)
    server = MapServer(pyramid, page, port=0).start()
    driver = browser()
    try:
        t0 = time.monotonic()
        driver.get(server.url)
        wait(lambda: driver.execute_script("return window.Bokeh && Bokeh.documents.length > 0"), 120, "page")
        t_page = time.monotonic() - t0
        wait(lambda: loaded_tiles(driver, "bands") >= 1, 120, "first tile")
        t_tile = time.monotonic() - t0
        return {
            "page_s": round(t_page, 2),
            "first_tile_s": round(t_tile, 2),
            "objects": page.objects,
            "html_mb": round(len(page.html) / 1e6, 2),
        }
    finally:
        driver.quit()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sides",
        type=int,
        nargs="*",
        default=[2500, 5000, 10000],
        help="sides of the synthetic runs (2500, 5000, 10000: x1, x4, x16 = 10^8 pixels)",
    )
    parser.add_argument(
        "--demo",
        type=Path,
        default=REPO / "runs" / "demo",
        help="a demo run directory (skipped if missing; it is copied, not changed)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-browser", action="store_true", help="skip the time to first tile")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    parser.add_argument("--keep", type=Path, help="build the synthetic runs here and keep them")
    args = parser.parse_args()
    results = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "threads": args.threads,
        "runs": [],
    }
    work = args.keep or Path(tempfile.mkdtemp(prefix="morpheus-viewer-bench-"))
    try:
        todo = []
        if args.demo.exists():
            demo = work / "demo"
            shutil.rmtree(demo, ignore_errors=True)
            shutil.copytree(args.demo, demo, ignore=shutil.ignore_patterns("viewer", ".lock", "pipeline.log"))
            todo.append(("demo", demo))
        for side in args.sides:
            t = time.perf_counter()
            run_dir = synthetic_run(work / f"side{side}", side)
            print(f"synthetic run {side} x {side} written in {time.perf_counter() - t:.0f} s", flush=True)
            todo.append((f"{side}x{side}", run_dir))
        for name, run_dir in todo:
            result = {"run": name, **check_seconds(run_dir), **build_in_child(run_dir, args.threads)}
            if not args.no_browser:
                result.update(first_tile_seconds(run_dir))
            results["runs"].append(result)
            print(json.dumps(result), flush=True)
            if not args.keep and name != "demo":
                shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
