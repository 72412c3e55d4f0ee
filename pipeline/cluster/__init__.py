"""The Dask cluster a command runs on, and running tasks there.

- :mod:`~pipeline.cluster.client`: start or join a cluster (:func:`make_client`), say why, close it;
- :mod:`~pipeline.cluster.local`: clusters on this machine (CPU or one worker per GPU);
- :mod:`~pipeline.cluster.jobqueue`: worker jobs on SLURM or PBS;
- :mod:`~pipeline.cluster.security`: TLS, who may connect;
- :mod:`~pipeline.cluster.tasks`: a stage's tasks on a client or the threaded scheduler.
"""

__all__: list[str] = []
