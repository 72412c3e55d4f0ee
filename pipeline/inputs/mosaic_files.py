"""A named mosaic's files, checked: its band files, and its weight or rms maps.

:func:`resolve_mosaic` gives the band files of a mosaic of the registry
(:func:`pipeline.inputs.mosaics.known_mosaics`), checked to exist (a missing demo
mosaic is generated: :func:`pipeline.inputs.demo_mosaics.generate_demo`);
:func:`photometry_inputs` gives the weight or rms maps, zero points and sky
subtraction it names, the maps checked to exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipeline.errors import InputError
from pipeline.inputs.band_files import not_a_file
from pipeline.inputs.demo_mosaics import DEMO_TRUTH_FILES, generate_demo
from pipeline.inputs.mosaics import DATA_DIR_ENV, MOSAICS, default_data_dir, known_mosaics
from pipeline.inputs.photometry_maps import PhotometryInputs

__all__ = ["photometry_inputs", "resolve_mosaic"]


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
        mosaic.name in DEMO_TRUTH_FILES
        and builtin
        and (any(w == "missing" for w in why.values()) or not (data_dir / DEMO_TRUTH_FILES[mosaic.name]).is_file())
    ):
        generated = generate_demo(data_dir, mosaic=mosaic.name)
        if echo is not None:
            echo(
                f"{mosaic.name} data generated in {data_dir} ({', '.join(p.name for p in generated.values())}, "
                f"{DEMO_TRUTH_FILES[mosaic.name]})"
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
