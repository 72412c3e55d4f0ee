"""Run directories for the map's tests: a classified scene with a catalog.

:func:`scene_run` writes a constructed classification (:mod:`tests.pipeline.downstream_scene`:
rank-vote background 0 in source cores, 1 on sky) and runs the real downstream graph
on it, so the run has segmentation maps and a catalog of dozens of objects in seconds.
:func:`classified_run` makes a run with ``pipeline.run.run`` and the stand-in network.
:func:`reference_planes` is what the pyramid's finest level must hold, computed on the
whole image with NumPy and scikit-image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr
from astropy.io import fits
from astropy.wcs import WCS
from skimage.segmentation import find_boundaries

from morpheus_core import CLASSES
from morpheus_core.colour import colour_image
from tests.pipeline.downstream_scene import make_scene, random_sources, write_run


def scene_run(
    folder: Path,
    shape: tuple[int, int] = (300, 420),
    *,
    seed: int = 11,
    chunk: int = 64,
    unobserved: np.ndarray | None = None,
) -> Path:
    """A finished run directory of a constructed scene: classification, segmentation, catalog.

    ``unobserved``: pixels outside the footprint or censored, as in a real mosaic (NaN
    bands, ``n = 0``, class images 0, coverage 0).
    """
    from pipeline.downstream.driver import run_downstream

    sources = random_sources(shape, per_megapixel=400.0, seed=seed)
    scene = make_scene(shape, sources, seed=seed)
    if unobserved is not None:
        scene["n"][unobserved] = 0
        for key in ("mean", "rank", "variance"):
            scene[key][:, unobserved] = 0
        scene["bands"][:, unobserved] = np.nan
    run_dir = write_run(folder, scene, chunk=chunk)
    run_downstream(run_dir, echo=lambda *_: None)
    return run_dir


def classified_run(folder: Path) -> Path:
    """A run directory made by ``pipeline.run.run`` on the small synthetic mosaic with the stand-in network."""
    from pipeline.run import run
    from pipeline.settings import RunSettings
    from tests.pipeline.small_runs import write_mosaic

    toml = write_mosaic(folder / "mosaic")
    settings = RunSettings(
        mosaic="small",
        mosaics_file=toml,
        run_dir=folder / "run",
        tile=40,
        batch_size=256,
        progress=False,
        workers=1,
        model="standin",
    )  # <- the stand-in network: the one line that chooses it
    return Path(run(settings, echo=lambda *_: None).run_dir)


#: The bands of :func:`card_run`: six NIRCam filters (as the built-in mosaic ``demo-nircam``).
CARD_BANDS = ("F090W", "F115W", "F150W", "F200W", "F277W", "F444W")
#: The classes of :func:`card_run`: a model trained with ``--classes compact,extended``.
CARD_CLASSES = ("compact", "extended", "background")


def card_run(
    folder: Path,
    shape: tuple[int, int] = (60, 75),
    *,
    seed: int = 5,
    chunk: int = 32,
    bands: tuple[str, ...] = CARD_BANDS,
    classes: tuple[str, ...] = CARD_CLASSES,
) -> Path:
    """A finished run directory of a model with its own bands and classes.

    The constructed scene of :func:`scene_run` with its classes merged into ``classes``
    (spheroid and point source -> the first, disk and irregular -> the second,
    background kept; ``classes`` has three entries) and one band per name of ``bands``
    (the scene's flux times a different factor each, so every band is told apart), the
    model card in the classification store's attributes as ``pipeline run`` records
    it, then the real downstream graph (flux band the third band).
    """
    import json

    from morpheus_core.cards import JWST_NIRCAM_BANDS, ModelCard, parse_band
    from morpheus_core.simulate import make_wcs
    from pipeline.downstream.driver import run_downstream
    from pipeline.settings import DownstreamSettings

    assert len(classes) == 3, classes
    scene = make_scene(shape, random_sources(shape, per_megapixel=2000.0, seed=seed), seed=seed)
    merge = [[0, 3], [1, 2], [4]]  # spheroid + point_source, disk + irregular, background
    mean = np.stack([scene["mean"][m].sum(axis=0) for m in merge]).astype(np.float32)
    rank = np.stack([scene["rank"][m].sum(axis=0) for m in merge]).astype(np.float32)
    variance = np.stack([scene["variance"][m].sum(axis=0) for m in merge]).astype(np.float32)
    flux = scene["bands"][0].astype(np.float64)
    images = np.stack([flux * (0.4 + 0.25 * k) + 0.01 * k for k in range(len(bands))]).astype(np.float32)
    card = ModelCard(
        bands=tuple(JWST_NIRCAM_BANDS.get(b) or parse_band(b) for b in bands),
        classes=classes,
        pixel_scale_arcsec=0.03,
        name="test card",
    )
    folder.mkdir(parents=True, exist_ok=True)
    wcs_header = make_wcs(shape).to_header_string()
    mosaic = zarr.open_group(
        str(folder / "mosaic.zarr"),
        mode="w",
        zarr_format=3,
        attributes={"bands": list(bands), "wcs_header": wcs_header, "shape": list(shape)},
    )
    mosaic.create_array("image", data=images, chunks=(len(bands), chunk, chunk))
    mosaic.create_array("coverage", data=scene["n"] > 0, chunks=(chunk, chunk))
    cls = zarr.open_group(
        str(folder / "classification.zarr"),
        mode="w",
        zarr_format=3,
        attributes={
            "classes": list(classes),
            "model_card": card.to_dict(),
            "bands": list(bands),
            "wcs_header": wcs_header,
            "complete": True,
        },
    )
    for name, data in (("mean", mean), ("variance", variance), ("rank", rank)):
        cls.create_array(name, data=data, chunks=(len(classes), chunk, chunk))
    cls.create_array("n", data=scene["n"], chunks=(chunk, chunk))
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "run_id": "test-card-run",
                "model": "constructed",
                "model_card": card.to_dict(),
                "config": {"mosaic": "card-scene", "precision": "float32"},
            }
        )
    )
    run_downstream(folder, DownstreamSettings(flux_band=bands[2]), echo=lambda *_: None)
    return folder


def reference_planes(run_dir: Path, classes: tuple[str, ...] = CLASSES, rgb: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """The full-resolution planes (``pipeline.viewer.tiles.plane_names``) from the stores, on the
    whole image with NumPy and scikit-image only (``rgb``: channels of the composite's bands,
    H, J, V of the released bands)."""
    mosaic = zarr.open_group(str(run_dir / "mosaic.zarr"), mode="r")
    cls = zarr.open_group(str(run_dir / "classification.zarr"), mode="r")
    seg = zarr.open_group(str(run_dir / "segmentation.zarr"), mode="r")
    cov = mosaic["coverage"][:].astype(bool)
    n = cls["n"][:]
    labels = np.pad(seg["deblended"][:], 1)  # outside the image counts as background
    planes = {
        "inside": np.ones(n.shape),
        "cov": cov,
        "clsw": n > 0,
        "outline": find_boundaries(labels, connectivity=1, mode="inner", background=0)[1:-1, 1:-1],
    }
    bands = mosaic["image"][:].astype(np.float64)
    for c, i in zip("rgb", rgb):
        planes[f"band_{c}"] = np.where(cov, bands[i], 0.0)
    for i, c in enumerate(classes):
        planes[f"p_{c}"] = np.where(n > 0, cls["mean"][i].astype(np.float64), 0.0)
    colour = colour_image(cls["rank"][:], n > 0, classes=classes) / 255.0
    for i, c in enumerate("rgb"):
        planes[f"colour_{c}"] = colour[..., i]
    names = (
        "inside",
        "cov",
        "clsw",
        "outline",
        "band_r",
        "band_g",
        "band_b",
        *(f"p_{c}" for c in classes),
        "colour_r",
        "colour_g",
        "colour_b",
    )
    return np.stack([np.asarray(planes[name], dtype=np.float64) for name in names])


def mosaic_wcs(run_dir: Path) -> WCS:
    """The mosaic's WCS, as ``mosaic.zarr`` records it."""
    header = zarr.open_group(str(run_dir / "mosaic.zarr"), mode="r").attrs["wcs_header"]
    return WCS(fits.Header.fromstring(header))
