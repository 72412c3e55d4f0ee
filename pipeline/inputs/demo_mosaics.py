"""The synthetic demo mosaics' files: ``demo`` and ``demo-nircam``, rendered on first use.

:func:`generate_demo` renders a demo mosaic of the registry
(:data:`pipeline.inputs.mosaics.DEMO`, :data:`~pipeline.inputs.mosaics.DEMO_NIRCAM`)
with :func:`morpheus_core.simulate.render_sky` into a data directory: one FITS file
per band and the truth table (:data:`DEMO_TRUTH_FILES`), each written under a
temporary name and renamed. :func:`pipeline.inputs.mosaic_files.resolve_mosaic` calls
it when a demo's files are missing.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from astropy.io import fits

from morpheus_core.cards import JWST_NIRCAM_BANDS, RELEASED_BANDS
from morpheus_core.passbands import NIRCAM_BANDS
from pipeline.errors import InputError, RunError
from pipeline.inputs.mosaics import DATA_DIR_ENV, DEMO, MOSAICS
from pipeline.rundir.location import atomic_path

__all__ = ["DEMO_TRUTH_FILES", "NIRCAM_PIXEL_SCALE", "generate_demo"]

log = logging.getLogger(__name__)

#: Truth table of each demo mosaic, by mosaic name (in the data directory, beside its bands).
DEMO_TRUTH_FILES = {"demo": "demo_truth.ecsv", "demo-nircam": "demo-nircam_truth.ecsv"}

_FILTERS = {b.name: b.filter for b in (*RELEASED_BANDS, *JWST_NIRCAM_BANDS.values())}


#: Pixel scale (arcsec) of the NIRCam-like demo.
NIRCAM_PIXEL_SCALE = 0.03


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

    if mosaic not in DEMO_TRUTH_FILES:
        raise ValueError(f"mosaic must be one of {sorted(DEMO_TRUTH_FILES)}, got {mosaic!r}")
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
        with atomic_path(data_dir / DEMO_TRUTH_FILES[mosaic]) as tmp:
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
