"""Training sets on disk, in the format of the paper's K15 training data (section 3.1).

A training set is one folder::

    votes.csv              one row per object (any table astropy reads: .csv, .ecsv, .fits)
    <id>_H.fits            thumbnail per band (F160W, F125W, F606W, F850LP), same shape
    <id>_J.fits
    <id>_V.fits
    <id>_Z.fits
    <id>_segmap.fits       segmentation map (integer labels, 0 = sky)
    training_set.json      optional: the bands, pixel scale and classes of the set

For another instrument the thumbnails are named by its bands (``<id>_F150W.fits``,
...); ``training_set.json`` (or the ``train`` command's ``--bands`` and
``--pixel-scale``) says which bands, in which channel order, with their filters and
wavelengths (:func:`describe_training_set`, :func:`read_description`). Without it
the set is the released model's: H, J, V, Z at 0.06"/px.

The votes table has a column ``id`` and one column of expert votes per class:
``spheroid``, ``disk``, ``irregular``, ``point_source``, ``unknown`` (counts or
fractions); for another label set (``--classes``), one column per class but
background, then ``unknown``. Optional columns: ``segmap_id`` (the object's label in its segmentation
map; default: the label at the thumbnail centre) and ``split`` (``train`` / ``test``;
default: a seeded random 80% / 20% split, as in the paper). Other columns are ignored.
Objects whose primary class is ``unknown`` are dropped and their other votes
redistributed (:func:`morpheus_core.training.data.vote_distribution`); pixels outside
the object's label, neighbours' labels included, are background targets.

To use the K15 release, name (or link) its thumbnails and segmentation maps this way
and write its vote counts to ``votes.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from morpheus_core import BANDS, CLASSES
from morpheus_core.cards import RELEASED_BANDS, Band
from morpheus_core.training.data import (
    SyntheticObject,
    TrainingObject,
    split_train_test,
    vote_distribution,
)
from pipeline.errors import InputError

__all__ = [
    "DESCRIPTION",
    "VOTES_NAMES",
    "SetDescription",
    "TrainingSet",
    "describe_training_set",
    "find_votes_table",
    "read_description",
    "read_training_set",
    "write_training_set",
]

logger = logging.getLogger(__name__)

VOTES_NAMES = ("votes.csv", "votes.ecsv", "votes.fits")
#: The optional description of a training set's bands, pixel scale and classes.
DESCRIPTION = "training_set.json"


@dataclass(frozen=True)
class SetDescription:
    """What a training set holds: bands (channel order), pixel scale, classes.

    Attributes
    ----------
    bands : tuple of Band
        The thumbnails' bands, in the network's channel order.
    pixel_scale_arcsec : float
        Arcseconds per pixel of the thumbnails.
    classes : tuple of str
        The network's classes, background last (votes: all but background, then
        ``unknown``).
    """

    bands: tuple[Band, ...] = RELEASED_BANDS
    pixel_scale_arcsec: float = 0.06
    classes: tuple[str, ...] = CLASSES

    @property
    def band_names(self) -> tuple[str, ...]:
        """Band names, channel order."""
        return tuple(b.name for b in self.bands)

    @property
    def vote_columns(self) -> tuple[str, ...]:
        """Columns of the votes table: the classes but background, then ``unknown``."""
        return (*self.classes[:-1], "unknown")

    def to_dict(self) -> dict:
        """JSON-ready form (:func:`read_description` reads it)."""
        return {
            "bands": [b.to_dict() for b in self.bands],
            "pixel_scale_arcsec": self.pixel_scale_arcsec,
            "classes": list(self.classes),
        }


def read_description(data_dir: str | Path) -> SetDescription:
    """The folder's ``training_set.json``, or the released model's bands and classes without one.

    Raises
    ------
    InputError
        A malformed description (naming the file).
    """
    import json

    path = Path(data_dir) / DESCRIPTION
    if not path.is_file():
        return SetDescription()
    try:
        doc = json.loads(path.read_text())
        bands = tuple(
            Band(
                str(b["name"]),
                str(b.get("filter") or ""),
                None if b.get("wavelength_um") is None else float(b["wavelength_um"]),
            )
            for b in doc["bands"]
        )
        classes = tuple(str(c) for c in doc.get("classes", CLASSES))
        scale = float(doc.get("pixel_scale_arcsec", 0.06))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path}: not a training-set description ({type(exc).__name__}: {exc}); expected "
            '{"bands": [{"name": ..., "filter": ..., "wavelength_um": ...}], '
            '"pixel_scale_arcsec": ..., "classes": [...]}'
        ) from None
    if not bands or not (scale > 0) or not classes or classes[-1] != "background":
        raise InputError(
            f"{path}: needs at least one band, a positive pixel_scale_arcsec and classes ending with 'background'"
        )
    return SetDescription(bands, scale, classes)


def describe_training_set(data_dir: str | Path, description: SetDescription) -> Path:
    """Write ``training_set.json`` into a training-set folder."""
    import json

    path = Path(data_dir) / DESCRIPTION
    path.write_text(json.dumps(description.to_dict(), indent=2) + "\n")
    return path


@dataclass
class TrainingSet:
    """Objects read from a training-set folder.

    Attributes
    ----------
    train, test : list of TrainingObject
        The two samples.
    dropped : list of str
        Ids removed because ``unknown`` was their primary class (or they had no votes).
    votes_file : Path
        The table read.
    """

    train: list[TrainingObject]
    test: list[TrainingObject]
    dropped: list[str]
    votes_file: Path


def find_votes_table(data_dir: Path) -> Path | None:
    """The votes table of a training-set folder, or None if it has none."""
    for name in VOTES_NAMES:
        if (Path(data_dir) / name).is_file():
            return Path(data_dir) / name
    return None


def _read_image(path: Path, bands: tuple[str, ...] = BANDS) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: missing (every object needs {', '.join(bands)} thumbnails and a segmap)")
    try:
        with fits.open(path) as hdul:
            hdu = next((h for h in hdul if h.data is not None), None)
            if hdu is None:
                raise InputError(f"{path}: no image data")
            data = np.asarray(hdu.data)
    except OSError as exc:
        raise InputError(f"{path}: not a readable FITS file ({exc})") from exc
    if data.ndim != 2:
        raise InputError(f"{path}: expected a 2-D image, got shape {data.shape}")
    return data


def _read_object(
    data_dir: Path, name: str, q: np.ndarray, segmap_id: int | None, band_names: tuple[str, ...] = BANDS
) -> TrainingObject:
    bands = [_read_image(data_dir / f"{name}_{b}.fits", band_names).astype(np.float32) for b in band_names]
    for b, img in zip(band_names[1:], bands[1:]):
        if img.shape != bands[0].shape:
            raise InputError(
                f"{data_dir / f'{name}_{b}.fits'}: shape {img.shape} differs from "
                f"{name}_{band_names[0]}.fits {bands[0].shape}"
            )
    seg_path = data_dir / f"{name}_segmap.fits"
    segmap = _read_image(seg_path, band_names)
    if segmap.shape != bands[0].shape:
        raise InputError(f"{seg_path}: shape {segmap.shape} differs from the thumbnails {bands[0].shape}")
    if segmap_id is None:
        segmap_id = int(segmap[segmap.shape[0] // 2, segmap.shape[1] // 2])
        if segmap_id == 0:
            raise InputError(
                f"{seg_path}: no source label at the thumbnail centre; add a segmap_id column to the votes table"
            )
    mask = segmap == segmap_id
    if not mask.any():
        raise InputError(f"{seg_path}: label {segmap_id} not present")
    image = np.stack(bands, axis=-1)
    if not np.isfinite(image).all():
        raise InputError(f"{data_dir / name}_*.fits: thumbnails have non-finite pixels")
    return TrainingObject(name, image, mask, q)


def read_training_set(
    data_dir: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    votes_file: str | Path | None = None,
    description: SetDescription | None = None,
) -> TrainingSet:
    """Read a training-set folder (format in the module docstring).

    Parameters
    ----------
    data_dir : str or Path
        The folder.
    test_fraction : float
        Fraction of objects held out when the table has no ``split`` column.
    seed : int
        Seed of that random split.
    votes_file : str or Path, optional
        The votes table if not ``data_dir/votes.{csv,ecsv,fits}``.
    description : SetDescription, optional
        Bands and classes to read (default the folder's :func:`read_description`).

    Returns
    -------
    TrainingSet

    Raises
    ------
    InputError
        Missing folder, table, columns or files; unreadable or inconsistent images.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: training-set folder not found")
    path = Path(votes_file) if votes_file else find_votes_table(data_dir)
    if path is None or not path.is_file():
        raise InputError(f"{data_dir}: no votes table ({', '.join(VOTES_NAMES)})")
    try:
        table = Table.read(path)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the votes table ({exc})") from exc
    description = read_description(data_dir) if description is None else description
    columns = description.vote_columns
    missing = [c for c in ("id", *columns) if c not in table.colnames]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    try:
        q, keep = vote_distribution(
            np.stack([np.asarray(table[c], float) for c in columns], axis=1), n_columns=len(columns)
        )
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from exc
    ids = [str(v) for v in table["id"]]
    if "split" in table.colnames:
        split = [str(s).strip().lower() for s in table["split"]]
        bad = sorted({s for s in split if s not in ("train", "test")})
        if bad:
            raise InputError(f"{path}: split must be 'train' or 'test', got {bad}")
        is_test = np.array([s == "test" for s in split])
    else:
        is_test = split_train_test(len(ids), test_fraction=test_fraction, seed=seed)
    seg_ids = table["segmap_id"] if "segmap_id" in table.colnames else [None] * len(ids)
    train, test, dropped = [], [], []
    for i, name in enumerate(ids):
        if not keep[i]:
            dropped.append(name)
            continue
        sid = None if seg_ids[i] is None else int(seg_ids[i])
        (test if is_test[i] else train).append(_read_object(data_dir, name, q[i], sid, description.band_names))
    logger.info(
        "read %s: %d train, %d test, %d dropped (unknown primary class)", path, len(train), len(test), len(dropped)
    )
    return TrainingSet(train, test, dropped, path)


def write_training_set(
    objects: Sequence[SyntheticObject],
    data_dir: str | Path,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    description: SetDescription | None = None,
) -> Path:
    """Write synthetic objects as a training-set folder readable by :func:`read_training_set`.

    The votes table (``votes.csv``) also records each object's simulated class,
    magnitudes and SNR, and a seeded ``split`` column. With ``description`` (other
    bands than H, J, V, Z), the thumbnails are named by its bands and
    ``training_set.json`` describes them.

    Returns
    -------
    Path
        The votes table.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    band_names = BANDS if description is None else description.band_names
    if description is not None:
        describe_training_set(data_dir, description)
    for obj in objects:
        if len(obj.images) != len(band_names):
            raise ValueError(f"{obj.name}: {len(obj.images)} images for bands {band_names}")
        for band, img in zip(band_names, obj.images):
            header = fits.Header({"BAND": band, "BUNIT": "electron/s", "OBJECT": obj.name})
            fits.PrimaryHDU(img, header=header).writeto(data_dir / f"{obj.name}_{band}.fits", overwrite=True)
        fits.PrimaryHDU(obj.segmap.astype(np.int32)).writeto(data_dir / f"{obj.name}_segmap.fits", overwrite=True)
    is_test = split_train_test(len(objects), test_fraction=test_fraction, seed=seed)
    table = Table()
    table["id"] = [o.name for o in objects]
    for k, cls in enumerate((*CLASSES[:-1], "unknown")):
        table[cls] = np.array([int(o.votes[k]) for o in objects], dtype=np.int64)
    table["segmap_id"] = np.ones(len(objects), dtype=np.int64)
    table["split"] = np.where(is_test, "test", "train")
    table["morph_class"] = [o.morph_class for o in objects]
    snr = next((k for k in (objects[0].truth if objects else {}) if k.startswith("snr_")), "snr_H")
    for key in (f"mag_{snr[4:]}", snr, "sersic_n", "r_eff_px"):  # the reference band's (H for HST)
        table[key] = np.array([float(o.truth.get(key, np.nan)) for o in objects])
    path = data_dir / "votes.csv"
    table.write(path, format="ascii.csv", overwrite=True)
    return path
