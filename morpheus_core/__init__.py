"""Morpheus science core: the U-Net, unit-stride window statistics, segmentation, catalog.

Plain functions on NumPy arrays. Nothing in this package imports Dask, Zarr or
``pipeline``; the orchestration layer calls into it. The constants below need no
dependency, so settings, status and the downstream stages can read them without
importing Keras or TensorFlow (only :mod:`morpheus_core.model` and the modules that
run the network do).
"""

__version__ = "0.1.0"

#: Output classes of the released model, in output-channel order.
CLASSES: tuple[str, ...] = ("spheroid", "disk", "irregular", "point_source", "background")

#: Input bands of the released model, in input-channel order.
BANDS: tuple[str, ...] = ("H", "J", "V", "Z")

#: Window size (pixels) of the released model.
WINDOW: int = 40

#: Width (pixels) of the window border whose outputs are never counted.
BORDER: int = 5

#: Compute precisions of the network (``bfloat16`` is opt-in, see docs/performance.md).
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
