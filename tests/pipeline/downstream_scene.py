"""A constructed classification and run directory for downstream tests and benchmarks.

Like a real classification, the rank-vote background (``rank``) is exactly 0 in
source cores and exactly 1 on the sky, with a transition ring in multiples of 1/900
(votes over windows), so the paper's Algorithm 1 has both kinds of marker; each
source's rank-vote morphology is its dominant class. The mean background (``mean``)
never reaches 0 (at least 0.03 in cores) and is exactly 1 only on sky far from
sources, so on the mean image the paper's threshold 0 finds nothing and the unmarked
region is larger. Class fractions are random per source. No network is involved:
these scenes test the downstream graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import zarr

from morpheus_core import BANDS, CLASSES
from morpheus_core.simulate import make_wcs
from pipeline.rundir.location import Location

SHAPE = (150, 170)
CHUNK = 32
# Sources on chunk faces (y or x = 32, 64, 96, 128), on corners, a touching pair, a
# large one spanning four chunks, one in the unclassified border.
SOURCES = [  # y, x, sigma, amplitude
    (32, 32, 3.0, 1.0),
    (64, 100, 4.0, 2.0),
    (96, 40, 3.5, 1.5),
    (20, 128, 2.5, 1.0),
    (128, 140, 3.0, 0.8),
    (110, 96, 5.0, 1.2),
    (110, 112, 5.0, 1.0),
    (64, 64, 9.0, 3.0),
    (140, 10, 2.0, 0.7),
    (5, 60, 3.0, 1.0),
]


def random_sources(shape: tuple[int, int], per_megapixel: float = 400.0, seed: int = 0) -> list[tuple]:
    """Sources at a fixed density, seeded: ``(y, x, sigma, amplitude)``."""
    rng = np.random.default_rng(seed)
    n = max(1, int(round(per_megapixel * shape[0] * shape[1] / 1e6)))
    return [
        (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(1.5, 6.0), rng.uniform(0.5, 3.0))
        for _ in range(n)
    ]


def make_scene(shape: tuple[int, int], sources: list[tuple], seed: int = 3) -> dict[str, np.ndarray]:
    """Classification images and bands of a constructed scene (stamps, so any size is cheap)."""
    rng = np.random.default_rng(seed)
    clean = np.zeros(shape)
    owner = np.full(shape, -1)
    best = np.zeros(shape)
    for i, (y, x, sigma, amp) in enumerate(sources):
        r = int(np.ceil(5 * sigma))
        y0, y1 = max(0, int(y) - r), min(shape[0], int(y) + r + 1)
        x0, x1 = max(0, int(x) - r), min(shape[1], int(x) + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        g = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
        clean[y0:y1, x0:x1] += amp * g
        closer = g > best[y0:y1, x0:x1]
        owner[y0:y1, x0:x1][closer] = i
        best[y0:y1, x0:x1][closer] = g[closer]
    flux = clean + rng.normal(0, 0.002, shape)
    # rank vote: 0 in cores (clean >= 0.25), 1 on sky (clean <= 0.02), votes / 900 between
    b = np.clip((0.25 - clean) / (0.25 - 0.02), 0, 1)
    ring = (b > 0) & (b < 1)
    b[ring] = np.clip(np.round((b[ring] + rng.normal(0, 0.01, ring.sum())) * 900), 1, 899) / 900
    # mean: 1 only where clean < 0.005, at least 0.03, <= 0.3 where clean >= ~0.16
    bm = 1 - 0.97 * np.sqrt(np.clip((clean - 0.005) / (0.3 - 0.005), 0, 1))
    soft = bm < 1
    bm[soft] = np.clip(bm[soft] + rng.normal(0, 0.01, soft.sum()), 0.03, 0.999)
    n = np.full(shape, 900, np.int32)
    n[:4], n[:, -4:] = 0, 0
    fractions = rng.dirichlet(np.ones(4) * 0.7, len(sources) + 1)[owner].transpose(2, 0, 1)
    mean = np.concatenate([fractions * (1 - bm), bm[None]]).astype(np.float32)
    dominant = (fractions == fractions.max(axis=0, keepdims=True)).astype(np.float64)
    rank = np.concatenate([dominant * (1 - b), b[None]]).astype(np.float32)
    mean[:, n == 0] = 0
    rank[:, n == 0] = 0
    variance = (0.02 * mean * (1 - mean)).astype(np.float32)
    bands = np.stack([flux, 0.8 * flux, 0.5 * flux, 0.6 * flux]).astype(np.float32)
    return {
        "mean": mean,
        "rank": rank,
        "variance": variance,
        "n": n,
        "bands": bands,
        "background": rank[4],
        "mean_background": mean[4],
    }


def write_run(run_dir: Path, scene: dict[str, np.ndarray], *, complete: bool = True, chunk: int = CHUNK) -> Path:
    """A run directory as ``pipeline run`` leaves it, from a constructed classification."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shape = scene["n"].shape
    wcs_header = make_wcs(shape).to_header_string()
    mosaic = zarr.open_group(
        str(run_dir / "mosaic.zarr"),
        mode="w",
        zarr_format=3,
        attributes={"bands": list(BANDS), "wcs_header": wcs_header, "shape": list(shape)},
    )
    mosaic.create_array("image", data=scene["bands"], chunks=(4, chunk, chunk))
    mosaic.create_array("coverage", data=scene["n"] > 0, chunks=(chunk, chunk))
    cls = zarr.open_group(
        str(run_dir / "classification.zarr"),
        mode="w",
        zarr_format=3,
        attributes={"classes": list(CLASSES), "wcs_header": wcs_header, "complete": complete},
    )
    for name in ("mean", "variance"):
        cls.create_array(name, data=scene[name], chunks=(5, chunk, chunk))
    cls.create_array("rank", data=scene["rank"], chunks=(5, chunk, chunk))
    cls.create_array("n", data=scene["n"], chunks=(chunk, chunk))
    (run_dir / "manifest.json").write_text(
        json.dumps(
            {"run_id": "test-run", "model": "constructed", "config": {"mosaic": "scene", "precision": "float32"}}
        )
    )
    return run_dir


def segmentation_store(path: Path, shape: tuple[int, int], chunk: int = CHUNK, **data: np.ndarray) -> Location:
    """A ``segmentation.zarr`` as the downstream graph makes it, arrays zero or from ``data``.

    For the tests of single stages (:mod:`pipeline.downstream.segment`, :mod:`pipeline.downstream.labels`,
    ...): each stage reads the arrays the stages before it wrote.
    """
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    for name, dtype in (("mask", np.uint8), ("raw", np.int32), ("segments", np.int32), ("deblended", np.int32)):
        array = group.create_array(name, shape=shape, chunks=(chunk, chunk), dtype=dtype, fill_value=0)
        if name in data:
            array[:] = data[name]
    group.create_array("colour", shape=(*shape, 3), chunks=(chunk, chunk, 3), dtype=np.uint8, fill_value=0)
    return Location(path)
