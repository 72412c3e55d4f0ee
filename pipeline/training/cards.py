"""The model card of a trained network: the training set's bands, pixel scale and
classes (the options over the folder's ``training_set.json``), and where its weights
started from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.errors import InputError

__all__ = ["init_description", "save_trained", "set_description", "simulator_passbands", "trained_card"]


def set_description(data_dir: Path, bands: str | None, classes: str | None, pixel_scale: float | None) -> Any:
    """The training set's bands, scale and classes: the options over the folder's description.

    Raises
    ------
    InputError
        Bad ``--bands``, ``--classes`` or ``--pixel-scale``, or bands that differ from
        the folder's description.
    """
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
            raise InputError(
                f"--bands {bands}: {data_dir / DESCRIPTION} says the set's bands are {', '.join(desc.band_names)}"
            )
        if len({b.name.upper() for b in new_bands}) != len(new_bands):
            raise InputError(f"--bands {bands}: a band is given twice")
    if classes:
        names = tuple(c.strip() for c in classes.split(",") if c.strip())
        new_classes = names if names[-1:] == ("background",) else (*names, "background")
        if len(set(new_classes)) != len(new_classes) or "unknown" in new_classes or len(new_classes) < 2:
            raise InputError(
                f"--classes {classes}: give distinct class names other than 'unknown' (background is added last)"
            )
    if pixel_scale is not None:
        if not pixel_scale > 0:
            raise InputError(f"--pixel-scale must be > 0, got {pixel_scale}")
        scale = pixel_scale
    elif not recorded and bands and all(b.name in JWST_NIRCAM_BANDS for b in new_bands):
        scale = 0.03
    return SetDescription(tuple(new_bands), float(scale), tuple(new_classes))


def simulator_passbands(description: Any) -> tuple:
    """The simulator's passbands for a description's bands (HST or NIRCam names)."""
    from morpheus_core.passbands import HST_BANDS, NIRCAM_BANDS

    known = {b.name.upper(): b for b in (*HST_BANDS, *NIRCAM_BANDS)}
    missing = [b for b in description.band_names if b.upper() not in known]
    if missing:
        raise InputError(
            f"--synthetic: the simulator knows the bands {', '.join(b.name for b in HST_BANDS)} and "
            f"{', '.join(b.name for b in NIRCAM_BANDS)}, not {', '.join(missing)}"
        )
    return tuple(known[b.upper()] for b in description.band_names)


def trained_card(description: Any, out_dir: Path) -> Any:
    """The model card of the network trained on a described set (provenance added after training)."""
    from morpheus_core.cards import ModelCard

    try:
        return ModelCard(
            bands=description.bands,
            classes=description.classes,
            pixel_scale_arcsec=description.pixel_scale_arcsec,
            name=f"trained: {out_dir.name}",
        )
    except ValueError as exc:
        raise InputError(f"bands or classes of the training set: {exc}") from None


def init_description(init: str, source_card: Any) -> str:
    """Where the weights started from, for the card's provenance."""
    if init == "scratch":
        return "scratch (random initialisation, seeded)"
    if init == "released":
        return "released weights (morpheus-astro 0.5.1 model-440)"
    return f"{init} ({source_card.describe() if source_card is not None else 'no card'})"


def save_trained(model: Any, result: Any, card: Any, provenance: dict[str, Any], out_dir: Path) -> None:
    """Save the last epoch's weights and the best epoch's, each with its model card
    (``model`` keeps the last epoch's weights).
    """
    from pipeline.inputs.model_cards import write_card
    from pipeline.training.report import BEST_WEIGHTS, FINAL_WEIGHTS, card_metrics

    model.save_weights(out_dir / FINAL_WEIGHTS)
    write_card(
        out_dir / FINAL_WEIGHTS,
        card.with_provenance(**provenance, metrics=card_metrics(result.history[-1], "last epoch")),
    )
    final = model.get_weights()
    model.set_weights(result.best_weights)
    model.save_weights(out_dir / BEST_WEIGHTS)
    write_card(
        out_dir / BEST_WEIGHTS,
        card.with_provenance(
            **provenance, metrics=card_metrics(result.history[result.best_epoch], "best test accuracy")
        ),
    )
    model.set_weights(final)
