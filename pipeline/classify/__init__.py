"""The classification stage: tiles on a Dask cluster, merged exactly.

- :mod:`~pipeline.classify.job`: what the driver and every task of one run's classification need;
- :mod:`~pipeline.classify.driver`: submits the tile tasks, merges their partials into
  ``classification.zarr``, writes the FITS products;
- :mod:`~pipeline.classify.tasks`: what runs on the workers (the network loaded once per worker,
  one task per tile, one merge task per output chunk);
- :mod:`~pipeline.classify.progress`: windows evaluated, from the workers to the progress bar.
"""

__all__: list[str] = []
