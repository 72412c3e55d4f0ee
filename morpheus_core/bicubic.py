"""TensorFlow-1 legacy bicubic resize (``align_corners=True``) as an interpolation matrix.

The released Morpheus network upsamples with TF1's ``resize_images(..., BICUBIC,
align_corners=True)``. XLA and Keras's JAX/PyTorch backends have no such kernel, so we
express the resize as two small matrix products (rows, then columns) with a matrix that
copies TensorFlow's legacy kernel in detail (as the released morpheus-astro 0.5.1 graph uses it):

- Keys cubic convolution with ``a = -0.75``;
- source coordinate ``out_index * ((in - 1) / (out - 1))`` computed in float32;
- neighbour indices clamped to ``[0, in - 1]`` (the weights of clamped neighbours add
  up on the edge pixel);
- the fractional offset rounded to a multiple of 1/1024 (``lrintf``), because
  TensorFlow reads the weights from a 1024-entry coefficient table.
"""

from __future__ import annotations

import numpy as np

__all__ = ["bicubic_matrix"]

_TABLE_SIZE = 1024
_A = np.float32(-0.75)


def _coefficient_table() -> np.ndarray:
    """Return TensorFlow's ``(TABLE_SIZE + 1, 2)`` float32 cubic coefficient table."""
    x = (np.arange(_TABLE_SIZE + 1, dtype=np.float32) / np.float32(_TABLE_SIZE)).astype(np.float32)
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    x1 = x + np.float32(1.0)
    far = ((_A * x1 - 5 * _A) * x1 + 8 * _A) * x1 - 4 * _A
    return np.stack([near, far], axis=1).astype(np.float32)


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Interpolation matrix of TF1 ``resize_bicubic(align_corners=True)`` along one axis.

    Parameters
    ----------
    n_in, n_out : int
        Input and output lengths of the axis.

    Returns
    -------
    numpy.ndarray
        ``(n_out, n_in)`` float32 matrix ``A`` such that resizing a 2-D image ``x`` is
        ``A @ x @ A.T``.

    Examples
    --------
    >>> a = bicubic_matrix(5, 10)
    >>> a.shape
    (10, 5)
    >>> bool(np.allclose(a.sum(axis=1), 1.0, atol=1e-6))
    True
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got n_in={n_in}, n_out={n_out}")
    table = _coefficient_table()
    if n_out > 1:
        scale = np.float32(n_in - 1) / np.float32(n_out - 1)
    else:
        scale = np.float32(n_in) / np.float32(n_out)
    matrix = np.zeros((n_out, n_in), dtype=np.float64)
    for out_index in range(n_out):
        src = np.float32(out_index) * np.float32(scale)
        base = int(np.floor(src))
        delta = np.float32(src - np.float32(base))
        offset = int(np.rint(delta * np.float32(_TABLE_SIZE)))  # lrintf: round half to even
        weights = (
            table[offset, 1],
            table[offset, 0],
            table[_TABLE_SIZE - offset, 0],
            table[_TABLE_SIZE - offset, 1],
        )
        for k, w in zip(range(base - 1, base + 3), weights):
            matrix[out_index, min(max(k, 0), n_in - 1)] += float(w)
    return matrix.astype(np.float32)
