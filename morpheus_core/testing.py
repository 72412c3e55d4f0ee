"""Cheap, deterministic stand-ins for the Morpheus network, for tests and smoke runs.

- :class:`StandInClassifier`: each output pixel's class logits are a fixed linear
  function of that pixel's standardised band values plus a fixed position-dependent
  term, so the output depends on the window's content and position (like the real
  network) but costs nothing;
- :class:`SkyStandInClassifier`: a classification that *looks like* the real one on a
  sky (background from the window's local signal-to-noise ratio, so the rank-vote
  background is 1 on sky and 0 on source cores; morphology from colour, varying
  between sources), for scale tests of segmentation, deblending and the catalog.

Both are computed with elementwise float32 operations (and, for the second, order
statistics within one window) only: the same window gives bit-for-bit the same output
whatever batch it is in.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SkyStandInClassifier", "StandInClassifier"]


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


class SkyStandInClassifier:
    """A cheap stand-in whose classification looks like the real network's on a sky.

    Implements the engine's window-classifier protocol (call it with standardised
    windows ``(B, N, N, bands)``; it returns probabilities ``(B, K, K, C)`` of the
    counted inner region, ``K = N - 2 * border``) at almost no cost, for scale tests.

    *Background* comes from the window's local signal-to-noise ratio: the bands are
    summed (``t``) and smoothed by a ``smooth x smooth`` box (``S``); a pixel's S/N is
    ``(S - median(S)) / sigma_S``, with the median over the window and the noise
    ``sigma_S`` from the median absolute difference of horizontally adjacent pixels of
    ``t`` (insensitive to smooth source profiles, so a galaxy filling the window does
    not inflate it). A window ranks a morphology first at a pixel (a *source vote*)
    where

    - its S/N exceeds ``extent_snr`` and some pixel within ``reach`` (a square) exceeds
      ``detect_snr``: detected sources, in every window that counts the pixel, so
      their rank-vote background is 0 (a detect and an analysis threshold, as in
      SExtractor); or
    - its S/N exceeds ``context_snr`` and it lies in the central ``context x context``
      pixels of the window's counted region: fainter structure gets a share of the
      votes, background between 0 and 1 (the real network, too, is surer of a pixel it
      sees with more context).

    Elsewhere background is ranked first: sky pixels (S/N ~ N(0, 1), below 4.5 in a
    3x3 box but for a few pixels in 10^6) in every window, rank-vote background 1. The defaults were matched to the released network on the
    demo mosaic (``benchmarks/standin_fidelity.py``: it detects sources whose peak
    3x3 S/N exceeds ~20, and marks them out to S/N ~2).

    *Morphology* comes from the pixel's colour ``u = (blue - red) / (|blue| + |red|)``
    (``red``: the smoothed first half of the bands, H and J; ``blue``: the rest, V and
    Z; each minus its window median): each class has a colour centre and the nearest
    one wins. A source's pixels share its colour, so the class varies between sources
    (red spheroids, bluer disks, bluest point sources on the simulator's skies,
    :mod:`morpheus_core.simulate`) and is mostly uniform within one. A stand-in, not a
    classifier: the class is a function of colour only.

    Everything is elementwise float32 arithmetic (shifted-slice sums and maxima in a
    fixed order) or an order statistic within one window (``numpy.partition``), so a
    window gives bit-for-bit the same output in any batch. Like the real network it
    sees only standardised windows; S/N and colour are invariant to the
    standardisation (an affine map common to all bands).

    Parameters
    ----------
    window, border : int
        Window size and the border excluded from counting (the network's 40 and 5).
    n_bands : int
        Bands of the input (at least 2: the first half is "red", the rest "blue").
    detect_snr, extent_snr : float
        A pixel above ``extent_snr`` within ``reach`` of one above ``detect_snr`` gets
        the source vote of every window.
    reach : int
        Half side of the square searched for a detected pixel, at most
        ``border - smooth // 2``.
    context_snr : float
        A pixel above it gets the source vote of the windows whose central
        ``context x context`` pixels hold it.
    context : int
        Side of that central square (0: none).
    smooth : int
        Side of the box that smooths the band sum and the colours (odd).
    colour_centres : sequence of float
        Colour ``u`` of each morphology class (spheroid, disk, irregular, point source
        for the network's classes).
    colour_width : float
        Width of the morphology logits ``-((u - centre) / width) ** 2``.
    slope : float
        Background logit per unit of S/N margin (the sharpness of the transition in
        the mean images; the votes do not depend on it).

    Attributes
    ----------
    window, border, n_classes : int
        The engine's classifier protocol; ``n_classes = len(colour_centres) + 1``,
        background last.
    calls : int
        Number of calls (batches) so far.

    Raises
    ------
    ValueError
        For inconsistent sizes.
    """

    def __init__(
        self,
        window: int = 40,
        border: int = 5,
        n_bands: int = 4,
        *,
        detect_snr: float = 20.0,
        extent_snr: float = 2.0,
        reach: int = 4,
        context_snr: float = 4.5,
        context: int = 20,
        smooth: int = 3,
        colour_centres: tuple[float, ...] = (-0.52, -0.3, -0.15, 0.0),
        colour_width: float = 0.1,
        slope: float = 2.0,
    ):
        if n_bands < 2:
            raise ValueError(f"n_bands must be >= 2 (red and blue halves), got {n_bands}")
        if not 0 <= border < window // 2:
            raise ValueError(f"border must be in [0, window / 2), got {border} (window {window})")
        if smooth < 1 or smooth % 2 == 0 or smooth // 2 > border:
            raise ValueError(f"smooth must be odd and at most 2 * border + 1, got {smooth} (border {border})")
        if not 0 <= reach <= border - smooth // 2:
            raise ValueError(f"reach must be in [0, border - smooth // 2] = [0, {border - smooth // 2}], got {reach}")
        inner = window - 2 * border
        if not 0 <= context <= inner:
            raise ValueError(f"context must be in [0, {inner}], got {context}")
        self.window, self.border, self.n_bands = int(window), int(border), int(n_bands)
        self.smooth, self.reach = int(smooth), int(reach)
        self.n_classes = len(colour_centres) + 1
        self.detect_snr = np.float32(detect_snr)
        self.extent_snr = np.float32(extent_snr)
        self.centres = np.asarray(colour_centres, np.float32)
        self.width = np.float32(colour_width)
        self.slope = np.float32(slope)
        # Threshold of the context vote per counted pixel: context_snr in the centre.
        self.context_threshold = np.full((inner, inner), np.inf, np.float32)
        c0 = (inner - context) // 2
        self.context_threshold[c0 : c0 + context, c0 : c0 + context] = context_snr
        self.calls = 0

    def _box(self, image: np.ndarray) -> np.ndarray:
        """``smooth x smooth`` box sums over the valid region, ``(B, N - s + 1, N - s + 1)``."""
        s, n = self.smooth, image.shape[1]
        m = n - s + 1
        out = image[:, :m, :m].copy()
        for dy in range(s):  # fixed order: the same rounding whatever the batch
            for dx in range(s):
                if dy or dx:
                    out += image[:, dy : dy + m, dx : dx + m]
        return out

    def _reach_max(self, snr: np.ndarray, lo: int, k: int) -> np.ndarray:
        """Maximum of ``snr`` over the ``(2 reach + 1)^2`` square of each inner pixel."""
        r = self.reach
        rows = snr[:, lo - r : lo - r + k, :].copy()
        for d in range(1, 2 * r + 1):
            np.maximum(rows, snr[:, lo - r + d : lo - r + d + k, :], out=rows)
        out = rows[:, :, lo - r : lo - r + k].copy()
        for d in range(1, 2 * r + 1):
            np.maximum(out, rows[:, :, lo - r + d : lo - r + d + k], out=out)
        return out

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """Probabilities ``(B, K, K, C)`` of the windows' counted inner region."""
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != (self.window, self.window, self.n_bands):
            raise ValueError(f"windows must be (B, {self.window}, {self.window}, {self.n_bands}), got {x.shape}")
        self.calls += 1
        half = self.n_bands // 2
        red_sum, blue_sum = x[..., 0].copy(), x[..., half].copy()
        for band in range(1, self.n_bands):  # elementwise, fixed order
            if band < half:
                red_sum += x[..., band]
            elif band > half:
                blue_sum += x[..., band]
        total = red_sum + blue_sum
        red = self._box(red_sum)
        blue = self._box(blue_sum)
        red -= _lower_median(red)
        blue -= _lower_median(blue)
        # Pixel noise of the band sum from adjacent differences (sqrt(2) sigma each,
        # and 1.4826 MAD = sigma), then of its box sum (white noise: times the side).
        diffs = np.abs(total[:, :, 1:] - total[:, :, :-1])
        scale = np.float32(1.4826 / np.sqrt(2.0) * self.smooth)
        noise = np.maximum(_lower_median(diffs) * scale, np.float32(1e-6))
        snr = (red + blue) / noise
        # The inner region in box coordinates (box pixel i is centred on window pixel i + s // 2).
        k = self.window - 2 * self.border
        lo = self.border - self.smooth // 2
        peak = self._reach_max(snr, lo, k)
        snr, red, blue = (
            snr[:, lo : lo + k, lo : lo + k],
            red[:, lo : lo + k, lo : lo + k],
            blue[:, lo : lo + k, lo : lo + k],
        )
        # Background margin > 0: no source vote (neither detected nor context).
        margin = np.maximum(self.extent_snr - snr, self.detect_snr - peak)
        np.minimum(margin, self.context_threshold - snr, out=margin)
        colour = (blue - red) / (np.abs(blue) + np.abs(red) + np.float32(1e-12))
        logits = np.empty(snr.shape + (self.n_classes,), np.float32)
        for c, centre in enumerate(self.centres):
            z = (colour - centre) / self.width
            logits[..., c] = -(z * z)
        top = logits[..., 0].copy()
        for c in range(1, self.n_classes - 1):
            np.maximum(top, logits[..., c], out=top)
        # Background beats every morphology exactly where the margin is positive.
        logits[..., -1] = top + self.slope * margin
        best = np.maximum(top, logits[..., -1])
        e = np.exp(logits - best[..., None])
        total_e = e[..., 0].copy()
        for c in range(1, self.n_classes):
            total_e += e[..., c]
        return e / total_e[..., None]


def _lower_median(values: np.ndarray) -> np.ndarray:
    """Per window (first axis) lower median of the other axes, shaped to broadcast back.

    An order statistic (``numpy.partition``): exact, whatever the batch.
    """
    flat = values.reshape(values.shape[0], -1)
    k = (flat.shape[1] - 1) // 2
    med = np.partition(flat, k, axis=1)[:, k]
    return med.reshape((-1,) + (1,) * (values.ndim - 1))
