"""The map's tile pyramid (issue #16): every level against an independent NumPy reference,
the colour composite against astropy, resume after a failure, reuse and rebuild."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.visualization import make_lupton_rgb
from PIL import Image
from skimage.segmentation import find_boundaries

from morpheus_core import CLASSES
from morpheus_core.colour import colour_image
from pipeline import pyramid as pyramid_module
from pipeline.errors import InputError
from pipeline.pyramid import Grid, build_pyramid
from pipeline.tile_images import LAYERS, PLANES, render
from tests.pipeline.view_runs import scene_run

SHAPE = (101, 131)  # odd sizes: partial tiles and partly covered pixels at every level
TILE, PER_PASS = 8, 2  # levels 0-5, three passes (5-4, 3-2, 1-0): both stored coarser levels are used


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return scene_run(tmp_path_factory.mktemp("scene") / "run", SHAPE, chunk=32)


@pytest.fixture(scope="module")
def built(run_dir):
    return build_pyramid(run_dir, tile=TILE, levels_per_pass=PER_PASS, keep_work=True, echo=lambda *_: None)


def _full_planes(run_dir: Path) -> np.ndarray:
    """The full-resolution planes from the stores, with NumPy and scikit-image only."""
    mosaic = zarr.open_group(str(run_dir / "mosaic.zarr"), mode="r")
    cls = zarr.open_group(str(run_dir / "classification.zarr"), mode="r")
    seg = zarr.open_group(str(run_dir / "segmentation.zarr"), mode="r")
    cov = mosaic["coverage"][:].astype(bool)
    n = cls["n"][:]
    labels = np.pad(seg["deblended"][:], 1)  # outside the image counts as background
    planes = {"inside": np.ones(SHAPE), "cov": cov, "clsw": n > 0,
              "outline": find_boundaries(labels, connectivity=1, mode="inner", background=0)[1:-1, 1:-1]}
    bands = mosaic["image"][:].astype(np.float64)
    for c, i in zip("rgb", (0, 1, 2)):  # H, J, V
        planes[f"band_{c}"] = np.where(cov, bands[i], 0.0)
    for i, c in enumerate(CLASSES):
        planes[f"p_{c}"] = np.where(n > 0, cls["mean"][i].astype(np.float64), 0.0)
    colour = colour_image(cls["rank"][:], n > 0) / 255.0
    for i, c in enumerate("rgb"):
        planes[f"colour_{c}"] = colour[..., i]
    return np.stack([np.asarray(planes[name], dtype=np.float64) for name in PLANES])


def _block_mean(full: np.ndarray, grid: Grid, level: int) -> np.ndarray:
    """The level as float64 block means of the zero-padded full image (weights: cov, clsw)."""
    f = 2 ** (grid.max_level - level)
    side = grid.tile * 2**grid.max_level
    padded = np.zeros((len(PLANES), side, side))
    padded[:, : SHAPE[0], : SHAPE[1]] = full
    blocks = padded.reshape(len(PLANES), side // f, f, side // f, f)
    out = blocks.mean(axis=(2, 4))
    idx = {n: i for i, n in enumerate(PLANES)}
    for name in PLANES[4:]:
        w = blocks[idx["cov" if name.startswith("band") else "clsw"]]
        num, den = (w * blocks[idx[name]]).sum(axis=(1, 3)), w.sum(axis=(1, 3))
        out[idx[name]] = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    h, w = grid.level_shape(level)
    return out[:, :h, :w]


def _mosaic_of_tiles(tiles: Path, layer: str, grid: Grid, level: int) -> np.ndarray:
    """A layer's tiles of one level assembled into one RGBA image, row 0 at the bottom."""
    rows, cols = grid.tile_counts(level)
    out = np.zeros((rows * grid.tile, cols * grid.tile, 4), dtype=np.uint8)
    for ty in range(rows):
        for tx in range(cols):
            image = np.asarray(Image.open(tiles / layer / str(level) / str(tx) / f"{ty}.png"))[::-1]
            out[ty * grid.tile : (ty + 1) * grid.tile, tx * grid.tile : (tx + 1) * grid.tile] = image
    return out


def _visible(rgba: np.ndarray) -> np.ndarray:
    """RGBA with the colour of transparent pixels zeroed (empty tiles are stored as zeros)."""
    out = rgba.astype(int)
    out[rgba[..., 3] == 0] = 0
    return out


def test_grid():
    assert Grid((512, 512)).max_level == 1 and Grid((256, 100)).max_level == 0 and Grid((257, 3)).max_level == 1
    grid = Grid(SHAPE, TILE)
    assert grid.max_level == 5  # 8 * 32 = 256 >= 131
    assert grid.level_shape(5) == SHAPE and grid.level_shape(4) == (51, 66) and grid.level_shape(0) == (4, 5)
    assert grid.tile_counts(5) == (13, 17) and grid.tile_counts(0) == (1, 1)


def test_stored_levels_equal_float64_block_means_of_the_full_image(built, run_dir):
    full = _full_planes(run_dir)
    work = zarr.open_group(str(run_dir / "viewer" / "work" / "levels.zarr"), mode="r")
    assert sorted(work.array_keys()) == ["level1", "level3"]
    for level in (3, 1):
        stored = work[f"level{level}"][:].astype(np.float64)
        # Stored as float32 after up to two weighted reductions of float32 values: a few ulp.
        np.testing.assert_allclose(stored, _block_mean(full, built.grid, level), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_tile_of_every_level_equals_the_reference_rendering(built, run_dir, layer):
    full = _full_planes(run_dir)
    grid, tiles = built.grid, run_dir / "viewer" / "tiles"
    for level in range(grid.max_level + 1):
        reference = render(layer, _block_mean(full, grid, level), factor=2 ** (grid.max_level - level),
                           lupton=built.lupton)
        got = _mosaic_of_tiles(tiles, layer, grid, level)
        h, w = grid.level_shape(level)
        assert not got[h:, :, 3].any() and not got[:, w:, 3].any()  # beyond the image: transparent
        diff = np.abs(_visible(got[:h, :w]) - _visible(reference))
        if level == grid.max_level:
            assert diff.max() == 0, (layer, level)  # full resolution: no rounding anywhere
        else:  # float32-stored coarser levels: a value on a rounding edge may move by one step
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (layer, level, diff.max())


def test_colour_composite_equals_astropy_make_lupton_rgb(built, run_dir):
    mosaic = zarr.open_group(str(run_dir / "mosaic.zarr"), mode="r")
    h, j, v = (mosaic["image"][i].astype(np.float64) for i in range(3))
    cov = mosaic["coverage"][:].astype(bool)
    lup = built.lupton
    expected = make_lupton_rgb(np.where(cov, h, 0), np.where(cov, j, 0), np.where(cov, v, 0),
                               minimum=list(lup.minimum), stretch=lup.stretch, Q=lup.Q)
    got = _mosaic_of_tiles(run_dir / "viewer" / "tiles", "bands", built.grid, built.grid.max_level)
    np.testing.assert_array_equal(got[: SHAPE[0], : SHAPE[1], :3][cov], expected[cov])
    np.testing.assert_array_equal(got[: SHAPE[0], : SHAPE[1], 3], np.where(cov, 255, 0))
    assert lup.stretch > 0 and len(lup.minimum) == 3


def test_morphological_colour_layer_equals_the_runs_colour_image(built, run_dir):
    seg = zarr.open_group(str(run_dir / "segmentation.zarr"), mode="r")
    got = _mosaic_of_tiles(run_dir / "viewer" / "tiles", "colour", built.grid, built.grid.max_level)
    n = zarr.open_group(str(run_dir / "classification.zarr"), mode="r")["n"][:]
    classified = n > 0
    np.testing.assert_array_equal(got[: SHAPE[0], : SHAPE[1], :3][classified], seg["colour"][:][classified])


def test_reused_then_rebuilt_when_the_products_change(built, run_dir, tmp_path):
    again = build_pyramid(run_dir, tile=TILE, levels_per_pass=PER_PASS, keep_work=True, echo=lambda *_: None)
    assert again.reused and again.tiles == 0 and again.fingerprint == built.fingerprint
    import shutil

    from pipeline.downstream import DownstreamSettings, run_downstream

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert build_pyramid(copy, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None).reused
    run_downstream(copy, DownstreamSettings(min_distance=4), echo=lambda *_: None)  # new segmentation
    lines = []
    rebuilt = build_pyramid(copy, tile=TILE, levels_per_pass=PER_PASS, echo=lines.append)
    assert not rebuilt.reused and rebuilt.fingerprint != built.fingerprint and rebuilt.tiles > 0
    assert any("rebuilding" in line for line in lines)
    assert not (copy / "viewer" / "work").exists()


def test_a_failed_build_resumes_and_equals_an_uninterrupted_one(run_dir, tmp_path, monkeypatch):
    import shutil

    reference = tmp_path / "reference"
    shutil.copytree(run_dir, reference, ignore=shutil.ignore_patterns("viewer"))
    build_pyramid(reference, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken, ignore=shutil.ignore_patterns("viewer"))
    square = pyramid_module._square

    def failing(sources, viewer, grid, level, box, *args):
        if level == 3 and box.x0 > 0:  # the second pass fails on its right-hand square
            raise OSError("disk full")
        return square(sources, viewer, grid, level, box, *args)

    monkeypatch.setattr(pyramid_module, "_square", failing)
    with pytest.raises(OSError, match="disk full"):
        build_pyramid(broken, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None)
    record = json.loads((broken / "viewer" / "pyramid.json").read_text())
    assert record["complete"] is False
    monkeypatch.setattr(pyramid_module, "_square", square)
    lines = []
    resumed = build_pyramid(broken, tile=TILE, levels_per_pass=PER_PASS, echo=lines.append)
    full = build_pyramid(reference, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None)
    assert any("resuming" in line for line in lines)
    assert 0 < resumed.tiles < sum(np.prod(full.grid.tile_counts(z)) for z in range(6)) * len(full.layers)
    a = {p.relative_to(reference / "viewer"): p.read_bytes() for p in (reference / "viewer").rglob("*.png")}
    b = {p.relative_to(broken / "viewer"): p.read_bytes() for p in (broken / "viewer").rglob("*.png")}
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_bad_run_directories_are_named(tmp_path, run_dir):
    with pytest.raises(InputError, match="manifest.json"):
        build_pyramid(tmp_path, echo=lambda *_: None)
    import shutil

    copy = tmp_path / "unfinished"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("viewer"))
    group = zarr.open_group(str(copy / "classification.zarr"), mode="r+")
    group.attrs["complete"] = False
    with pytest.raises(InputError, match="classification.zarr.*not finished"):
        build_pyramid(copy, echo=lambda *_: None)
    shutil.rmtree(copy / "mosaic.zarr")
    with pytest.raises(InputError, match="mosaic.zarr"):
        build_pyramid(copy, echo=lambda *_: None)


def test_tiles_are_pngs_of_the_tile_size(built, run_dir):
    some = next((run_dir / "viewer" / "tiles" / "bands" / "0").rglob("*.png"))
    image = Image.open(io.BytesIO(some.read_bytes()))
    assert image.size == (TILE, TILE) and image.mode == "RGBA"
