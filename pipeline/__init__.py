"""Morpheus at survey scale: Dask graphs, Zarr stores, the command line.

Subpackages, from the bottom up (a package imports only from the ones above it in this
list; ``tests/test_layering.py`` keeps it so):

- :mod:`pipeline.errors`, :mod:`pipeline.timing`, :mod:`pipeline.quiet`,
  :mod:`pipeline.tasks`, :mod:`pipeline.program`: errors and exit codes, stage timing,
  quiet framework logs, running a list of Dask tasks, how a printed command is spelled;
- :mod:`pipeline.rundir`: the run directory (where it is, what each file is called,
  manifest, ledger, lock, checksums);
- :mod:`pipeline.settings`: every setting, its default and its option;
- :mod:`pipeline.cluster`: the Dask cluster a command runs on;
- :mod:`pipeline.inputs`: band files, mosaics, model cards, checks and ingest;
- :mod:`pipeline.products`: FITS, catalog and PNG files;
- :mod:`pipeline.classify`, :mod:`pipeline.downstream`: the classification, and the
  segmentation, deblending, catalog and colour image (also again on a finished run);
- :mod:`pipeline.viewer`, :mod:`pipeline.training`: the interactive map; training;
- :mod:`pipeline.run`: a run from start to end, ``resubmit``;
- :mod:`pipeline.cli`: the command line (``python -m pipeline``).
"""

__all__: list[str] = []
