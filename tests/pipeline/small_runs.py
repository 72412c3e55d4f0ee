"""Helpers for tests that run the pipeline on a small synthetic mosaic in several ways
(multi-process, batch-job emulation, object storage) and compare the outputs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from morpheus_core.simulate import render_sky
from pipeline.rundir.location import as_location
from pipeline.settings import RunSettings

REPO = Path(__file__).resolve().parents[2]
SHAPE = (101, 131)  # odd sizes; tile 40 -> 3 x 4 = 12 tiles
N_TILES = 12
#: The classification images as FITS files (the run may write more products).
FITS_NAMES = sorted(
    [
        f"{c}_{k}.fits"
        for c in ("spheroid", "disk", "irregular", "point_source", "background")
        for k in ("mean", "var", "rank")
    ]
    + ["n.fits"]
)


def write_mosaic(folder: Path, *, shape: tuple[int, int] = SHAPE, seed: int = 3, **settings: Any) -> Path:
    """Four seeded synthetic band images and a TOML naming them mosaic ``small``
    (``settings``: more :func:`~morpheus_core.simulate.render_sky` keywords)."""
    sky = render_sky(shape, seed=seed, n_galaxies=6, n_stars=2, **settings)
    folder.mkdir(parents=True, exist_ok=True)
    header = sky.wcs.to_header()
    entries = []
    for i, band in enumerate(("H", "J", "V", "Z")):
        fits.PrimaryHDU(sky.images[i], header=header).writeto(folder / f"small_{band}.fits", overwrite=True)
        entries.append(f'{band} = "small_{band}.fits"')
    toml = folder / "mosaics.toml"
    toml.write_text(f"[mosaics.small]\nbands = {{ {', '.join(entries)} }}\n")
    return toml


def small_config(run_dir: Any, toml: Path, **kwargs: Any) -> RunSettings:
    """Settings of a fast run: stand-in network, tile 40, no progress bar."""
    return RunSettings(
        mosaic="small",
        mosaics_file=toml,
        run_dir=run_dir,
        tile=40,
        model="standin",
        progress=False,
        batch_size=256,
        **kwargs,
    )


def cli_args(run_dir: Any, toml: Path, *extra: str) -> list[str]:
    """``python -m pipeline run`` arguments equivalent to :func:`small_config`."""
    return [
        "run",
        "--mosaic",
        "small",
        "--mosaics-file",
        str(toml),
        "--run-dir",
        str(run_dir),
        "--tile",
        "40",
        "--batch-size",
        "256",
        "--model",
        "standin",
        "--no-progress",
        *extra,
    ]


def outputs(run_dir: Any) -> dict[str, np.ndarray]:
    """The classification images of a run directory (a path, URL or Location)."""
    group = (as_location(run_dir) / "classification.zarr").open_group(mode="r")
    return {k: np.asarray(group[k][:]) for k in ("mean", "variance", "rank", "n")}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    """Equal classification images. Counts and votes are integers and must match
    exactly; means and variances are merged from the same per-tile float64 partial
    sums in the same order, and stored as float32, so 1e-6 absolute is generous."""
    np.testing.assert_array_equal(a["n"], b["n"])
    np.testing.assert_array_equal(a["rank"], b["rank"])
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["variance"], b["variance"], rtol=0, atol=1e-6)
    assert a["n"].max() == 900  # interior pixels counted by every covering window


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def python_env(**extra: str) -> dict[str, str]:
    """Environment of child Python processes: one thread per numerical library."""
    # PYTHONPATH: workers started by hand import the test-only tile task of tests.faults.
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": str(REPO),
    }
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300, cwd: Path = REPO
) -> subprocess.CompletedProcess:
    """``python -m pipeline ARGS`` in a child process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args],
        cwd=cwd,
        env=env or python_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def done_records(run_dir: Any) -> dict[str, dict]:
    """The ledger's records of finished tiles (worker address, windows, ...)."""
    ledger = as_location(run_dir) / "ledger"
    names = [n[: -len(".done")] for n in ledger.listdir() if n.endswith(".done")]
    return {name: (ledger / f"{name}.done").read_json() for name in names}
