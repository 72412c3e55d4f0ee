"""Print the comparison table of the NIRCam-like example (docs/training.md) from the
training logs of ``run_example.sh``: test pixel accuracy overall and per class, and
background IoU, at given epochs of each training; and plot the curves
(``compare.png`` in the work folder).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

RUNS = {
    "finetune-wavelength": "fine-tuned, first layer by wavelength",
    "finetune-random": "fine-tuned, first layer random",
    "scratch": "from scratch",
}
CLASSES = ("spheroid", "disk", "irregular", "point_source", "background")


def _runs(work: Path):
    """``(name, label, rows, summary, steps per epoch)`` of each training found in ``work``."""
    for name, label in RUNS.items():
        path = work / name / "training_log.csv"
        if not path.is_file():
            continue
        rows = list(csv.DictReader(path.open()))
        summary = json.loads((work / name / "training.json").read_text())
        yield name, label, rows, summary, -(-summary["n_train"] // summary["settings"]["batch_size"])


def main(work: Path) -> None:
    """Print one Markdown table row per run and selected epoch."""
    print(
        "| run | epoch (steps) | training loss | test loss | test A | "
        + " | ".join(c.replace("_", " ") for c in CLASSES)
        + " | IoU B>0.5 | B>0.7 | B>0.9 |"
    )
    print("|" + " --- |" * (8 + len(CLASSES)))
    for name, label, rows, summary, steps in _runs(work):
        best = summary["best_epoch"]
        for row in rows:
            epoch = int(float(row["epoch"]))
            if epoch not in (0, 1, 3, 6, len(rows) - 1) and epoch != best:
                continue
            cells = [
                label if epoch == 0 else "",
                f"{epoch} ({epoch * steps})" + (" best" if epoch == best else ""),
                "-" if row["loss"] in ("", "nan") else f"{float(row['loss']):.2f}",
                f"{float(row['test_loss']):.2f}",
                f"{100 * float(row['test_accuracy']):.1f}%",
            ]
            cells += [f"{100 * float(row[f'test_accuracy_{c}']):.1f}%" for c in CLASSES]
            cells += [f"{float(row[f'test_iou_{b}']):.3f}" for b in ("0.5", "0.7", "0.9")]
            print("| " + " | ".join(cells) + " |")
        print(f"<!-- {name}: {summary['seconds']} s, {summary['n_train']} train / {summary['n_test']} test -->")


def plot(work: Path) -> Path:
    """Test accuracy and background IoU (B > 0.5) against training steps, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for _, label, rows, _, steps in _runs(work):
        x = [int(float(r["epoch"])) * steps for r in rows]
        axes[0].plot(x, [100 * float(r["test_accuracy"]) for r in rows], label=label)
        axes[1].plot(x, [float(r["test_iou_0.5"]) for r in rows], label=label)
        axes[2].plot(x, [float(r["test_loss"]) for r in rows], label=label)
    axes[0].set(xlabel="training steps", ylabel="test pixel accuracy A (%)", ylim=(0, 100))
    axes[1].set(xlabel="training steps", ylabel="test background IoU (B > 0.5)", ylim=(0, 1))
    axes[2].set(xlabel="training steps", ylabel="test loss (Eq. 11)")
    axes[0].legend()
    out = work / "compare.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/nircam-example")
    main(folder)
    print(f"curves: {plot(folder)}")
