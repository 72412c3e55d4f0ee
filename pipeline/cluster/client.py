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

Every choice comes back with a :class:`~pipeline.cluster.info.ClusterInfo` whose
``reason`` says why (``"dask-cuda not installed: pip install 'morpheus-survey[gpu]'"``),
and is logged; :func:`~pipeline.cluster.info.cluster_lines` gives the lines a run prints
about it. Whether GPUs are used under the ``gpu`` setting
(:data:`~pipeline.settings.run.GPU_MODES`) is decided by
:func:`~pipeline.cluster.info.choose_gpu`, for each kind of cluster.

Clusters started here speak TLS (:mod:`pipeline.cluster.security`): another process, of this
user or another, cannot join them or run code on their workers without the run's
credentials. ``tls=False`` (``--no-tls``) starts plain-TCP clusters and says so in
:attr:`~pipeline.cluster.info.ClusterInfo.warning`. :func:`close_client` is where they are closed;
:func:`owned_client` starts one for the length of a command (or takes one given).

Local clusters are started and closed by :mod:`pipeline.cluster.local` (the workers'
thread variables set before they start; workers closed without being killed).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shlex
import time
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

import distributed

from pipeline.cluster.info import ClusterInfo, choose_gpu, cluster_info, cluster_lines, describe_client, one_of
from pipeline.cluster.local import (
    CLOSE_TIMEOUT,
    GPU_ENV,
    close_workers,
    detect_gpus,
    loopback_dashboard,
    start_cuda,
    start_local,
    thread_env,
)
from pipeline.cluster.security import check_scheduler_security, load_security, temporary_security
from pipeline.errors import InputError
from pipeline.settings.run import CLUSTERS, GPU_MODES

if TYPE_CHECKING:
    from pipeline.settings import RunSettings

__all__ = ["close_client", "make_client", "owned_client"]

log = logging.getLogger(__name__)

_GPU_INSTALL_HINT = "pip install 'morpheus-survey[gpu]'"


def _local_gpus() -> tuple[tuple[ModuleType, int] | None, str]:
    """The probe of :func:`choose_gpu` for a cluster on this machine: ``dask_cuda`` and
    the GPUs visible (:func:`~pipeline.cluster.local.detect_gpus`), or ``None`` and why not.
    """
    n_gpus, gpu_reason = detect_gpus()
    if n_gpus == 0:
        return None, gpu_reason
    try:
        dask_cuda = importlib.import_module("dask_cuda")
    except ImportError as exc:
        return None, f"{gpu_reason}, but dask-cuda not installed ({exc}): {_GPU_INSTALL_HINT}"
    return (dask_cuda, n_gpus), f"{gpu_reason}; dask-cuda, one worker per GPU"


def make_client(
    *,
    scheduler: str | None = None,
    cluster: str = "local",
    cluster_config: str | os.PathLike[str] | None = None,
    n_workers: int | None = None,
    threads_per_worker: int = 1,
    memory_limit: str | None = "auto",
    gpu: str = "auto",
    dashboard_address: str | None = "127.0.0.1:0",
    worker_env: dict[str, str] | None = None,
    wait_workers: float = 0.0,
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
        as ``OMP_NUM_THREADS`` and the other :data:`~pipeline.cluster.local.THREAD_ENV_VARS` (for batch
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
    one_of("gpu", gpu, GPU_MODES)
    if threads_per_worker < 1:
        raise InputError(f"--threads-per-worker must be >= 1, got {threads_per_worker}")
    if n_workers is not None and n_workers < 1:
        raise InputError(f"--workers must be >= 1, got {n_workers}")
    one_of("cluster", cluster, CLUSTERS)

    if scheduler is not None:
        if cluster != "local":
            raise InputError(f"give either a scheduler address or cluster={cluster!r}, not both")
        if scheduler_security is not None and not isinstance(scheduler_security, distributed.Security):
            scheduler_security = load_security(scheduler_security)
        security = check_scheduler_security(scheduler, scheduler_security)
        return _connect(scheduler, gpu=gpu, wait_workers=wait_workers, security=security)
    if cluster != "local":
        return _start_jobqueue(
            cluster,
            config_file=cluster_config,
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            gpu=gpu,
            worker_env=worker_env,
            security=temporary_security() if tls else None,
        )

    dashboard = loopback_dashboard(dashboard_address)
    security = temporary_security() if tls else None

    cuda, reason = choose_gpu(gpu, _local_gpus)
    if cuda is not None:
        dask_cuda, n_gpus = cuda
        cuda_cluster = start_cuda(
            dask_cuda,
            n_workers=min(n_workers or n_gpus, n_gpus),
            memory_limit=memory_limit,
            dashboard=dashboard,
            worker_env=worker_env,
            security=security,
        )
        return _client_for(cuda_cluster, kind="local-cuda", gpu=True, dashboard=dashboard[1], reason=reason)
    local = start_local(
        n_workers=n_workers,
        threads_per_worker=threads_per_worker,
        memory_limit=memory_limit,
        dashboard=dashboard,
        worker_env=worker_env,
        security=security,
    )
    return _client_for(local, kind="local", gpu=False, reason=reason, dashboard=dashboard[1])


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


@contextlib.contextmanager
def owned_client(
    settings: RunSettings | Mapping[str, Any] | None = None,
    *,
    client: distributed.Client | None = None,
    echo: Callable[[str], Any] | None = None,
) -> Iterator[tuple[distributed.Client, ClusterInfo]]:
    """The client a command runs on, for the length of the block.

    A given ``client`` is used as it is and left open (described with
    :func:`describe_client`); otherwise one is started with :func:`make_client` and
    closed with :func:`close_client` when the block ends, however it ends.

    Parameters
    ----------
    settings : RunSettings or mapping, optional
        The cluster settings: a run's (``scheduler``, ``cluster``, ``workers``, ``gpu``,
        ...), or :func:`make_client`'s keyword arguments.
    client : distributed.Client, optional
        A client made elsewhere.
    echo : callable, optional
        Gets the :func:`cluster_lines` of a cluster started here.

    Yields
    ------
    client : distributed.Client
        The client.
    info : ClusterInfo
        Its cluster, and why.
    """
    options = dict(settings) if isinstance(settings, Mapping) or settings is None else _client_options(settings)
    if client is not None:
        yield client, describe_client(client, gpu=options.get("gpu", "auto"), what="client given")
        return
    client, info = make_client(**options)
    try:
        for line in cluster_lines(info) if echo is not None else []:
            echo(line)
        yield client, info
    finally:
        close_client(client)


def _client_options(config: RunSettings) -> dict[str, Any]:
    """:func:`make_client`'s arguments from a run's settings."""
    return dict(
        scheduler=config.scheduler,
        cluster=config.cluster,
        cluster_config=config.cluster_config,
        n_workers=config.workers,
        threads_per_worker=config.threads_per_worker,
        gpu=config.gpu,
        wait_workers=config.wait_workers,
        tls=config.tls,
        scheduler_security=config.scheduler_security,
    )


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
            log.info("waiting up to %.0f s for a %sworker to connect", timeout, "GPU " if gpu_only else "")
            logged = True
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _connect(
    address: str, *, gpu: str, wait_workers: float = 0.0, security: distributed.Security | None = None
) -> tuple[distributed.Client, ClusterInfo]:
    client = distributed.Client(address, security=security)
    try:
        if wait_workers > 0:
            _wait_for_workers(client, gpu_only=gpu == "require", timeout=wait_workers)
        return client, describe_client(client, gpu=gpu, what=f"scheduler {address} given")
    except BaseException:
        client.close()
        raise


def _start_jobqueue(
    kind: str,
    *,
    config_file: str | os.PathLike[str] | None,
    n_workers: int | None,
    threads_per_worker: int,
    gpu: str,
    worker_env: Mapping[str, str] | None,
    security: distributed.Security | None,
) -> tuple[distributed.Client, ClusterInfo]:
    from pipeline.cluster.jobqueue import advertises_gpu, jobqueue_cluster

    if n_workers is None:
        raise InputError(f"--cluster {kind} needs --workers N (the number of worker jobs to submit, one per GPU)")
    env = {**GPU_ENV, **thread_env(threads_per_worker, worker_env)}
    cluster = jobqueue_cluster(kind, config_file=config_file, env=env, security=security)
    try:

        def job_gpus() -> tuple[bool, str]:
            worker_command = cluster.job_script().strip().splitlines()[-1]
            if advertises_gpu(shlex.split(worker_command)):
                return True, "worker jobs advertise a GPU resource"
            return False, "worker jobs advertise no GPU resource (worker-extra-args without '--resources GPU=1')"

        found, reason = choose_gpu(gpu, job_gpus, where=f"--cluster {kind}: ")
        use_gpu = found is not None
        cluster.scale(n_workers)
        client = distributed.Client(cluster)
    except BaseException:
        cluster.close()
        raise
    submit = type(cluster).job_cls.submit_command
    return client, cluster_info(
        client,
        kind=kind,
        gpu=use_gpu,
        started=True,
        reason=f"{n_workers} worker(s) submitted with {submit} through dask-jobqueue; {reason}",
    )


def _client_for(
    cluster: distributed.LocalCluster, *, kind: str, gpu: bool, reason: str, dashboard: bool
) -> tuple[distributed.Client, ClusterInfo]:
    try:
        client = distributed.Client(cluster)  # with the cluster's security
    except BaseException:
        cluster.close()
        raise
    return client, cluster_info(client, kind=kind, gpu=gpu, reason=reason, dashboard=dashboard, started=True)
