"""Tests for pipeline.cluster.client: which cluster make_client starts, and why.

Tests that start worker processes are marked ``slow``; each starts one worker and
closes it. Tests of the GPU paths fake the GPUs (``detect_gpus``) and dask-cuda.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import types
from collections.abc import Iterator

import dask
import psutil
import pytest
from distributed import Client, LocalCluster

from pipeline.cluster import client as cluster_mod
from pipeline.cluster.client import close_client, make_client
from pipeline.cluster.info import ClusterInfo, cluster_lines, gpu_resources
from pipeline.cluster.local import THREAD_ENV_VARS, detect_gpus
from pipeline.errors import InputError
from tests.pipeline.small_runs import REPO, python_env


@contextlib.contextmanager
def closing(client: Client) -> Iterator[Client]:
    """Close the client and, for clusters make_client started, the cluster."""
    try:
        yield client
    finally:
        close_client(client)


@pytest.fixture
def no_gpu(monkeypatch):
    """Hide GPUs the way a user would, whatever machine the tests run on."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def fake_gpus(monkeypatch):
    """Pretend two GPUs are visible."""
    monkeypatch.setattr(cluster_mod, "detect_gpus", lambda: (2, "2 GPU(s) listed by nvidia-smi"))


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
    exe.write_text(
        "#!/bin/sh\n"
        "echo 'GPU 0: NVIDIA H100 (UUID: GPU-aaaa)'\n"
        "echo '  MIG 1g.10gb     Device  0: (UUID: MIG-bbbb)'\n"
        "echo 'GPU 1: NVIDIA H100 (UUID: GPU-cccc)'\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_detect_gpus_from_nvidia_smi(fake_nvidia_smi):
    n, reason = detect_gpus()
    assert n == 2
    assert "nvidia-smi" in reason


@pytest.mark.parametrize(
    ("visible", "expected"), [("0", 1), ("1,0", 2), ("0,1,2,3", 2), ("", 0), ("-1", 0), ("0,-1,1", 1)]
)
def test_detect_gpus_honours_cuda_visible_devices(fake_nvidia_smi, monkeypatch, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    n, reason = detect_gpus()
    assert n == expected
    assert "CUDA_VISIBLE_DEVICES" in reason


def test_detect_gpus_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert detect_gpus() == (0, "no GPU visible (nvidia-smi not found, CUDA_VISIBLE_DEVICES unset)")
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
        assert client.cluster.scheduler_address.startswith("tls://127.0.0.1:")


@pytest.mark.slow
def test_workers_get_thread_env_vars_before_start(no_gpu):
    before = {name: os.environ.get(name) for name in (*THREAD_ENV_VARS, "PYTHONHASHSEED")}
    client, info = make_client(n_workers=1, threads_per_worker=2, worker_env={"MORPHEUS_TEST_FLAG": "yes"})
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
        """Records its arguments; one in-process worker with the requested resources,
        host and security (which LocalCUDACluster passes on to LocalCluster)."""

        def __init__(self, **kwargs):
            # What the nannies would spawn their worker processes with.
            kwargs["spawn_env"] = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
            calls.append(kwargs)
            super().__init__(
                n_workers=1,
                threads_per_worker=kwargs["threads_per_worker"],
                processes=False,
                resources=kwargs["resources"],
                host=kwargs["host"],
                dashboard_address=kwargs["dashboard_address"],
                security=kwargs["security"],
            )

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
        workers = client.scheduler_info()["workers"]
        assert [w["resources"] for w in workers.values()] == [{"GPU": 1}]
        # The same TLS as a CPU cluster: the cluster, its worker and the client speak it.
        assert kwargs["security"].require_encryption and kwargs["host"] == "127.0.0.1"
        assert info.address.startswith("tls://127.0.0.1:") and info.warning is None
        assert all(address.startswith("tls://") for address in workers)
        assert client.submit(sum, [1, 2], resources={"GPU": 1}).result() == 3


def test_never_skips_gpu_detection(monkeypatch):
    def fail():
        raise AssertionError("detect_gpus called with gpu='never'")

    monkeypatch.setattr(cluster_mod, "detect_gpus", fail)
    with pytest.raises(InputError, match="127.0.0.1 only"):  # fails before starting
        make_client(gpu="never", dashboard_address="0.0.0.0:8787")


@pytest.mark.parametrize("kwargs", [{"gpu": "maybe"}, {"n_workers": 0}, {"threads_per_worker": 0}])
def test_invalid_arguments(kwargs):
    with pytest.raises(ValueError):
        make_client(**kwargs)


# --- external schedulers -------------------------------------------------------


@pytest.mark.parametrize(("resources", "gpu"), [(None, False), ({"GPU": 1}, True)])
def test_external_scheduler(resources, gpu):
    with LocalCluster(n_workers=1, processes=False, resources=resources, dashboard_address="127.0.0.1:0") as running:
        client, info = make_client(scheduler=running.scheduler_address)
        with closing(client):
            assert client.cluster is None  # nothing started, only connected
            assert info == ClusterInfo(
                kind="external",
                dashboard_link=info.dashboard_link,
                n_workers=1,
                gpu=gpu,
                reason=info.reason,
                address=running.scheduler_address,
                warning=None,
            )
            assert running.scheduler_address in info.reason
            assert ("advertise a GPU" in info.reason) is gpu
            assert client.submit(sum, [1, 2]).result() == 3


def test_external_scheduler_require_gpu_raises():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as running:
        with pytest.raises(InputError, match="GPU is required.*--resources GPU=1"):
            make_client(scheduler=running.scheduler_address, gpu="require")


# --- who can reach a local cluster ---------------------------------------------

#: Run as another process of this machine (another user, say): for each address, try
#: the Dask protocol in plain TCP, in TLS with a certificate of its own, and in TLS
#: without a client certificate (not checking the server's either); then try to run
#: code through a client. Prints one JSON object: what happened to each attempt.
ATTACKER = r"""
import asyncio, json, os, ssl, sys
from distributed import Client, Security
from distributed.core import rpc

def bare_tls():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return {"ssl_context": ctx, "require_encryption": False}

async def identity(address, connection_args):
    async with rpc(address, timeout=5, connection_args=connection_args) as remote:
        return (await asyncio.wait_for(remote.identity(), 10))["type"]

async def main(addresses):
    out = {}
    for address in addresses:
        hostport = address.split("://", 1)[1]
        for how, url, args in (("tcp", "tcp://" + hostport, {}),
                               ("own-cert", "tls://" + hostport,
                                Security.temporary().get_connection_args("client")),
                               ("no-cert", "tls://" + hostport, bare_tls())):
            try:
                out[f"{how} {address}"] = "reached " + await asyncio.wait_for(identity(url, args), 20)
            except Exception as exc:
                out[f"{how} {address}"] = "refused " + type(exc).__name__
    return out

out = asyncio.run(main(sys.argv[1:]))
for scheme in ("tcp", "tls"):
    try:
        with Client(scheme + "://" + sys.argv[1].split("://", 1)[1], timeout=5,
                    security=Security.temporary() if scheme == "tls" else None) as client:
            out[f"run via {scheme}"] = "ran " + str(client.run(os.getuid))
    except Exception as exc:
        out[f"run via {scheme}"] = "refused " + type(exc).__name__
print(json.dumps(out))
"""


#: How a connection refused by TLS ends on the attempting side.
REFUSALS = {
    "CommClosedError",
    "FatalCommClosedError",
    "OSError",
    "SSLError",
    "TimeoutError",
    "ConnectionResetError",
    "StreamClosedError",
}


def attack(addresses: list[str]) -> dict[str, str]:
    """What a process without the cluster's credentials achieves against ``addresses``."""
    proc = subprocess.run(
        [sys.executable, "-c", ATTACKER, *addresses],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=python_env(),
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _addresses(client: Client) -> list[str]:
    """The scheduler's, every worker's and every nanny's address."""
    workers = client.scheduler_info()["workers"]
    return [client.scheduler.address, *workers, *(w["nanny"] for w in workers.values())]


def _listening(pid: int) -> set[str]:
    """The IP addresses the process ``pid`` listens on (TCP)."""
    connections = psutil.Process(pid).net_connections(kind="tcp")
    return {c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_local_cluster_refuses_processes_without_its_credentials(no_gpu):
    client, info = make_client(n_workers=1, threads_per_worker=1)
    with closing(client):
        addresses = _addresses(client)
        assert len(addresses) == 3 and all(a.startswith("tls://127.0.0.1:") for a in addresses)
        assert info.address == client.scheduler.address
        assert info.warning is None
        outcome = attack(addresses)
        assert len(outcome) == 11
        # Refused by the network layer (TLS handshake or closed connection), not a bug
        # of the attempt itself.
        reached = {k: v for k, v in outcome.items() if v.split()[0] != "refused" or v.split()[1] not in REFUSALS}
        assert not reached, reached
        # The run's own client works, and so do its workers' environments.
        assert client.submit(sum, [1, 2]).result() == 3
        env = client.submit(worker_environment, pure=False).result()
        assert env["now"]["OMP_NUM_THREADS"] == "1"
        # Every socket of the cluster listens on the loopback interface only: the
        # scheduler, nanny and dashboard in this process, the worker in its own.
        worker_pids = list(client.run(os.getpid).values())
        assert {ip for pid in worker_pids for ip in _listening(pid)} == {"127.0.0.1"}
        assert info.dashboard_link.startswith("http://127.0.0.1:")
        assert client.cluster.scheduler.http_server.address == "127.0.0.1"
        ours = {c.laddr for c in psutil.Process().net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        cluster_ports = {int(a.rsplit(":", 1)[1]) for a in addresses} | {
            int(info.dashboard_link.split(":")[2].split("/")[0])
        }
        assert {ip for ip, port in ours if port in cluster_ports} == {"127.0.0.1"}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_no_tls_is_an_explicit_warned_choice(no_gpu):
    client, info = make_client(n_workers=1, threads_per_worker=1, tls=False)
    with closing(client):
        assert info.address.startswith("tcp://127.0.0.1:")
        assert "any user of this machine" in info.warning and info.address in info.warning
        lines = cluster_lines(info)
        assert lines[0].startswith("cluster: local, 1 workers (") and info.address in lines[0]
        assert lines[1].startswith("warning: ")
        # The check above can fail: without TLS another process runs code as this user.
        outcome = attack([info.address])
        assert outcome["run via tcp"] == f"ran {{'{next(iter(client.scheduler_info()['workers']))}': {os.getuid()}}}"
        assert outcome[f"tcp {info.address}"] == "reached Scheduler"


# --- closing a local cluster ---------------------------------------------------

#: A run's driver in miniature: a local cluster, a small task, then close_client while
#: the worker is stuck in a C call (a tile still running when a run fails or is
#: refused) and with an interpreter teardown that takes seconds (TensorFlow's, under
#: load). Prints the worker's process id, and whether it is still alive after closing.
CLOSING = r"""
import atexit, os, sys, time
import psutil
from pipeline.cluster.client import close_client, make_client

def slow_teardown(seconds):
    atexit.register(time.sleep, seconds)
    return os.getpid()

def busy(flag, seconds):
    open(flag, "w").close()
    time.sleep(seconds)

client, info = make_client(n_workers=1, threads_per_worker=1, gpu="never")
assert client.submit(sum, [1, 2]).result() == 3
pid = client.submit(slow_teardown, 6, pure=False).result()
running = client.submit(busy, sys.argv[1], 8, pure=False)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
t = time.perf_counter()
close_client(client)
print(pid, psutil.pid_exists(pid), f"{time.perf_counter() - t:.1f}", flush=True)
"""


@contextlib.contextmanager
def cpu_hogs(n: int = 2) -> Iterator[None]:
    """``n`` processes spinning in Python beside the block: a loaded 2-core machine."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_closing_under_load_lets_workers_exit_without_killing(tmp_path):
    with cpu_hogs(2):
        proc = subprocess.run(
            [sys.executable, "-c", CLOSING, str(tmp_path / "started")],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=python_env(CUDA_VISIBLE_DEVICES=""),
            timeout=240,
        )
    assert proc.returncode == 0, proc.stderr
    pid, alive, _seconds = proc.stdout.split()
    assert alive == "False"
    # The nanny neither gave up on its worker nor killed it.
    assert "still alive" not in proc.stderr and "killing" not in proc.stderr, proc.stderr


# --- what a run says about its cluster -------------------------------------------


def test_tls_options():
    from pipeline.cli.parser import build_parser as _parser

    default = _parser().parse_args(["run"])
    assert default.tls is True and default.scheduler_security is None
    chosen = _parser().parse_args(["run", "--no-tls", "--scheduler", "tls://h:8786", "--scheduler-security", "t.yaml"])
    assert chosen.tls is False and str(chosen.scheduler_security) == "t.yaml"


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_run_names_its_tls_scheduler(tmp_path, no_gpu):
    from pipeline.run import run
    from tests.pipeline.small_runs import small_config, write_mosaic

    lines: list[str] = []
    summary = run(small_config(tmp_path / "run", write_mosaic(tmp_path / "data"), workers=1), echo=lines.append)
    (line,) = [ln for ln in lines if ln.startswith("cluster: ")]
    assert line.startswith("cluster: local, 1 workers (no GPU visible") and "; scheduler tls://127.0.0.1:" in line
    assert not [ln for ln in lines if ln.startswith("warning:")]
    assert summary.executed == summary.tiles and not summary.failed
    assert (tmp_path / "run" / "catalog" / "catalog.csv").exists()
