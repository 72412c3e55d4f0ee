"""The data products users open: FITS images with WCS and provenance, catalog files, PNG images.

- :mod:`~pipeline.products.provenance`: the provenance keywords every FITS product carries;
- :mod:`~pipeline.products.fits`: FITS images, whole or streamed strip by strip;
- :mod:`~pipeline.products.png`: PNG images streamed strip by strip;
- :mod:`~pipeline.products.catalog_files`: the catalog in Parquet, CSV, FITS and MRT, with
  every column's unit and description;
- :mod:`~pipeline.products.regions`: the catalog as a DS9 region file;
- :mod:`~pipeline.products.catalog_reference`: the column tables of ``docs/downstream.md``;
- :mod:`~pipeline.products.classification`: the classification's FITS products;
- :mod:`~pipeline.products.downstream`: the downstream graph's products (segmentation
  maps, catalog files, colour image) and their provenance.
"""

__all__: list[str] = []
