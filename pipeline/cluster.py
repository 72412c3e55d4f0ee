"""Start or join the Dask cluster a run uses, and say why it is the one it is.

:func:`make_client` picks one of these kinds of cluster:

``"external"``
    A scheduler address was given (``--scheduler tcp://host:8786``); we only connect.
    GPU work is possible if some worker advertises a ``"GPU"`` resource
    (``dask worker ... --resources GPU=1`` or ``dask cuda worker --resources GPU=1``).
``"slurm"``, ``"pbs"``
    ``cluster="slurm"`` or ``"pbs"``: worker jobs submitted through dask-jobqueue
    (:mod:`pipeline.jobqueue`), GPU workers when the job configuration gives them a
    ``GPU`` resource.
``"local-cuda"``
    NVIDIA GPUs are visible and ``dask_cuda`` imports: one worker process per GPU,
    one thread each, every worker advertising ``{"GPU": 1}``.
``"local"``
    Anything else: a process-based :class:`distributed.LocalCluster` on this machine.

Every choice comes back with a :class:`ClusterInfo` whose ``reason`` says why
(``"dask-cuda not installed: pip install 'morpheus-survey[gpu]'"``), and is logged.

Thread counts of numerical libraries (OpenMP, MKL, OpenBLAS, TensorFlow) are read
once, when the library loads. A worker process imports numpy while it unpickles its
start-up function, before a :class:`distributed.Nanny`'s ``env=`` is applied, so the
thread variables are passed through the ``distributed.nanny.pre-spawn-environ``
setting, which the nanny puts into the environment the process is spawned with.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType

import dask
import distributed

from pipeline.errors import InputError

__all__ = ["ClusterInfo", "GPU_ENV", "THREAD_ENV_VARS", "describe_client", "detect_gpus",
           "gpu_resources", "make_client", "worker_environment"]

log = logging.getLogger(__name__)

#: Environment variables that cap the threads of the numerical libraries a worker
#: loads; :func:`make_client` sets each to ``threads_per_worker``.
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_NUM_INTRAOP_THREADS",
    "TF_NUM_INTEROP_THREADS",
)

#: Environment of GPU workers: TensorFlow (see
#: :func:`morpheus_core.runtime.configure_gpu_memory_growth`) and JAX (the Keras JAX
#: backend) allocate GPU memory as they need it instead of reserving most of it.
GPU_ENV: dict[str, str] = {"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}

#: Dask setting whose variables the nanny exports before spawning a worker process.
_PRE_SPAWN_KEY = "distributed.nanny.pre-spawn-environ"

_GPU_INSTALL_HINT = "pip install 'morpheus-survey[gpu]'"
_GPU_MODES = ("auto", "never", "require")
_CLUSTERS = ("local", "slurm", "pbs")
_LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ClusterInfo:
    """What :func:`make_client` connected to, and why.

    Attributes
    ----------
    kind : str
        ``"local"``, ``"local-cuda"``, ``"external"``, ``"slurm"`` or ``"pbs"``.
    dashboard_link : str or None
        URL of the scheduler's dashboard, ``None`` if it has none.
    n_workers : int
        Workers connected when the client was made.
    gpu : bool
        Whether classification tasks should request ``{"GPU": 1}``
        (see :func:`gpu_resources`).
    reason : str
        Why this kind was chosen, in words fit for a log line.
    """

    kind: str
    dashboard_link: str | None
    n_workers: int
    gpu: bool
    reason: str


def detect_gpus() -> tuple[int, str]:
    """Count the NVIDIA GPUs this process may use, without importing TensorFlow.

    ``CUDA_VISIBLE_DEVICES``, when set, limits the devices: an empty value or one
    starting with an invalid index (``"-1"``) hides them all, as in CUDA. The devices
    present are listed with ``nvidia-smi -L``; when it is absent or fails, a
    non-empty ``CUDA_VISIBLE_DEVICES`` is trusted as it is.

    Returns
    -------
    n_gpus : int
        Number of GPUs visible, 0 if none.
    reason : str
        How that number was found, e.g.
        ``"no GPU visible (nvidia-smi not found, CUDA_VISIBLE_DEVICES unset)"``.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries: list[str] | None = None
    if visible is not None:
        entries = []
        for entry in visible.split(","):
            entry = entry.strip()
            if not entry or entry.startswith("-"):
                break  # CUDA stops enumerating at the first invalid entry
            entries.append(entry)
        if not entries:
            return 0, f"no GPU visible (CUDA_VISIBLE_DEVICES={visible!r} hides all devices)"

    n_present, smi_note = _nvidia_smi_count()
    if n_present is None:
        if entries:
            return len(entries), (f"{len(entries)} GPU(s) from CUDA_VISIBLE_DEVICES="
                                  f"{visible!r} ({smi_note})")
        return 0, f"no GPU visible ({smi_note}, CUDA_VISIBLE_DEVICES unset)"
    if entries is not None:
        n = min(len(entries), n_present)
        return n, (f"{n} GPU(s) visible (nvidia-smi lists {n_present}, "
                   f"CUDA_VISIBLE_DEVICES={visible!r})")
    if n_present == 0:
        return 0, "no GPU visible (nvidia-smi lists no GPU)"
    return n_present, f"{n_present} GPU(s) listed by nvidia-smi"


def _nvidia_smi_count() -> tuple[int | None, str]:
    """Number of GPUs ``nvidia-smi -L`` lists, or ``None`` and why it could not run."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi not found"
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"nvidia-smi failed: {exc}"
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        detail = message[0] if message else f"exit status {proc.returncode}"
        return None, f"nvidia-smi failed: {detail}"
    # One "GPU <i>: <name> (UUID: ...)" line per device; MIG slices are indented below.
    n = sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))
    return n, "nvidia-smi"


def _import_dask_cuda() -> tuple[ModuleType | None, str]:
    """``dask_cuda`` if it imports, else ``None`` and a line saying how to install it."""
    try:
        return importlib.import_module("dask_cuda"), "dask-cuda"
    except ImportError as exc:
        return None, f"dask-cuda not installed ({exc}): {_GPU_INSTALL_HINT}"


def _local_dashboard_address(address: str | None) -> str:
    """Bind a local cluster's dashboard to the loopback interface only.

    ``":8787"`` and ``"8787"`` become ``"127.0.0.1:8787"``. ``None`` (no dashboard)
    gives ``"127.0.0.1:0"``: the scheduler's HTTP server (health, metrics) runs
    even without a dashboard, and would otherwise take port 8787.
    """
    if address is None:
        return f"{_LOOPBACK}:0"
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "", address
    if host in ("", _LOOPBACK, "localhost"):
        return f"{_LOOPBACK}:{port or 0}"
    raise InputError(
        f"dashboard address {address!r}: a local cluster's dashboard binds to "
        f"{_LOOPBACK} only; reach it from elsewhere through an SSH tunnel "
        f"(ssh -L 8787:{_LOOPBACK}:<port> host)")


@contextlib.contextmanager
def worker_environment(env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """Export ``env`` to the worker processes nannies spawn inside this block.

    Adds ``env`` to the ``distributed.nanny.pre-spawn-environ`` setting (keeping its
    other entries, such as ``MALLOC_TRIM_THRESHOLD_``). A nanny reads that setting
    when it is created, lets variables already in ``os.environ`` take precedence,
    and writes the result into ``os.environ`` before each spawn; so ``env`` is also
    placed in ``os.environ`` for the duration, and ``os.environ`` is restored on exit.
    Nannies created in the block keep the values for later restarts (and write
    them into ``os.environ`` again then); nannies created after it do not.

    Parameters
    ----------
    env : mapping of str to str
        Variables to export.

    Yields
    ------
    dict of str to str
        The complete pre-spawn environment in effect.
    """
    env = {str(k): str(v) for k, v in env.items()}
    base = dask.config.get(_PRE_SPAWN_KEY, default={}) or {}
    merged = {**{k: str(v) for k, v in base.items() if v is not None}, **env}
    # The nanny writes its pre-spawn variables (and PYTHONHASHSEED) here too.
    touched = set(merged) | {"PYTHONHASHSEED"}
    saved = {name: os.environ.get(name) for name in touched}
    os.environ.update(env)
    try:
        with dask.config.set({_PRE_SPAWN_KEY: merged}):
            yield merged
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def make_client(*, scheduler: str | None = None, cluster: str = "local",
                cluster_config: str | os.PathLike[str] | None = None,
                n_workers: int | None = None,
                threads_per_worker: int = 1, memory_limit: str | None = "auto",
                gpu: str = "auto", dashboard_address: str | None = "127.0.0.1:0",
                worker_env: dict[str, str] | None = None, wait_workers: float = 0.0,
                ) -> tuple[distributed.Client, ClusterInfo]:
    """Connect to a scheduler, or start a local (CUDA) or batch-job cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``"tcp://host:8786"``). When given, nothing
        is started and the other cluster options are ignored.
    cluster : {"local", "slurm", "pbs"}
        Without ``scheduler``: a cluster on this machine, or ``n_workers`` worker
        jobs submitted through dask-jobqueue (:mod:`pipeline.jobqueue`).
    cluster_config : str or path-like, optional
        dask-jobqueue YAML file for ``"slurm"``/``"pbs"`` (e.g.
        ``deploy/hpc/jobqueue.yaml``); default: the Dask configuration.
    n_workers : int, optional
        Local worker processes. Default: one per GPU on a CUDA cluster (capped at
        the GPUs visible), else ``os.cpu_count() // threads_per_worker``. Required
        for ``"slurm"``/``"pbs"``: the number of workers to submit.
    threads_per_worker : int
        Threads per local CPU worker (CUDA workers always get 1). Also exported
        as ``OMP_NUM_THREADS`` and the other :data:`THREAD_ENV_VARS` (for batch
        jobs, at the top of each job script; their Dask threads are the
        configuration's ``cores``).
    memory_limit : str or None
        Per-worker memory limit, as :class:`distributed.Nanny` takes it
        (``"auto"``, ``"8GiB"``, ``None`` for no limit).
    gpu : {"auto", "never", "require"}
        ``"auto"`` uses GPUs when they are visible and ``dask_cuda`` imports;
        ``"never"`` starts a CPU cluster (and never asks for GPU resources);
        ``"require"`` raises :class:`~pipeline.errors.InputError` if no GPU
        cluster can be had.
    dashboard_address : str or None
        Where a local scheduler serves its dashboard; the host must be empty,
        ``127.0.0.1`` or ``localhost`` (it is bound to 127.0.0.1). ``None``: none.
    worker_env : dict of str to str, optional
        More variables for local worker processes, set before they start; they
        override the thread variables.
    wait_workers : float
        With ``scheduler``: seconds to wait for the workers the run needs (one
        advertising a GPU under ``gpu="require"``, else any) before deciding; a
        cluster whose workers are still starting (Kubernetes pods pulling their
        image) is then not mistaken for one without GPUs.

    Returns
    -------
    client : distributed.Client
        Close it with ``client.close()``; for local clusters close
        ``client.cluster`` too (or use both as context managers).
    info : ClusterInfo
        The kind of cluster and why it was chosen.

    Raises
    ------
    InputError
        ``gpu="require"`` without a usable GPU, a non-loopback dashboard host, or
        a batch-job cluster that cannot be configured (no dask-jobqueue, no
        ``n_workers``, a bad configuration file).
    ValueError
        Invalid ``gpu``, ``cluster``, ``n_workers`` or ``threads_per_worker``, or
        both ``scheduler`` and a batch-job ``cluster``.

    Examples
    --------
    >>> client, info = make_client(n_workers=2, gpu="never")  # doctest: +SKIP
    >>> info.kind, info.reason  # doctest: +SKIP
    ('local', 'GPUs not requested (gpu="never")')
    """
    if gpu not in _GPU_MODES:
        raise InputError(f"gpu must be one of {_GPU_MODES}, got {gpu!r}")
    if threads_per_worker < 1:
        raise InputError(f"threads_per_worker must be >= 1, got {threads_per_worker}")
    if n_workers is not None and n_workers < 1:
        raise InputError(f"n_workers must be >= 1, got {n_workers}")
    if cluster not in _CLUSTERS:
        raise InputError(f"cluster must be one of {_CLUSTERS}, got {cluster!r}")

    if scheduler is not None:
        if cluster != "local":
            raise InputError(f"give either a scheduler address or cluster={cluster!r}, "
                             "not both")
        return _connect(scheduler, gpu=gpu, wait_workers=wait_workers)
    if cluster != "local":
        return _start_jobqueue(cluster, config_file=cluster_config, n_workers=n_workers,
                               threads_per_worker=threads_per_worker, gpu=gpu,
                               worker_env=worker_env)

    dashboard = (_local_dashboard_address(dashboard_address),
                 dashboard_address is not None)

    if gpu == "never":
        reason = 'GPUs not requested (gpu="never")'
    else:
        n_gpus, gpu_reason = detect_gpus()
        if n_gpus == 0:
            reason = gpu_reason
        else:
            dask_cuda, cuda_reason = _import_dask_cuda()
            if dask_cuda is not None:
                return _start_cuda(dask_cuda, n_gpus=n_gpus, n_workers=n_workers,
                                   memory_limit=memory_limit, dashboard=dashboard,
                                   worker_env=worker_env, reason=gpu_reason)
            reason = f"{gpu_reason}, but {cuda_reason}"
        if gpu == "require":
            raise InputError(f"a GPU is required (gpu='require') but {reason}")

    return _start_local(n_workers=n_workers, threads_per_worker=threads_per_worker,
                        memory_limit=memory_limit, dashboard=dashboard,
                        worker_env=worker_env, reason=reason)


def close_client(client: distributed.Client) -> None:
    """Close a client from :func:`make_client` and the cluster it started, if any
    (a cluster reached by ``scheduler`` address is left running).
    """
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


def gpu_resources(info: ClusterInfo) -> dict[str, int] | None:
    """Resources a classification task must request on this cluster.

    Parameters
    ----------
    info : ClusterInfo
        From :func:`make_client`.

    Returns
    -------
    dict or None
        ``{"GPU": 1}`` on a GPU cluster, else ``None`` (no restriction).

    Notes
    -----
    Graph optimisation can drop resource annotations (dask issues #7036, #10325);
    check where GPU tasks ran rather than trusting the annotation.
    """
    return {"GPU": 1} if info.gpu else None


def _thread_env(threads: int, extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {name: str(threads) for name in THREAD_ENV_VARS}
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def _n_connected(client: distributed.Client) -> int:
    return len(client.scheduler_info().get("workers", {}))


def _info(client: distributed.Client, *, kind: str, gpu: bool, reason: str,
          dashboard: bool = True) -> ClusterInfo:
    link = (client.dashboard_link or None) if dashboard else None
    info = ClusterInfo(kind=kind, dashboard_link=link,
                       n_workers=_n_connected(client), gpu=gpu, reason=reason)
    log.info("Dask cluster: %s, %d worker(s), gpu=%s (%s); dashboard %s",
             info.kind, info.n_workers, info.gpu, info.reason,
             info.dashboard_link or "off")
    return info


def describe_client(client: distributed.Client, *, gpu: str = "auto",
                    kind: str = "external", what: str | None = None) -> ClusterInfo:
    """Describe the cluster behind a client that was made elsewhere.

    GPU work is planned when some connected worker advertises a ``"GPU"``
    resource (and ``gpu`` is not ``"never"``).

    Parameters
    ----------
    client : distributed.Client
        A connected client.
    gpu : {"auto", "never", "require"}
        As for :func:`make_client`.
    kind : str
        The :attr:`ClusterInfo.kind` to report.
    what : str, optional
        How the client was obtained, for the reason (default: the scheduler address).

    Raises
    ------
    InputError
        ``gpu="require"`` and no worker advertises a GPU resource.
    """
    if gpu not in _GPU_MODES:
        raise InputError(f"gpu must be one of {_GPU_MODES}, got {gpu!r}")
    what = what or f"scheduler {client.scheduler.address} given"
    workers = client.scheduler_info().get("workers", {})
    n_gpu_workers = sum(1 for w in workers.values()
                        if (w.get("resources") or {}).get("GPU", 0) > 0)
    if gpu == "never":
        use_gpu, reason = False, 'GPUs not requested (gpu="never")'
    elif n_gpu_workers:
        use_gpu = True
        reason = f"{n_gpu_workers} of {len(workers)} worker(s) advertise a GPU resource"
    else:
        use_gpu = False
        reason = f"none of {len(workers)} worker(s) advertises a GPU resource"
        if gpu == "require":
            raise InputError(f"{what}: a GPU is required (gpu='require') but {reason}; "
                             f"start workers with '--resources GPU=1' or "
                             f"'dask cuda worker --resources GPU=1'")
    return _info(client, kind=kind, gpu=use_gpu, reason=f"{what}; {reason}")


def _wait_for_workers(client: distributed.Client, *, gpu_only: bool, timeout: float) -> None:
    """Poll the scheduler until a (GPU) worker is connected or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    logged = False
    while True:
        workers = client.scheduler_info().get("workers", {}).values()
        if any((w.get("resources") or {}).get("GPU", 0) > 0 or not gpu_only for w in workers):
            return
        if time.monotonic() >= deadline:
            return
        if not logged:
            log.info("waiting up to %.0f s for a %sworker to connect", timeout,
                     "GPU " if gpu_only else "")
            logged = True
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _connect(address: str, *, gpu: str,
             wait_workers: float = 0.0) -> tuple[distributed.Client, ClusterInfo]:
    client = distributed.Client(address)
    try:
        if wait_workers > 0:
            _wait_for_workers(client, gpu_only=gpu == "require", timeout=wait_workers)
        return client, describe_client(client, gpu=gpu, what=f"scheduler {address} given")
    except BaseException:
        client.close()
        raise


def _start_jobqueue(kind: str, *, config_file: str | os.PathLike[str] | None,
                    n_workers: int | None, threads_per_worker: int, gpu: str,
                    worker_env: Mapping[str, str] | None,
                    ) -> tuple[distributed.Client, ClusterInfo]:
    from pipeline.jobqueue import advertises_gpu, jobqueue_cluster

    if n_workers is None:
        raise InputError(f"--cluster {kind} needs --workers N (the number of worker "
                         "jobs to submit, one per GPU)")
    env = {**GPU_ENV, **_thread_env(threads_per_worker, worker_env)}
    cluster = jobqueue_cluster(kind, config_file=config_file, env=env)
    try:
        worker_command = cluster.job_script().strip().splitlines()[-1]
        has_gpu = advertises_gpu(shlex.split(worker_command))
        if gpu == "never":
            use_gpu, reason = False, 'GPUs not requested (gpu="never")'
        elif has_gpu:
            use_gpu, reason = True, "worker jobs advertise a GPU resource"
        else:
            use_gpu = False
            reason = ("worker jobs advertise no GPU resource (worker-extra-args "
                      "without '--resources GPU=1')")
            if gpu == "require":
                raise InputError(f"--cluster {kind}: a GPU is required (gpu='require') "
                                 f"but {reason}")
        cluster.scale(n_workers)
        client = distributed.Client(cluster)
    except BaseException:
        cluster.close()
        raise
    submit = type(cluster).job_cls.submit_command
    return client, _info(client, kind=kind, gpu=use_gpu,
                         reason=f"{n_workers} worker(s) submitted with {submit} through "
                                f"dask-jobqueue; {reason}")


def _start_local(*, n_workers: int | None, threads_per_worker: int,
                 memory_limit: str | None, dashboard: tuple[str, bool],
                 worker_env: Mapping[str, str] | None,
                 reason: str) -> tuple[distributed.Client, ClusterInfo]:
    if n_workers is None:
        n_workers = max(1, (os.cpu_count() or 1) // threads_per_worker)
    env = _thread_env(threads_per_worker, worker_env)
    with worker_environment(env) as spawn_env:
        # env= as well: workers added later by cluster.scale() still get the
        # variables (though only after their process has started).
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=threads_per_worker,
            processes=True, host=_LOOPBACK, dashboard_address=dashboard[0],
            scheduler_kwargs={"dashboard": dashboard[1]},
            memory_limit=memory_limit, env=spawn_env)
    return _client_for(cluster, kind="local", gpu=False, reason=reason,
                       dashboard=dashboard[1])


def _start_cuda(dask_cuda: ModuleType, *, n_gpus: int, n_workers: int | None,
                memory_limit: str | None, dashboard: tuple[str, bool],
                worker_env: Mapping[str, str] | None,
                reason: str) -> tuple[distributed.Client, ClusterInfo]:
    # LocalCUDACluster forwards unknown keywords to LocalCluster and from there to
    # each Nanny, which takes ``resources``. It sets each nanny's ``env=`` itself
    # (CUDA_VISIBLE_DEVICES), so our variables go through pre-spawn only.
    n = min(n_workers or n_gpus, n_gpus)
    with worker_environment({**GPU_ENV, **_thread_env(1, worker_env)}):
        cluster = dask_cuda.LocalCUDACluster(
            n_workers=n, threads_per_worker=1, resources={"GPU": 1},
            host=_LOOPBACK, dashboard_address=dashboard[0],
            scheduler_kwargs={"dashboard": dashboard[1]}, memory_limit=memory_limit)
    return _client_for(cluster, kind="local-cuda", gpu=True,
                       reason=f"{reason}; dask-cuda, one worker per GPU",
                       dashboard=dashboard[1])


def _client_for(cluster: distributed.LocalCluster, *, kind: str, gpu: bool,
                reason: str, dashboard: bool) -> tuple[distributed.Client, ClusterInfo]:
    try:
        client = distributed.Client(cluster)
    except BaseException:
        cluster.close()
        raise
    return client, _info(client, kind=kind, gpu=gpu, reason=reason, dashboard=dashboard)
