"""A run whose run directory (Zarr stores, ledger, partial statistics, FITS products) lives
in an S3 bucket, served by a local S3-compatible server (moto in server mode on
127.0.0.1, started here), with worker processes that share nothing but the bucket.
"""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits
from distributed import Client, LocalCluster

from pipeline.errors import RunError
from pipeline.run import resubmit, run
from pipeline.rundir.location import Location
from pipeline.rundir.status import status
from pipeline.settings import DownstreamSettings
from tests.faults import inject
from tests.pipeline.small_runs import (
    FITS_NAMES,
    N_TILES,
    REPO,
    assert_same,
    cli_args,
    done_records,
    free_port,
    outputs,
    python_env,
    run_cli,
    small_config,
    wait_for,
    write_mosaic,
)

# Multi-process; a hang fails the test instead of blocking the suite.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

BUCKET = "morpheus-test"
# The stand-in network's background is never 0: a threshold that finds its "sources".
DOWNSTREAM = DownstreamSettings(threshold=0.5)
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAMORPHEUSTEST",
    "AWS_SECRET_ACCESS_KEY": "morpheus-secret-never-recorded",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def endpoint():
    """A moto S3 server on 127.0.0.1 with an empty bucket; credentials in the environment
    (set before any worker process starts, so the workers inherit them)."""
    import socket

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    with pytest.MonkeyPatch.context() as mp:
        for name, value in CREDENTIALS.items():
            mp.setenv(name, value)
        mp.delenv("AWS_ENDPOINT_URL", raising=False)
        mp.delenv("AWS_PROFILE", raising=False)
        try:
            wait_for(listening, 60, "the moto S3 server")
            url = f"http://127.0.0.1:{port}"
            Location(f"s3://{BUCKET}", {"endpoint_url": url}).fs.mkdir(BUCKET)
            yield url
        finally:
            server.terminate()
            server.wait(timeout=30)


@pytest.fixture(scope="module")
def client(endpoint):
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    return write_mosaic(tmp_path_factory.mktemp("mosaic"))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, mosaic, client):
    summary = run(
        small_config(tmp_path_factory.mktemp("local") / "run", mosaic),
        client=client,
        echo=lambda s: None,
        downstream=DOWNSTREAM,
    )
    return summary.run_dir


@pytest.fixture(scope="module")
def s3_run(endpoint, mosaic, client):
    lines = []
    config = small_config(f"s3://{BUCKET}/runs/small", mosaic, storage_options={"endpoint_url": endpoint})
    summary = run(config, client=client, echo=lines.append, downstream=DOWNSTREAM)
    return config, summary, lines


def test_s3_run_equals_local_run(s3_run, local_run, endpoint):
    config, summary, lines = s3_run
    assert summary.tiles == N_TILES and summary.executed == N_TILES and not summary.failed
    assert_same(outputs(config.location), outputs(local_run))
    # Everything is in the bucket, written by two worker processes.
    root = config.location
    assert {"manifest.json", "ledger", "mosaic.zarr", "classification.zarr", "fits"} <= set(root.listdir())
    assert not (root / "partials").listdir()  # removed after the verified merge
    assert (root / "ledger" / "merged.json").exists()
    assert len({r["worker"] for r in done_records(root).values()}) == 2
    in_bucket = (root / "fits").listdir()
    assert set(FITS_NAMES) <= set(in_bucket)
    prefix = f"s3://{BUCKET}/runs/small/fits/"
    assert all(str(o).startswith(f"s3://{BUCKET}/runs/small/") for o in summary.outputs)
    assert sorted(str(o)[len(prefix) :] for o in summary.outputs if str(o).startswith(prefix)) == in_bucket
    # The downstream graph ran on the bucket too: its products equal the local run's.
    assert {"segmentation.zarr", "catalog", "colour.png", "downstream.json"} <= set(root.listdir())
    import pyarrow.parquet as pq

    remote_catalog = pq.read_table(io.BytesIO((root / "catalog" / "catalog.parquet").read_bytes())).to_pandas()
    local_catalog = pq.read_table(local_run / "catalog" / "catalog.parquet").to_pandas()
    assert len(remote_catalog) == len(local_catalog) > 0
    np.testing.assert_allclose(remote_catalog["ra"], local_catalog["ra"], rtol=1e-12)
    np.testing.assert_array_equal(remote_catalog["area"], local_catalog["area"])
    remote_seg = (root / "segmentation.zarr").open_group(mode="r")
    assert remote_seg.attrs["complete"]
    np.testing.assert_array_equal(
        remote_seg["deblended"][:],
        np.asarray(Location(local_run / "segmentation.zarr").open_group(mode="r")["deblended"][:]),
    )
    with (
        fits.open(io.BytesIO((root / "fits" / "disk_mean.fits").read_bytes())) as remote,
        fits.open(local_run / "fits" / "disk_mean.fits") as local,
    ):
        hdu_r = next(h for h in remote if h.data is not None)
        hdu_l = next(h for h in local if h.data is not None)
        np.testing.assert_array_equal(hdu_r.data, hdu_l.data)
        assert hdu_r.header["CTYPE1"] == hdu_l.header["CTYPE1"]
    # The manifest records the URL and the endpoint, and no credentials.
    manifest = (root / "manifest.json").read_json()
    assert manifest["config"]["run_dir"] == f"s3://{BUCKET}/runs/small"
    assert manifest["config"]["storage_options"] == {"endpoint_url": endpoint}
    text = (root / "manifest.json").read_text()
    assert all(value not in text for value in CREDENTIALS.values() if value != "us-east-1")
    assert (root / "mosaic.zarr").open_group(mode="r").attrs["format_version"] == 1
    # Nothing landed on the local file system under a mangled name ("s3:/...").
    assert not (REPO / "s3:").exists() and not any(REPO.glob("s3*"))


def test_failure_status_and_resubmit_in_s3(endpoint, mosaic, client, local_run):
    options = {"endpoint_url": endpoint}
    config = small_config(f"s3://{BUCKET}/runs/failing", mosaic, storage_options=options, retries=0)
    with inject(fail=["t0002_0001"]), pytest.raises(RunError, match="t0002_0001"):
        run(config, client=client, echo=lambda s: None)
    report = status(config.run_dir, options)
    assert report["states"]["failed"] == ["t0002_0001"] and not report["products"]
    assert len(report["states"]["finished"]) == N_TILES - 1
    assert "injected failure" in report["failed"]["t0002_0001"]["error"]
    summary = resubmit(config.run_dir, client=client, echo=lambda s: None, storage_options=options)
    assert summary.executed == 1 and summary.finished_before == N_TILES - 1
    assert status(config.run_dir, options)["products"]
    assert_same(outputs(config.location), outputs(local_run))


def test_cli_status_and_resume_in_s3(s3_run, endpoint, mosaic, tmp_path):
    config, _, _ = s3_run
    url = config.run_dir
    # Endpoint from the standard environment variable.
    proc = run_cli("status", "--run-dir", url, env=python_env(AWS_ENDPOINT_URL=endpoint), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"tiles: {N_TILES} finished, 0 failed, 0 pending; products written" in proc.stdout
    # Endpoint as a storage option; a finished run resumes without recomputing anything.
    proc = run_cli(
        *cli_args(url, mosaic, "--workers", "1", "--storage-option", f"endpoint_url={endpoint}"),
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{N_TILES} already finished, 0 run now" in proc.stdout
    # Credentials are refused on the command line.
    proc = run_cli("status", "--run-dir", url, "--storage-option", "secret=hunter2", cwd=tmp_path)
    assert proc.returncode == 2 and "credentials" in proc.stderr
    # For a URL run directory the log is written where the command runs.
    assert (tmp_path / "pipeline.log").is_file()
