"""What a run reads, checked before anything changes, and ingested.

- :mod:`~pipeline.inputs.mosaics`: the registry of named mosaics (``demo``, ``goods-s``, TOML files);
- :mod:`~pipeline.inputs.mosaic_files`: a named mosaic's band files (and weight or rms maps), checked;
- :mod:`~pipeline.inputs.demo_mosaics`: the synthetic demo mosaics' files, rendered on first use;
- :mod:`~pipeline.inputs.band_files`: opening band files (compressed or not) for strip reads;
- :mod:`~pipeline.inputs.model_cards`: the network's model card on disk (bands, pixel scale, classes);
- :mod:`~pipeline.inputs.preflight`: every check of the inputs made before the run directory changes;
- :mod:`~pipeline.inputs.grid`: the band files checked to share one pixel grid (:class:`~pipeline.inputs.grid.BandSet`);
- :mod:`~pipeline.inputs.ingest`: FITS bands -> ``mosaic.zarr`` (bands, coverage, WCS);
- :mod:`~pipeline.inputs.markers`: external source catalogs of the value-added mode.
"""

__all__: list[str] = []
