"""The data products users open: FITS images with WCS and provenance, catalog files, PNG images.

- :mod:`~pipeline.products.fits`: FITS images (whole or strip by strip), provenance cards, the
  classification's and the downstream graph's products;
- :mod:`~pipeline.products.catalog_files`: the catalog in Parquet, CSV, FITS and MRT.
"""

__all__: list[str] = []
