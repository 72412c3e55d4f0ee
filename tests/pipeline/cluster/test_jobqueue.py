"""SLURM and PBS worker jobs through dask-jobqueue (pipeline.cluster.jobqueue, make_client).

No batch system is needed: fake ``sbatch``/``scancel``/``qsub``/``qdel`` executables on
PATH either record the job scripts dask-jobqueue submits (fast tests), or run them as
local processes and kill them on cancel (an end-to-end ``--cluster slurm`` run, slow).
"""

from __future__ import annotations

import os
import re
import signal
import stat
from pathlib import Path

import dask
import dask_jobqueue  # noqa: F401 - loads its configuration defaults before any dask.config.set
import pytest
import yaml
from distributed import Client, LocalCluster

from pipeline.cluster.client import make_client
from pipeline.cluster.info import gpu_resources
from pipeline.cluster.jobqueue import advertises_gpu, jobqueue_cluster, jobqueue_settings
from pipeline.errors import InputError
from tests.pipeline.small_runs import (
    REPO,
    assert_same,
    cli_args,
    done_records,
    outputs,
    python_env,
    run_cli,
    small_config,
    wait_for,
    write_mosaic,
)

EXAMPLE = REPO / "deploy" / "hpc" / "jobqueue.yaml"


def _site_config(tmp_path: Path, **changes) -> Path:
    """The example configuration, with the scheduler on 127.0.0.1, and logs and TLS files
    under tmp_path.

    Everything the tests check about the job scripts (GPU request, memory, walltime,
    environment set-up) comes from the example file unchanged, unless ``changes`` say.
    """
    document = yaml.safe_load(EXAMPLE.read_text())
    for kind in ("slurm", "pbs"):
        section = document["jobqueue"][kind]
        section["scheduler-options"] = {"host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
        section["log-directory"] = str(tmp_path / "worker-logs")
        section["shared-temp-directory"] = str(tmp_path)
        section.update(changes)
    path = tmp_path / "jobqueue.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _fake_batch_system(folder: Path, *, run_jobs: bool) -> Path:
    """sbatch/qsub that record (and optionally start) each job; scancel/qdel that record
    (and kill) the jobs they are given. Returns the folder of records."""
    bin_dir, records = folder / "bin", folder / "records"
    bin_dir.mkdir(parents=True)
    records.mkdir()
    start = (
        'setsid bash "$records/job-$id.sh" > "$records/job-$id.log" 2>&1 < /dev/null & echo $! > "$records/job-$id.pid"\n'
        if run_jobs
        else ""
    )
    submit = f'#!/bin/bash\nrecords="{records}"\nid=$$\ncp "$1" "$records/job-$id.sh"\n{start}'
    cancel = (
        f'#!/bin/bash\nrecords="{records}"\nfor id in "$@"; do echo "$id" >> "$records/cancelled"\n'
        '  if [ -f "$records/job-$id.pid" ]; then kill -TERM -- -"$(cat "$records/job-$id.pid")" '
        "2>/dev/null; fi\ndone\n"
    )
    scripts = {
        "sbatch": submit + 'echo "Submitted batch job $id"\n',
        "scancel": cancel,
        "qsub": submit + 'echo "$id.pbs-server"\n',
        "qdel": cancel,
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return records


@pytest.fixture
def recording_batch_system(tmp_path, monkeypatch):
    records = _fake_batch_system(tmp_path / "batch", run_jobs=False)
    monkeypatch.setenv("PATH", f"{tmp_path / 'batch' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    return records


def _submitted(records: Path) -> list[str]:
    return [p.read_text() for p in sorted(records.glob("job-*.sh"))]


def _job_ids(records: Path) -> list[str]:
    return sorted(p.name[len("job-") : -len(".sh")] for p in records.glob("job-*.sh"))


# --- configuration ---------------------------------------------------------------------


def test_settings_from_the_example_file():
    slurm = jobqueue_settings("slurm", EXAMPLE)
    assert slurm["job_name"] == "morpheus-worker"  # "name" is the job name
    assert slurm["cores"] == 1 and slurm["processes"] == 1 and slurm["job_cpu"] == 8
    assert slurm["job_extra_directives"] == ["--gres=gpu:1"]
    assert "account" not in slurm  # null: left to dask-jobqueue
    pbs = jobqueue_settings("pbs", EXAMPLE)
    assert pbs["resource_spec"] == "select=1:ncpus=8:ngpus=1:mem=32gb"
    assert jobqueue_settings("slurm", None) == {}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--resources", "GPU=1"], True),
        (["--resources=GPU=1 MEM=4e9"], True),
        (["--resources", "MEM=4e9,GPU=2"], True),
        (["--resources", "GPU=0"], False),
        (["--resources", "GPUS=1"], False),
        (["--nthreads", "1"], False),
        (None, False),
    ],
)
def test_advertises_gpu(args, expected):
    assert advertises_gpu(args) is expected


def test_bad_configuration_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        jobqueue_settings("slurm", tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("jobqueue: [unclosed")
    with pytest.raises(InputError, match="not valid YAML"):
        jobqueue_settings("slurm", tmp_path / "bad.yaml")
    (tmp_path / "other.yaml").write_text("jobqueue:\n  sge:\n    cores: 1\n")
    with pytest.raises(InputError, match="no 'jobqueue: pbs:' section"):
        jobqueue_settings("pbs", tmp_path / "other.yaml")
    with pytest.raises(ValueError, match="kind must be"):
        jobqueue_settings("lsf", EXAMPLE)


def test_dask_configuration_without_cores_says_where_to_start():
    with dask.config.set({"jobqueue.slurm.cores": None, "jobqueue.slurm.memory": None}):
        with pytest.raises(InputError, match="deploy/hpc/jobqueue.yaml"):
            jobqueue_cluster("slurm")


def test_workers_are_required():
    with pytest.raises(InputError, match="--workers N"):
        make_client(cluster="slurm", cluster_config=EXAMPLE)
    with pytest.raises(ValueError, match="not both"):
        make_client(cluster="slurm", scheduler="tcp://127.0.0.1:1", n_workers=1)


# --- the job scripts that are submitted -------------------------------------------------


@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_submitted_job_scripts(kind, tmp_path, recording_batch_system):
    client, info = make_client(cluster=kind, cluster_config=_site_config(tmp_path), n_workers=2, threads_per_worker=4)
    try:
        assert info.kind == kind and info.gpu is True
        assert gpu_resources(info) == {"GPU": 1}
        assert ("sbatch" if kind == "slurm" else "qsub") in info.reason
        wait_for(lambda: len(_submitted(recording_batch_system)) == 2, 60, "2 submitted jobs")
        scripts = _submitted(recording_batch_system)
        assert client.cluster.job_script().splitlines()[:-1] == scripts[0].splitlines()[:-1]
        # TLS: the scheduler speaks it, and each worker presents the run's certificate,
        # from files that only this user can read.
        assert info.address.startswith("tls://127.0.0.1:") and info.warning is None
        tls_files = [dict(re.findall(r"--tls-(ca-file|cert|key) (\S+)", script.splitlines()[-1])) for script in scripts]
        assert tls_files[0] == tls_files[1] and set(tls_files[0]) == {"ca-file", "cert", "key"}
        for path in tls_files[0].values():
            assert Path(path).parent == tmp_path and stat.S_IMODE(Path(path).stat().st_mode) == 0o600
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    for script in scripts:
        lines = script.splitlines()
        if kind == "slurm":
            for directive in ("--gres=gpu:1", "--mem=32G", "-t 04:00:00", "--cpus-per-task=8", "-p gpu"):
                assert f"#SBATCH {directive}" in lines, directive
        else:
            assert "#PBS -l select=1:ncpus=8:ngpus=1:mem=32gb" in lines
            assert "#PBS -l walltime=04:00:00" in lines and "#PBS -q gpu" in lines
        # Environment set-up: the site's prologue, then our variables, then the worker.
        activate = lines.index("source $HOME/morpheus-survey/.venv/bin/activate")
        exports = [ln for ln in lines if ln.startswith("export ")]
        assert {
            "export TF_FORCE_GPU_ALLOW_GROWTH=true",
            "export OMP_NUM_THREADS=4",
            "export TF_NUM_INTRAOP_THREADS=4",
        } <= set(exports)
        worker = lines[-1]
        assert activate < lines.index(exports[0]) < len(lines) - 1
        assert re.search(r"-m distributed\.cli\.dask_worker tls://127\.0\.0\.1:\d+ ", worker)
        assert "--resources GPU=1" in worker and "--nthreads 1" in worker
        assert "--memory-limit 32.00GiB" in worker and "--protocol tls://" in worker
    # Closing the cluster cancelled both jobs.
    cancelled = (recording_batch_system / "cancelled").read_text().split()
    assert sorted(cancelled) == _job_ids(recording_batch_system)


def test_require_gpu_with_cpu_only_jobs_submits_nothing(tmp_path, recording_batch_system):
    config = _site_config(tmp_path, **{"worker-extra-args": []})
    with pytest.raises(InputError, match="GPU is required.*--resources GPU=1"):
        make_client(cluster="slurm", cluster_config=config, n_workers=2, gpu="require")
    assert _submitted(recording_batch_system) == []
    client, info = make_client(cluster="slurm", cluster_config=config, n_workers=1)  # auto: CPU
    with client:
        assert info.gpu is False and "advertise no GPU resource" in info.reason
        client.cluster.close()


# --- an emulated SLURM cluster, end to end -----------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_cli_run_on_emulated_slurm_cluster(tmp_path):
    """``run --cluster slurm --workers 2``: jobs become local worker processes that
    connect back to the driver; the outputs equal a LocalCluster run's, classification
    ran on those (GPU-advertising) workers, and the jobs are cancelled at the end."""
    toml = write_mosaic(tmp_path / "mosaic")
    records = _fake_batch_system(tmp_path / "batch", run_jobs=True)
    config = _site_config(
        tmp_path, **{"job-script-prologue": [], "memory": "2GiB", "local-directory": str(tmp_path / "scratch")}
    )
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        from pipeline.run import run

        reference = outputs(run(small_config(tmp_path / "reference", toml), client=client, echo=lambda s: None).run_dir)
    env = python_env(PATH=f"{tmp_path / 'batch' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    run_dir = tmp_path / "run"
    try:
        proc = run_cli(
            *cli_args(
                run_dir,
                toml,
                "--cluster",
                "slurm",
                "--workers",
                "2",
                "--cluster-config",
                str(config),
                "--gpu",
                "require",
            ),
            env=env,
            timeout=400,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "cluster: slurm" in proc.stdout and "submitted with sbatch" in proc.stdout
        assert "; scheduler tls://127.0.0.1:" in proc.stdout  # the jobs joined over TLS
        assert_same(outputs(run_dir), reference)
        workers = {record["worker"] for record in done_records(run_dir).values()}
        assert len(done_records(run_dir)) == 12 and 1 <= len(workers) <= 2
        assert all(worker.startswith("tls://") for worker in workers)
        assert not list(tmp_path.glob(".dask-jobqueue.*"))  # the TLS files are gone with the run
        # Both jobs were cancelled, and their processes are gone.
        ids = _job_ids(records)
        assert len(ids) == 2 and sorted((records / "cancelled").read_text().split()) == ids
        pids = [int((records / f"job-{i}.pid").read_text()) for i in ids]
        wait_for(lambda: not any(_alive(pid) for pid in pids), 30, "the job processes to end")
    finally:
        for pid_file in records.glob("job-*.pid"):
            try:
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True
