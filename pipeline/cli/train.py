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

The options are generated from :class:`~pipeline.settings.TrainRunSettings` (what to
train on, where the results go) and :class:`~pipeline.settings.TrainSettings` (the
hyper-parameters); the run is :func:`pipeline.training.run.run_training`.
"""

from __future__ import annotations

import argparse
import math
import shlex
from typing import Any

from pipeline.cli.options import add_options, from_args, given_options
from pipeline.errors import InputError
from pipeline.settings import TrainRunSettings, TrainSettings

__all__ = ["LOG_NAME", "add_parser", "command_line", "hyper_parameters", "main", "parse_learning_rate"]

#: The command's log file, in the output folder.
LOG_NAME = "train.log"


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


#: Argparse converters of the hyper-parameters that the core cannot name.
_TYPES = {"learning_rate": parse_learning_rate}


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``train`` sub-command to an ``argparse`` sub-parsers object."""
    p = sub.add_parser(
        "train",
        help="train or fine-tune the network on a training set (paper section 3)",
        description="Train (--init scratch) or fine-tune (--init released, or a .weights.h5 file) the "
        "Morpheus network on a folder of thumbnails, segmentation maps and expert votes.",
    )
    add_options(p, TrainRunSettings)
    # The hyper-parameters' defaults and help texts are TrainSettings' own.
    add_options(p.add_argument_group("hyper-parameters (paper section 3)"), TrainSettings, types=_TYPES)
    return p


def hyper_parameters(args: argparse.Namespace) -> TrainSettings:
    """The hyper-parameters given (a bad value: an :class:`InputError` naming its option).

    Raises
    ------
    InputError
        A value :class:`TrainSettings` refuses.
    """
    from pipeline.settings.fields import option_flag

    try:
        return TrainSettings(**from_args(args, TrainSettings))
    except ValueError as exc:  # the core names its fields: say them as the command line does
        import re

        fields = from_args(args, TrainSettings) or {"": None}
        text = re.sub(
            r"\b(" + "|".join(map(re.escape, fields)) + r")\b",
            lambda m: option_flag(TrainSettings, m.group(1)),
            str(exc),
        )
        raise InputError(text) from exc


def command_line(args: argparse.Namespace) -> str:
    """The ``train`` command line these parsed arguments correspond to (for the cards)."""
    return shlex.join(
        [
            "python",
            "-m",
            "pipeline",
            "train",
            *given_options(args, TrainRunSettings),
            *given_options(args, TrainSettings),
        ]
    )


def main(args: argparse.Namespace) -> int:
    """Run the ``train`` sub-command; returns the exit code (0, 1 or 2:
    :func:`pipeline.cli.exits.run_command`), logging to ``<out>/train.log``.
    """
    from pipeline.cli.exits import run_command
    from pipeline.cli.logs import CommandLog

    run = TrainRunSettings(**from_args(args, TrainRunSettings))
    log = CommandLog(run.out_dir / LOG_NAME, deferred=True)

    def body() -> None:
        from pipeline.training.run import run_training

        log.open()  # creates the output folder: one that cannot be written is refused (exit 2)
        run_training(run, hyper_parameters(args), command=command_line(args))

    return run_command("train", body, log)
