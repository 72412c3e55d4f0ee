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
pixels of each chunk is subtracted before measuring (:func:`photometry_inputs`).

Relative paths in it are resolved against the TOML file's folder. Bands keep the order
they are written in; a run matches them to the model's bands by name (the model card's
band names or filters, or the files' FITS ``FILTER``), so a mosaic for a model trained
on other bands names those bands (``F150W = "..."``).

``demo-nircam`` is a synthetic six-band JWST NIRCam-like mosaic (F090W, F115W, F150W,
F200W, F277W, F444W at 0.03"/px), generated on first use like ``demo``: the mosaic of
the example in docs/training.md (a model fine-tuned on those bands classifies it).
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from morpheus_core.cards import JWST_NIRCAM_BANDS, RELEASED_BANDS
from morpheus_core.passbands import NIRCAM_BANDS
from pipeline.errors import InputError, RunError
from pipeline.inputs.band_files import not_a_file
from pipeline.inputs.photometry_maps import PHOTOMETRY_KEYS, PhotometryInputs, photometry_keys
from pipeline.rundir.location import atomic_path

__all__ = [
    "DATA_DIR_ENV",
    "DEMO",
    "DEMO_NIRCAM",
    "GOODS_S",
    "MOSAICS",
    "Mosaic",
    "NIRCAM_PIXEL_SCALE",
    "default_data_dir",
    "generate_demo",
    "known_mosaics",
    "photometry_inputs",
    "resolve_mosaic",
]

log = logging.getLogger(__name__)

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
    source_hint="generated by pipeline.inputs.mosaics.generate_demo",
)

_NIRCAM = tuple(b.name for b in NIRCAM_BANDS)
DEMO_NIRCAM = Mosaic(
    name="demo-nircam",
    bands=_NIRCAM,
    files={band: f"demo-nircam_{band}.fits" for band in _NIRCAM},
    description='synthetic 6-band JWST NIRCam-like sky (F090W-F444W, 0.03"/px) with a truth table, '
    "generated on first use (for a model trained on those bands)",
    source_hint="generated by pipeline.inputs.mosaics.generate_demo",
)

#: Built-in mosaics by name.
MOSAICS: dict[str, Mosaic] = {m.name: m for m in (DEMO, GOODS_S, DEMO_NIRCAM)}

_FILTERS = {b.name: b.filter for b in (*RELEASED_BANDS, *JWST_NIRCAM_BANDS.values())}
_TRUTH_FILE = "demo_truth.ecsv"
_TRUTH_FILES = {"demo": _TRUTH_FILE, "demo-nircam": "demo-nircam_truth.ecsv"}
#: Pixel scale (arcsec) of the NIRCam-like demo.
NIRCAM_PIXEL_SCALE = 0.03


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


def photometry_inputs(name: str, *, mosaics_file: Path | None = None) -> PhotometryInputs:
    """The weight or rms maps, zero points and sky subtraction a mosaic names.

    Parameters
    ----------
    name : str
        A mosaic name (built-in mosaics name none of them).
    mosaics_file : Path, optional
        TOML file with user mosaics.

    Returns
    -------
    PhotometryInputs

    Raises
    ------
    InputError
        When a weight or rms file is missing or not a file (every one is listed).
    """
    mosaic = known_mosaics(mosaics_file)[name]
    maps = {key: {band: Path(p).absolute() for band, p in getattr(mosaic, key).items()} for key in ("weights", "rms")}
    problems = [
        f"{key} {band}: {path}" + ("" if why == "missing" else f" ({why})")
        for key, paths in maps.items()
        for band, path in paths.items()
        if (why := not_a_file(path))
    ]
    if problems:
        where = f"{mosaics_file} (mosaic {name!r})" if mosaics_file else f"mosaic {name!r}"
        raise InputError(f"{where}: {len(problems)} weight/rms file(s) cannot be read: {'; '.join(problems)}")
    return PhotometryInputs(
        weights=maps["weights"],
        rms=maps["rms"],
        zeropoints=dict(mosaic.zeropoints),
        sky_subtracted=mosaic.sky_subtracted,
    )


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


def resolve_mosaic(
    name: str,
    *,
    data_dir: Path | None = None,
    mosaics_file: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Band files of a named mosaic, checked to exist.

    Parameters
    ----------
    name : str
        ``"demo"``, ``"goods-s"`` or a name from ``mosaics_file``.
    data_dir : Path, optional
        Folder of the built-in mosaics' files; defaults to :func:`default_data_dir`.
    mosaics_file : Path, optional
        TOML file with user mosaics (their paths do not use ``data_dir``).
    echo : callable, optional
        Where to say that a demo mosaic was generated (and in which folder).

    Returns
    -------
    dict of str to Path
        Band -> absolute path, in band order. For ``"demo"`` the files are generated
        (with :func:`generate_demo`) if any is missing.

    Raises
    ------
    InputError
        If the name is unknown (the known names are listed), or if files are missing
        (every missing file is listed with the path looked at, plus where to get it).
    """
    mosaics = known_mosaics(mosaics_file)
    if name not in mosaics:
        raise InputError(
            f"unknown mosaic {name!r}; known mosaics: "
            f"{', '.join(sorted(mosaics))}" + ("" if mosaics_file else " (add your own with a mosaics TOML file)")
        )
    mosaic = mosaics[name]
    data_dir = (Path(data_dir) if data_dir is not None else default_data_dir()).expanduser().absolute()
    paths = {band: data_dir / mosaic.files[band] for band in mosaic.bands}
    why = {band: not_a_file(path) for band, path in paths.items()}
    builtin = mosaic is MOSAICS.get(mosaic.name)
    if (
        mosaic.name in _TRUTH_FILES
        and builtin
        and (any(w == "missing" for w in why.values()) or not (data_dir / _TRUTH_FILES[mosaic.name]).is_file())
    ):
        generated = generate_demo(data_dir, mosaic=mosaic.name)
        if echo is not None:
            echo(
                f"{mosaic.name} data generated in {data_dir} ({', '.join(p.name for p in generated.values())}, "
                f"{_TRUTH_FILES[mosaic.name]})"
            )
        return generated
    problems = {band: w for band, w in why.items() if w}
    if problems:
        listed = "; ".join(
            f"{band}: {paths[band]}" + ("" if w == "missing" else f" ({w})") for band, w in problems.items()
        )
        if set(problems.values()) != {"missing"}:  # a link loop, a folder, ...: the data dir is not the problem
            raise InputError(f"mosaic {name!r}: {len(problems)} of {len(paths)} band files cannot be read: {listed}")
        where = (
            f"Data dir: {data_dir} (set {DATA_DIR_ENV} or pass a data dir to use another)"
            if builtin
            else "paths in a mosaics file are relative to its folder"
        )
        raise InputError(
            f"mosaic {name!r}: {len(problems)} of {len(paths)} band files "
            f"missing: {listed}. {where}; {mosaic.source_hint}"
        )
    return paths


def generate_demo(
    data_dir: Path, *, shape: tuple[int, int] = (512, 512), seed: int = 2020, mosaic: str = "demo"
) -> dict[str, Path]:
    """Render the synthetic demo mosaic into ``data_dir``.

    Writes ``demo_{H,J,V,Z}.fits`` (float32, electrons/s, with the WCS, a FILTER
    keyword and a comment marking them synthetic) and the truth table
    ``demo_truth.ecsv``. Each file is written under a temporary name and renamed, so
    a concurrent reader never sees a half-written file. With ``mosaic="demo-nircam"``
    the six NIRCam-like bands at 0.03"/px (``demo-nircam_<band>.fits``,
    ``demo-nircam_truth.ecsv``; :data:`morpheus_core.passbands.NIRCAM_BANDS`).

    Parameters
    ----------
    data_dir : Path
        Output folder; created if needed.
    shape : tuple of int, optional
        ``(H, W)`` of the images.
    seed : int, optional
        Seed of :func:`morpheus_core.simulate.render_sky`; same seed, same files.
    mosaic : {"demo", "demo-nircam"}
        Which demo.

    Returns
    -------
    dict of str to Path
        Band -> path of the written FITS file, in band order.

    Raises
    ------
    InputError
        If ``data_dir`` cannot be created or written (naming it).
    RunError
        If the simulator returns images of an unexpected shape.
    """
    from morpheus_core.simulate import render_sky

    if mosaic not in _TRUTH_FILES:
        raise ValueError(f"mosaic must be one of {sorted(_TRUTH_FILES)}, got {mosaic!r}")
    demo = MOSAICS[mosaic]
    data_dir = Path(data_dir).expanduser().absolute()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(data_dir, mosaic, exc) from None
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise _unwritable(data_dir, mosaic, PermissionError(13, "Permission denied"))
    log.info("rendering the %s mosaic %s (seed %d) into %s", mosaic, shape, seed, data_dir)
    if demo is DEMO:
        sky = render_sky(shape=tuple(shape), seed=seed)
    else:
        by_name = {b.name: b for b in NIRCAM_BANDS}
        sky = render_sky(
            shape=tuple(shape), seed=seed, bands=[by_name[b] for b in demo.bands], pixel_scale=NIRCAM_PIXEL_SCALE
        )
    images = np.asarray(sky.images, dtype=np.float32)
    expected = (len(demo.bands), *tuple(shape))
    if images.shape != expected:
        raise RunError(f"render_sky returned images of shape {images.shape}, expected {expected}")
    wcs_header = sky.wcs.to_header()
    paths = {}
    for i, band in enumerate(demo.bands):
        header = fits.Header()
        header.update(wcs_header)
        header["BUNIT"] = ("electrons/s", "as the HLF science images")
        header["FILTER"] = (_FILTERS[band], "band this image imitates")
        header["SIMSEED"] = (seed, "seed of morpheus_core.simulate.render_sky")
        header.add_comment("SYNTHETIC image rendered by morpheus_core.simulate.render_sky; not an observation.")
        hdu = fits.PrimaryHDU(data=images[i], header=header)
        path = data_dir / demo.files[band]
        try:
            with atomic_path(path) as tmp:
                hdu.writeto(tmp)
        except OSError as exc:
            raise _unwritable(data_dir, mosaic, exc) from None
        paths[band] = path
    try:
        with atomic_path(data_dir / _TRUTH_FILES[mosaic]) as tmp:
            sky.truth.write(tmp, format="ascii.ecsv")
    except OSError as exc:
        raise _unwritable(data_dir, mosaic, exc) from None
    return paths


def _unwritable(data_dir: Path, mosaic: str, exc: OSError) -> InputError:
    return InputError(
        f"{data_dir}: cannot write the {mosaic} mosaic's files in this data dir "
        f"({exc.strerror or exc}); pass --data-dir with a folder you can write (or set "
        f"{DATA_DIR_ENV})"
    )
