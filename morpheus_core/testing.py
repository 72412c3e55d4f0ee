"""A cheap, deterministic stand-in for the Morpheus network, for tests and smoke runs.

Each output pixel's class logits are a fixed linear function of that pixel's
standardised band values plus a fixed position-dependent term, so the output depends
on the window's content and position (like the real network) but costs nothing, and
is computed with elementwise float32 operations only: the same window gives bit-for-bit
the same output whatever batch it is in.
"""

from __future__ import annotations

import numpy as np


class StandInClassifier:
    """Implements the engine's window-classifier protocol."""

    def __init__(self, window: int = 40, border: int = 5, n_bands: int = 4, n_classes: int = 5, seed: int = 7):
        rng = np.random.default_rng(seed)
        self.window, self.border, self.n_classes = window, border, n_classes
        self.weights = rng.normal(size=(n_bands, n_classes)).astype(np.float32)
        inner = window - 2 * border
        self.position = rng.normal(scale=0.5, size=(inner, inner, n_classes)).astype(np.float32)
        self.calls = 0

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, K, K, C)`` of the windows' counted inner region."""
        self.calls += 1
        b = self.border
        x = windows[:, b:-b, b:-b, :]
        logits = np.broadcast_to(self.position, x.shape[:3] + (self.n_classes,)).copy()
        for band in range(x.shape[-1]):  # elementwise, no BLAS: batch-independent
            logits += x[..., band : band + 1] * self.weights[band]
        logits -= logits.max(axis=-1, keepdims=True)
        e = np.exp(logits)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
