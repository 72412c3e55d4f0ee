"""The map's tile pyramid: every level against an independent NumPy reference,
the colour composite against astropy, resume after a failure, reuse and rebuild; a run
of a model with its own bands and classes the same way."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import zarr
from astropy.visualization import make_lupton_rgb
from PIL import Image

from morpheus_core import CLASSES
from morpheus_core.colour import CLASS_COLOURS, PALETTE, class_colours
from pipeline.errors import InputError
from pipeline.viewer import passes
from pipeline.viewer.composite import band_wavelengths, composite_bands
from pipeline.viewer.grid import Grid
from pipeline.viewer.pyramid import build_pyramid
from pipeline.viewer.tiles import (
    LAYERS,
    PLANES,
    LuptonSettings,
    class_layers,
    layer_labels,
    plane_names,
    reduce_planes,
    render,
)
from tests.pipeline.view_runs import CARD_BANDS, CARD_CLASSES, card_run, reference_planes, scene_run

SHAPE = (101, 131)  # odd sizes: partial tiles and partly covered pixels at every level
TILE, PER_PASS = 8, 2  # levels 0-5, three passes (5-4, 3-2, 1-0): both stored coarser levels are used
#: The card run's composite, by wavelength: F444W red, F200W green, F090W blue (channels of CARD_BANDS).
CARD_RGB = (5, 3, 0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return scene_run(tmp_path_factory.mktemp("scene") / "run", SHAPE, chunk=32)


@pytest.fixture(scope="module")
def built(run_dir):
    return build_pyramid(run_dir, tile=TILE, levels_per_pass=PER_PASS, keep_work=True, echo=lambda *_: None)


def _block_mean(full: np.ndarray, grid: Grid, level: int) -> np.ndarray:
    """The level as float64 block means of the zero-padded full image (weights: cov for the
    bands, planes 4-6; clsw for the class and colour planes after them)."""
    f = 2 ** (grid.max_level - level)
    side = grid.tile * 2**grid.max_level
    p, h, w = full.shape
    padded = np.zeros((p, side, side))
    padded[:, :h, :w] = full
    blocks = padded.reshape(p, side // f, f, side // f, f)
    out = blocks.mean(axis=(2, 4))
    for i in range(4, p):
        wt = blocks[1 if i < 7 else 2]  # cov for the three bands, clsw after them
        num, den = (wt * blocks[i]).sum(axis=(1, 3)), wt.sum(axis=(1, 3))
        out[i] = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
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


def test_stored_levels_equal_float64_block_means_of_the_full_image(built, run_dir):
    full = reference_planes(run_dir)
    work = zarr.open_group(str(run_dir / "viewer" / "work" / "levels.zarr"), mode="r")
    assert sorted(work.array_keys()) == ["level1", "level3"]
    for level in (3, 1):
        stored = work[f"level{level}"][:].astype(np.float64)
        # Stored as float32 after up to two weighted reductions of float32 values: a few ulp.
        np.testing.assert_allclose(stored, _block_mean(full, built.grid, level), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("layer", list(LAYERS))
def test_every_tile_of_every_level_equals_the_reference_rendering(built, run_dir, layer):
    full = reference_planes(run_dir)
    grid, tiles = built.grid, run_dir / "viewer" / "tiles"
    for level in range(grid.max_level + 1):
        reference = render(
            layer, _block_mean(full, grid, level), factor=2 ** (grid.max_level - level), lupton=built.lupton
        )
        got = _mosaic_of_tiles(tiles, layer, grid, level)
        h, w = grid.level_shape(level)
        assert not got[h:, :, 3].any() and not got[:, w:, 3].any()  # beyond the image: transparent
        diff = np.abs(_visible(got[:h, :w]) - _visible(reference))
        if level == grid.max_level:
            assert diff.max() == 0, (layer, level)  # full resolution: no rounding anywhere
        else:  # float32-stored coarser levels: a value on a rounding edge may move by one step
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (layer, level, diff.max())


def test_levels_and_tiles_equal_the_reference_around_an_unobserved_footprint(tmp_path):
    """A tilted NaN footprint edge and a censored core (n = 0, NaN bands) crossing the
    32-pixel chunk faces: the stored levels are the float64 block means, every tile the
    reference rendering of them."""
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    unobserved = yy > 0.6 * xx + 40  # the footprint's tilted lower-left edge
    unobserved[30:35, 62:67] = True  # a censored core across the face x = 64
    run_dir = scene_run(tmp_path / "run", SHAPE, chunk=32, unobserved=unobserved)
    built = build_pyramid(run_dir, tile=TILE, levels_per_pass=PER_PASS, keep_work=True, echo=lambda *_: None)
    full = reference_planes(run_dir)
    assert (full[1] == 0).mean() > 0.1 and not np.isnan(full).any()
    work = zarr.open_group(str(run_dir / "viewer" / "work" / "levels.zarr"), mode="r")
    for level in (3, 1):
        np.testing.assert_allclose(
            work[f"level{level}"][:].astype(np.float64), _block_mean(full, built.grid, level), rtol=2e-6, atol=1e-7
        )
    grid = built.grid
    for layer in LAYERS:
        for level in range(grid.max_level + 1):
            reference = render(
                layer, _block_mean(full, grid, level), factor=2 ** (grid.max_level - level), lupton=built.lupton
            )
            h, w = grid.level_shape(level)
            diff = np.abs(
                _visible(_mosaic_of_tiles(run_dir / "viewer" / "tiles", layer, grid, level)[:h, :w])
                - _visible(reference)
            )
            if level == grid.max_level:
                assert diff.max() == 0, (layer, level)
            else:  # float32-stored levels: a value on a rounding edge may move by one step (at
                # most 1% of the values, or one value on the 4 x 5 pixels of level 0)
                assert diff.max() <= 1 and (diff > 0).sum() <= max(1, 0.01 * diff.size), (layer, level)


def test_colour_composite_equals_astropy_make_lupton_rgb(built, run_dir):
    mosaic = zarr.open_group(str(run_dir / "mosaic.zarr"), mode="r")
    h, j, v = (mosaic["image"][i].astype(np.float64) for i in range(3))
    cov = mosaic["coverage"][:].astype(bool)
    lup = built.lupton
    expected = make_lupton_rgb(
        np.where(cov, h, 0),
        np.where(cov, j, 0),
        np.where(cov, v, 0),
        minimum=list(lup.minimum),
        stretch=lup.stretch,
        Q=lup.Q,
    )
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

    from pipeline.downstream.driver import run_downstream
    from pipeline.settings import DownstreamSettings

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
    square = passes.write_square

    def failing(build, level, box):
        if level == 3 and box.x0 > 0:  # the second pass fails on its right-hand square
            raise OSError("disk full")
        return square(build, level, box)

    monkeypatch.setattr(passes, "write_square", failing)
    with pytest.raises(OSError, match="disk full"):
        build_pyramid(broken, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None)
    record = json.loads((broken / "viewer" / "pyramid.json").read_text())
    assert record["complete"] is False
    monkeypatch.setattr(passes, "write_square", square)
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
    group.attrs["complete"] = True
    shutil.rmtree(copy / "mosaic.zarr")
    with pytest.raises(InputError, match="mosaic.zarr"):
        build_pyramid(copy, echo=lambda *_: None)


def test_tiles_are_pngs_of_the_tile_size(built, run_dir):
    some = next((run_dir / "viewer" / "tiles" / "bands" / "0").rglob("*.png"))
    image = Image.open(io.BytesIO(some.read_bytes()))
    assert image.size == (TILE, TILE) and image.mode == "RGBA"


def test_a_rebuilt_pyramid_does_not_follow_links_out_of_its_folder(tmp_path):
    run_dir = card_run(tmp_path / "run")
    build_pyramid(run_dir, echo=lambda *_: None)
    outside = tmp_path / "outside"
    (outside / "0").mkdir(parents=True)
    (outside / "0" / "0.png").write_bytes(b"not a tile")
    (run_dir / "viewer" / "tiles" / "linked").symlink_to(outside)
    (run_dir / "viewer" / "work").symlink_to(outside)
    pyramid = build_pyramid(run_dir, echo=lambda *_: None, rebuild=True)
    assert not pyramid.reused and (run_dir / "viewer" / "tiles" / "compact" / "0" / "0" / "0.png").is_file()
    assert not os.path.lexists(run_dir / "viewer" / "tiles" / "linked")
    assert (outside / "0" / "0.png").read_bytes() == b"not a tile"


# -- a model with its own bands and classes ------------------------------------------------------


@pytest.fixture(scope="module")
def card_dir(tmp_path_factory) -> Path:
    return card_run(tmp_path_factory.mktemp("card") / "run")


@pytest.fixture(scope="module")
def card_built(card_dir):
    return build_pyramid(card_dir, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None)


def test_composite_bands():
    assert composite_bands(["H", "J", "V", "Z"]) == (0, 1, 2)  # the released composite
    assert composite_bands(["z", "v", "j", "h"], [0.9, 0.6, 1.2, 1.5]) == (3, 2, 1)  # by name, any case
    nircam = [0.9022, 1.1543, 1.5007, 1.9886, 2.7617, 4.4043]
    assert composite_bands(CARD_BANDS, nircam) == CARD_RGB  # reddest, middle (rank (6 - 1) // 2), bluest
    shuffled = [3, 0, 5, 1, 4, 2]
    assert composite_bands([CARD_BANDS[i] for i in shuffled], [nircam[i] for i in shuffled]) == (2, 0, 1)
    assert composite_bands(CARD_BANDS) == (0, 2, 5)  # no wavelengths: the mosaic's order
    assert composite_bands(CARD_BANDS, [*nircam[:5], None]) == (0, 2, 5)  # one unknown: the order too
    assert composite_bands(["r"]) == composite_bands(["r"], [0.62]) == (0, 0, 0)  # grey
    assert composite_bands(["g", "i"], [0.48, 0.77]) == (1, 1, 0)  # green repeats the redder
    assert composite_bands(["H", "J"], [1.54, 1.25]) == (0, 0, 1)  # H, J alone: by wavelength
    with pytest.raises(ValueError, match="at least one band"):
        composite_bands([])
    with pytest.raises(ValueError, match="one value per band"):
        composite_bands(["a", "b"], [1.0])


def test_band_wavelengths_from_a_recorded_card():
    from morpheus_core.cards import RELEASED_CARD

    card = RELEASED_CARD.to_dict()
    assert band_wavelengths(["f160w", "J", "X"], card) == [1.5369, 1.2486, None]  # filter or name, any case
    assert band_wavelengths(["H"], None) is None and band_wavelengths(["H"], {"format": "other"}) is None


def test_class_colours_and_layers():
    assert class_colours(CLASSES) == CLASS_COLOURS  # the paper's
    colours = class_colours(CARD_CLASSES)
    assert colours == {"compact": PALETTE[0], "extended": PALETTE[1], "background": (255, 255, 255)}
    assert not set(PALETTE) & set(CLASS_COLOURS.values())  # red always means spheroid
    assert class_colours(("spheroid", "bar", "background")) == {
        "spheroid": (255, 0, 0),
        "bar": PALETTE[0],
        "background": (255, 255, 255),
    }
    many = tuple(f"c{i}" for i in range(20)) + ("background",)
    assert len(set(class_colours(many).values())) == len(many)  # distinct past the palette too
    assert list(LAYERS) == ["bands", "colour", *CLASSES, "segmentation", "coverage"] and plane_names() == PLANES
    assert plane_names(CARD_CLASSES)[7:10] == ("p_compact", "p_extended", "p_background")
    assert LAYERS["bands"] == "H, J, V colour composite (asinh)" and LAYERS["point_source"] == "point source (p)"
    assert (
        layer_labels(CARD_CLASSES, ("F444W", "F200W", "F090W"))["bands"]
        == "F444W, F200W, F090W colour composite (asinh)"
    )
    assert layer_labels(CARD_CLASSES, ("r", "r", "r"))["bands"] == "r (grey, asinh)"
    # Names that cannot be a tile folder (or are another layer's) are keyed by channel.
    odd = ("Sa-b", "coverage", "type 1", "background")
    assert class_layers(odd) == {
        "class-0": "Sa-b",
        "class-1": "coverage",
        "class-2": "type 1",
        "background": "background",
    }
    planes = np.zeros((len(plane_names(odd)), 2, 2))
    planes[0] = planes[2] = 1.0  # inside the image, classified
    planes[7 + 1] = 0.5  # p of "coverage"
    rgba = render("class-1", planes, factor=1, lupton=LuptonSettings((0, 0, 0), 1.0), classes=odd)
    assert (rgba[..., :3] == np.round(0.5 * np.asarray(class_colours(odd)["coverage"]))).all()
    assert render("coverage", planes, factor=1, lupton=LuptonSettings((0, 0, 0), 1.0), classes=odd)[..., 3].all()
    with pytest.raises(ValueError, match="planes of 5 classes"):
        render("bands", planes, factor=1, lupton=LuptonSettings((0, 0, 0), 1.0))
    with pytest.raises(ValueError, match="P >= 12"):
        reduce_planes(np.zeros((11, 2, 2)))


def test_a_card_run_has_its_classes_and_bands(card_built, card_dir):
    assert card_built.layers == ["bands", "colour", *CARD_CLASSES, "segmentation", "coverage"]
    assert card_built.classes == CARD_CLASSES and card_built.composite == ("F444W", "F200W", "F090W")
    record = json.loads((card_dir / "viewer" / "pyramid.json").read_text())
    assert record["complete"] and record["classes"] == list(CARD_CLASSES)
    assert record["bands"] == ["F444W", "F200W", "F090W"] and record["layers"] == card_built.layers


@pytest.mark.parametrize("layer", ["bands", "colour", *CARD_CLASSES, "segmentation", "coverage"])
def test_every_tile_of_a_card_run_equals_the_reference_rendering(card_built, card_dir, layer):
    full = reference_planes(card_dir, CARD_CLASSES, CARD_RGB)
    grid, tiles = card_built.grid, card_dir / "viewer" / "tiles"
    for level in range(grid.max_level + 1):
        reference = render(
            layer,
            _block_mean(full, grid, level),
            factor=2 ** (grid.max_level - level),
            lupton=card_built.lupton,
            classes=CARD_CLASSES,
        )
        got = _mosaic_of_tiles(tiles, layer, grid, level)
        h, w = grid.level_shape(level)
        assert not got[h:, :, 3].any() and not got[:, w:, 3].any()
        diff = np.abs(_visible(got[:h, :w]) - _visible(reference))
        if level == grid.max_level:
            assert diff.max() == 0, (layer, level)
        elif layer == "colour":  # means of k/255 values often sit exactly on a half step: there, and only
            # there, the float32-stored level may round the other way (checked on the unrounded reference)
            exact = np.moveaxis(_block_mean(full, grid, level)[-3:], 0, -1) * 255.0
            assert diff.max() <= 1 and np.allclose(exact[diff[..., :3] > 0] % 1.0, 0.5, atol=1e-6), level
        else:  # float32-stored coarser levels, as for the released run
            assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (layer, level, diff.max())


def test_card_run_class_layers_in_their_colours(card_built, card_dir):
    cls = zarr.open_group(str(card_dir / "classification.zarr"), mode="r")
    classified = cls["n"][:] > 0
    h, w = classified.shape
    for k, (name, colour) in enumerate(
        {"compact": (255, 128, 0), "extended": (0, 160, 255), "background": (255, 255, 255)}.items()
    ):
        got = _mosaic_of_tiles(card_dir / "viewer" / "tiles", name, card_built.grid, card_built.grid.max_level)
        p = np.clip(cls["mean"][k].astype(np.float64), 0, 1)
        expected = np.round(p[..., None] * np.asarray(colour, dtype=np.float64)).astype(np.uint8)
        np.testing.assert_array_equal(got[:h, :w, :3][classified], expected[classified])
        np.testing.assert_array_equal(got[:h, :w, 3], np.where(classified, 255, 0))


def test_card_run_composite_equals_astropy_make_lupton_rgb(card_built, card_dir):
    mosaic = zarr.open_group(str(card_dir / "mosaic.zarr"), mode="r")
    cov = mosaic["coverage"][:].astype(bool)
    names = list(mosaic.attrs["bands"])
    r, g, b = (
        np.where(cov, mosaic["image"][names.index(n)].astype(np.float64), 0) for n in ("F444W", "F200W", "F090W")
    )
    lup = card_built.lupton
    expected = make_lupton_rgb(r, g, b, minimum=list(lup.minimum), stretch=lup.stretch, Q=lup.Q)
    got = _mosaic_of_tiles(card_dir / "viewer" / "tiles", "bands", card_built.grid, card_built.grid.max_level)
    h, w = cov.shape
    np.testing.assert_array_equal(got[:h, :w, :3][cov], expected[cov])
    assert lup.minimum[0] > lup.minimum[1] > lup.minimum[2]  # the bands differ: red is F444W, the brightest


def test_card_run_colour_layer_equals_the_runs_colour_image(card_built, card_dir):
    seg = zarr.open_group(str(card_dir / "segmentation.zarr"), mode="r")
    classified = zarr.open_group(str(card_dir / "classification.zarr"), mode="r")["n"][:] > 0
    got = _mosaic_of_tiles(card_dir / "viewer" / "tiles", "colour", card_built.grid, card_built.grid.max_level)
    h, w = classified.shape
    np.testing.assert_array_equal(got[:h, :w, :3][classified], seg["colour"][:][classified])


def test_rebuilt_when_the_model_card_or_the_classes_change(card_built, card_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(card_dir, copy)
    assert build_pyramid(copy, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None).reused
    group = zarr.open_group(str(copy / "classification.zarr"), mode="r+")
    card = dict(group.attrs["model_card"])
    card["bands"] = [{**band, "wavelength_um": None} for band in card["bands"]]
    group.attrs["model_card"] = card  # no wavelengths: the composite follows the mosaic's order
    lines = []
    rebuilt = build_pyramid(copy, tile=TILE, levels_per_pass=PER_PASS, echo=lines.append)
    assert not rebuilt.reused and rebuilt.fingerprint != card_built.fingerprint
    assert any("rebuilding" in line for line in lines)
    assert rebuilt.composite == ("F090W", "F150W", "F444W")
    group.attrs["classes"] = ["round", "flat", "background"]
    renamed = build_pyramid(copy, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None)
    assert not renamed.reused and renamed.fingerprint != rebuilt.fingerprint
    assert renamed.layers == ["bands", "colour", "round", "flat", "background", "segmentation", "coverage"]
    assert sorted(p.name for p in (copy / "viewer" / "tiles").iterdir()) == sorted(renamed.layers)
    group.attrs["classes"] = ["a", "b", "c", "background"]
    with pytest.raises(InputError, match="3 class images but classes"):
        build_pyramid(copy, tile=TILE, levels_per_pass=PER_PASS, echo=lambda *_: None)
