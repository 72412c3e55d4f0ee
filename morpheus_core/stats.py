"""Per-pixel running statistics of window classifications, and their exact merge.

For every pixel and class the engine keeps the count ``n`` of windows that counted the
pixel, the running mean and ``M2`` (sum of squared deviations) of the class
probability, and the rank votes (how often the class was the top class). Two partial
results over disjoint sets of windows merge exactly: counts and votes add, mean and
``M2`` combine with Chan, Golub & LeVeque's parallel formula. The merge is what lets
windows be split over tiles and workers and stitched back into a whole-image result.

Finalising gives the 15 images of paper section 2.3 plus ``n``: per class the mean
normalised across classes to sum to one, the population variance ``M2 / n`` and the
normalised rank votes ``votes / n``; all are 0 where ``n = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from morpheus_core import CLASSES

__all__ = ["Classification", "WindowStats", "deviation_report", "finalize", "stats_from_sums"]


@dataclass
class WindowStats:
    """Partial per-pixel statistics of a set of evaluated windows.

    Attributes
    ----------
    n : numpy.ndarray
        ``(H, W)`` int32, number of windows that counted each pixel.
    mean : numpy.ndarray
        ``(C, H, W)`` float64 running mean of each class probability.
    m2 : numpy.ndarray
        ``(C, H, W)`` float64 sum of squared deviations from the mean.
    votes : numpy.ndarray
        ``(C, H, W)`` int32 number of windows in which each class was the top class.
    """

    n: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    votes: np.ndarray

    @classmethod
    def zeros(cls, shape: tuple[int, int], n_classes: int = len(CLASSES)) -> "WindowStats":
        """Empty statistics (no window counted) over an ``(H, W)`` frame."""
        h, w = shape
        return cls(
            n=np.zeros((h, w), np.int32),
            mean=np.zeros((n_classes, h, w), np.float64),
            m2=np.zeros((n_classes, h, w), np.float64),
            votes=np.zeros((n_classes, h, w), np.int32),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the frame."""
        return self.n.shape

    def __getitem__(self, key: tuple[slice, slice]) -> "WindowStats":
        """A view of a rectangular region (``stats[y0:y1, x0:x1]``)."""
        ys, xs = key
        return WindowStats(self.n[ys, xs], self.mean[:, ys, xs], self.m2[:, ys, xs], self.votes[:, ys, xs])

    def merge_(self, other: "WindowStats") -> "WindowStats":
        """Merge ``other`` (same frame, disjoint windows) into ``self`` in place.

        Implements Chan et al.'s parallel update:
        ``n = na + nb``, ``mean = mean_a + d * nb / n``,
        ``M2 = M2_a + M2_b + d**2 * na * nb / n`` with ``d = mean_b - mean_a``.
        Because it works on views, ``full[y0:y1, x0:x1].merge_(part)`` merges a tile's
        partial result into a larger frame.

        Returns
        -------
        WindowStats
            ``self``.
        """
        if other.shape != self.shape:
            raise ValueError(f"cannot merge statistics of shape {other.shape} into {self.shape}")
        na = self.n.astype(np.float64)
        nb = other.n.astype(np.float64)
        total = na + nb
        frac = np.divide(nb, total, out=np.zeros_like(total), where=total > 0)
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * (na * frac)
        self.mean += delta * frac
        self.n += other.n
        self.votes += other.votes
        return self

    def copy(self) -> "WindowStats":
        """A deep copy."""
        return WindowStats(self.n.copy(), self.mean.copy(), self.m2.copy(), self.votes.copy())


def stats_from_sums(s1: np.ndarray, s2: np.ndarray, votes: np.ndarray) -> WindowStats:
    """Moments of one batch from its per-pixel sums.

    Parameters
    ----------
    s1, s2 : numpy.ndarray
        ``(C, H, W)`` float64 sums of the probabilities and of their squares.
    votes : numpy.ndarray
        ``(C, H, W)`` vote counts; their sum over classes is the count ``n``.

    Notes
    -----
    ``M2 = S2 - S1**2 / n`` is exact to float64 rounding here because each batch sums
    at most a few hundred values in [0, 1] per pixel; batches are then combined with
    the parallel formula, which is stable.
    """
    n = votes.sum(axis=0)
    safe = np.maximum(n, 1).astype(np.float64)
    mean = s1 / safe
    m2 = np.maximum(s2 - s1 * mean, 0.0)
    return WindowStats(n.astype(np.int32), mean, m2, votes.astype(np.int32))


@dataclass(frozen=True)
class Classification:
    """The finished classification images of paper section 2.3.

    Attributes
    ----------
    mean, variance, rank : numpy.ndarray
        ``(C, H, W)`` float32: mean normalised across classes, population variance,
        normalised rank votes. Zero where ``n = 0``.
    n : numpy.ndarray
        ``(H, W)`` int32 number of windows that counted each pixel.
    classes : tuple of str
        Class names in channel order.
    """

    mean: np.ndarray
    variance: np.ndarray
    rank: np.ndarray
    n: np.ndarray
    classes: tuple[str, ...] = CLASSES

    def images(self) -> dict[str, np.ndarray]:
        """The 15 images plus ``n`` by name: ``{class}_mean``, ``{class}_var``,
        ``{class}_rank``, ``n``.
        """
        out: dict[str, np.ndarray] = {}
        for kind, cube in (("mean", self.mean), ("var", self.variance), ("rank", self.rank)):
            for i, name in enumerate(self.classes):
                out[f"{name}_{kind}"] = cube[i]
        out["n"] = self.n
        return out


def finalize(stats: WindowStats, classes: tuple[str, ...] = CLASSES) -> Classification:
    """Turn accumulated statistics into the classification images.

    Parameters
    ----------
    stats : WindowStats
        Statistics of all windows that count each pixel.
    classes : tuple of str
        Class names in channel order.

    Returns
    -------
    Classification
        Normalised means, variances, normalised rank votes and ``n``.
    """
    n = stats.n.astype(np.float64)
    counted = n > 0
    mean_sum = stats.mean.sum(axis=0)
    mean = np.divide(stats.mean, mean_sum, out=np.zeros_like(stats.mean), where=counted & (mean_sum > 0))
    var = np.divide(stats.m2, n, out=np.zeros_like(stats.m2), where=counted)
    rank = np.divide(stats.votes, n, out=np.zeros(stats.votes.shape), where=counted)
    return Classification(
        mean=mean.astype(np.float32),
        variance=var.astype(np.float32),
        rank=rank.astype(np.float32),
        n=stats.n.astype(np.int32),
        classes=tuple(classes),
    )


def deviation_report(reference: Classification, other: Classification) -> dict[str, float]:
    """How far one classification is from a reference (e.g. bfloat16 from float32).

    Parameters
    ----------
    reference, other : Classification
        Classifications of the same image (same windows counted).

    Returns
    -------
    dict
        ``max_abs_diff_mean``: max |diff| of the (normalised) mean images over counted
        pixels; ``max_abs_diff_rank``: same for the rank-vote images;
        ``top_rank_changed``: fraction of counted pixels whose top rank-vote class
        differs; ``counted_pixels``: number of counted pixels.

    Raises
    ------
    ValueError
        If the two classifications did not count the same pixels.
    """
    if reference.n.shape != other.n.shape or not np.array_equal(reference.n, other.n):
        raise ValueError("the classifications must count the same pixels (equal n)")
    counted = reference.n > 0
    if not counted.any():
        return {"max_abs_diff_mean": 0.0, "max_abs_diff_rank": 0.0, "top_rank_changed": 0.0, "counted_pixels": 0}
    changed = reference.rank.argmax(axis=0) != other.rank.argmax(axis=0)
    return {
        "max_abs_diff_mean": float(np.abs(reference.mean - other.mean)[:, counted].max()),
        "max_abs_diff_rank": float(np.abs(reference.rank - other.rank)[:, counted].max()),
        "top_rank_changed": float(changed[counted].mean()),
        "counted_pixels": int(counted.sum()),
    }
