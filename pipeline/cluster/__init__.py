"""The Dask cluster a command runs on.

- :mod:`~pipeline.cluster.client`: start or join a cluster (:func:`~pipeline.cluster.client.make_client`),
  close it, or both around a command (:func:`~pipeline.cluster.client.owned_client`);
- :mod:`~pipeline.cluster.info`: what a cluster is and why, and the one GPU-mode decision;
- :mod:`~pipeline.cluster.local`: clusters on this machine (CPU or one worker per GPU);
- :mod:`~pipeline.cluster.jobqueue`: worker jobs on SLURM or PBS;
- :mod:`~pipeline.cluster.security`: TLS, who may connect.
"""

__all__: list[str] = []
