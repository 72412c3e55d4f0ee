"""Morpheus science core: the U-Net, unit-stride window statistics, segmentation, catalog.

Plain functions on NumPy arrays. Nothing in this package imports Dask, Zarr or
``pipeline``; the orchestration layer calls into it. The constants below need no
dependency, so settings, status and the downstream stages can read them without
importing Keras or TensorFlow.

Deep-learning frameworks
------------------------
Importing one of these modules imports Keras (and, through it, the backends installed:
TensorFlow, JAX):

- ``morpheus_core.model``: the U-Net of paper Table 1
- ``morpheus_core.weights``: the released checkpoint and weights files loaded into it
- ``morpheus_core.inference``: the network evaluated for inference
- ``morpheus_core.training.fit``: the training loop
- ``morpheus_core.training.losses``: the training loss

No other module imports Keras, TensorFlow, JAX or PyTorch when it is imported, so
they all work where none is installed. Of those, three call into the framework when
asked to run a network: :mod:`~morpheus_core.classifier` (a Keras network made into
the engine's compiled window classifier, with TensorFlow or JAX compilation),
:mod:`~morpheus_core.accumulate` (:func:`~morpheus_core.accumulate.block_sums` on
``keras.ops`` tensors) and :mod:`~morpheus_core.runtime` (TensorFlow's thread pools
and GPU memory growth, when TensorFlow is installed). :mod:`~morpheus_core.engine`
and :mod:`~morpheus_core.transfer` work on a network they are given without
importing Keras themselves.
"""

__version__ = "0.1.0"

__all__ = ["BANDS", "BORDER", "CLASSES", "PRECISIONS", "WINDOW"]

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
