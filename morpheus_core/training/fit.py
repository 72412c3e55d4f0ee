"""The seeded training loop: Adam (section 3.4), augmentation (3.2), loss (3.3),
per-epoch metrics (3.5).

Every epoch visits each training object once, as a freshly augmented 40x40 window
standardised like the classifier's input (:func:`morpheus_core.windows.standardize_windows`),
in batches of ``batch_size`` (200 in the released configuration). After each epoch the
network is evaluated in inference mode on fixed, seeded augmented views of the test
objects and of (up to ``eval_max`` of) the training objects: loss, pixel accuracy per
class (Eq. 14) and background IoU (Eq. 15), as in Table 3. Epoch 0 is the evaluation
of the initial weights.

Randomness: :func:`keras.utils.set_random_seed` seeds weights and dropout; batch order
and augmentations use NumPy generators keyed by ``(seed, epoch, batch)``, so a run is
a function of its settings and data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from morpheus_core import CLASSES, WINDOW
from morpheus_core.cards import RELEASED_CARD, ModelCard
from morpheus_core.model import build_for_card
from morpheus_core.training.augment import CROP, augment, draw_augmentation
from morpheus_core.training.data import TrainingObject, pixel_targets
from morpheus_core.training.losses import MorpheusLoss, morpheus_loss
from morpheus_core.training.metrics import evaluate
from morpheus_core.training.settings import TrainSettings
from morpheus_core.transfer import transfer_weights
from morpheus_core.weights import load_model
from morpheus_core.windows import standardize_windows

__all__ = [
    "LOGITS_LAYER",
    "TrainResult",
    "evaluate_network",
    "evaluation_views",
    "initial_model",
    "logits_model",
    "make_batch",
    "train",
]

#: Name of the layer whose output is the class logits.
LOGITS_LAYER = "final_conv_conv"


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    history : list of dict
        One row per epoch (epoch 0: before training): ``epoch``, ``loss`` (mean
        training loss over the epoch's steps, training mode), ``seconds``, and
        ``train_*`` / ``test_*`` evaluation metrics (``loss``, ``accuracy``,
        ``accuracy_<class>``, ``iou_<B>``).
    best_epoch : int
        Epoch with the highest ``test_accuracy`` (``train_accuracy`` without test
        objects), the paper's choice of a local maximum of the accuracy.
    best_weights : list of numpy.ndarray
        The network's weights at ``best_epoch``.
    """

    history: list[dict[str, float]]
    best_epoch: int
    best_weights: list[np.ndarray]


def initial_model(
    init: str | Path | None = None,
    *,
    seed: int = 0,
    card: ModelCard | None = None,
    source_card: ModelCard | None = None,
    first_layer: str = "wavelength",
    report: dict[str, str] | None = None,
) -> keras.Model:
    """The network to train: seeded random weights, the released ones, or a file.

    Parameters
    ----------
    init : None, "released" or path
        None or ``"scratch"``: train from scratch (convolution kernels drawn as the
        released code did, after :func:`keras.utils.set_random_seed` with ``seed``);
        ``"released"``: fine-tune the released weights; a path: a
        ``.weights.h5`` file of this network.
    seed : int
        Seed of the random initialisation.
    card : ModelCard, optional
        The network to train: its bands and classes (default the released card's).
        When they differ from those of the starting weights, every layer whose shape
        fits is reused and the band and class layers are initialised by
        :func:`morpheus_core.transfer.transfer_weights` (first convolution from the
        nearest bands in wavelength, or at random).
    source_card : ModelCard, optional
        The card of the ``init`` weights file (default the released card's).
    first_layer : {"wavelength", "random"}
        How the band-dependent first layers start when the bands change.
    report : dict, optional
        Filled with what :func:`~morpheus_core.transfer.transfer_weights` did per layer.

    Returns
    -------
    keras.Model
        The full-window softmax network of :func:`morpheus_core.model.build_for_card`.
    """
    card = RELEASED_CARD if card is None else card
    keras.utils.set_random_seed(seed)
    source = None
    if init is not None and init != "scratch":
        source_card = RELEASED_CARD if init == "released" or source_card is None else source_card
        source = load_model(None if init == "released" else init, card=source_card)
        if (source_card.band_names, source_card.classes) == (card.band_names, card.classes):
            return source
    model = build_for_card(card)
    # The released code initialised kernels with TF1's variance_scaling_initializer
    # defaults (scale 1, fan-in, truncated normal) and biases with zeros.
    init_kernel = keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal", seed=seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(init_kernel(layer.kernel.shape))
    if source is not None:
        done = transfer_weights(source, model, source_card=source_card, target_card=card, first_layer=first_layer)
        if report is not None:
            report.update(done)
    return model


def logits_model(model: keras.Model) -> keras.Model:
    """A model sharing ``model``'s layers whose output is the class logits."""
    return keras.Model(model.inputs, model.get_layer(LOGITS_LAYER).output, name=f"{model.name}_logits")


def make_batch(
    objects: Sequence[TrainingObject],
    rng: np.random.Generator,
    *,
    crop: int = CROP,
    window: int = WINDOW,
) -> tuple[np.ndarray, np.ndarray]:
    """One augmented, standardised window per object, with its targets.

    Parameters
    ----------
    objects : sequence of TrainingObject
        The objects of the batch.
    rng : numpy.random.Generator
        Source of the augmentation parameters (drawn in object order).

    Returns
    -------
    x : numpy.ndarray
        ``(B, window, window, bands)`` float32 standardised windows.
    y : numpy.ndarray
        ``(B, window, window, n_c)`` float32 targets.
    """
    xs, ys = [], []
    for obj in objects:
        aug = draw_augmentation(rng, crop=crop, window=window)
        img, mask = augment(obj.image, obj.mask[..., None].astype(np.float32), aug, crop=crop, window=window)
        xs.append(img)
        ys.append(pixel_targets(mask[..., 0] > 0.5, obj.q))
    return standardize_windows(np.stack(xs)), np.stack(ys)


def evaluation_views(
    objects: Sequence[TrainingObject], *, seed: int, crop: int = CROP, window: int = WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed seeded augmented views of objects, for evaluation (one per object)."""
    return make_batch(objects, np.random.default_rng([seed, 2**31 - 1]), crop=crop, window=window)


def evaluate_network(
    net: keras.Model, x: np.ndarray, y: np.ndarray, settings: TrainSettings, classes: tuple[str, ...] = CLASSES
) -> dict[str, float]:
    """Loss and Table 3 metrics of a logits network on windows, inference mode.

    The loss is averaged over batches of ``settings.batch_size`` windows (the class
    weights of Eq. 7 depend on the batch), weighted by batch size.
    """
    if len(x) == 0:
        return {}
    logits = np.asarray(net.predict(x, batch_size=256, verbose=0), dtype=np.float64)
    losses, sizes = [], []
    for i in range(0, len(x), settings.batch_size):
        sl = slice(i, i + settings.batch_size)
        losses.append(
            float(
                morpheus_loss(
                    logits[sl],
                    y[sl].astype(np.float64),
                    lambda_w=settings.lambda_w,
                    lambda_d=settings.lambda_d,
                    per_image=settings.per_image_weights,
                    normalize=settings.normalize_weights,
                )
            )
        )
        sizes.append(len(logits[sl]))
    p = np.exp(logits - logits.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    return {"loss": float(np.average(losses, weights=sizes)), **evaluate(p, y, classes)}


def train(
    model: keras.Model,
    train_objects: Sequence[TrainingObject],
    test_objects: Sequence[TrainingObject] = (),
    settings: TrainSettings = TrainSettings(),
    *,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    classes: tuple[str, ...] = CLASSES,
) -> TrainResult:
    """Train (or fine-tune) a Morpheus network in place.

    Parameters
    ----------
    model : keras.Model
        Full-window network from :func:`initial_model` (or
        :func:`morpheus_core.model.build_model`); its weights are updated.
    train_objects, test_objects : sequence of TrainingObject
        Training and held-out objects (thumbnails at least ``settings.crop`` wide).
    settings : TrainSettings
        Hyper-parameters.
    on_epoch : callable, optional
        Called with each history row as soon as it exists (epoch 0 included).
    classes : tuple of str
        The network's classes, background last (names of the per-class metrics).

    Returns
    -------
    TrainResult
        History, best epoch and its weights; ``model`` holds the last epoch's weights.
    """
    if not train_objects:
        raise ValueError("no training objects")
    keras.utils.set_random_seed(settings.seed)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    saved_rates = [layer.rate for layer in dropouts]
    for layer in dropouts:
        layer.rate = settings.dropout
    try:
        return _train(model, train_objects, test_objects, settings, on_epoch, tuple(classes))
    finally:
        for layer, rate in zip(dropouts, saved_rates):
            layer.rate = rate


def _train(
    model: keras.Model,
    train_objects: Sequence[TrainingObject],
    test_objects: Sequence[TrainingObject],
    settings: TrainSettings,
    on_epoch: Callable[[dict[str, float]], None] | None,
    classes: tuple[str, ...] = CLASSES,
) -> TrainResult:
    net = logits_model(model)
    net.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate=settings.learning_rate,
            beta_1=settings.beta_1,
            beta_2=settings.beta_2,
            epsilon=settings.epsilon,
        ),
        loss=MorpheusLoss(
            lambda_w=settings.lambda_w,
            lambda_d=settings.lambda_d,
            per_image=settings.per_image_weights,
            normalize=settings.normalize_weights,
        ),
    )
    kw = {"crop": settings.crop, "window": settings.window}
    eval_sets = {"train": evaluation_views(train_objects[: settings.eval_max], seed=settings.seed, **kw)}
    if test_objects:
        eval_sets["test"] = evaluation_views(test_objects, seed=settings.seed + 1, **kw)
    key = "test_accuracy" if test_objects else "train_accuracy"

    def row(epoch: int, loss: float, seconds: float) -> dict[str, float]:
        out: dict[str, float] = {"epoch": epoch, "loss": loss, "seconds": seconds}
        for prefix, (x, y) in eval_sets.items():
            out.update({f"{prefix}_{k}": v for k, v in evaluate_network(net, x, y, settings, classes).items()})
        if on_epoch is not None:
            on_epoch(out)
        return out

    history = [row(0, float("nan"), 0.0)]
    best_epoch, best_weights = 0, model.get_weights()
    n = len(train_objects)
    for epoch in range(1, settings.epochs + 1):
        start = time.perf_counter()
        order = np.random.default_rng([settings.seed, epoch]).permutation(n)
        total = 0.0
        for b0 in range(0, n, settings.batch_size):
            idx = order[b0 : b0 + settings.batch_size]
            rng = np.random.default_rng([settings.seed, epoch, b0])
            x, y = make_batch([train_objects[i] for i in idx], rng, **kw)
            total += float(np.asarray(net.train_on_batch(x, y))) * len(idx)
        history.append(row(epoch, total / n, time.perf_counter() - start))
        if history[-1][key] > history[best_epoch][key]:
            best_epoch, best_weights = epoch, model.get_weights()
    return TrainResult(history=history, best_epoch=best_epoch, best_weights=best_weights)
