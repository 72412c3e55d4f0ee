"""Independent float64 NumPy reference of the Morpheus U-Net forward pass.

Written from the paper (Hausen & Robertson 2020, Sec. 2.2, Table 1), the released
morpheus-astro 0.5.1 checkpoint and its TF1 graph conventions; it shares no code with
``morpheus_core.model`` and is used only to validate that port.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

import numpy as np

__all__ = ["bicubic_matrix", "checkpoint_prefix", "load_checkpoint_arrays", "forward", "standardize"]

BN_EPSILON = 1e-3
CLASSES = ("spheroid", "disk", "irregular", "point_source", "background")
_OPTIMIZER_MARKERS = ("/Adam", "beta1_power", "beta2_power")
_TABLE_SIZE = 1024
_KEYS_A = -0.75


def _keys_cubic(d: float) -> float:
    """Keys cubic convolution kernel with ``a = -0.75`` at distance ``d``."""
    d = abs(d)
    a = _KEYS_A
    if d <= 1.0:
        return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    if d < 2.0:
        return ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a
    return 0.0


def bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Interpolation matrix of TF's legacy ``resize_bicubic(align_corners=True)``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output length along one axis.

    Returns
    -------
    np.ndarray
        Float64 array of shape ``(n_out, n_in)``; ``A @ x @ A.T`` resizes one channel.

    Notes
    -----
    Source coordinate ``o * ((n_in - 1) / (n_out - 1))`` in float32; its fractional
    part is rounded to the nearest multiple of 1/1024 (TF's coefficient table, indexed
    with ``lrintf``); neighbours ``floor - 1 .. floor + 2`` are clamped to the edge.
    """
    scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(n_in / n_out)
    mat = np.zeros((n_out, n_in), dtype=np.float64)
    for o in range(n_out):
        src = np.float32(o) * scale
        base = int(np.floor(src))
        t = np.float32(src - np.float32(base))
        x = int(np.rint(t * np.float32(_TABLE_SIZE))) / _TABLE_SIZE
        weights = (_keys_cubic(1.0 + x), _keys_cubic(x), _keys_cubic(1.0 - x), _keys_cubic(2.0 - x))
        for j, w in zip(range(base - 1, base + 3), weights):
            mat[o, min(max(j, 0), n_in - 1)] += w
    return mat


def checkpoint_prefix() -> Path:
    """Path prefix of the released ``model-440`` checkpoint in morpheus-astro.

    Returns
    -------
    Path
        Prefix accepted by ``tf.train.load_checkpoint``.
    """
    dist = md.distribution("morpheus-astro")
    files = [p for p in dist.files or [] if p.name == "checkpoint" and "model_weights" in str(p)]
    if not files:
        raise FileNotFoundError("morpheus-astro checkpoint not found")
    return Path(dist.locate_file(files[0])).parent / "model-440"


def load_checkpoint_arrays() -> dict[str, np.ndarray]:
    """Read all non-optimizer tensors of the released checkpoint.

    Returns
    -------
    dict[str, np.ndarray]
        Variable name -> float64 array (Adam slots and beta powers excluded).
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(checkpoint_prefix()))
    return {
        name: np.asarray(reader.get_tensor(name), dtype=np.float64)
        for name in sorted(reader.get_variable_to_shape_map())
        if not any(m in name for m in _OPTIMIZER_MARKERS)
    }


def standardize(window: np.ndarray) -> np.ndarray:
    """TF ``per_image_standardization`` over the last three axes jointly.

    Parameters
    ----------
    window : np.ndarray
        ``(H, W, C)`` window, or a batch ``(..., H, W, C)``.

    Returns
    -------
    np.ndarray
        Float64 ``(x - mean) / max(std, 1 / sqrt(H * W * C))``.
    """
    x = np.asarray(window, dtype=np.float64)
    axes = (-3, -2, -1)
    mean = x.mean(axis=axes, keepdims=True)
    std = x.std(axis=axes, keepdims=True)
    n = np.prod(x.shape[-3:])
    return (x - mean) / np.maximum(std, 1.0 / np.sqrt(n))


def _conv3x3(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """3x3 stride-1 'same' convolution (zero padding), NHWC input, HWIO kernel."""
    _, h, w, _ = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros(x.shape[:3] + (kernel.shape[3],), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            out += xp[:, i : i + h, j : j + w, :] @ kernel[i, j]
    return out + bias


def _block_op(w: dict[str, np.ndarray], scope: str, x: np.ndarray) -> np.ndarray:
    """Inference batch norm -> 3x3 conv with bias -> ReLU."""
    bn = f"{scope}/batch_normalization/"
    scale = w[bn + "gamma"] / np.sqrt(w[bn + "moving_variance"] + BN_EPSILON)
    x = (x - w[bn + "moving_mean"]) * scale + w[bn + "beta"]
    x = _conv3x3(x, w[f"{scope}/conv/kernel"], w[f"{scope}/conv/bias"])
    return np.maximum(x, 0.0)


def _max_pool2(x: np.ndarray) -> np.ndarray:
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _upsample2(x: np.ndarray) -> np.ndarray:
    _, h, w, _ = x.shape
    a_h, a_w = bicubic_matrix(h, 2 * h), bicubic_matrix(w, 2 * w)
    return np.einsum("oi,bijc,pj->bopc", a_h, x, a_w)


def forward(weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Morpheus U-Net inference in float64.

    Parameters
    ----------
    weights : dict[str, np.ndarray]
        Checkpoint tensors as returned by :func:`load_checkpoint_arrays`.
    x : np.ndarray
        Standardised windows, shape ``(B, 40, 40, 4)``.

    Returns
    -------
    np.ndarray
        Softmax probabilities ``(B, 40, 40, 5)`` in the order of ``CLASSES``.
    """
    h = np.asarray(x, dtype=np.float64)
    skips = []
    for idx in range(3):
        for j in range(4):
            h = _block_op(weights, f"downconv-{idx}/conv-{j}", h)
        skips.append(h)
        h = _max_pool2(h)
    h = _block_op(weights, "intermediate-conv", h)
    for idx in range(3):
        h = np.concatenate([_upsample2(h), skips[-(idx + 1)]], axis=-1)
        for j in range(2):
            h = _block_op(weights, f"upconv-{idx}/conv-{j}", h)
    logits = _conv3x3(h, weights["final_conv/conv/kernel"], weights["final_conv/conv/bias"])
    logits = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)
