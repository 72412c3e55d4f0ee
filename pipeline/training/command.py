"""``python -m pipeline train``: train or fine-tune the network on a training-set folder.

Writes into the output folder:

- ``model.weights.h5``: the weights after the last epoch, a Keras weights file of
  :func:`morpheus_core.model.build_model`'s network (``run --model FILE`` classifies
  with it), with its model card ``model.card.json`` beside it (and inside it):
  bands, pixel scale, classes, provenance (:mod:`pipeline.inputs.model_cards`);
- ``best.weights.h5``: the weights at the epoch with the best test accuracy (the paper
  kept the local maximum of accuracy and IoU), and ``best.card.json``;
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
    from morpheus_core.training.settings import LEARNING_RATE_PAPER, LEARNING_RATE_RELEASED

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
    p.add_argument("--bands", metavar="B1,B2,...",
                   help="the training set's bands in channel order (thumbnails <id>_<band>.fits): names such as "
                        "H or F150W (known HST and NIRCam bands take their filter and wavelength), or "
                        "NAME:FILTER:WAVELENGTH_UM; default: training_set.json in --data-dir, else H,J,V,Z")
    p.add_argument("--classes", metavar="C1,C2,...",
                   help="output classes (background is added last); the votes table has one column per class and "
                        "'unknown'; default: training_set.json, else spheroid,disk,irregular,point_source")
    p.add_argument("--pixel-scale", type=float, metavar="ARCSEC",
                   help="arcsec per pixel of the thumbnails (the model card records it; runs check mosaics "
                        "against it); default: training_set.json, else 0.06 (0.03 for a simulated NIRCam set)")
    p.add_argument("--first-layer", choices=("wavelength", "random"), default="wavelength",
                   help="when fine-tuning onto other bands: start the first convolution from the released "
                        "band nearest in wavelength (default), or at random")
    from morpheus_core.training.settings import TrainSettings
    from pipeline.cli.options import add_options

    # The hyper-parameters' defaults and help texts are TrainSettings' own.
    add_options(p.add_argument_group("hyper-parameters (paper section 3)"), TrainSettings,
                types={"learning_rate": parse_learning_rate})
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="held-out fraction when the votes table has no split column (default 0.2)")
    p.add_argument("--threads", type=int, help="TensorFlow / BLAS threads (default: all cores)")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="first write N simulated objects to --data-dir (if it has no votes table yet), in the "
                        "--bands given (HST H,J,V,Z or NIRCam filters)")
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
        """Weights of the epoch with the highest test accuracy."""
        return self.out_dir / BEST_WEIGHTS

    card: Any = None
    first_layer: dict[str, str] = field(default_factory=dict)


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
    bands: str | None = None,
    classes: str | None = None,
    pixel_scale: float | None = None,
    first_layer: str = "wavelength",
    command: str = "",
    echo: Callable[[str], None] = print,
) -> TrainSummary:
    """Train on a training-set folder and write weights, their cards, log and plot to ``out_dir``.

    Parameters
    ----------
    data_dir : Path
        Training-set folder (:mod:`pipeline.training.training_set`).
    out_dir : Path
        Output folder (created).
    settings : morpheus_core.training.settings.TrainSettings, optional
        Hyper-parameters (default: the paper's).
    init : str
        ``released``, ``scratch`` or a ``.weights.h5`` path (its card says its bands).
    test_fraction : float
        Held-out fraction when the votes table has no ``split`` column.
    synthetic : int, optional
        Write this many simulated objects to ``data_dir`` first, unless it already
        holds a votes table.
    synthetic_size : int
        Thumbnail side of the simulated objects.
    threads : int, optional
        Compute threads (:func:`morpheus_core.runtime.configure_threads`).
    bands, classes : str, optional
        Comma-separated bands (channel order) and classes; default the folder's
        ``training_set.json``, else the released model's.
    pixel_scale : float, optional
        Arcsec per pixel of the thumbnails (default: the folder's description).
    first_layer : {"wavelength", "random"}
        Initialisation of the band layers when ``init`` has other bands.
    command : str
        The command line, recorded in the cards' provenance.
    echo : callable
        Receives one progress line per epoch.

    Returns
    -------
    TrainSummary

    Raises
    ------
    InputError
        Bad training set, settings, bands, classes or initial weights file.
    """
    from morpheus_core.runtime import configure_threads

    configure_threads(threads)
    from morpheus_core.training.fit import initial_model, train
    from morpheus_core.training.settings import TrainSettings
    from morpheus_core.weights import ReleasedWeightsError
    from pipeline.training.training_set import find_votes_table, read_training_set, write_training_set

    settings = settings or TrainSettings()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    description = _description(data_dir, bands, classes, pixel_scale)
    if synthetic is not None and find_votes_table(data_dir) is None:
        from morpheus_core import CLASSES
        from morpheus_core.training.data import synthetic_training_set

        if description.classes != CLASSES:
            raise InputError("--synthetic simulates the released classes (spheroid, disk, irregular, point_source) "
                             "only; give your own training set for --classes")

        echo(f"simulating {synthetic} training objects in bands {', '.join(description.band_names)} into {data_dir}")
        objects = synthetic_training_set(synthetic, seed=settings.seed, size=synthetic_size,
                                         bands=_passbands(description), pixel_scale=description.pixel_scale_arcsec)
        write_training_set(objects, data_dir, test_fraction=test_fraction, seed=settings.seed,
                           description=description)
    data = read_training_set(data_dir, test_fraction=test_fraction, seed=settings.seed, description=description)
    if not data.train:
        raise InputError(f"{data.votes_file}: no training objects left")
    small = [o.name for o in data.train + data.test if min(o.image.shape[:2]) < settings.crop]
    if small:
        raise InputError(f"{data_dir}: thumbnails smaller than the {settings.crop}x{settings.crop} "
                         f"augmentation crop: {', '.join(small[:5])}{' ...' if len(small) > 5 else ''}")
    init_arg = None if init == "scratch" else init
    if init_arg not in (None, "released") and not Path(init_arg).is_file():
        raise InputError(f"{init_arg}: initial weights file not found")
    card = _card(description, out_dir)
    source_card = None
    if init_arg not in (None, "released"):
        from pipeline.inputs.model_cards import read_card

        source_card = read_card(init_arg)
    report: dict[str, str] = {}
    try:
        model = initial_model(init_arg, seed=settings.seed, card=card, source_card=source_card,
                              first_layer=first_layer, report=report)
    except (ReleasedWeightsError, ValueError) as exc:
        raise InputError(f"--init {init}: {exc}") from exc
    mapped = {k: v for k, v in report.items() if v != "copied"}
    if mapped:
        echo(f"initialised from {init}: {sum(v == 'copied' for v in report.values())} layers copied; "
             + "; ".join(f"{k}: {v}" for k, v in mapped.items()))

    out_dir.mkdir(parents=True, exist_ok=True)
    echo(f"training on {len(data.train)} objects, testing on {len(data.test)} ({len(data.dropped)} dropped: "
         f"unknown primary class); bands {', '.join(card.band_names)}; init {init}, learning rate "
         f"{settings.learning_rate:g}, {settings.epochs} epochs of batches of {settings.batch_size}")
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

        result = train(model, data.train, data.test, settings, on_epoch=on_epoch, classes=card.classes)
    seconds = time.perf_counter() - start
    provenance = {
        "trained_from": _init_description(init, source_card),
        "initialisation": {"layers_copied": sum(v == "copied" for v in report.values()), **mapped}
        if report else ("scratch" if init_arg is None else "all layers copied"),
        "command": command, "data": {"data_dir": str(data_dir), "votes_file": str(data.votes_file),
                                     "n_train": len(data.train), "n_test": len(data.test),
                                     "n_dropped_unknown": len(data.dropped)},
        "settings": settings.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "software": _software(),
    }
    from pipeline.inputs.model_cards import write_card

    model.save_weights(out_dir / FINAL_WEIGHTS)
    write_card(out_dir / FINAL_WEIGHTS, card.with_provenance(
        **provenance, metrics=_metrics(result.history[-1], "last epoch")))
    final = model.get_weights()
    model.set_weights(result.best_weights)
    model.save_weights(out_dir / BEST_WEIGHTS)
    write_card(out_dir / BEST_WEIGHTS, card.with_provenance(
        **provenance, metrics=_metrics(result.history[result.best_epoch], "best test accuracy")))
    model.set_weights(final)
    plot_history(result.history, out_dir / PLOT_PNG, card.classes)
    summary = TrainSummary(out_dir, len(data.train), len(data.test), len(data.dropped), result.best_epoch,
                           result.history, seconds, card=card, first_layer=report)
    _write_summary(summary, settings, data_dir, init, data.votes_file)
    echo(f"done in {seconds:.0f} s: {out_dir / FINAL_WEIGHTS} (last epoch), {out_dir / BEST_WEIGHTS} "
         f"(epoch {result.best_epoch}), with their model cards, {csv_path}, {out_dir / PLOT_PNG}")
    return summary


def _description(data_dir: Path, bands: str | None, classes: str | None, pixel_scale: float | None) -> Any:
    """The training set's bands, scale and classes: the options over the folder's description."""
    from morpheus_core.cards import JWST_NIRCAM_BANDS, parse_band
    from pipeline.training.training_set import DESCRIPTION, SetDescription, read_description

    recorded = (data_dir / DESCRIPTION).is_file()
    desc = read_description(data_dir) if data_dir.is_dir() else SetDescription()
    new_bands, new_classes, scale = desc.bands, desc.classes, desc.pixel_scale_arcsec
    if bands:
        try:
            new_bands = tuple(parse_band(b) for b in bands.split(",") if b.strip())
        except ValueError as exc:
            raise InputError(f"--bands: {exc}") from None
        if recorded and [b.name for b in new_bands] != list(desc.band_names):
            raise InputError(f"--bands {bands}: {data_dir / DESCRIPTION} says the set's bands are "
                             f"{', '.join(desc.band_names)}")
        if len({b.name.upper() for b in new_bands}) != len(new_bands):
            raise InputError(f"--bands {bands}: a band is given twice")
    if classes:
        names = tuple(c.strip() for c in classes.split(",") if c.strip())
        new_classes = names if names[-1:] == ("background",) else (*names, "background")
        if len(set(new_classes)) != len(new_classes) or "unknown" in new_classes or len(new_classes) < 2:
            raise InputError(f"--classes {classes}: give distinct class names other than 'unknown' "
                             "(background is added last)")
    if pixel_scale is not None:
        if not pixel_scale > 0:
            raise InputError(f"--pixel-scale must be > 0, got {pixel_scale}")
        scale = pixel_scale
    elif not recorded and bands and all(b.name in JWST_NIRCAM_BANDS for b in new_bands):
        scale = 0.03
    return SetDescription(tuple(new_bands), float(scale), tuple(new_classes))


def _passbands(description: Any) -> tuple:
    """The simulator's passbands for a description's bands (HST or NIRCam names)."""
    from morpheus_core.passbands import HST_BANDS, NIRCAM_BANDS

    known = {b.name.upper(): b for b in (*HST_BANDS, *NIRCAM_BANDS)}
    missing = [b for b in description.band_names if b.upper() not in known]
    if missing:
        raise InputError(f"--synthetic: the simulator knows the bands {', '.join(b.name for b in HST_BANDS)} and "
                         f"{', '.join(b.name for b in NIRCAM_BANDS)}, not {', '.join(missing)}")
    return tuple(known[b.upper()] for b in description.band_names)


def _card(description: Any, out_dir: Path) -> Any:
    """The model card of the network trained on a described set (provenance added after training)."""
    from morpheus_core.cards import ModelCard

    try:
        return ModelCard(bands=description.bands, classes=description.classes,
                         pixel_scale_arcsec=description.pixel_scale_arcsec, name=f"trained: {out_dir.name}")
    except ValueError as exc:
        raise InputError(f"bands or classes of the training set: {exc}") from None


def _init_description(init: str, source_card: Any) -> str:
    if init == "scratch":
        return "scratch (random initialisation, seeded)"
    if init == "released":
        return "released weights (morpheus-astro 0.5.1 model-440)"
    return f"{init} ({source_card.describe() if source_card is not None else 'no card'})"


def _metrics(row: dict[str, float], which: str) -> dict[str, Any]:
    """Test (else train) metrics of one history row, for a card's provenance."""
    prefix = "test_" if "test_accuracy" in row else "train_"
    out: dict[str, Any] = {"epoch": int(row["epoch"]), "which": which,
                           "objects": "test" if prefix == "test_" else "train"}
    for key, value in row.items():
        if key.startswith(prefix):
            out[key[len(prefix):]] = None if isinstance(value, float) and math.isnan(value) else round(value, 5)
    return out


def _software() -> dict[str, str]:
    import keras

    import morpheus_core

    return {"morpheus_core": morpheus_core.__version__, "keras": keras.__version__,
            "backend": keras.backend.backend(), "python": platform.python_version()}


def _write_summary(summary: TrainSummary, settings: Any, data_dir: Path, init: str, votes_file: Path) -> None:
    def clean(v: Any) -> Any:
        return None if isinstance(v, float) and math.isnan(v) else v

    doc = {
        "settings": settings.to_dict(), "init": str(init), "data_dir": str(data_dir),
        "votes_file": str(votes_file), "n_train": summary.n_train, "n_test": summary.n_test,
        "n_dropped_unknown": summary.n_dropped, "best_epoch": summary.best_epoch,
        "seconds": round(summary.seconds, 1),
        "final": {k: clean(v) for k, v in summary.history[-1].items()},
        "versions": _software(),
        "card": summary.card.to_dict() if summary.card is not None else None,
        "first_layer": summary.first_layer,
        "outputs": [FINAL_WEIGHTS, BEST_WEIGHTS, "model.card.json", "best.card.json", LOG_CSV, PLOT_PNG],
    }
    (summary.out_dir / SUMMARY_JSON).write_text(json.dumps(doc, indent=2))


def _command(args: argparse.Namespace) -> str:
    """The ``train`` command line that these parsed arguments correspond to."""
    import shlex

    parts = ["python", "-m", "pipeline", "train"]
    for key, value in vars(args).items():
        if value is None or value is False or key in ("command", "func", "handler"):
            continue
        parts.append(f"--{key.replace('_', '-')}")
        if value is not True:
            parts.append(str(value))
    return shlex.join(parts)


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
        from morpheus_core.training.settings import TrainSettings
        from pipeline.cli.options import from_args

        try:
            settings = TrainSettings(**from_args(args, TrainSettings))
        except ValueError as exc:
            raise InputError(str(exc)) from exc
        run_training(
            args.data_dir, out_dir, settings, init=args.init, test_fraction=args.test_fraction,
            synthetic=args.synthetic, synthetic_size=args.synthetic_size, threads=args.threads,
            bands=args.bands, classes=args.classes, pixel_scale=args.pixel_scale, first_layer=args.first_layer,
            command=_command(args),
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
