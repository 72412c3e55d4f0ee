"""Registry of named mosaics: which band files make up ``demo``, ``goods-s``, ...

Built-in mosaics name their files relative to a data directory. It defaults to the
environment variable ``MORPHEUS_DATA_DIR`` if set, else
``~/.cache/morpheus-survey/data`` (see :func:`default_data_dir`). Users add their own
mosaics in a TOML file::

    [mosaics.my-field]
    description = "My field, 4 bands"
    bands = { H = "f160w.fits", J = "f125w.fits", V = "f606w.fits", Z = "f850lp.fits" }
    weights = { H = "f160w_wht.fits", J = "f125w_wht.fits" }   # inverse variance (drizzle WHT)
    rms = { V = "f606w_rms.fits" }                               # or 1-sigma rms maps
    zeropoint = { H = 25.94 }                                    # AB; overrides the header's
    sky_subtracted = true                                        # no background is subtracted

The photometry keys are optional: a band without a weight or rms map gets its noise
from the sky pixels of each chunk, a band without a zero point (in the TOML or its
header: ``PHOTFLAM``/``PHOTPLAM``, ``ABMAG``, ``MAGZP``, ``ZP``) gets no magnitudes,
and without ``sky_subtracted = true`` a background level estimated from the sky
pixels of each chunk is subtracted before measuring
(:func:`pipeline.inputs.mosaic_files.photometry_inputs`).

Relative paths in it are resolved against the TOML file's folder. Bands keep the order
they are written in; a run matches them to the model's bands by name (the model card's
band names or filters, or the files' FITS ``FILTER``), so a mosaic for a model trained
on other bands names those bands (``F150W = "..."``).

``demo-nircam`` is a synthetic six-band JWST NIRCam-like mosaic (F090W, F115W, F150W,
F200W, F277W, F444W at 0.03"/px), generated on first use like ``demo``: the mosaic of
the example in docs/training.md (a model fine-tuned on those bands classifies it).

The files a mosaic names are resolved and checked by :mod:`pipeline.inputs.mosaic_files`;
the demo mosaics' files are rendered by :mod:`pipeline.inputs.demo_mosaics`.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from morpheus_core.passbands import NIRCAM_BANDS
from pipeline.errors import InputError
from pipeline.inputs.photometry_maps import PHOTOMETRY_KEYS, photometry_keys

__all__ = ["DATA_DIR_ENV", "DEMO", "DEMO_NIRCAM", "GOODS_S", "MOSAICS", "Mosaic", "default_data_dir", "known_mosaics"]

DATA_DIR_ENV = "MORPHEUS_DATA_DIR"


@dataclass(frozen=True)
class Mosaic:
    """A named set of band images on one pixel grid.

    Attributes
    ----------
    name : str
        Name used on the command line, e.g. ``"goods-s"``.
    bands : tuple of str
        Band names in storage order.
    files : dict of str to str
        Band -> file name, relative to the data directory (or absolute).
    description : str
        One line for listings.
    source_hint : str
        Where to obtain the files.
    threshold : float, optional
        Background threshold of Algorithm 1's source markers for this mosaic
        (``--threshold`` overrides it); ``None`` (every built-in mosaic) takes the
        detection rule's default, 0 for the paper's rule.
    weights, rms : dict of str to str
        Band -> inverse-variance weight map or rms map (paths as ``files``); a band has
        at most one of them.
    zeropoints : dict of str to float
        Band -> AB zero point given by the user (overrides the band's header).
    sky_subtracted : bool
        The bands are already sky-subtracted: no background is subtracted before the
        photometry.
    """

    name: str
    bands: tuple[str, ...]
    files: dict[str, str] = field(hash=False)
    description: str = ""
    source_hint: str = ""
    threshold: float | None = None
    weights: dict[str, str] = field(default_factory=dict, hash=False)
    rms: dict[str, str] = field(default_factory=dict, hash=False)
    zeropoints: dict[str, float] = field(default_factory=dict, hash=False)
    sky_subtracted: bool = False

    def __post_init__(self) -> None:
        if tuple(self.files) != tuple(self.bands):
            raise ValueError(f"mosaic {self.name!r}: files {list(self.files)} do not match bands {list(self.bands)}")


def _hlf(instrument: str, band: str) -> str:
    return f"hlsp_hlf_hst_{instrument}-60mas_goodss_{band}_v2.0_sci.fits"


GOODS_S = Mosaic(
    name="goods-s",
    bands=("H", "J", "V", "Z"),
    files={
        "H": _hlf("wfc3", "f160w"),
        "J": _hlf("wfc3", "f125w"),
        "V": _hlf("acs", "f606w"),
        "Z": _hlf("acs", "f850lp"),
    },
    description="Hubble Legacy Fields v2.0 GOODS-S, 60 mas, F160W/F125W/F606W/F850LP "
    "(the mosaic the Morpheus paper classified)",
    source_hint="download the HLF v2.0 GOODS-S 60 mas science images from the Hubble "
    "Legacy Fields high-level science product at the MAST archive "
    "(https://archive.stsci.edu/prepds/hlf/)",
)

DEMO = Mosaic(
    name="demo",
    bands=("H", "J", "V", "Z"),
    files={band: f"demo_{band}.fits" for band in ("H", "J", "V", "Z")},
    description="synthetic 4-band sky with a truth table, generated on first use",
    source_hint="generated by pipeline.inputs.demo_mosaics.generate_demo",
)

_NIRCAM = tuple(b.name for b in NIRCAM_BANDS)
DEMO_NIRCAM = Mosaic(
    name="demo-nircam",
    bands=_NIRCAM,
    files={band: f"demo-nircam_{band}.fits" for band in _NIRCAM},
    description='synthetic 6-band JWST NIRCam-like sky (F090W-F444W, 0.03"/px) with a truth table, '
    "generated on first use (for a model trained on those bands)",
    source_hint="generated by pipeline.inputs.demo_mosaics.generate_demo",
)

#: Built-in mosaics by name.
MOSAICS: dict[str, Mosaic] = {m.name: m for m in (DEMO, GOODS_S, DEMO_NIRCAM)}


def default_data_dir() -> Path:
    """``$MORPHEUS_DATA_DIR`` if set and non-empty, else ``~/.cache/morpheus-survey/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "morpheus-survey" / "data"


#: Mosaic names: they name the default run directory ``runs/<name>``, so no path parts.
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


def _load_user_mosaics(mosaics_file: Path) -> dict[str, Mosaic]:
    """Parse ``[mosaics.NAME]`` tables of a TOML file into Mosaics with absolute paths."""
    mosaics_file = Path(mosaics_file).expanduser().absolute()
    try:
        with open(mosaics_file, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError as exc:
        raise InputError(f"{mosaics_file}: mosaics file not found") from exc
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{mosaics_file}: cannot read mosaics file ({exc})") from None
    tables = doc.get("mosaics", {})
    if not isinstance(tables, dict):
        raise InputError(f"{mosaics_file}: 'mosaics' must be a table of mosaics")
    result = {}
    for name, table in tables.items():
        where = f"{mosaics_file}: [mosaics.{name}]"
        if not _NAME.fullmatch(name):
            raise InputError(
                f"{where}: a mosaic name is letters, digits, '.', '_' and '-', not starting "
                "with '.' (it names the default run directory runs/<name>)"
            )
        if name in MOSAICS:
            raise InputError(f"{where} reuses the built-in name {name!r}; pick another")
        if not isinstance(table, dict):
            raise InputError(f"{where} must be a table")
        unknown = set(table) - {"bands", "description", "source_hint", "threshold", *PHOTOMETRY_KEYS}
        if unknown:
            raise InputError(
                f"{where} has unknown key(s) {sorted(unknown)}; expected "
                "bands, description, source_hint, threshold, " + ", ".join(PHOTOMETRY_KEYS)
            )
        threshold = table.get("threshold")
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold < 1
        ):
            raise InputError(f"{where}: threshold must be a number in [0, 1), got {threshold!r}")
        bands = table.get("bands")
        if not isinstance(bands, dict) or not bands or not all(isinstance(v, str) and v for v in bands.values()):
            raise InputError(f'{where} needs bands = {{ BAND = "path", ... }} with at least one band')
        files = {band: str((mosaics_file.parent / Path(p).expanduser())) for band, p in bands.items()}
        result[name] = Mosaic(
            name=name,
            bands=tuple(files),
            files=files,
            description=str(table.get("description", "")),
            source_hint=str(table.get("source_hint", f"defined in {mosaics_file}")),
            threshold=None if threshold is None else float(threshold),
            **photometry_keys(table, tuple(files), mosaics_file.parent, where),
        )
    return result


def known_mosaics(mosaics_file: Path | None = None) -> dict[str, Mosaic]:
    """Built-in mosaics plus those defined in ``mosaics_file``, by name.

    Parameters
    ----------
    mosaics_file : Path, optional
        TOML file with ``[mosaics.NAME]`` tables.

    Returns
    -------
    dict of str to Mosaic

    Raises
    ------
    InputError
        If the file is missing, is not valid TOML, or a table is malformed.
    """
    mosaics = dict(MOSAICS)
    if mosaics_file is not None:
        mosaics.update(_load_user_mosaics(mosaics_file))
    return mosaics
