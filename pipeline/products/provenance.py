"""Provenance: the FITS keywords that say which software, model, precision and run made a product.

:func:`provenance` builds the keywords (checked: valid FITS names and values),
:func:`input_cards` the input band files' (``BAND1 = 'H'``, ``FILE1 = 'h.fits'``, ...),
and :func:`add_provenance` writes them into a header without overwriting its structure
or its WCS. Every FITS product carries them.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

import numpy as np
from astropy.io import fits

__all__ = ["SOFTWARE", "Card", "add_provenance", "input_cards", "provenance", "software_version"]

SOFTWARE = "morpheus-survey"

#: FITS keyword value with its comment.
Card = tuple[Any, str]

_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
# Written by astropy or by the FITS writers; provenance must not overwrite them.
_STRUCTURAL = frozenset(
    {
        "SIMPLE",
        "BITPIX",
        "NAXIS",
        "NAXIS1",
        "NAXIS2",
        "EXTEND",
        "XTENSION",
        "PCOUNT",
        "GCOUNT",
        "BSCALE",
        "BZERO",
        "BUNIT",
        "EXTNAME",
        "COMMENT",
        "HISTORY",
        "END",
    }
)


def software_version() -> str:
    """Version of the installed ``morpheus-survey`` distribution.

    Falls back to ``morpheus_core.__version__`` when the package is not installed
    (running from a source tree).
    """
    try:
        return importlib.metadata.version(SOFTWARE)
    except importlib.metadata.PackageNotFoundError:
        import morpheus_core

        return str(getattr(morpheus_core, "__version__", "unknown"))


def provenance(run_id: str, *, model: str, precision: str, extra: Mapping[str, Any] | None = None) -> dict[str, Card]:
    """FITS keywords that say which software, model and run made a product.

    Parameters
    ----------
    run_id : str
        Identifier of the run (as recorded in its manifest and ledger).
    model : str
        The network, e.g. ``"morpheus-astro 0.5.1 model-440"``.
    precision : str
        Numerical precision of inference, e.g. ``"float32"`` or ``"mixed_float16"``.
    extra : mapping, optional
        More keywords: ``{"MOSAIC": "goods-s"}`` or, with a comment,
        ``{"MOSAIC": ("goods-s", "mosaic name")}``. They override the defaults.

    Returns
    -------
    dict of str to (value, comment)
        ``SOFTWARE``, ``SWVERSN``, ``MODEL``, ``PRECISN``, ``RUNID``, ``DATE``
        (UTC, ``YYYY-MM-DDThh:mm:ss``), then the extras; assign with
        ``header[key] = (value, comment)``.

    Raises
    ------
    ValueError
        A keyword that is not a valid FITS keyword of at most 8 characters
        (``A-Z``, ``0-9``, ``_``, ``-``), or a value FITS cannot hold.

    Examples
    --------
    >>> cards = provenance("run-42", model="morpheus-astro 0.5.1 model-440",
    ...                    precision="float32")
    >>> cards["PRECISN"]
    ('float32', 'numerical precision of inference')
    """
    date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    cards: dict[str, Card] = {
        "SOFTWARE": (SOFTWARE, "software that wrote this file"),
        "SWVERSN": (software_version(), "version of the software"),
        "MODEL": (str(model), "classification network"),
        "PRECISN": (str(precision), "numerical precision of inference"),
        "RUNID": (str(run_id), "run identifier"),
        "DATE": (date, "UTC date of file creation"),
    }
    for key, item in (extra or {}).items():
        value, comment = item if isinstance(item, tuple) else (item, "")
        cards[_check_keyword(key)] = (_check_value(key, value), str(comment))
    return cards


def input_cards(inputs: Iterable[Mapping[str, Any]]) -> dict[str, Card]:
    """FITS keywords naming the mosaic's bands and their input files, in the mosaic's band order.

    Parameters
    ----------
    inputs : iterable of mapping
        The ingested mosaic's ``inputs`` records (``{"band": "H", "path": ".../h.fits", ...}``).

    Returns
    -------
    dict of str to (value, comment)
        ``BANDi`` (the band's name) and ``FILEi`` (its file's name, without the folder),
        for ``i`` from 1.

    Examples
    --------
    >>> input_cards([{"band": "H", "path": "/data/h.fits"}])["FILE1"]
    ('h.fits', 'input file of band H')
    """
    cards: dict[str, Card] = {}
    for i, record in enumerate(inputs, start=1):
        band, name = str(record["band"]), PurePath(str(record["path"])).name
        cards[_check_keyword(f"BAND{i}")] = (band, f"band {i} of the mosaic")
        cards[_check_keyword(f"FILE{i}")] = (name, f"input file of band {band}")
    return cards


def add_provenance(header: fits.Header, cards: Mapping[str, Card], *, reserved: frozenset[str]) -> None:
    """Write provenance keywords into ``header``, checked.

    Parameters
    ----------
    header : astropy.io.fits.Header
        The header to extend.
    cards : mapping of str to (value, comment)
        Keywords from :func:`provenance`.
    reserved : frozenset of str
        Keywords already written that provenance must not replace (the WCS).

    Raises
    ------
    ValueError
        An invalid keyword or value, or one that would overwrite a structural or
        reserved keyword.
    """
    for key, (value, comment) in cards.items():
        _check_keyword(key)
        if key in _STRUCTURAL or key in reserved:
            raise ValueError(f"provenance keyword {key} would overwrite a structural or WCS keyword")
        value = _check_value(key, value)
        if len(repr(value)) + len(comment) > 64:  # a card holds 80 characters: drop the comment,
            comment = ""  # not astropy's truncation warning
        header[key] = (value, comment)


def _check_keyword(key: str) -> str:
    if not isinstance(key, str) or not _KEYWORD.match(key):
        raise ValueError(f"FITS keyword must be 1-8 characters of A-Z, 0-9, '_' or '-', got {key!r}")
    return key


def _check_value(key: str, value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, (str, bool, int, float)):
        raise ValueError(
            f"FITS keyword {key}: value must be str, bool, int or float, got {type(value).__name__} {value!r}"
        )
    return value
