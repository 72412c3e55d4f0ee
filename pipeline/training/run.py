"""A training run: read (or simulate) the training set, start from the released
weights, a file or scratch, train, and write the weights, their cards, the log and
the plot (:mod:`pipeline.training.report`, :mod:`pipeline.training.cards`).

Heavy imports (TensorFlow) happen inside the functions, so that building the command
line parser stays cheap; TensorFlow's start-up lines are kept off the terminal unless
``verbose`` (:mod:`pipeline.quiet`).
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any, Callable

from pipeline.errors import InputError
from pipeline.settings import TrainRunSettings, TrainSettings
from pipeline.training.cards import (
    init_description,
    save_trained,
    set_description,
    simulator_passbands,
    trained_card,
)
from pipeline.training.report import (
    BEST_WEIGHTS,
    FINAL_WEIGHTS,
    LOG_CSV,
    PLOT_PNG,
    TrainSummary,
    epoch_line,
    plot_history,
    software_versions,
    write_summary,
)

__all__ = ["run_training"]

logger = logging.getLogger(__name__)


def run_training(
    run: TrainRunSettings,
    settings: TrainSettings | None = None,
    *,
    command: str = "",
    echo: Callable[[str], None] = print,
) -> TrainSummary:
    """Train on a training-set folder and write weights, their cards, log and plot to ``run.out_dir``.

    Parameters
    ----------
    run : TrainRunSettings
        The training set, the output folder, the initial weights, the set's bands,
        classes and pixel scale, threads, and whether to simulate the set first.
    settings : TrainSettings, optional
        Hyper-parameters (default: the paper's).
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
    from pipeline.quiet import native_stderr_captured, quiet_environment

    quiet_environment(run.verbose)
    with native_stderr_captured(not run.verbose):  # TensorFlow's start-up lines
        from morpheus_core.runtime import configure_threads

        configure_threads(run.threads)
        from morpheus_core.training.fit import train

    settings = settings or TrainSettings()
    description = set_description(run.data_dir, run.bands, run.classes, run.pixel_scale)
    data = _training_set(run, settings, description, echo)
    card = trained_card(description, run.out_dir)
    model, source_card, report = _initial_network(run, settings, card, echo)
    mapped = {k: v for k, v in report.items() if v != "copied"}

    out_dir = run.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    echo(
        f"training on {len(data.train)} objects, testing on {len(data.test)} ({len(data.dropped)} dropped: "
        f"unknown primary class); bands {', '.join(card.band_names)}; init {run.init}, learning rate "
        f"{settings.learning_rate:g}, {settings.epochs} epochs of batches of {settings.batch_size}"
    )
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
            echo(epoch_line(row, settings.epochs))
            logger.info(epoch_line(row, settings.epochs))

        result = train(model, data.train, data.test, settings, on_epoch=on_epoch, classes=card.classes)
    seconds = time.perf_counter() - start
    provenance = {
        "trained_from": init_description(run.init, source_card),
        "initialisation": {"layers_copied": sum(v == "copied" for v in report.values()), **mapped}
        if report
        else ("scratch" if run.init == "scratch" else "all layers copied"),
        "command": command,
        "data": {
            "data_dir": str(run.data_dir),
            "votes_file": str(data.votes_file),
            "n_train": len(data.train),
            "n_test": len(data.test),
            "n_dropped_unknown": len(data.dropped),
        },
        "settings": settings.to_dict(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "software": software_versions(),
    }
    save_trained(model, result, card, provenance, out_dir)
    plot_history(result.history, out_dir / PLOT_PNG, card.classes)
    summary = TrainSummary(
        out_dir,
        len(data.train),
        len(data.test),
        len(data.dropped),
        result.best_epoch,
        result.history,
        seconds,
        card=card,
        first_layer=report,
    )
    write_summary(summary, settings, run.data_dir, run.init, data.votes_file)
    echo(
        f"done in {seconds:.0f} s: {out_dir / FINAL_WEIGHTS} (last epoch), {out_dir / BEST_WEIGHTS} "
        f"(epoch {result.best_epoch}), with their model cards, {csv_path}, {out_dir / PLOT_PNG}"
    )
    return summary


def _training_set(run: TrainRunSettings, settings: TrainSettings, description: Any, echo: Callable[[str], None]):
    """The training set (simulated first with ``run.synthetic`` if the folder has no
    votes table), checked against the augmentation crop.
    """
    from pipeline.training.training_set import find_votes_table, read_training_set, write_training_set

    if run.synthetic is not None and find_votes_table(run.data_dir) is None:
        from morpheus_core import CLASSES
        from morpheus_core.training.data import synthetic_training_set

        if description.classes != CLASSES:
            raise InputError(
                "--synthetic simulates the released classes (spheroid, disk, irregular, point_source) "
                "only; give your own training set for --classes"
            )

        echo(
            f"simulating {run.synthetic} training objects in bands {', '.join(description.band_names)} into "
            f"{run.data_dir}"
        )
        objects = synthetic_training_set(
            run.synthetic,
            seed=settings.seed,
            size=run.synthetic_size,
            bands=simulator_passbands(description),
            pixel_scale=description.pixel_scale_arcsec,
        )
        write_training_set(
            objects, run.data_dir, test_fraction=run.test_fraction, seed=settings.seed, description=description
        )
    data = read_training_set(run.data_dir, test_fraction=run.test_fraction, seed=settings.seed, description=description)
    if not data.train:
        raise InputError(f"{data.votes_file}: no training objects left")
    small = [o.name for o in data.train + data.test if min(o.image.shape[:2]) < settings.crop]
    if small:
        raise InputError(
            f"{run.data_dir}: thumbnails smaller than the {settings.crop}x{settings.crop} "
            f"augmentation crop: {', '.join(small[:5])}{' ...' if len(small) > 5 else ''}"
        )
    return data


def _initial_network(
    run: TrainRunSettings, settings: TrainSettings, card: Any, echo: Callable[[str], None]
) -> tuple[Any, Any, dict[str, str]]:
    """The network to train (``run.init``'s weights), the initial weights' card and what
    was done per layer when their bands differ.
    """
    from morpheus_core.training.fit import initial_model
    from morpheus_core.weights import ReleasedWeightsError

    init_arg = None if run.init == "scratch" else run.init
    if init_arg not in (None, "released") and not Path(init_arg).is_file():
        raise InputError(f"{init_arg}: initial weights file not found")
    source_card = None
    if init_arg not in (None, "released"):
        from pipeline.inputs.model_cards import read_card

        source_card = read_card(init_arg)
    report: dict[str, str] = {}
    try:
        model = initial_model(
            init_arg, seed=settings.seed, card=card, source_card=source_card, first_layer=run.first_layer, report=report
        )
    except (ReleasedWeightsError, ValueError) as exc:
        raise InputError(f"--init {run.init}: {exc}") from exc
    mapped = {k: v for k, v in report.items() if v != "copied"}
    if mapped:
        echo(
            f"initialised from {run.init}: {sum(v == 'copied' for v in report.values())} layers copied; "
            + "; ".join(f"{k}: {v}" for k, v in mapped.items())
        )
    return model, source_card, report
