"""What a training run reports: the files it writes, the line per epoch, the plot of
its history and ``training.json``.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BEST_WEIGHTS",
    "FINAL_WEIGHTS",
    "LOG_CSV",
    "PLOT_PNG",
    "SUMMARY_JSON",
    "TrainSummary",
    "card_metrics",
    "epoch_line",
    "plot_history",
    "software_versions",
    "write_summary",
]

LOG_CSV = "training_log.csv"
PLOT_PNG = "training.png"
FINAL_WEIGHTS = "model.weights.h5"
BEST_WEIGHTS = "best.weights.h5"
SUMMARY_JSON = "training.json"


@dataclass
class TrainSummary:
    """What a training run produced."""

    out_dir: Path
    n_train: int
    n_test: int
    n_dropped: int
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_weights(self) -> Path:
        """Weights after the last epoch."""
        return self.out_dir / FINAL_WEIGHTS

    @property
    def best_weights(self) -> Path:
        """Weights of the epoch with the highest test accuracy."""
        return self.out_dir / BEST_WEIGHTS

    card: Any = None
    first_layer: dict[str, str] = field(default_factory=dict)


def epoch_line(row: dict[str, float], epochs: int) -> str:
    """One epoch's line: loss, and loss, accuracy and IoU of the train and test objects."""
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    if not math.isnan(row["loss"]):
        parts.append(f"loss {row['loss']:.4f}")
    for prefix in ("train", "test"):
        if f"{prefix}_loss" in row:
            parts.append(
                f"{prefix}: loss {row[f'{prefix}_loss']:.4f} accuracy {100 * row[f'{prefix}_accuracy']:.1f}% "
                f"IoU(0.5) {row[f'{prefix}_iou_0.5']:.3f}"
            )
    if row["seconds"]:
        parts.append(f"({row['seconds']:.1f} s)")
    return "  ".join(parts)


def plot_history(history: list[dict[str, float]], path: Path, classes: tuple[str, ...] | None = None) -> None:
    """Save a PNG of loss, accuracy per class and background IoU against epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from morpheus_core import CLASSES
    from morpheus_core.training.metrics import IOU_THRESHOLDS

    epochs = [r["epoch"] for r in history]
    has_test = "test_loss" in history[0]
    ev = "test" if has_test else "train"
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), constrained_layout=True)
    ax = axes[0, 0]
    ax.plot(epochs[1:], [r["loss"] for r in history[1:]], "k-", label="training steps")
    ax.plot(epochs, [r["train_loss"] for r in history], "b--", label="train objects (inference)")
    if has_test:
        ax.plot(epochs, [r["test_loss"] for r in history], "r-", label="test objects (inference)")
    ax.set(xlabel="epoch", ylabel="loss (Eq. 11)", title="Loss")
    ax.legend()
    ax = axes[0, 1]
    ax.plot(epochs, [100 * r["train_accuracy"] for r in history], "b--", label="train")
    if has_test:
        ax.plot(epochs, [100 * r["test_accuracy"] for r in history], "r-", label="test")
    ax.set(xlabel="epoch", ylabel="accuracy A (%)", title="Pixel accuracy, all classes (Eq. 14)", ylim=(0, 100))
    ax.legend()
    ax = axes[1, 0]
    for name in classes or CLASSES:
        ax.plot(epochs, [100 * r[f"{ev}_accuracy_{name}"] for r in history], label=name)
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title=f"Accuracy per class ({ev} objects)", ylim=(0, 100))
    ax.legend()
    ax = axes[1, 1]
    for b in IOU_THRESHOLDS:
        ax.plot(epochs, [r[f"{ev}_iou_{b:g}"] for r in history], label=f"B > {b:g}")
    ax.set(xlabel="epoch", ylabel="IoU", title=f"Background IoU (Eq. 15, {ev} objects)", ylim=(0, 1))
    ax.legend()
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def card_metrics(row: dict[str, float], which: str) -> dict[str, Any]:
    """Test (else train) metrics of one history row, for a card's provenance."""
    prefix = "test_" if "test_accuracy" in row else "train_"
    out: dict[str, Any] = {
        "epoch": int(row["epoch"]),
        "which": which,
        "objects": "test" if prefix == "test_" else "train",
    }
    for key, value in row.items():
        if key.startswith(prefix):
            out[key[len(prefix) :]] = None if isinstance(value, float) and math.isnan(value) else round(value, 5)
    return out


def software_versions() -> dict[str, str]:
    """Versions of the training software (recorded in the cards and ``training.json``)."""
    import keras

    import morpheus_core

    return {
        "morpheus_core": morpheus_core.__version__,
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "python": platform.python_version(),
    }


def write_summary(summary: TrainSummary, settings: Any, data_dir: Path, init: str, votes_file: Path) -> None:
    """Write ``training.json``: settings, data, timing, final metrics, versions, card."""

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    doc = {
        "settings": settings.to_dict(),
        "init": str(init),
        "data_dir": str(data_dir),
        "votes_file": str(votes_file),
        "n_train": summary.n_train,
        "n_test": summary.n_test,
        "n_dropped_unknown": summary.n_dropped,
        "best_epoch": summary.best_epoch,
        "seconds": round(summary.seconds, 1),
        "final": {k: clean(v) for k, v in summary.history[-1].items()},
        "versions": software_versions(),
        "card": summary.card.to_dict() if summary.card is not None else None,
        "first_layer": summary.first_layer,
        "outputs": [FINAL_WEIGHTS, BEST_WEIGHTS, "model.card.json", "best.card.json", LOG_CSV, PLOT_PNG],
    }
    (summary.out_dir / SUMMARY_JSON).write_text(json.dumps(doc, indent=2))
