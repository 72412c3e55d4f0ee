"""Dask clusters on this machine: started with their workers' environment in place,
bound to the loopback interface, and closed without killing their workers.

:func:`pipeline.cluster.client.make_client` decides which cluster a run gets; this module
counts the GPUs this process may use (:func:`detect_gpus`), starts the local clusters
(:func:`start_local`, :func:`start_cuda`) and closes the worker processes of any
cluster made of nannies (:func:`close_workers`).

Thread counts of numerical libraries (OpenMP, MKL, OpenBLAS, TensorFlow) are read
once, when the library loads. A worker process imports numpy while it unpickles its
start-up function, before a :class:`distributed.Nanny`'s ``env=`` is applied, so the
thread variables are passed through the ``distributed.nanny.pre-spawn-environ``
setting, which the nanny puts into the environment the process is spawned with
(:func:`worker_environment`).

Closing: Dask's ``cluster.close()`` gives each nanny's worker process 4 s (80% of
:meth:`distributed.Nanny.close`'s default ``timeout=5``) to exit, then logs
``Worker process still alive after 4.0 seconds, killing`` and kills it. A worker that
has loaded TensorFlow can need longer than that for its interpreter's teardown alone
on a loaded machine, and a worker still running a task waits for it first.
:func:`close_workers` closes them before ``cluster.close()`` does, without waiting for
running tasks and with :data:`CLOSE_TIMEOUT` seconds for the process to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

import dask
import distributed

from pipeline.errors import InputError

__all__ = [
    "CLOSE_TIMEOUT",
    "GPU_ENV",
    "LOOPBACK",
    "THREAD_ENV_VARS",
    "close_workers",
    "detect_gpus",
    "loopback_dashboard",
    "start_cuda",
    "start_local",
    "thread_env",
    "worker_environment",
]

log = logging.getLogger(__name__)

#: Environment variables that cap the threads of the numerical libraries a worker
#: loads; :func:`pipeline.cluster.client.make_client` sets each to ``threads_per_worker``.
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

#: The only interface local clusters (scheduler, workers, nannies, dashboard) listen on.
LOOPBACK = "127.0.0.1"

#: Seconds :func:`close_workers` gives each worker process to exit before its nanny
#: kills it (Dask's own close gives 4 s); a normal close takes about a second.
CLOSE_TIMEOUT = 60.0

#: Dask setting whose variables the nanny exports before spawning a worker process.
_PRE_SPAWN_KEY = "distributed.nanny.pre-spawn-environ"
_CLOSE_REASON = "morpheus-close"


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
            return len(entries), (f"{len(entries)} GPU(s) from CUDA_VISIBLE_DEVICES={visible!r} ({smi_note})")
        return 0, f"no GPU visible ({smi_note}, CUDA_VISIBLE_DEVICES unset)"
    if entries is not None:
        n = min(len(entries), n_present)
        return n, (f"{n} GPU(s) visible (nvidia-smi lists {n_present}, CUDA_VISIBLE_DEVICES={visible!r})")
    if n_present == 0:
        return 0, "no GPU visible (nvidia-smi lists no GPU)"
    return n_present, f"{n_present} GPU(s) listed by nvidia-smi"


def _nvidia_smi_count() -> tuple[int | None, str]:
    """Number of GPUs ``nvidia-smi -L`` lists, or ``None`` and why it could not run."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None, "nvidia-smi not found"
    try:
        proc = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"nvidia-smi failed: {exc}"
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        detail = message[0] if message else f"exit status {proc.returncode}"
        return None, f"nvidia-smi failed: {detail}"
    # One "GPU <i>: <name> (UUID: ...)" line per device; MIG slices are indented below.
    n = sum(1 for line in proc.stdout.splitlines() if line.startswith("GPU "))
    return n, "nvidia-smi"


def loopback_dashboard(address: str | None) -> tuple[str, bool]:
    """Bind a local cluster's dashboard to the loopback interface only.

    Returns the address to bind and whether the dashboard is on. ``":8787"`` and
    ``"8787"`` become ``"127.0.0.1:8787"``. ``None`` (no dashboard) gives
    ``"127.0.0.1:0"``: the scheduler's HTTP server (health, metrics) runs even
    without a dashboard, and would otherwise take port 8787 on every interface.

    Raises
    ------
    InputError
        For a host other than ``127.0.0.1``, ``localhost`` or none.
    """
    if address is None:
        return f"{LOOPBACK}:0", False
    host, sep, port = address.rpartition(":")
    if not sep:
        host, port = "", address
    if host in ("", LOOPBACK, "localhost"):
        return f"{LOOPBACK}:{port or 0}", True
    raise InputError(
        f"dashboard address {address!r}: a local cluster's dashboard binds to "
        f"{LOOPBACK} only; reach it from elsewhere through an SSH tunnel "
        f"(ssh -L 8787:{LOOPBACK}:<port> host)"
    )


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


def thread_env(threads: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each of :data:`THREAD_ENV_VARS` set to ``threads``, then ``extra``."""
    env = {name: str(threads) for name in THREAD_ENV_VARS}
    env.update({str(k): str(v) for k, v in (extra or {}).items()})
    return env


def start_local(
    *,
    n_workers: int | None,
    threads_per_worker: int,
    memory_limit: str | None,
    dashboard: tuple[str, bool],
    worker_env: Mapping[str, str] | None,
    security: distributed.Security | None,
) -> distributed.LocalCluster:
    """A process-based :class:`distributed.LocalCluster` on 127.0.0.1.

    ``n_workers`` defaults to ``os.cpu_count() // threads_per_worker``; ``dashboard``
    comes from :func:`loopback_dashboard`; ``security`` (TLS, with the ``tls://``
    protocol that follows from it) is passed to the scheduler, nannies and workers.
    """
    if n_workers is None:
        n_workers = max(1, (os.cpu_count() or 1) // threads_per_worker)
    with worker_environment(thread_env(threads_per_worker, worker_env)) as spawn_env:
        # env= as well: workers added later by cluster.scale() still get the
        # variables (though only after their process has started).
        return distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host=LOOPBACK,
            dashboard_address=dashboard[0],
            scheduler_kwargs={"dashboard": dashboard[1]},
            memory_limit=memory_limit,
            env=spawn_env,
            security=security,
        )


def start_cuda(
    dask_cuda: ModuleType,
    *,
    n_workers: int,
    memory_limit: str | None,
    dashboard: tuple[str, bool],
    worker_env: Mapping[str, str] | None,
    security: distributed.Security | None,
) -> Any:
    """A ``dask_cuda.LocalCUDACluster`` of ``n_workers`` one-thread workers on
    127.0.0.1, each advertising ``{"GPU": 1}``, with :data:`GPU_ENV`.

    LocalCUDACluster forwards the keywords it does not know (``resources``,
    ``security``) to LocalCluster and from there to each nanny. It sets each nanny's
    ``env=`` itself (``CUDA_VISIBLE_DEVICES``), so our variables go through the
    pre-spawn environment only.
    """
    with worker_environment({**GPU_ENV, **thread_env(1, worker_env)}):
        return dask_cuda.LocalCUDACluster(
            n_workers=n_workers,
            threads_per_worker=1,
            resources={"GPU": 1},
            host=LOOPBACK,
            dashboard_address=dashboard[0],
            scheduler_kwargs={"dashboard": dashboard[1]},
            memory_limit=memory_limit,
            security=security,
        )


def close_workers(cluster: Any, timeout: float = CLOSE_TIMEOUT) -> None:
    """Close the worker processes of ``cluster``'s nannies, so that none is killed.

    Each nanny is told its worker is leaving for good (no restart), its worker
    process is asked to close without waiting for a task still running (one left
    behind by a failed or refused run: its result is no longer wanted), and the
    nanny waits up to ``timeout`` seconds for the process to exit before it would
    kill it. Clusters without nannies (batch jobs, in-process workers) are left to
    their own ``close()``; call that afterwards in any case.
    """
    nannies = [w for w in getattr(cluster, "workers", {}).values() if isinstance(w, distributed.Nanny)]
    if nannies:
        cluster.sync(_close_nannies, nannies, timeout)


async def _close_nannies(nannies: list[distributed.Nanny], timeout: float) -> None:
    async def close(nanny: distributed.Nanny) -> None:
        nanny.close_gracefully(reason=_CLOSE_REASON)
        process = nanny.process
        if process is not None:
            try:
                await process.kill(timeout=timeout, executor_wait=False, reason=_CLOSE_REASON)
            except Exception as exc:  # the nanny's own close below still ends it
                log.debug("closing the worker of %s: %r", nanny.address_safe, exc)
        await nanny.close(timeout=timeout, reason=_CLOSE_REASON)

    await asyncio.gather(*(close(nanny) for nanny in nannies))
