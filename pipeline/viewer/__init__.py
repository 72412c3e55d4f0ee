"""A run as an interactive map in the browser (the command line is :mod:`pipeline.cli.view`).

- :mod:`~pipeline.viewer.command`: what ``view`` does (prepare, then serve, or ``--export`` a static site);
- :mod:`~pipeline.viewer.pyramid`: the tile pyramid (:func:`~pipeline.viewer.pyramid.build_pyramid`,
  :func:`~pipeline.viewer.pyramid.read_pyramid`, :class:`~pipeline.viewer.pyramid.Pyramid`), built from
  the stores as a Dask graph: :mod:`~pipeline.viewer.grid` (the tile grid), :mod:`~pipeline.viewer.sources`
  (the run's stores at full resolution), :mod:`~pipeline.viewer.passes` (the per-square tasks),
  :mod:`~pipeline.viewer.stretch` (the colour composite's sky level and stretch);
- :mod:`~pipeline.viewer.tiles`, :mod:`~pipeline.viewer.composite`: what a tile shows;
- :mod:`~pipeline.viewer.page`, :mod:`~pipeline.viewer.catalog`, :mod:`~pipeline.viewer.sky_readout`,
  ``static/``: the BokehJS page, its catalog markers and its sky coordinates;
- :mod:`~pipeline.viewer.server`, :mod:`~pipeline.viewer.export`: serving it, or writing it as files.
"""

__all__: list[str] = []
