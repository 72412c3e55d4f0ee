"""Reading a compressed band in strips: astropy on its own against ``pipeline.inputs.band_files``.

Writes one float32 band of ``--size`` x ``--size`` pixels as a plain ``.fits`` and as a
``.fits.gz`` (astropy compresses by the name), then reads each in ``--rows``-row strips
through ``hdu.section`` without a memory map, as the pixel check and the ingest do, and
prints the seconds of each pass and the peak resident memory of the process that made
it (a child process per pass, Python, NumPy and astropy included; a strip is
``rows x size x 4`` bytes):

- ``plain``: the uncompressed file (the reference);
- ``gzip_astropy``: ``fits.open`` on the ``.fits.gz``; astropy seeks back after every
  section read, which restarts the decompression from the file's start;
- ``gzip_band_files``: :func:`pipeline.inputs.band_files.open_band`, whose reader postpones
  seeks to the next read, so strips read in order decompress the file once.

Usage::

    python benchmarks/compressed_bands.py [--size 6000] [--rows 256]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

_PASS = """
import json, sys, time
import numpy as np
from astropy.io import fits
from pipeline.inputs.band_files import open_band

path, how, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
t0 = time.perf_counter()
hdul = fits.open(path, memmap=False, lazy_load_hdus=True) if how == "astropy" else open_band(path)
with hdul:
    hdu = hdul[0]
    total = 0.0
    for y0 in range(0, hdu.shape[0], rows):
        total += float(np.nansum(hdu.section[y0:y0 + rows, :]))
seconds = time.perf_counter() - t0
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across exec
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "sum": total}))
"""


def _pass(path: Path, how: str, rows: int) -> dict:
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", _PASS, str(path), how, str(rows)],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(repo), "PATH": ""},
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=6000, help="band side in pixels (6000)")
    parser.add_argument("--rows", type=int, default=256, help="rows per strip (256, the pixel check's)")
    args = parser.parse_args()

    import numpy as np
    from astropy.io import fits

    with tempfile.TemporaryDirectory() as tmp:
        data = np.random.default_rng(0).normal(size=(args.size, args.size)).astype(np.float32)
        plain, packed = Path(tmp) / "band.fits", Path(tmp) / "band.fits.gz"
        fits.PrimaryHDU(data).writeto(plain)
        fits.PrimaryHDU(data).writeto(packed)
        del data
        print(
            f"machine: {platform.node()} ({platform.processor() or platform.machine()}), python "
            f"{platform.python_version()}"
        )
        print(
            f"band: {args.size} x {args.size} float32, {plain.stat().st_size / 2**20:.0f} MiB plain, "
            f"{packed.stat().st_size / 2**20:.0f} MiB gzip; strips of {args.rows} rows"
        )
        results = {
            "plain": _pass(plain, "astropy", args.rows),
            "gzip_astropy": _pass(packed, "astropy", args.rows),
            "gzip_band_files": _pass(packed, "band_files", args.rows),
        }
    sums = {r["sum"] for r in results.values()}
    for name, r in results.items():
        print(f"{name}: {r['seconds']:.2f} s, peak resident {r['peak_mib']:.0f} MiB")
    print(f"same pixels read by all three: {len(sums) == 1}")
    print(
        f"speed-up of band_files over astropy on gzip: "
        f"{results['gzip_astropy']['seconds'] / results['gzip_band_files']['seconds']:.1f}x"
    )


if __name__ == "__main__":
    main()
