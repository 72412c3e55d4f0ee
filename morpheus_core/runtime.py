"""Compute resources of the process: thread counts of the deep-learning backend.

Several Dask workers on one machine must not each start one TensorFlow thread per
core, or they oversubscribe it. :func:`configure_threads` sets TensorFlow's intra- and
inter-op thread pools (and the OpenMP/BLAS variables inherited by child processes)
from the cores a worker is given. TensorFlow fixes its pools at first use, so call it
before the first model is built in the process.
"""

from __future__ import annotations

import logging
import os

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
    if n_threads is not None:
        for var in _BLAS_VARIABLES:
            os.environ[var] = str(n_threads)
    try:
        import tensorflow as tf
    except ImportError:  # JAX or PyTorch backend only
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
    return {
        "intra_op": threading.get_intra_op_parallelism_threads(),
        "inter_op": threading.get_inter_op_parallelism_threads(),
    }
