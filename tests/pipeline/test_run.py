"""The distributed run: exact chunked merge, failures, resume, resubmit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.io import fits
from astropy.table import Table

from morpheus_core import CLASSES
from morpheus_core.engine import classify_image
from morpheus_core.stats import finalize
from morpheus_core.testing import StandInClassifier
from pipeline.errors import InputError, RunError
from pipeline.run import resubmit, run
from pipeline.rundir.ledger import Ledger
from pipeline.rundir.status import status
from pipeline.settings import RunSettings
from tests.faults import inject
from tests.pipeline.small_runs import write_mosaic

REPO = Path(__file__).resolve().parents[2]
SHAPE = (101, 131)  # odd sizes; tile 40 -> 3 x 4 tiles


def _write_mosaic(folder: Path, shape=SHAPE, seed=3, **kwargs) -> Path:
    return write_mosaic(folder, shape=shape, seed=seed, **kwargs)


def _config(tmp_path: Path, toml: Path, name="run", **kwargs) -> RunSettings:
    return RunSettings(
        mosaic="small",
        mosaics_file=toml,
        run_dir=tmp_path / name,
        tile=40,
        model="standin",
        progress=False,
        batch_size=256,
        **kwargs,
    )


def _outputs(run_dir: Path) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(run_dir / "classification.zarr"), mode="r")
    return {k: np.asarray(group[k][:]) for k in ("mean", "variance", "rank", "n")}


def _assert_same(a: dict, b: dict) -> None:
    np.testing.assert_array_equal(a["n"], b["n"])
    np.testing.assert_array_equal(a["rank"], b["rank"])
    np.testing.assert_allclose(a["mean"], b["mean"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["variance"], b["variance"], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0")
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory) -> Path:
    return _write_mosaic(tmp_path_factory.mktemp("mosaic"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, mosaic, client) -> dict[str, np.ndarray]:
    """An undisturbed chunked run."""
    summary = run(_config(tmp_path_factory.mktemp("ref"), mosaic), client=client, echo=lambda s: None)
    assert summary.tiles == 12 and not summary.failed
    return _outputs(summary.run_dir)


def test_chunked_run_equals_whole_image_engine(reference, mosaic):
    images = np.stack([fits.getdata(mosaic.parent / f"small_{b}.fits") for b in "HJVZ"]).astype(np.float32)
    coverage = np.isfinite(images).all(0) & (images != 0).all(0)
    whole = finalize(classify_image(images, StandInClassifier(), coverage=coverage))
    _assert_same(reference, {"mean": whole.mean, "variance": whole.variance, "rank": whole.rank, "n": whole.n})
    assert reference["n"].max() == 900


def test_fits_products_carry_wcs_and_provenance(reference, tmp_path, mosaic, client):
    summary = run(_config(tmp_path, mosaic), client=client, echo=lambda s: None)
    names = sorted(Path(p).name for p in summary.outputs)
    # 15 classification images, n and coverage; two segmentation maps, four catalog
    # files (MRT only when the catalog has rows), its region file and the colour image
    expected = {f"{c}_{k}.fits" for c in CLASSES for k in ("mean", "var", "rank")} | {
        "n.fits",
        "coverage.fits",
        "segmap.fits",
        "segmap_deblended.fits",
        "colour.png",
        "catalog.parquet",
        "catalog.csv",
        "catalog.fits",
        "objects.reg",
    }
    assert expected <= set(names) and set(names) - expected <= {"catalog.mrt"}
    with fits.open(summary.run_dir / "fits" / "disk_mean.fits") as hdul:
        header = hdul[0].header if hdul[0].data is not None else hdul[1].header
        data = hdul[0].data if hdul[0].data is not None else hdul[1].data
        assert header["CTYPE1"].startswith("RA---") and "RUNID" in header and header["PRECISN"] == "float32"
        np.testing.assert_array_equal(data, reference["mean"][1])
        assert (header["CLASSNAM"], header["IMGKIND"]) == ("disk", "mean") and "BUNIT" not in header
        assert any("dimensionless" in line for line in header["COMMENT"])
    # every FITS product names its input files, in band order, and has no time reference it was not given
    for name in ("disk_rank.fits", "n.fits", "coverage.fits", "segmap.fits", "segmap_deblended.fits"):
        header = fits.getheader(summary.run_dir / "fits" / name)
        assert [header[f"BAND{i}"] for i in (1, 2, 3, 4)] == list("HJVZ"), name
        assert [header[f"FILE{i}"] for i in (1, 2, 3, 4)] == [f"small_{b}.fits" for b in "HJVZ"], name
        assert "MJDREF" not in header and "MJDREFI" not in header, name
    assert fits.getheader(summary.run_dir / "fits" / "n.fits")["BUNIT"] == "count"
    assert "ids" in str(fits.getheader(summary.run_dir / "fits" / "segmap_deblended.fits")["COMMENT"])


def test_the_model_card_is_read_once_and_is_the_one_recorded(tmp_path, mosaic, reference, client, monkeypatch):
    """One read of the card per command: the manifest, the classification store and the
    FITS keywords all carry that one (a weights file's card is not read again per stage)."""
    from dataclasses import replace

    import pipeline.run
    from pipeline.inputs.model_cards import card_for

    reads = []

    def counted(model):
        reads.append(model)
        return replace(card_for(model), name=f"card read {len(reads)}")

    monkeypatch.setattr(pipeline.run, "card_for", counted)
    summary = run(_config(tmp_path, mosaic), client=client, echo=lambda s: None)
    assert reads == ["standin"]
    manifest = json.loads((summary.run_dir / "manifest.json").read_text())
    store = zarr.open_group(str(summary.run_dir / "classification.zarr"), mode="r")
    assert manifest["model_card"]["name"] == store.attrs["model_card"]["name"] == "card read 1"
    _assert_same(_outputs(summary.run_dir), reference)


def test_worker_killed_mid_run_still_completes(tmp_path, mosaic, reference, client):
    config = _config(tmp_path, mosaic, retries=3)
    ledger_dir = config.run_dir / "ledger"

    def killer():
        deadline = time.time() + 60
        while time.time() < deadline and len(list(ledger_dir.glob("*.done"))) < 2:
            time.sleep(0.05)
        pids = client.run(os.getpid)
        os.kill(next(iter(pids.values())), signal.SIGKILL)

    thread = threading.Thread(target=killer)
    thread.start()
    with inject(delay=0.4):
        summary = run(config, client=client, echo=lambda s: None)
    thread.join()
    assert not summary.failed
    _assert_same(_outputs(config.run_dir), reference)


def _cli(*args: str, faults: tuple[str, ...] = (), **kwargs) -> subprocess.Popen:
    """``python -m pipeline ARGS``, or with ``faults`` through ``python -m tests.faults``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)}
    command = ["tests.faults", *faults, "--"] if faults else ["pipeline"]
    return subprocess.Popen(
        [sys.executable, "-m", *command, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_driver_killed_then_resumed_never_recomputes_finished_tiles(tmp_path, mosaic, reference):
    run_dir = tmp_path / "run"
    args = [
        "run",
        "--mosaic",
        "small",
        "--mosaics-file",
        str(mosaic),
        "--run-dir",
        str(run_dir),
        "--tile",
        "40",
        "--model",
        "standin",
        "--workers",
        "2",
        "--no-progress",
    ]
    proc = _cli(*args, faults=("--tile-delay", "1.0"), start_new_session=True)
    ledger_dir = run_dir / "ledger"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(ledger_dir.glob("*.done"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    ledger = Ledger(run_dir)
    finished = {p.stem for p in ledger_dir.glob("*.done")}
    assert 3 <= len(finished) < 12
    before = ledger.executions()
    second = _cli(*args)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    after = ledger.executions()
    for name in finished:
        assert after[name] == before[name], f"finished tile {name} was recomputed"
    assert f"{len(finished)} already finished" in out
    _assert_same(_outputs(run_dir), reference)


def test_permanent_failure_is_reported_then_resubmit_completes(tmp_path, mosaic, reference, client):
    config = _config(tmp_path, mosaic, retries=1)
    with inject(fail=["t0001_0002"]), pytest.raises(RunError, match="t0001_0002"):
        run(config, client=client, echo=lambda s: None)
    report = status(config.run_dir)
    assert report["states"]["failed"] == ["t0001_0002"]
    assert len(report["states"]["finished"]) == 11 and not report["products"]
    assert "injected failure" in report["failed"]["t0001_0002"]["traceback"]
    assert Ledger(config.run_dir).executions()["t0001_0002"] == 2  # first try + 1 retry
    summary = resubmit(config.run_dir, client=client, echo=lambda s: None)  # no injected fault now
    assert summary.executed == 1 and summary.finished_before == 11
    _assert_same(_outputs(config.run_dir), reference)


def test_cli_failure_exit_code_and_status(tmp_path, mosaic):
    run_dir = tmp_path / "run"
    proc = _cli(
        "run",
        "--mosaic",
        "small",
        "--mosaics-file",
        str(mosaic),
        "--run-dir",
        str(run_dir),
        "--tile",
        "40",
        "--model",
        "standin",
        "--workers",
        "1",
        "--no-progress",
        "--retries",
        "0",
        faults=("--fail-tile", "t0000_0000"),
    )
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "t0000_0000" in out
    proc = _cli("status", "--run-dir", str(run_dir))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "11 finished, 1 failed" in out
    proc = _cli("resubmit", "--run-dir", str(run_dir), "--workers", "1")  # the real tile task again
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert (run_dir / "fits" / "n.fits").exists()


def test_changed_settings_on_resume_are_refused(tmp_path, mosaic, client):
    config = _config(tmp_path, mosaic)
    run(config, client=client, echo=lambda s: None)
    changed = _config(tmp_path, mosaic, stride=2)
    with pytest.raises(InputError, match="stride"):
        run(changed, client=client, echo=lambda s: None)
    restarted = _config(tmp_path, mosaic, stride=2, restart=True)
    assert not run(restarted, client=client, echo=lambda s: None).failed


def test_nan_and_censored_regions_get_no_counts_and_no_nan(tmp_path, client):
    toml = _write_mosaic(tmp_path / "m", seed=5, nan_regions=1, censored_regions=2)
    summary = run(_config(tmp_path, toml), client=client, echo=lambda s: None)
    out = _outputs(summary.run_dir)
    images = np.stack([fits.getdata(toml.parent / f"small_{b}.fits") for b in "HJVZ"])
    bad = ~(np.isfinite(images).all(0) & (images != 0).all(0))
    assert bad.any() and (out["n"][bad] == 0).all()
    for key in ("mean", "variance", "rank"):
        assert np.isfinite(out[key]).all()


def test_missing_goods_s_files_exit_2_listing_every_file(tmp_path):
    proc = _cli("run", "--mosaic", "goods-s", "--data-dir", str(tmp_path), "--run-dir", str(tmp_path / "r"))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    for band in ("f160w", "f125w", "f606w", "f850lp"):
        assert band in out
    assert out.strip().count("\n") == 0 or "error:" in out.splitlines()[-1]


def test_demo_end_to_end_with_released_model(tmp_path):
    """`python -m pipeline run --mosaic demo`, at stride 4 to keep the suite fast."""
    run_dir = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "run",
            "--mosaic",
            "demo",
            "--run-dir",
            str(run_dir),
            "--data-dir",
            str(tmp_path / "data"),
            "--stride",
            "4",
            "--no-progress",
            "--workers",
            "1",
            "--threads-per-worker",
            "2",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dashboard: http://127.0.0.1" in proc.stdout
    with fits.open(run_dir / "fits" / "background_rank.fits") as hdul:
        hdu = hdul[0] if hdul[0].data is not None else hdul[1]
        bg = hdu.data
        assert "morpheus-astro" in hdu.header["MODEL"]
    n = fits.getdata(run_dir / "fits" / "n.fits")
    counted = n > 0
    assert counted.mean() > 0.9
    # Most of a deep field is sky: background is the top rank in most counted pixels.
    assert (bg[counted] > 0.5).mean() > 0.5
    means = np.stack(
        [
            fits.getdata(run_dir / "fits" / f"{c}_mean.fits")
            for c in ("spheroid", "disk", "irregular", "point_source", "background")
        ]
    )
    np.testing.assert_allclose(means.sum(0)[counted], 1.0, atol=1e-5)
    # Default downstream settings (the paper's rule on the rank-vote background, threshold 0)
    # find the demo's sources, and the rank-vote sky markers keep the watershed local:
    # every chunk is exact with the first 64 px halo.
    catalog = Table.read(run_dir / "catalog" / "catalog.parquet")
    assert len(catalog) > 0 and (catalog["detection_flag"] == 1).any()
    record = json.loads((run_dir / "downstream.json").read_text())
    assert record["detection"] == {"rule": "paper", "threshold": 0.0, "background": "rank", "sources": "rank"}
    assert record["approximate_chunks"] == []
    assert record["chunk_halos"] and set(record["chunk_halos"].values()) == {64}


def _fits_data(run_dir: Path) -> dict[str, np.ndarray]:
    return {p.name: fits.getdata(p) for p in sorted((run_dir / "fits").glob("*.fits"))}


def test_partials_are_removed_after_the_verified_merge_and_every_stage_resumes(tmp_path, mosaic, reference, client):
    config = _config(tmp_path, mosaic)
    summary = run(config, client=client, echo=lambda s: None)
    partials, merged = config.run_dir / "partials", config.run_dir / "ledger" / "merged.json"
    assert summary.partials_removed == 12 and list(partials.iterdir()) == [] and merged.exists()
    _assert_same(_outputs(config.run_dir), reference)
    report = status(config.run_dir)
    assert len(report["states"]["finished"]) == 12 and report["products"] and not report["corrupt"]
    products = _fits_data(config.run_dir)
    catalog = (config.run_dir / "catalog" / "catalog.csv").read_bytes()

    # Again: the merged store is the result; nothing is classified or merged.
    lines: list[str] = []
    written = {p.name: p.stat().st_mtime_ns for p in (config.run_dir / "fits").glob("*.fits")}
    again = run(config, client=client, echo=lines.append)
    assert again.executed == 0 and again.finished_before == 12 and "merged already" in "\n".join(lines)
    # the classification's FITS products of the merged store are kept, not written again
    kept = {p.name: p.stat().st_mtime_ns for p in (config.run_dir / "fits").glob("*.fits")}
    classification = [f"{c}_{k}.fits" for c in CLASSES for k in ("mean", "var", "rank")] + ["n.fits", "coverage.fits"]
    assert all(kept[name] == written[name] for name in classification)
    assert set(classification) <= {Path(p).name for p in again.outputs}
    # Killed while writing the FITS products: they are written again from the store.
    (config.run_dir / "fits" / "disk_mean.fits").unlink()
    run(config, client=client, echo=lambda s: None)
    assert _fits_data(config.run_dir).keys() == products.keys()
    for name, data in _fits_data(config.run_dir).items():
        np.testing.assert_array_equal(data, products[name], err_msg=name)
    assert (config.run_dir / "catalog" / "catalog.csv").read_bytes() == catalog
    # A resubmit of a merged run has nothing to do either.
    assert resubmit(config.run_dir, client=client, echo=lambda s: None).executed == 0


def test_keep_partials_and_resume_after_an_interrupted_merge_or_removal(tmp_path, mosaic, reference, client):
    config = _config(tmp_path, mosaic, keep_partials=True)
    run(config, client=client, echo=lambda s: None)
    partials, merged = config.run_dir / "partials", config.run_dir / "ledger" / "merged.json"
    assert len(list(partials.glob("*.npz"))) == 12 and merged.exists()
    # Killed during the merge: no merged record, an unfinished store; the kept partials
    # are merged again.
    merged.unlink()
    zarr.open_group(str(config.run_dir / "classification.zarr"), mode="r+").attrs["complete"] = False
    again = run(config, client=client, echo=lambda s: None)
    assert again.executed == 0 and merged.exists() and len(list(partials.glob("*.npz"))) == 12
    _assert_same(_outputs(config.run_dir), reference)
    # Killed after the merged record, while removing the partials: the next run (without
    # --keep-partials) removes the rest.
    (partials / "t0000_0000.npz").unlink()
    plain = _config(tmp_path, mosaic)
    assert run(plain, client=client, echo=lambda s: None).partials_removed == 11
    assert list(partials.iterdir()) == []
    _assert_same(_outputs(config.run_dir), reference)
