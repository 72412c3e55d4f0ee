"""``python -m pipeline train``: train or fine-tune the network on a training-set folder.

Writes into the output folder:

- ``model.weights.h5``: the weights after the last epoch, a Keras weights file of
  :func:`morpheus_core.model.build_model`'s network (``run --model FILE`` classifies
  with it);
- ``best.weights.h5``: the weights at the epoch with the best test accuracy (the paper
  kept the local maximum of accuracy and IoU);
- ``training_log.csv``: one row per epoch (epoch 0 = the initial weights): training
  loss, evaluation loss, pixel accuracy overall and per class (Eq. 14), background IoU
  at thresholds 0.5-0.9 (Eq. 15), for the training and the test objects;
- ``training.png``: loss and metrics against epoch;
- ``training.json``: settings, data, timing, versions;
- ``train.log``: the log, with tracebacks.

Heavy imports (TensorFlow) happen inside the functions, so that building the command
line parser stays cheap.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import InputError

logger = logging.getLogger(__name__)

LOG_CSV = "training_log.csv"
PLOT_PNG = "training.png"
FINAL_WEIGHTS = "model.weights.h5"
BEST_WEIGHTS = "best.weights.h5"
SUMMARY_JSON = "training.json"


def parse_learning_rate(text: str) -> float:
    """``paper`` (Table 2, 9.929e-5), ``released`` (released configuration, 9.929e-4)
    or a positive number.
    """
    from morpheus_core.training.fit import LEARNING_RATE_PAPER, LEARNING_RATE_RELEASED

    named = {"paper": LEARNING_RATE_PAPER, "released": LEARNING_RATE_RELEASED}
    if text.lower() in named:
        return named[text.lower()]
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'paper', 'released' or a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"learning rate must be > 0, got {text}")
    return value


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parsers object."""
    p = sub.add_parser(
        "train", help="train or fine-tune the network on a training set (paper section 3)",
        description="Train (--init scratch) or fine-tune (--init released, or a .weights.h5 file) the "
                    "Morpheus network on a folder of thumbnails, segmentation maps and expert votes.",
    )
    p.add_argument("--data-dir", type=Path, required=True, help="training-set folder (votes.csv + FITS thumbnails)")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="output folder (default runs/train)")
    p.add_argument("--init", default="released",
                   help="released (fine-tune the released weights, default), scratch, or a .weights.h5 file")
    from morpheus_core.training.settings import TrainSettings
    from pipeline.options import add_options

    # The hyper-parameters' defaults and help texts are TrainSettings' own.
    add_options(p.add_argument_group("hyper-parameters (paper section 3)"), TrainSettings,
                types={"learning_rate": parse_learning_rate})
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="held-out fraction when the votes table has no split column (default 0.2)")
    p.add_argument("--threads", type=int, help="TensorFlow / BLAS threads (default: all cores)")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="first write N simulated objects to --data-dir (if it has no votes table yet)")
    p.add_argument("--synthetic-size", type=int, default=84, help="thumbnail side of simulated objects (px)")
    return p


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
        """Weights of the epoch with the lowest test loss."""
        return self.out_dir / BEST_WEIGHTS


def _fmt(row: dict[str, float], epochs: int) -> str:
    parts = [f"epoch {int(row['epoch'])}/{epochs}"]
    if not math.isnan(row["loss"]):
        parts.append(f"loss {row['loss']:.4f}")
    for prefix in ("train", "test"):
        if f"{prefix}_loss" in row:
            parts.append(f"{prefix}: loss {row[f'{prefix}_loss']:.4f} accuracy {100 * row[f'{prefix}_accuracy']:.1f}% "
                         f"IoU(0.5) {row[f'{prefix}_iou_0.5']:.3f}")
    if row["seconds"]:
        parts.append(f"({row['seconds']:.1f} s)")
    return "  ".join(parts)


def plot_history(history: list[dict[str, float]], path: Path) -> None:
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
    for name in CLASSES:
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


def run_training(
    data_dir: Path,
    out_dir: Path,
    settings: Any = None,
    *,
    init: str = "released",
    test_fraction: float = 0.2,
    synthetic: int | None = None,
    synthetic_size: int = 84,
    threads: int | None = None,
    echo: Callable[[str], None] = print,
) -> TrainSummary:
    """Train on a training-set folder and write weights, log and plot to ``out_dir``.

    Parameters
    ----------
    data_dir : Path
        Training-set folder (:mod:`pipeline.training_set`).
    out_dir : Path
        Output folder (created).
    settings : morpheus_core.training.fit.TrainSettings, optional
        Hyper-parameters (default: the paper's).
    init : str
        ``released``, ``scratch`` or a ``.weights.h5`` path.
    test_fraction : float
        Held-out fraction when the votes table has no ``split`` column.
    synthetic : int, optional
        Write this many simulated objects to ``data_dir`` first, unless it already
        holds a votes table.
    synthetic_size : int
        Thumbnail side of the simulated objects.
    threads : int, optional
        Compute threads (:func:`morpheus_core.runtime.configure_threads`).
    echo : callable
        Receives one progress line per epoch.

    Returns
    -------
    TrainSummary

    Raises
    ------
    InputError
        Bad training set, settings or initial weights file.
    """
    from morpheus_core.runtime import configure_threads

    configure_threads(threads)
    from morpheus_core.model import ReleasedWeightsError
    from morpheus_core.training.fit import TrainSettings, initial_model, train
    from pipeline.training_set import find_votes_table, read_training_set, write_training_set

    settings = settings or TrainSettings()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if synthetic is not None and find_votes_table(data_dir) is None:
        from morpheus_core.training.data import synthetic_training_set

        echo(f"simulating {synthetic} training objects into {data_dir}")
        objects = synthetic_training_set(synthetic, seed=settings.seed, size=synthetic_size)
        write_training_set(objects, data_dir, test_fraction=test_fraction, seed=settings.seed)
    data = read_training_set(data_dir, test_fraction=test_fraction, seed=settings.seed)
    if not data.train:
        raise InputError(f"{data.votes_file}: no training objects left")
    small = [o.name for o in data.train + data.test if min(o.image.shape[:2]) < settings.crop]
    if small:
        raise InputError(f"{data_dir}: thumbnails smaller than the {settings.crop}x{settings.crop} "
                         f"augmentation crop: {', '.join(small[:5])}{' ...' if len(small) > 5 else ''}")
    init_arg = None if init == "scratch" else init
    if init_arg not in (None, "released") and not Path(init_arg).is_file():
        raise InputError(f"{init_arg}: initial weights file not found")
    try:
        model = initial_model(init_arg, seed=settings.seed)
    except ReleasedWeightsError as exc:
        raise InputError(str(exc)) from exc

    out_dir.mkdir(parents=True, exist_ok=True)
    echo(f"training on {len(data.train)} objects, testing on {len(data.test)} ({len(data.dropped)} dropped: "
         f"unknown primary class); init {init}, learning rate {settings.learning_rate:g}, "
         f"{settings.epochs} epochs of batches of {settings.batch_size}")
    csv_path = out_dir / LOG_CSV
    writer: list[csv.DictWriter] = []
    start = time.perf_counter()
    with csv_path.open("w", newline="") as fh:
        def on_epoch(row: dict[str, float]) -> None:
            if not writer:
                writer.append(csv.DictWriter(fh, fieldnames=list(row)))
                writer[0].writeheader()
            writer[0].writerow(row)
            fh.flush()
            echo(_fmt(row, settings.epochs))
            logger.info(_fmt(row, settings.epochs))

        result = train(model, data.train, data.test, settings, on_epoch=on_epoch)
    seconds = time.perf_counter() - start
    model.save_weights(out_dir / FINAL_WEIGHTS)
    final = model.get_weights()
    model.set_weights(result.best_weights)
    model.save_weights(out_dir / BEST_WEIGHTS)
    model.set_weights(final)
    plot_history(result.history, out_dir / PLOT_PNG)
    summary = TrainSummary(out_dir, len(data.train), len(data.test), len(data.dropped), result.best_epoch,
                           result.history, seconds)
    _write_summary(summary, settings, data_dir, init, data.votes_file)
    echo(f"done in {seconds:.0f} s: {out_dir / FINAL_WEIGHTS} (last epoch), {out_dir / BEST_WEIGHTS} "
         f"(epoch {result.best_epoch}), {csv_path}, {out_dir / PLOT_PNG}")
    return summary


def _write_summary(summary: TrainSummary, settings: Any, data_dir: Path, init: str, votes_file: Path) -> None:
    import keras

    import morpheus_core

    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    doc = {
        "settings": settings.to_dict(), "init": str(init), "data_dir": str(data_dir),
        "votes_file": str(votes_file), "n_train": summary.n_train, "n_test": summary.n_test,
        "n_dropped_unknown": summary.n_dropped, "best_epoch": summary.best_epoch,
        "seconds": round(summary.seconds, 1),
        "final": {k: clean(v) for k, v in summary.history[-1].items()},
        "versions": {"morpheus_core": morpheus_core.__version__, "keras": keras.__version__,
                     "backend": keras.backend.backend(), "python": platform.python_version()},
        "outputs": [FINAL_WEIGHTS, BEST_WEIGHTS, LOG_CSV, PLOT_PNG],
    }
    (summary.out_dir / SUMMARY_JSON).write_text(json.dumps(doc, indent=2))


def main(args: argparse.Namespace) -> int:
    """Run the ``train`` sub-command; returns the exit code (0, 1 or 2)."""
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        from morpheus_core.training.fit import TrainSettings
        from pipeline.options import from_args

        try:
            settings = TrainSettings(**from_args(args, TrainSettings))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        run_training(
            args.data_dir, out_dir, settings, init=args.init, test_fraction=args.test_fraction,
            synthetic=args.synthetic, synthetic_size=args.synthetic_size, threads=args.threads,
        )
        return 0
    except InputError as exc:
        logger.error("input error: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 1
    except Exception as exc:  # unexpected: one line here, the traceback in the log
        logger.exception("training failed")
        print(f"training failed: {type(exc).__name__}: {exc} (traceback in {out_dir / 'train.log'})",
              file=sys.stderr)
        return 1
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()
