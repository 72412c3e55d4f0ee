"""pipeline.downstream.context: what every stage reads, from one finished run, read once."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, replace

import numpy as np
import pytest
import zarr

from morpheus_core import BANDS, CLASSES
from morpheus_core.cards import RELEASED_CARD, Band
from morpheus_core.tiling import chunk_boxes
from pipeline.downstream.context import StageContext
from pipeline.errors import InputError
from pipeline.inputs.model_cards import header_cards
from pipeline.rundir.location import Location
from tests.pipeline.downstream_scene import CHUNK, SHAPE, make_scene, write_run

#: A card whose reddest band (J) is not the released model's (H), with its own classes.
CARD = replace(
    RELEASED_CARD,
    bands=(Band("V", "F606W", 0.5921), Band("J", "F125W", 1.2486), Band("Z", "F850LP", 0.9033)),
    classes=("spheroid", "disk", "background"),
    name="three-band test card",
)


@pytest.fixture(scope="module")
def scene():
    return make_scene(SHAPE, [(64, 64, 5.0, 1.0)])


def _run(tmp_path, scene, **attrs):
    run_dir = write_run(tmp_path / "run", scene)
    zarr.open_group(str(run_dir / "classification.zarr"), mode="r+").attrs.update(attrs)
    return Location(run_dir)


def test_a_run_recorded_before_cards_reads_h_and_the_released_classes(tmp_path, scene):
    run_dir = _run(tmp_path, scene)
    context = StageContext.from_run(run_dir)
    assert context.card is None and context.card_keywords == {}
    assert context.bands == BANDS and context.flux_band == "H" and context.flux_index == 0
    assert context.classes == CLASSES and context.shape == SHAPE and context.width == SHAPE[1]
    assert context.chunk == CHUNK and context.boxes == chunk_boxes(SHAPE, CHUNK)  # the store's chunks
    assert context.classification == run_dir / "classification.zarr"
    assert context.mosaic == run_dir / "mosaic.zarr" and context.segmentation == run_dir / "segmentation.zarr"
    assert context.pixel_scale_arcsec == pytest.approx(0.06, rel=1e-9)  # make_wcs's scale
    np.testing.assert_allclose(context.wcs.wcs.crval, [53.12, -27.81])
    with pytest.raises(FrozenInstanceError):
        context.chunk = 64
    # without H in the mosaic: its first band
    zarr.open_group(str(run_dir.path / "mosaic.zarr"), mode="r+").attrs["bands"] = ["V", "J", "Z", "I"]
    assert StageContext.from_run(run_dir, chunk=48).flux_band == "V"
    assert StageContext.from_run(run_dir, chunk=48).boxes == chunk_boxes(SHAPE, 48)


def test_the_recorded_card_gives_the_flux_band_classes_and_keywords(tmp_path, scene):
    run_dir = _run(tmp_path, scene, model_card=CARD.to_dict(), classes=list(CARD.classes))
    context = StageContext.from_run(run_dir)
    assert context.card == CARD
    assert context.flux_band == "J" and context.flux_index == BANDS.index("J")  # the card's reddest band
    assert context.classes == ("spheroid", "disk", "background")
    assert context.card_keywords == header_cards(CARD)
    assert context.card_keywords["MODBANDS"][0] == "V,J,Z"
    # a flux band named by the user wins; one the mosaic lacks is refused
    assert StageContext.from_run(run_dir, flux_band="Z").flux_band == "Z"
    with pytest.raises(InputError, match=r"--flux-band 'K' is not a band of this mosaic \(bands: H, J, V, Z\)"):
        StageContext.from_run(run_dir, flux_band="K")


def test_an_unfinished_classification_is_refused(tmp_path, scene):
    run_dir = write_run(tmp_path / "run", scene, complete=False)
    with pytest.raises(InputError, match="not finished"):
        StageContext.from_run(Location(run_dir))
