"""Hyper-parameters of a training run, without Keras: the ``train`` command's options
are generated from :class:`TrainSettings` before any network is loaded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from morpheus_core import WINDOW
from morpheus_core.training.augment import CROP

__all__ = ["LEARNING_RATE_PAPER", "LEARNING_RATE_RELEASED", "TrainSettings"]

#: Adam step size alpha of the paper's Table 2.
LEARNING_RATE_PAPER = 9.929e-5
#: Adam step size in the released configuration (morpheus-astro ``model_config.json``,
#: the run that produced the released weights): ten times Table 2.
LEARNING_RATE_RELEASED = 0.0009929302254037737


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of a training run (defaults: paper and released configuration).

    Attributes
    ----------
    epochs : int
        Passes over the training objects (the paper: ~500).
    batch_size : int
        Windows per step (200 in the released configuration).
    learning_rate, beta_1, beta_2, epsilon : float
        Adam hyper-parameters of Table 2 (``learning_rate`` defaults to Table 2's
        9.929e-5; the released configuration used :data:`LEARNING_RATE_RELEASED`).
    lambda_w, lambda_d : float
        Weights of the cross-entropy and Dice terms (Eq. 11).
    per_image_weights, normalize_weights : bool
        How the class weights of Eq. 7 are computed
        (:func:`morpheus_core.training.losses.class_weights`).
    crop, window : int
        Augmentation centre crop and network window (60 and 40).
    dropout : float
        Dropout rate of every block operation during training. Default 0: the
        released training code asked for 0.5 but called ``tf.layers.dropout`` without
        ``training=True``, so its dropout never acted; 0.5 gives the nominal rate.
    seed : int
        Seed of weights, dropout, batch order and augmentations.
    eval_max : int
        At most this many training objects are evaluated after each epoch.
    """

    # ``help`` metadata: these are also the ``train`` command's options (pipeline.cli.options).
    epochs: int = field(default=500, metadata={"help": "passes over the training objects (the paper: ~500)"})
    batch_size: int = field(default=200, metadata={"help": "windows per step (released configuration: 200)"})
    learning_rate: float = field(
        default=LEARNING_RATE_PAPER,
        metadata={
            "help": "Adam step size: paper (Table 2, 9.929e-5), released (released configuration, 9.929e-4) or a number"
        },
    )
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    lambda_w: float = 1.0
    lambda_d: float = 1.0
    per_image_weights: bool = False
    normalize_weights: bool = True
    crop: int = CROP
    window: int = WINDOW
    dropout: float = field(
        default=0.0, metadata={"help": "dropout rate during training (0: the released training never applied its 0.5)"}
    )
    seed: int = field(default=0, metadata={"help": "seed of initial weights, batches, augmentation, split"})
    eval_max: int = field(default=1000, metadata={"help": "training objects evaluated after each epoch"})

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.eval_max < 0:
            raise ValueError(
                f"need epochs >= 0, batch_size >= 1, eval_max >= 0, got {self.epochs}, "
                f"{self.batch_size}, {self.eval_max}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict."""
        return asdict(self)
