"""Tests for pipeline.cluster: which cluster make_client starts, and why.

Tests that start worker processes are marked ``slow``; each starts one worker and
closes it. Tests of the GPU paths fake the GPUs (``detect_gpus``) and dask-cuda.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import types
from collections.abc import Iterator

import dask
import pytest
from distributed import Client, LocalCluster

from pipeline import cluster as cluster_mod
from pipeline.cluster import THREAD_ENV_VARS, ClusterInfo, detect_gpus, gpu_resources, make_client
from pipeline.errors import InputError


@contextlib.contextmanager
def closing(client: Client) -> Iterator[Client]:
    """Close the client and, for clusters make_client started, the cluster."""
    try:
        yield client
    finally:
        started = client.cluster
        client.close()
        if started is not None:
            started.close()


@pytest.fixture
def no_gpu(monkeypatch):
    """Hide GPUs the way a user would, whatever machine the tests run on."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend two GPUs are visible."""
    monkeypatch.setattr(cluster_mod, "detect_gpus",
                        lambda: (2, "2 GPU(s) listed by nvidia-smi"))


def worker_environment() -> dict[str, str | None]:
    """Run on a worker: its thread variables, now and as the process started."""
    names = (*THREAD_ENV_VARS, "MORPHEUS_TEST_FLAG")
    now = {name: os.environ.get(name) for name in names}
    at_start = None
    if os.path.exists("/proc/self/environ"):
        with open("/proc/self/environ", "rb") as fh:
            pairs = (item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
            initial = {k.decode(): v.decode() for k, v in pairs}
        at_start = {name: initial.get(name) for name in names}
    return {"now": now, "at_start": at_start}


# --- detect_gpus ---------------------------------------------------------------

@pytest.fixture
def fake_nvidia_smi(tmp_path, monkeypatch):
    """An ``nvidia-smi`` on PATH that lists two GPUs, one split into MIG slices."""
    exe = tmp_path / "nvidia-smi"
    exe.write_text("#!/bin/sh\n"
                   "echo 'GPU 0: NVIDIA H100 (UUID: GPU-aaaa)'\n"
                   "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-bbbb)'\n"
                   "echo 'GPU 1: NVIDIA H100 (UUID: GPU-cccc)'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_detect_gpus_from_nvidia_smi(fake_nvidia_smi):
    n, reason = detect_gpus()
    assert n == 2
    assert "nvidia-smi" in reason


@pytest.mark.parametrize(("visible", "expected"),
                         [("0", 1), ("1,0", 2), ("0,1,2,3", 2), ("", 0), ("-1", 0),
                          ("0,-1,1", 1)])
def test_detect_gpus_honours_cuda_visible_devices(fake_nvidia_smi, monkeypatch,
                                                  visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    n, reason = detect_gpus()
    assert n == expected
    assert "CUDA_VISIBLE_DEVICES" in reason


def test_detect_gpus_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert detect_gpus() == (0, "no GPU visible (nvidia-smi not found, "
                                "CUDA_VISIBLE_DEVICES unset)")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    n, reason = detect_gpus()
    assert n == 2 and "nvidia-smi not found" in reason


# --- local clusters ------------------------------------------------------------

@pytest.mark.slow
def test_local_cluster_without_gpu(no_gpu):
    client, info = make_client(n_workers=1, threads_per_worker=1)
    with closing(client):
        assert isinstance(client.cluster, LocalCluster)
        assert info.kind == "local"
        assert info.gpu is False
        assert gpu_resources(info) is None
        assert info.n_workers == 1
        assert "no GPU visible" in info.reason
        assert "CUDA_VISIBLE_DEVICES" in info.reason
        assert client.submit(sum, [1, 2]).result() == 3
        # Dashboard on the loopback interface only: the link, and the socket itself.
        assert info.dashboard_link.startswith("http://127.0.0.1:")
        assert client.cluster.scheduler.http_server.address == "127.0.0.1"
        assert client.cluster.scheduler_address.startswith("tcp://127.0.0.1:")


@pytest.mark.slow
def test_workers_get_thread_env_vars_before_start(no_gpu):
    before = {name: os.environ.get(name) for name in (*THREAD_ENV_VARS, "PYTHONHASHSEED")}
    client, info = make_client(n_workers=1, threads_per_worker=2,
                               worker_env={"MORPHEUS_TEST_FLAG": "yes"})
    with closing(client):
        env = client.submit(worker_environment, pure=False).result()
    expected = {**dict.fromkeys(THREAD_ENV_VARS, "2"), "MORPHEUS_TEST_FLAG": "yes"}
    assert env["now"] == expected
    if env["at_start"] is not None:
        # Set when the process was spawned, i.e. before it imported numpy.
        assert env["at_start"] == expected
    # The client's own process is left as it was.
    assert {name: os.environ.get(name) for name in before} == before


def test_require_gpu_without_gpu_raises(no_gpu):
    with pytest.raises(InputError, match="GPU is required.*CUDA_VISIBLE_DEVICES"):
        make_client(gpu="require")


@pytest.mark.slow
def test_gpus_without_dask_cuda_fall_back_to_local(fake_gpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)  # import dask_cuda fails
    client, info = make_client(n_workers=1)
    with closing(client):
        assert info.kind == "local"
        assert info.gpu is False
        assert "dask-cuda not installed" in info.reason
        assert "morpheus-survey[gpu]" in info.reason


def test_require_gpu_without_dask_cuda_raises(fake_gpus, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask_cuda", None)
    with pytest.raises(InputError, match="dask-cuda not installed"):
        make_client(gpu="require")


def test_gpus_with_dask_cuda_start_cuda_cluster(fake_gpus, monkeypatch):
    calls = []

    class FakeLocalCUDACluster(LocalCluster):
        """Records its arguments; one in-process worker with the requested resources."""

        def __init__(self, **kwargs):
            # What the nannies would spawn their worker processes with.
            kwargs["spawn_env"] = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
            calls.append(kwargs)
            super().__init__(n_workers=1, threads_per_worker=kwargs["threads_per_worker"],
                             processes=False, resources=kwargs["resources"],
                             dashboard_address=kwargs["dashboard_address"])

    fake = types.ModuleType("dask_cuda")
    fake.LocalCUDACluster = FakeLocalCUDACluster
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    client, info = make_client(n_workers=8, gpu="require")
    with closing(client):
        assert info.kind == "local-cuda"
        assert info.gpu is True
        assert gpu_resources(info) == {"GPU": 1}
        (kwargs,) = calls
        assert kwargs["n_workers"] == 2  # capped at the GPUs visible
        assert kwargs["threads_per_worker"] == 1
        assert kwargs["resources"] == {"GPU": 1}
        assert kwargs["spawn_env"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
        assert kwargs["spawn_env"]["OMP_NUM_THREADS"] == "1"
        assert kwargs["dashboard_address"].startswith("127.0.0.1:")
        workers = client.scheduler_info()["workers"].values()
        assert [w["resources"] for w in workers] == [{"GPU": 1}]


def test_never_skips_gpu_detection(monkeypatch):
    def fail():
        raise AssertionError("detect_gpus called with gpu='never'")

    monkeypatch.setattr(cluster_mod, "detect_gpus", fail)
    with pytest.raises(InputError, match="127.0.0.1 only"):  # fails before starting
        make_client(gpu="never", dashboard_address="0.0.0.0:8787")


@pytest.mark.parametrize("kwargs", [{"gpu": "maybe"}, {"n_workers": 0},
                                    {"threads_per_worker": 0}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        make_client(**kwargs)


# --- external schedulers -------------------------------------------------------

@pytest.mark.parametrize(("resources", "gpu"), [(None, False), ({"GPU": 1}, True)])
def test_external_scheduler(resources, gpu):
    with LocalCluster(n_workers=1, processes=False, resources=resources,
                      dashboard_address="127.0.0.1:0") as running:
        client, info = make_client(scheduler=running.scheduler_address)
        with closing(client):
            assert client.cluster is None  # nothing started, only connected
            assert info == ClusterInfo(kind="external", dashboard_link=info.dashboard_link,
                                       n_workers=1, gpu=gpu, reason=info.reason)
            assert running.scheduler_address in info.reason
            assert ("advertise a GPU" in info.reason) is gpu
            assert client.submit(sum, [1, 2]).result() == 3


def test_external_scheduler_require_gpu_raises():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as running:
        with pytest.raises(InputError, match="GPU is required.*--resources GPU=1"):
            make_client(scheduler=running.scheduler_address, gpu="require")
