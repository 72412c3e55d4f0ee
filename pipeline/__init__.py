"""Morpheus at survey scale: Dask graphs, Zarr stores, the command line."""
