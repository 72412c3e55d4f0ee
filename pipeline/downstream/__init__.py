"""Segmentation, deblending and the catalog as a Dask graph (paper sections 4, 5, 8).

:func:`pipeline.downstream.driver.run_downstream` calls the stages in order, each a
public function over private chunk kernels that call :mod:`morpheus_core`:
:mod:`~pipeline.downstream.segment` (Algorithm 1), :mod:`~pipeline.downstream.labels`,
:mod:`~pipeline.downstream.deblend` (Algorithm 2, bounded by
:mod:`~pipeline.downstream.large_segments`), :mod:`~pipeline.downstream.measure` (the
catalog, from the sums of :mod:`~pipeline.downstream.catalog_sums`) and
:mod:`~pipeline.downstream.colour` (the colour image). Every stage reads
the run through one :class:`~pipeline.downstream.context.StageContext`; the
segmentation store and its record are :mod:`~pipeline.downstream.segmentation_store`.
:mod:`~pipeline.downstream.redo` runs the graph again on a finished classification
(``segment``, ``catalog``).
"""

__all__: list[str] = []
