"""Morpheus science core: the U-Net, unit-stride window statistics, segmentation, catalog.

Plain functions on NumPy arrays. Nothing in this package imports Dask, Zarr or
``pipeline``; the orchestration layer calls into it.
"""

__version__ = "0.1.0"

#: Output classes of the released model, in output-channel order.
CLASSES: tuple[str, ...] = ("spheroid", "disk", "irregular", "point_source", "background")

#: Input bands of the released model, in input-channel order.
BANDS: tuple[str, ...] = ("H", "J", "V", "Z")
