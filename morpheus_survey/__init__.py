"""Morpheus at survey scale from Python: classify arrays, run a mosaic, open a run.

- :func:`classify`: the 15 classification images and ``n`` of band images held as
  NumPy or Dask arrays, as an :class:`xarray.Dataset` with their WCS (lazy for Dask);
- :func:`run`: a mosaic classified, segmented and cataloged into a run directory, as
  ``python -m pipeline run`` does, returning the run's summary;
- :func:`open_run`: a finished run's products (:class:`Run`): class images and
  segmentation maps with their WCS, the catalog as an astropy Table.

Bad input raises :class:`InputError` (a :class:`ValueError`) with one line naming the
value or file and the problem; a failure while a run was under way raises
:class:`RunError`. ``docs/python.md`` walks through all three.
"""

from morpheus_survey.classify import classify
from morpheus_survey.products import Run, open_run
from morpheus_survey.runner import run, run_options
from pipeline.errors import InputError, RunError
from pipeline.run import RunSummary

__all__ = ["InputError", "Run", "RunError", "RunSummary", "classify", "open_run", "run", "run_options"]
