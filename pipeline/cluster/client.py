"""Start or join the Dask cluster a run uses, and say why it is the one it is.

:func:`make_client` picks one of these kinds of cluster:

``"external"``
    A scheduler address was given (``--scheduler tls://host:8786``); we only connect,
    with the TLS credentials of ``--scheduler-security`` or the Dask configuration.
    GPU work is possible if some worker advertises a ``"GPU"`` resource
    (``dask worker ... --resources GPU=1`` or ``dask cuda worker --resources GPU=1``).
``"slurm"``, ``"pbs"``
    ``cluster="slurm"`` or ``"pbs"``: worker jobs submitted through dask-jobqueue
    (:mod:`pipeline.cluster.jobqueue`), GPU workers when the job configuration gives them a
    ``GPU`` resource.
``"local-cuda"``
    NVIDIA GPUs are visible and ``dask_cuda`` imports: one worker process per GPU,
    one thread each, every worker advertising ``{"GPU": 1}``.
``"local"``
    Anything else: a process-based :class:`distributed.LocalCluster` on this machine.

Every choice comes back with a :class:`ClusterInfo` whose ``reason`` says why
(``"dask-cuda not installed: pip install 'morpheus-survey[gpu]'"``), and is logged;
:func:`cluster_lines` gives the lines a run prints about it.

Clusters started here speak TLS (:mod:`pipeline.cluster.security`): another process, of this
user or another, cannot join them or run code on their workers without the run's
credentials. ``tls=False`` (``--no-tls``) starts plain-TCP clusters and says so in
:attr:`ClusterInfo.warning`. :func:`close_client` is where they are closed.

Local clusters are started and closed by :mod:`pipeline.cluster.local` (the workers'
thread variables set before they start; workers closed without being killed).
"""

from __future__ import annotations

import importlib
import logging
import os
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType

import distributed

from pipeline.cluster.local import (
    CLOSE_TIMEOUT,
    GPU_ENV,
    THREAD_ENV_VARS,
    close_workers,
    detect_gpus,
    loopback_dashboard,
    start_cuda,
    start_local,
    thread_env,
    worker_environment,
)
from pipeline.cluster.security import check_scheduler_security, load_security, temporary_security
from pipeline.errors import InputError

__all__ = ["CLOSE_TIMEOUT", "ClusterInfo", "GPU_ENV", "THREAD_ENV_VARS", "close_client", "cluster_lines",
           "describe_client", "detect_gpus", "gpu_resources", "make_client", "worker_environment"]

log = logging.getLogger(__name__)

_GPU_INSTALL_HINT = "pip install 'morpheus-survey[gpu]'"
_GPU_MODES = ("auto", "never", "require")
_CLUSTERS = ("local", "slurm", "pbs")


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
    address : str
        The scheduler's address (``tls://127.0.0.1:PORT`` for a local cluster).
    warning : str or None
        What the user must know about this cluster (a cluster started without TLS).
    """

    kind: str
    dashboard_link: str | None
    n_workers: int
    gpu: bool
    reason: str
    address: str = ""
    warning: str | None = None


def _import_dask_cuda() -> tuple[ModuleType | None, str]:
    """``dask_cuda`` if it imports, else ``None`` and a line saying how to install it."""
    try:
        return importlib.import_module("dask_cuda"), "dask-cuda"
    except ImportError as exc:
        return None, f"dask-cuda not installed ({exc}): {_GPU_INSTALL_HINT}"


def make_client(*, scheduler: str | None = None, cluster: str = "local",
                cluster_config: str | os.PathLike[str] | None = None,
                n_workers: int | None = None,
                threads_per_worker: int = 1, memory_limit: str | None = "auto",
                gpu: str = "auto", dashboard_address: str | None = "127.0.0.1:0",
                worker_env: dict[str, str] | None = None, wait_workers: float = 0.0,
                tls: bool = True,
                scheduler_security: str | os.PathLike[str] | distributed.Security | None = None,
                ) -> tuple[distributed.Client, ClusterInfo]:
    """Connect to a scheduler, or start a local (CUDA) or batch-job cluster.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``"tls://host:8786"``, ``"tcp://host:8786"``).
        When given, nothing is started and the other cluster options are ignored.
    cluster : {"local", "slurm", "pbs"}
        Without ``scheduler``: a cluster on this machine, or ``n_workers`` worker
        jobs submitted through dask-jobqueue (:mod:`pipeline.cluster.jobqueue`).
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
    tls : bool
        Start the cluster with TLS between the client, scheduler, workers and
        nannies, on credentials made for it (:func:`pipeline.cluster.security.temporary_security`;
        batch jobs read them from files in dask-jobqueue's ``shared-temp-directory``).
        ``False`` starts a plain-TCP cluster that any local user (any host that
        reaches it, for batch jobs) can use to run code as you, and says so in
        :attr:`ClusterInfo.warning`. Not used with ``scheduler``.
    scheduler_security : str, path-like or distributed.Security, optional
        With ``scheduler``: the client's TLS credentials, or a Dask configuration
        file naming them (:func:`pipeline.cluster.security.load_security`). Default: the
        Dask configuration's (``distributed.comm.tls``).

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
        ``gpu="require"`` without a usable GPU, a non-loopback dashboard host, a
        batch-job cluster that cannot be configured (no dask-jobqueue, no
        ``n_workers``, a bad configuration file), or a scheduler whose TLS
        credentials are missing or do not fit its address.
    ValueError
        Invalid ``gpu``, ``cluster``, ``n_workers`` or ``threads_per_worker``, or
        both ``scheduler`` and a batch-job ``cluster``.

    Examples
    --------
    >>> client, info = make_client(n_workers=2, gpu="never")  # doctest: +SKIP
    >>> info.kind, info.address, info.reason  # doctest: +SKIP
    ('local', 'tls://127.0.0.1:40671', 'GPUs not requested (gpu="never")')
    """
    if gpu not in _GPU_MODES:
        raise InputError(f"gpu must be one of {_GPU_MODES}, got {gpu!r}")
    if threads_per_worker < 1:
        raise InputError(f"--threads-per-worker must be >= 1, got {threads_per_worker}")
    if n_workers is not None and n_workers < 1:
        raise InputError(f"--workers must be >= 1, got {n_workers}")
    if cluster not in _CLUSTERS:
        raise InputError(f"cluster must be one of {_CLUSTERS}, got {cluster!r}")

    if scheduler is not None:
        if cluster != "local":
            raise InputError(f"give either a scheduler address or cluster={cluster!r}, "
                             "not both")
        if scheduler_security is not None and not isinstance(scheduler_security, distributed.Security):
            scheduler_security = load_security(scheduler_security)
        security = check_scheduler_security(scheduler, scheduler_security)
        return _connect(scheduler, gpu=gpu, wait_workers=wait_workers, security=security)
    if cluster != "local":
        return _start_jobqueue(cluster, config_file=cluster_config, n_workers=n_workers,
                               threads_per_worker=threads_per_worker, gpu=gpu, worker_env=worker_env,
                               security=temporary_security() if tls else None)

    dashboard = loopback_dashboard(dashboard_address)
    security = temporary_security() if tls else None

    if gpu == "never":
        reason = 'GPUs not requested (gpu="never")'
    else:
        n_gpus, gpu_reason = detect_gpus()
        if n_gpus == 0:
            reason = gpu_reason
        else:
            dask_cuda, cuda_reason = _import_dask_cuda()
            if dask_cuda is not None:
                cuda = start_cuda(dask_cuda, n_workers=min(n_workers or n_gpus, n_gpus),
                                  memory_limit=memory_limit, dashboard=dashboard,
                                  worker_env=worker_env, security=security)
                return _client_for(cuda, kind="local-cuda", gpu=True, dashboard=dashboard[1],
                                   reason=f"{gpu_reason}; dask-cuda, one worker per GPU")
            reason = f"{gpu_reason}, but {cuda_reason}"
        if gpu == "require":
            raise InputError(f"a GPU is required (--gpu require) but {reason}")

    local = start_local(n_workers=n_workers, threads_per_worker=threads_per_worker,
                        memory_limit=memory_limit, dashboard=dashboard,
                        worker_env=worker_env, security=security)
    return _client_for(local, kind="local", gpu=False, reason=reason, dashboard=dashboard[1])


def cluster_lines(info: ClusterInfo) -> list[str]:
    """What a run prints about its cluster: ``cluster: KIND, N workers (REASON);
    scheduler ADDRESS``, then ``warning: ...`` if :attr:`ClusterInfo.warning` is set.
    """
    line = f"cluster: {info.kind}, {info.n_workers} workers ({info.reason})"
    if info.address and info.address not in info.reason:
        line += f"; scheduler {info.address}"
    return [line] + ([f"warning: {info.warning}"] if info.warning else [])


def close_client(client: distributed.Client, *, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close a client from :func:`make_client` and the cluster it started, if any
    (a cluster reached by ``scheduler`` address is left running).

    The client goes first, so nothing more is asked of the workers; the worker
    processes of a local cluster are then closed with ``timeout`` seconds to exit
    (:func:`pipeline.cluster.local.close_workers`) instead of being killed after
    Dask's 4 s; batch-job workers are cancelled by ``cluster.close()``.
    """
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is None:
        return
    try:
        close_workers(cluster, timeout)
    finally:
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


def _n_connected(client: distributed.Client) -> int:
    return len(client.scheduler_info().get("workers", {}))


def _info(client: distributed.Client, *, kind: str, gpu: bool, reason: str,
          dashboard: bool = True, started: bool = False) -> ClusterInfo:
    """Describe the client's cluster; a cluster ``started`` here without TLS gets a warning."""
    link = (client.dashboard_link or None) if dashboard else None
    address = client.scheduler.address
    warning = None
    if started and not address.startswith("tls://"):
        reach = "any user of this machine" if kind.startswith("local") else \
            "anyone who can reach the cluster's network"
        warning = (f"TLS is off (--no-tls): {reach} can connect to the scheduler at {address} "
                   f"and run code as you")
        log.warning(warning)
    info = ClusterInfo(kind=kind, dashboard_link=link, n_workers=_n_connected(client), gpu=gpu,
                       reason=reason, address=address, warning=warning)
    log.info("Dask cluster: %s at %s, %d worker(s), gpu=%s (%s); dashboard %s",
             info.kind, info.address, info.n_workers, info.gpu, info.reason,
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
            raise InputError(f"{what}: a GPU is required (--gpu require) but {reason}; "
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


def _connect(address: str, *, gpu: str, wait_workers: float = 0.0,
             security: distributed.Security | None = None) -> tuple[distributed.Client, ClusterInfo]:
    client = distributed.Client(address, security=security)
    try:
        if wait_workers > 0:
            _wait_for_workers(client, gpu_only=gpu == "require", timeout=wait_workers)
        return client, describe_client(client, gpu=gpu, what=f"scheduler {address} given")
    except BaseException:
        client.close()
        raise


def _start_jobqueue(kind: str, *, config_file: str | os.PathLike[str] | None,
                    n_workers: int | None, threads_per_worker: int, gpu: str,
                    worker_env: Mapping[str, str] | None, security: distributed.Security | None,
                    ) -> tuple[distributed.Client, ClusterInfo]:
    from pipeline.cluster.jobqueue import advertises_gpu, jobqueue_cluster

    if n_workers is None:
        raise InputError(f"--cluster {kind} needs --workers N (the number of worker "
                         "jobs to submit, one per GPU)")
    env = {**GPU_ENV, **thread_env(threads_per_worker, worker_env)}
    cluster = jobqueue_cluster(kind, config_file=config_file, env=env, security=security)
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
                raise InputError(f"--cluster {kind}: a GPU is required (--gpu require) "
                                 f"but {reason}")
        cluster.scale(n_workers)
        client = distributed.Client(cluster)
    except BaseException:
        cluster.close()
        raise
    submit = type(cluster).job_cls.submit_command
    return client, _info(client, kind=kind, gpu=use_gpu, started=True,
                         reason=f"{n_workers} worker(s) submitted with {submit} through "
                                f"dask-jobqueue; {reason}")


def _client_for(cluster: distributed.LocalCluster, *, kind: str, gpu: bool, reason: str,
                dashboard: bool) -> tuple[distributed.Client, ClusterInfo]:
    try:
        client = distributed.Client(cluster)  # with the cluster's security
    except BaseException:
        cluster.close()
        raise
    return client, _info(client, kind=kind, gpu=gpu, reason=reason, dashboard=dashboard, started=True)
