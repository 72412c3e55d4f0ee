"""A real multi-process deployment on one machine: ``dask scheduler`` and two
``dask worker`` processes on 127.0.0.1, started as separate OS processes, and the
driver as a third (``python -m pipeline run --scheduler tcp://127.0.0.1:PORT``).

The run's outputs equal those of a LocalCluster run, and killing one worker (with its
nanny, as when a node is lost) in the middle of the run does not stop it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from pipeline.run import run
from pipeline.rundir.ledger import Ledger
from tests.pipeline.small_runs import (
    N_TILES,
    assert_same,
    cli_args,
    done_records,
    outputs,
    python_env,
    small_config,
    wait_for,
    write_mosaic,
)

# Multi-process; a hang fails the test instead of blocking the suite.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]


def _spawn(module: str, *args: str, log: Path) -> subprocess.Popen:
    """A Dask command as its own OS process (and process group), output to ``log``,
    working in the folder of ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=python_env(),
            start_new_session=True,
            cwd=log.parent,
        )


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL a process and its children (a worker's nanny and worker process)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


@pytest.fixture
def deployment(tmp_path):
    """A scheduler and two workers on 127.0.0.1: (address, {name: worker process})."""
    (tmp_path / "dask").mkdir()
    scheduler_file = tmp_path / "dask" / "scheduler.json"
    procs = [
        _spawn(
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
            log=tmp_path / "dask" / "scheduler.log",
        )
    ]
    try:
        wait_for(scheduler_file.exists, 60, "the scheduler file")
        wait_for(lambda: "address" in scheduler_file.read_text(), 10, "the scheduler address")
        address = json.loads(scheduler_file.read_text())["address"]
        workers = {}
        for name in ("worker-a", "worker-b"):
            workers[name] = _spawn(
                "distributed.cli.dask_worker",
                address,
                "--name",
                name,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "1",
                "--memory-limit",
                "2GiB",
                "--no-dashboard",
                "--local-directory",
                str(tmp_path / name),
                log=tmp_path / "dask" / f"{name}.log",
            )
            procs.append(workers[name])
        with Client(address) as client:
            client.wait_for_workers(2, timeout=120)
        yield address, workers
    finally:
        for proc in reversed(procs):
            _kill(proc)


def test_cli_run_on_separate_processes_survives_a_killed_worker(deployment, tmp_path):
    address, workers = deployment
    toml = write_mosaic(tmp_path / "mosaic")
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        reference = outputs(run(small_config(tmp_path / "local", toml), client=client, echo=lambda s: None).run_dir)

    # The driver runs elsewhere than the workers, with a relative run directory.
    driver_cwd = tmp_path / "driver"
    driver_cwd.mkdir()
    run_dir = driver_cwd / "run"
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.faults",
                "--tile-delay",
                "0.6",
                "--",
                *cli_args("run", toml, "--scheduler", address, "--retries", "3"),
            ],
            env=python_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=driver_cwd,
        )
    try:
        # Let both workers finish tiles, then kill one of them (nanny and worker) mid-run.
        def both_workers_finished_tiles():
            return len({r["worker"] for r in done_records(run_dir).values()}) == 2

        wait_for(both_workers_finished_tiles, 180, "tiles finished on both workers")
        before_kill = done_records(run_dir)
        _kill(workers["worker-b"])
        assert len(before_kill) < N_TILES, "the run ended before a worker could be killed"
        assert driver.wait(timeout=300) == 0, (tmp_path / "driver.log").read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
    out = (tmp_path / "driver.log").read_text()
    assert f"cluster: external, 2 workers (scheduler {address} given" in out
    assert f"tiles: {N_TILES} total, 0 already finished, {N_TILES} run now, 0 failed" in out
    assert_same(outputs(run_dir), reference)
    assert not (tmp_path / "dask" / "run").exists()  # nothing in the workers' working directory
    records = done_records(run_dir)
    assert len(records) == N_TILES
    # Tiles finished before the kill were kept, not recomputed (their results were held
    # by the killed worker); the survivor finished the others.
    executions = Ledger(run_dir).executions()
    for name, record in before_kill.items():
        assert records[name] == record and executions[name] == 1, name
    assert len({r["worker"] for r in records.values()}) == 2
