"""Compute resources of the process: threads and GPU memory of the deep-learning backend.

Several Dask workers on one machine must not each start one TensorFlow thread per
core, or they oversubscribe it. :func:`configure_threads` sets TensorFlow's intra- and
inter-op thread pools (and the OpenMP/BLAS variables inherited by child processes)
from the cores a worker is given. TensorFlow fixes its pools at first use, so call it
before the first model is built in the process.

By default TensorFlow reserves nearly all the memory of every GPU it can see at its
first GPU operation. :func:`configure_gpu_memory_growth` makes it allocate as needed
instead, so that a worker never takes memory from another process sharing its GPU
(a second worker, a merge, a notebook); it too must run before the first model.
"""

from __future__ import annotations

import logging
import os

__all__ = ["configure_gpu_memory_growth", "configure_threads"]

logger = logging.getLogger(__name__)

_BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def configure_threads(n_threads: int | None) -> dict[str, int]:
    """Limit the process's compute threads to ``n_threads`` (None: leave as is).

    Parameters
    ----------
    n_threads : int or None
        Threads for TensorFlow's intra-op pool and for BLAS/OpenMP; the inter-op pool
        gets ``min(2, n_threads)``.

    Returns
    -------
    dict
        ``{"intra_op": ..., "inter_op": ...}`` as TensorFlow reports them afterwards
        (0 means TensorFlow's default, one thread per core).

    Raises
    ------
    RuntimeError
        If TensorFlow was already initialised with different thread counts.
    """
    if n_threads is not None and n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    try:
        import tensorflow as tf
    except ImportError:  # JAX or PyTorch backend only
        _set_blas_threads(n_threads)
        return {"intra_op": n_threads or 0, "inter_op": n_threads or 0}
    threading = tf.config.threading
    if n_threads is not None:
        inter = min(2, n_threads)
        current = (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads())
        if current != (n_threads, inter):
            try:
                threading.set_intra_op_parallelism_threads(n_threads)
                threading.set_inter_op_parallelism_threads(inter)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"TensorFlow is already initialised with {current[0]} intra-op / "
                    f"{current[1]} inter-op threads; cannot change to {n_threads}: set "
                    "threads before building a model"
                ) from exc
        logger.info("TensorFlow threads: intra-op %d, inter-op %d", n_threads, inter)
    _set_blas_threads(n_threads)  # only once TensorFlow accepted the setting
    return {
        "intra_op": threading.get_intra_op_parallelism_threads(),
        "inter_op": threading.get_inter_op_parallelism_threads(),
    }


def configure_gpu_memory_growth() -> list[str]:
    """Let TensorFlow allocate GPU memory as needed instead of reserving it all.

    Same effect as ``TF_FORCE_GPU_ALLOW_GROWTH=true`` in the environment, which the
    deployment recipes also set. A no-op without TensorFlow or without GPUs.

    Returns
    -------
    list of str
        Names of the GPUs configured (``["/physical_device:GPU:0"]``), empty if none.

    Notes
    -----
    If TensorFlow has already initialised its GPUs in this process, their memory
    setting can no longer change: a warning is logged and the names of the GPUs
    whose setting is not growth are left out of the result.
    """
    try:
        import tensorflow as tf
    except ImportError:  # JAX or PyTorch backend only
        return []
    configured = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError as exc:  # already initialised
            if not tf.config.experimental.get_memory_growth(gpu):
                logger.warning("GPU %s already initialised without memory growth: %s", gpu.name, exc)
                continue
        configured.append(gpu.name)
    if configured:
        logger.info("TensorFlow GPU memory growth on %s", ", ".join(configured))
    return configured


def _set_blas_threads(n_threads: int | None) -> None:
    if n_threads is not None:
        for var in _BLAS_VARIABLES:
            os.environ[var] = str(n_threads)
