"""``python -m pipeline view``: a run as an interactive map in the browser.

- :mod:`~pipeline.viewer.command`: the command (serve, or ``--export`` a static site);
- :mod:`~pipeline.viewer.pyramid`: the tile pyramid, built from the stores as a Dask graph;
- :mod:`~pipeline.viewer.tiles`, :mod:`~pipeline.viewer.composite`: what a tile shows;
- :mod:`~pipeline.viewer.page`, :mod:`~pipeline.viewer.sky_readout`, ``static/``: the BokehJS page;
- :mod:`~pipeline.viewer.server`, :mod:`~pipeline.viewer.export`: serving it, or writing it as files.
"""

__all__: list[str] = []
