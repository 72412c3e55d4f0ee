"""Running a list of Dask tasks on a client, or on the threaded scheduler without one.

Every downstream stage (:mod:`pipeline.downstream.segment`, :mod:`pipeline.downstream.labels`,
:mod:`pipeline.downstream.deblend`, :mod:`pipeline.downstream.catalog_sums`, :mod:`pipeline.downstream.colour`) builds a
list of delayed chunk tasks and runs it here.
"""

from __future__ import annotations

from typing import Any

import dask

__all__ = ["run_tasks"]


def run_tasks(client: Any, tasks: list) -> list:
    """Compute ``tasks`` and return their results in order.

    Parameters
    ----------
    client : distributed.Client or None
        Where the tasks run; ``None``: Dask's threaded scheduler in this process.
    tasks : list of dask.delayed.Delayed
        The tasks.

    Returns
    -------
    list
        One result per task (``[]`` for no task).
    """
    if not tasks:
        return []
    if client is None:
        return list(dask.compute(*tasks, scheduler="threads"))
    return client.gather(client.compute(tasks))
